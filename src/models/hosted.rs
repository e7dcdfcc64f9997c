//! Hosted conditional models: conditional models supplied in process by the program running
//! coevo (the Python API's `models=`, or a Rust program embedding the library), which a
//! scenario names with a `PluginModel` that has no `library`.
//!
//! A researcher prototyping a model (a kernel density estimate, a per-text mixture) writes it
//! in the language of their analysis and hands coevo a factory by name; coevo calls the
//! factory once per world with the entity's number of texts, parameters and data policy, and
//! runs the model it returns through the same [`ConditionalModel`] contract as the built-in
//! Gaussian and the plugin models, so the world's systems have no special case for it. Its
//! errors are reported like a plugin's (entity, call, round, message); it draws its random
//! numbers only from the stream each call hands it (the entity's own), so runs stay
//! reproducible.
//!
//! The registry ([`HostedModels`]) travels with the scenario loaded with it (see
//! `crate::plugin::check_scenario`) and in [`RunOptions`](crate::run::RunOptions) for resumed
//! runs; the command line supplies none, so a scenario naming a hosted model is refused there
//! with a message saying where such models come from.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{ConditionalModel, DataPolicy};
use crate::rng::Stream;

/// What a [`HostedFactory`] is told about the model a world needs.
#[derive(Debug, Clone, Copy)]
pub struct HostedContext<'a> {
    /// The `PluginModel` entity's name.
    pub entity: &'a str,
    /// The scenario's `model`: the name the factory was registered under.
    pub model: &'a str,
    /// Number of texts `K` of the text model it is conditioned on.
    pub num_texts: usize,
    /// The entity's `params` (default `{}`), as JSON.
    pub params: &'a serde_json::Value,
    /// The entity's data policy: the model's [`data_policy`](ConditionalModel::data_policy)
    /// must report it (coevo mixes in the real data of `Fresh` itself).
    pub policy: &'a DataPolicy,
}

/// Creates a hosted model for one world. `rng` is a stream split off the entity's own stream
/// (a throwaway one when a scenario is checked), for a model whose construction is random.
/// The message of an `Err` is reported with the entity's name and the `params` field.
pub trait HostedFactory: Send + Sync {
    /// A new model with `context.num_texts` texts.
    fn create(&self, context: &HostedContext<'_>, rng: &mut Stream) -> Result<Box<dyn ConditionalModel>, String>;
}

impl<F> HostedFactory for F
where
    F: Fn(&HostedContext<'_>, &mut Stream) -> Result<Box<dyn ConditionalModel>, String> + Send + Sync,
{
    fn create(&self, context: &HostedContext<'_>, rng: &mut Stream) -> Result<Box<dyn ConditionalModel>, String> {
        self(context, rng)
    }
}

/// The hosted models a program supplies, by the name a scenario's `model` gives. Cheap to
/// clone (the factories are shared).
#[derive(Clone, Default)]
pub struct HostedModels {
    factories: BTreeMap<String, Arc<dyn HostedFactory>>,
}

impl HostedModels {
    /// No hosted model (what the command line supplies).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the factory of model `name`.
    pub fn insert(&mut self, name: impl Into<String>, factory: impl HostedFactory + 'static) {
        self.factories.insert(name.into(), Arc::new(factory));
    }

    /// [`insert`](Self::insert), for building a registry in one expression.
    pub fn with(mut self, name: impl Into<String>, factory: impl HostedFactory + 'static) -> Self {
        self.insert(name, factory);
        self
    }

    /// The factory of model `name`, if supplied.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn HostedFactory>> {
        self.factories.get(name)
    }

    /// The supplied names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    /// Whether no model is supplied.
    pub fn is_empty(&self) -> bool {
        self.factories.is_empty()
    }
}

impl std::fmt::Debug for HostedModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HostedModels").field(&self.names()).finish()
    }
}

/// Two registries are equal when they hold the same factories under the same names (a
/// scenario compares equal to its clone, not to one given other code).
impl PartialEq for HostedModels {
    fn eq(&self, other: &Self) -> bool {
        self.factories.len() == other.factories.len()
            && self.factories.iter().zip(&other.factories).all(|((a, f), (b, g))| a == b && Arc::ptr_eq(f, g))
    }
}
