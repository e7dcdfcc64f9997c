//! Components and resources of a simulated platform.
//!
//! A model entity carries its model, its own random stream, and the batch of the phase in
//! flight ([`CaptionBatch`] on text models, [`ImageBatch`] on conditional models), so every
//! influence on a batch is a small system of its own between generation and refit. Wiring is
//! bevy relationships: [`ConditionedOn`] (conditional model -> text model, gathered on the
//! text model as [`Conditionals`]) and [`Targets`] (influence -> model, gathered as
//! [`TargetedBy`]); a target keeps its sources in spawn order, which is scenario order.

use std::collections::HashMap;
use std::sync::Arc;

use bevy_ecs::prelude::*;

use nalgebra::{DMatrix, DVector};

use super::RunError;
use crate::data::Dataset;
use crate::metrics::MetricRow;
use crate::models::posterior::PosteriorBuffers;
use crate::models::{Allocation, ConditionalModel, GaussianImageModel, Schedule, TextModel};
use crate::rng::Stream;
use crate::scenario::Window;

/// The scenario name of an entity.
#[derive(Component, Debug, Clone)]
pub struct EntityName(pub Arc<str>);

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
#[derive(Component, Debug)]
#[relationship(relationship_target = Conditionals)]
pub struct ConditionedOn(pub Entity);

/// The conditional models of a text model, in scenario order (maintained by bevy from
/// [`ConditionedOn`]).
#[derive(Component, Debug)]
#[relationship_target(relationship = ConditionedOn)]
pub struct Conditionals(Vec<Entity>);

/// The model an influence (injector, sampler, filter) acts on.
#[derive(Component, Debug)]
#[relationship(relationship_target = TargetedBy)]
pub struct Targets(pub Entity);

/// The influences acting on a model, in scenario order (maintained by bevy from [`Targets`]).
#[derive(Component, Debug)]
#[relationship_target(relationship = Targets)]
pub struct TargetedBy(Vec<Entity>);

/// The text models whose captions a conditional model's image phase draws from, with weights
/// summing to 1 (docs/model.md section 9: several text models' batches pooled into one feed). Absent:
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
#[derive(Component, Debug, Clone)]
pub struct Temperature {
    /// `T > 0`, over rounds.
    pub t: Schedule<f64>,
}

/// The rounds an influence acts in (docs/model.md section 12); an influence without one acts
/// in every round. Its systems ask [`ActiveWindow::admits`].
#[derive(Component, Debug, Clone, Copy)]
pub struct ActiveWindow(pub Window);

impl ActiveWindow {
    /// Whether an influence with `window` (none: always) acts in round `round`.
    pub fn admits(window: Option<&ActiveWindow>, round: u64) -> bool {
        window.is_none_or(|w| w.0.contains(round))
    }
}

/// A corpus injector (docs/model.md section 5, Algorithm 2): after the text phase, with probability
/// `alpha`, its target's `p <- (1 - eps) p + eps r`.
#[derive(Component, Debug, Clone)]
pub struct CorpusInjector {
    /// Probability of an injection per round, over rounds.
    pub alpha: Schedule<f64>,
    /// Mixing weight, over rounds.
    pub eps: Schedule<f64>,
    /// The injection distribution `r`.
    pub distribution: crate::scenario::Injection,
    /// Whether it injected in the current round (reported as the `injected` metric).
    pub fired: bool,
}

/// A user-content injector (docs/model.md section 5, Algorithm 3): `n0` external samples per text are
/// pooled with the generated ones before every refit of its target.
#[derive(Component, Debug)]
pub struct UserContentInjector {
    /// External samples per text per image phase, over rounds.
    pub n0: Schedule<u64>,
    /// Where they come from: `None` for the target's real data (its dataset if it was built
    /// from one, else its initial conditionals), else this model (its current parameters,
    /// which never train).
    pub source: Option<GaussianImageModel>,
    /// A `Data` source: label-`i` rows resampled for text `i` (texts beyond its labels get none).
    pub data: Option<Arc<Dataset>>,
}

/// The dataset a conditional model was built from (docs/model.md section 10): its real captions follow
/// the empirical label distribution, and [`DataMoments`] are measured against it.
#[derive(Component, Debug, Clone)]
pub struct RealData(pub Arc<Dataset>);

/// The empirical moments of a conditional model's dataset that the metrics against the data
/// compare it with, each with its matrix square root computed once.
#[derive(Component, Debug, Clone)]
pub struct DataMoments {
    /// Per label: mean, MLE covariance, its square root.
    pub labels: Vec<(DVector<f64>, DMatrix<f64>, DMatrix<f64>)>,
    /// Of all vectors: mean, MLE covariance, its square root.
    pub marginal: (DVector<f64>, DMatrix<f64>, DMatrix<f64>),
}

/// The temperature a model currently samples at (1 unless a sampler targets it).
#[derive(Component, Debug, Clone, Copy)]
pub struct SamplingTemperature(pub f64);

