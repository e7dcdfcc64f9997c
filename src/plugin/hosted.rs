//! Hosted models named by a scenario: a `PluginModel` without `library` is checked against
//! the [`HostedModels`] supplied with the scenario, and built from them for each world.
//!
//! Checked as a plugin model is checked when its scenario is loaded (exit code 2 on a
//! problem, naming the entity and the field): the model is supplied, accepts its parameters
//! for the text model's `K`, meets what coevo relies on (its `K`, a dimension, the scenario's
//! data policy) and reports its diversity metric. The command line supplies no hosted model,
//! so there the message says where hosted models come from.

use rand::SeedableRng;

use crate::models::{ConditionalModel, HostedContext, HostedModels};
use crate::rng::Stream;
use crate::scenario::PluginModelSpec;

/// Why a hosted model cannot be used: the scenario field to fix and the message.
pub(crate) type Refusal = (&'static str, String);

/// Checks the hosted model `spec` names against `models`, for a text model of `k` texts (the
/// caller then records `models` in the spec: what [`build`] creates the model from). Returns the
/// per-text metrics the model reports, then the p-weighted mean of its diversity metric
/// (names `output.metrics` may use).
pub(crate) fn check(spec: &PluginModelSpec, k: usize, models: &HostedModels) -> Result<Vec<String>, Refusal> {
    let factory = models.get(&spec.model).ok_or_else(|| ("model", not_supplied(&spec.model, models)))?;
    let context = context(spec, k);
    // A throwaway stream: the model built here never runs a round.
    let mut model = factory
        .create(&context, &mut Stream::from_seed([0; 32]))
        .map_err(|e| ("params", format!("hosted model `{}` refused its parameters: {e}", spec.model)))?;
    meets_contract(&*model, &context).map_err(|m| ("model", m))?;
    let mut names: Vec<String> = Vec::new();
    model
        .metrics(&mut |name, _, _| {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        })
        .map_err(|e| ("model", format!("hosted model `{}`: {e}", spec.model)))?;
    let diversity = model.diversity_metric().to_owned();
    if !names.contains(&diversity) {
        return Err((
            "model",
            format!(
                "hosted model `{}` names `{diversity}` as its diversity metric but reports {names:?}; coevo's coupling metrics need it",
                spec.model
            ),
        ));
    }
    names.push(crate::metrics::names::weighted(&diversity));
    Ok(names)
}

/// Creates the hosted model `spec` names for a world whose text model has `k` texts, from a
/// stream split off the entity's `stream` (so the entity's later draws are the same whether
/// or not the factory draws).
pub(crate) fn build(spec: &PluginModelSpec, k: usize, stream: &mut Stream) -> Result<Box<dyn ConditionalModel>, String> {
    let none = HostedModels::new();
    let models = spec.hosted.as_ref().unwrap_or(&none);
    let factory = models.get(&spec.model).ok_or_else(|| not_supplied(&spec.model, models))?;
    let context = context(spec, k);
    let mut rng = Stream::from_rng(stream);
    let model = factory.create(&context, &mut rng).map_err(|e| format!("hosted model `{}`: {e}", spec.model))?;
    meets_contract(&*model, &context)?;
    Ok(model)
}

fn context(spec: &PluginModelSpec, k: usize) -> HostedContext<'_> {
    HostedContext { entity: &spec.name, model: &spec.model, num_texts: k, params: &spec.params, policy: &spec.data }
}

/// What coevo relies on before the first call: the model holds `K` conditionals, has a
/// dimension, and honours the scenario's data policy (the image phase reads it to mix in real
/// data under `Fresh`).
fn meets_contract(model: &dyn ConditionalModel, context: &HostedContext<'_>) -> Result<(), String> {
    let name = context.model;
    if model.num_texts() != context.num_texts {
        return Err(format!(
            "hosted model `{name}` was created with {} texts but holds {}: it must hold one conditional per text",
            context.num_texts,
            model.num_texts()
        ));
    }
    if model.dim() == 0 {
        return Err(format!("hosted model `{name}` has dimension 0: a sample needs at least one coordinate"));
    }
    if model.data_policy() != context.policy {
        return Err(format!(
            "hosted model `{name}` reports data policy {:?} but the scenario gives it {:?}: it must report the policy it is created with",
            model.data_policy(),
            context.policy
        ));
    }
    Ok(())
}

/// The message for a hosted model that is not among `models`.
fn not_supplied(model: &str, models: &HostedModels) -> String {
    let supplied = if models.is_empty() { "none is".to_owned() } else { format!("these are: {}", models.names().join(", ")) };
    format!(
        "no hosted model `{model}` is supplied ({supplied}): a PluginModel without `library` names a model supplied in process, \
         only available from the Python API (coevo.run(scenario, models={{\"{model}\": ...}})) or a program embedding coevo \
         (HostedModels); to use a plugin library's model, give `library`"
    )
}
