//! Components and resources of a simulated platform.

use std::sync::Arc;

use bevy_ecs::prelude::*;

use crate::models::{Allocation, ConditionalModel, GaussianImageModel, TextModel};
use crate::rng::Stream;

use super::RunError;
use crate::metrics::MetricRow;

/// The scenario name of an entity.
#[derive(Component, Debug, Clone)]
pub struct EntityName(pub Arc<str>);

/// Position of the entity in the scenario: systems visit entities in this order, which makes
/// every result independent of ECS storage order.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ScenarioOrder(pub usize);

/// The entity's own random stream.
#[derive(Component)]
pub struct RandomStream(pub Stream);

/// A text model agent: the categorical model and how it trains.
#[derive(Component, Debug, Clone)]
pub struct TextAgent {
    /// The model.
    pub model: TextModel,
    /// Pairs per text-phase batch `N`.
    pub batch: u64,
    /// Text phases per round `M`.
    pub steps: u64,
}

/// A conditional model agent (the built-in Gaussian image model or a plugin model).
#[derive(Component)]
pub struct ConditionalAgent {
    /// The model, seen only through its trait.
    pub model: Box<dyn ConditionalModel>,
    /// Pairs per image-phase batch `N` under binomial allocation.
    pub batch: u64,
    /// Image phases per round `N_t`.
    pub steps: u64,
    /// How samples are allocated to texts.
    pub allocation: Allocation,
}

/// The text model a conditional model is conditioned on.
#[derive(Component, Debug, Clone, Copy)]
pub struct ConditionedOn(pub Entity);

/// The text models whose captions a conditional model's image phase draws from, with weights
/// summing to 1 (SPEC section 9: several text models' batches pooled into one feed). Absent:
/// the text model it is conditioned on, alone.
#[derive(Component, Debug, Clone)]
pub struct Feed(pub Vec<(Entity, f64)>);

impl Feed {
    /// A feed with the given (positive) weights, normalised to sum to 1.
    pub fn new(mut sources: Vec<(Entity, f64)>) -> Self {
        let total: f64 = sources.iter().map(|(_, w)| w).sum();
        for (_, w) in &mut sources {
            *w /= total;
        }
        Feed(sources)
    }
}

/// A frozen model skips its own refit but still generates.
#[derive(Component, Debug, Clone, Copy)]
pub struct Frozen;

/// A temperature sampler entity.
#[derive(Component, Debug, Clone, Copy)]
pub struct Temperature {
    /// `T > 0`.
    pub t: f64,
}

/// A corpus injector (SPEC section 5, Algorithm 2): after the text phase, with probability
/// `alpha`, its target's `p <- (1 - eps) p + eps r`.
#[derive(Component, Debug, Clone)]
pub struct CorpusInjector {
    /// Probability of an injection per round.
    pub alpha: f64,
    /// Mixing weight.
    pub eps: f64,
    /// The injection distribution `r`.
    pub distribution: crate::scenario::Injection,
    /// Whether it injected in the current round (reported as the `injected` metric).
    pub fired: bool,
}

/// A user-content injector (SPEC section 5, Algorithm 3): `n0` external samples per text are
/// pooled with the generated ones before every refit of its target.
#[derive(Component, Debug)]
pub struct UserContentInjector {
    /// External samples per text per image phase.
    pub n0: usize,
    /// Where they come from: `None` for the target's initial conditionals, else this model
    /// (its current parameters, which never train).
    pub source: Option<GaussianImageModel>,
}

/// The entity an injector or sampler acts on.
#[derive(Component, Debug, Clone, Copy)]
pub struct Targets(pub Entity);

/// The temperature a model currently samples at (1 unless a sampler targets it).
#[derive(Component, Debug, Clone, Copy)]
pub struct SamplingTemperature(pub f64);

/// Completed training rounds.
#[derive(Resource, Debug, Default)]
pub struct RoundCounter(pub u64);

/// Identity of the world: used in messages and metric rows.
#[derive(Resource, Debug, Clone)]
pub struct WorldInfo {
    /// Replicate index.
    pub replicate: u64,
}

/// Whether the Measure phase runs (on unless a benchmark switches it off).
#[derive(Resource, Debug)]
pub struct Measuring(pub bool);

/// The measurements of the last measured round.
#[derive(Resource, Debug, Default)]
pub struct Measurements(pub Vec<MetricRow>);

/// The first failure of the current round, if any; later phases skip their work.
#[derive(Resource, Debug, Default)]
pub struct Failure(pub Option<RunError>);