/// The batch of a text model's text phase in flight (docs/model.md section 3): captions drawn from
/// `tau_T(p)`, the log-likelihood of each caption's samples under every text (filled by the
/// conditional models), the real captions of a fresh-data policy, and the soft counts the
/// refit uses. Buffers are reused from phase to phase.
#[derive(Component, Debug, Default)]
pub struct CaptionBatch {
    /// Whether the model trains in the current text phase (unfrozen, phase `< M`).
    pub active: bool,
    /// The sampling distribution `tau_T(p)`.
    pub sampling_p: Vec<f64>,
    /// Synthetic captions per text.
    pub counts: Vec<usize>,
    /// Real (labelled) captions of this phase (fresh-data policy).
    pub real: usize,
    /// Real captions per text.
    pub real_counts: Vec<usize>,
    /// `log q(y_j | i)` summed over the conditional models without blocked log-densities
    /// (plugins), row-major `n x K`; empty when every model has them.
    pub log_likelihood: Vec<f64>,
    /// Soft counts of the refit.
    pub soft_counts: Vec<f64>,
    /// Buffers of the blocked posterior.
    pub posterior: PosteriorBuffers,
}

/// One external batch pooled into a conditional model's refit (user content, a dataset, ...),
/// grouped by caption.
#[derive(Debug, Default, Clone)]
pub struct ExternalBatch {
    /// Samples per text.
    pub counts: Vec<usize>,
    /// The samples, `dim` values each, text by text.
    pub samples: Vec<f64>,
}

/// The batch of a conditional model's image phase in flight (docs/model.md sections 3, 5, 6): the
/// generated samples, the real samples of a fresh-data policy, and external batches, pooled
/// by text for the refit. In the text phase `samples` also holds the model's samples of the
/// text model's captions. Buffers are reused from phase to phase.
#[derive(Component, Debug, Default)]
pub struct ImageBatch {
    /// Whether the model trains in the current image phase (unfrozen, phase `< N_t`).
    pub active: bool,
    /// Generated samples per text.
    pub counts: Vec<usize>,
    /// Generated samples, text by text.
    pub samples: Vec<f64>,
    /// Real samples per text (fresh-data policy).
    pub real_counts: Vec<usize>,
    /// Real samples, text by text.
    pub real_samples: Vec<f64>,
    pub(super) external: Vec<ExternalBatch>,
    pub(super) external_len: usize,
    /// The pooled batch the refit sees when anything was added to the generated one.
    pub pooled_counts: Vec<usize>,
    /// See [`pooled_counts`](Self::pooled_counts).
    pub pooled: Vec<f64>,
    /// Caption distribution of the generated samples.
    pub sampling_p: Vec<f64>,
    /// Caption distribution of the real samples.
    pub real_p: Vec<f64>,
    /// Scratch.
    pub scratch: Vec<f64>,
}

impl ImageBatch {
    /// Empties the batch's external part (its buffers are kept for reuse).
    pub fn clear_external(&mut self) {
        self.external_len = 0;
    }

    /// A cleared external batch to fill, pooled after the generated and real samples, in the
    /// order they were added.
    pub fn push_external(&mut self) -> &mut ExternalBatch {
        if self.external.len() == self.external_len {
            self.external.push(ExternalBatch::default());
        }
        self.external_len += 1;
        let batch = &mut self.external[self.external_len - 1];
        batch.counts.clear();
        batch.samples.clear();
        batch
    }

    /// The external batches of the current phase.
    pub fn external(&self) -> &[ExternalBatch] {
        &self.external[..self.external_len]
    }
}

/// The entities of the world in scenario order, and by name: systems visit entities in this
/// order, never in query order, so results do not depend on archetype layout.
#[derive(Resource, Debug, Default)]
pub struct ScenarioEntities {
    /// Every entity, in scenario order (entities a [`RoundFeature`](super::RoundFeature)
    /// spawns from code come after the scenario's, in the order they are spawned).
    pub all: Vec<Entity>,
    /// Text models, in scenario order.
    pub texts: Vec<Entity>,
    /// Conditional models, in scenario order.
    pub conditionals: Vec<Entity>,
    /// Entities by name.
    pub by_name: HashMap<Arc<str>, Entity>,
}

/// The phase in flight within a round (0-based): text model `m` trains in text phases
/// `0..M_m`, conditional model `c` in image phases `0..N_t,c`.
#[derive(Resource, Debug, Default, Clone, Copy)]
pub struct PhaseIndex(pub u64);

/// Completed training rounds.
#[derive(Resource, Debug, Default)]
pub struct RoundCounter(pub u64);

/// Identity of the world: used in messages, metric rows and the streams of entities spawned
/// from code.
#[derive(Resource, Debug, Clone)]
pub struct WorldInfo {
    /// The scenario's seed.
    pub seed: u64,
    /// Replicate index.
    pub replicate: u64,
}

/// Whether the Measure part runs (on unless a benchmark switches it off).
#[derive(Resource, Debug)]
pub struct Measuring(pub bool);

/// The measurements of the last measured round.
#[derive(Resource, Debug, Default)]
pub struct Measurements(pub Vec<MetricRow>);

/// The first failure of the current round, recorded by [`record_failure`](super::record_failure)
/// from a system's `Err`; the stages after it do not run.
#[derive(Resource, Debug, Default)]
pub struct Failure(pub Option<RunError>);
