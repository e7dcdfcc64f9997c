//! The contract every conditional model of a text model meets, built-in or plugin.
//!
//! Systems only ever see `dyn ConditionalModel`, so an image model written in this crate
//! and an audio model loaded from a shared library run through exactly the same code.
//!
//! Batches are flat and grouped by caption: `counts[i]` samples of text `i`, in text order,
//! each sample `dim()` consecutive `f64`s (row-major `n x dim`).

use nalgebra::{DMatrix, DVector};

use super::policy::DataPolicy;
use super::posterior::BlockLogDensity;
use crate::rng::Stream;

/// A failure inside a model call, naming the call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{call}: {message}")]
pub struct ModelError {
    /// The model call that failed (`sample`, `fit`, ...).
    pub call: &'static str,
    /// What went wrong.
    pub message: String,
}

impl ModelError {
    /// An error of `call` with `message`.
    pub fn new(call: &'static str, message: impl Into<String>) -> Self {
        ModelError { call, message: message.into() }
    }
}

/// Receives per-text metric values: `(metric name, text index, value)`.
pub type PerTextMetrics<'a> = dyn FnMut(&str, usize, f64) + 'a;

/// A model of samples conditioned on a text: one conditional distribution per text.
pub trait ConditionalModel: Send + Sync {
    /// The modality this model generates (`"image"`, `"audio"`, ...).
    fn modality(&self) -> &str;
    /// Number of texts `K` it holds a conditional for.
    fn num_texts(&self) -> usize;
    /// Dimension of one sample.
    fn dim(&self) -> usize;
    /// Draws `counts[i]` samples from text `i`'s conditional, dispersion scaled by the
    /// image `temperature` (1 = the model itself), into `out` (cleared first).
    fn sample(&mut self, counts: &[usize], temperature: f64, rng: &mut Stream, out: &mut Vec<f64>) -> Result<(), ModelError>;
    /// Like [`sample`](Self::sample) but from the initial conditionals: the source of real
    /// data (fresh-data policy, user content).
    fn sample_initial(&mut self, counts: &[usize], rng: &mut Stream, out: &mut Vec<f64>) -> Result<(), ModelError>;
    /// Adds `log q(y_j | i)` to `out[j*K + i]` for every sample `j` of `samples` and text `i`.
    fn add_log_likelihood(&mut self, samples: &[f64], out: &mut [f64]) -> Result<(), ModelError>;
    /// Readies the model's blocked log-densities ([`log_density`](Self::log_density)) for the
    /// samples it has just drawn (factorisations brought up to date, regularised uses counted)
    /// and says whether it has them.
    ///
    /// The text phase scores a model that answers `true` block by block, only against the
    /// texts with `p_i > 0`, from several threads, through [`BlockLogDensity`] (see
    /// [`crate::models::posterior`]): no `N x K` matrix is ever held. A model that answers
    /// `false` (the default, and every plugin) is asked for the whole matrix through
    /// [`add_log_likelihood`](Self::add_log_likelihood), which the posterior then reads block
    /// by block. A new covariance structure (diagonal, isotropic) plugs into the blocked,
    /// screened posterior by implementing [`BlockLogDensity`] for its `O(d)` log-density and
    /// returning `true` here.
    fn prepare_log_density(&mut self) -> bool {
        false
    }
    /// The blocked log-densities readied by [`prepare_log_density`](Self::prepare_log_density),
    /// `None` (the default) when the model has none.
    fn log_density(&self) -> Option<&dyn BlockLogDensity> {
        None
    }
    /// The data policy the model's refit honours (the image phase mixes in real data under
    /// `Fresh`; the model keeps its own statistics under `Accumulate`).
    fn data_policy(&self) -> &DataPolicy;
    /// Refits on a pooled batch grouped by caption, honouring the model's data policy.
    fn fit(&mut self, counts: &[usize], samples: &[f64]) -> Result<(), ModelError>;
    /// Marks the start of a round: the parameters now are "last round's" for local drift.
    fn begin_round(&mut self);
    /// Reports every per-text metric of the current parameters.
    fn metrics(&mut self, sink: &mut PerTextMetrics<'_>) -> Result<(), ModelError>;
    /// The per-text metric that measures diversity (`trace` for the Gaussian); the coupling
    /// metrics (p-weighted mean, Matthew index) are computed from it.
    fn diversity_metric(&self) -> &str;
    /// Number of factorisations that needed regularising since the last call (then reset).
    fn take_regularized(&mut self) -> u64;
    /// Adds a conditional for a new text `K + 1` (corpus injection of a new text).
    fn add_text(&mut self) -> Result<(), ModelError>;
    /// The model's whole mutable state as numbers, for checkpoints: current and initial
    /// parameters, data-policy statistics, counters. Restoring it with
    /// [`load_state`](Self::load_state) into a model built from the same scenario must make
    /// every later call give exactly the results the saved model would have given (plugin
    /// models map this to their get/set params). The default refuses: no checkpoints.
    fn save_state(&self) -> Result<Vec<f64>, ModelError> {
        Err(ModelError::new("save_state", format!("this {} model does not support checkpoints", self.modality())))
    }
    /// Restores a state written by [`save_state`](Self::save_state).
    fn load_state(&mut self, state: &[f64]) -> Result<(), ModelError> {
        let _ = state;
        Err(ModelError::new("load_state", format!("this {} model does not support checkpoints", self.modality())))
    }
    /// Mean and covariance of text `text`'s conditional, when the model can give them: the
    /// Frechet distance between two models (recursive stability, docs/model.md section 8) is computed
    /// from these moments, exactly for Gaussians and as FID's Gaussian approximation otherwise.
    /// `None` (the default) when the model does not expose them.
    fn moments(&self, text: usize) -> Option<(DVector<f64>, DMatrix<f64>)> {
        let _ = text;
        None
    }
}
