//! Data policies: what a model trains on across generations (docs/model.md section 6).

use serde::{Deserialize, Serialize};

use super::schedule::Schedule;

/// What a model's refit sees each generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum DataPolicy {
    /// Only this round's batch plus its injections (Gao & Li; the default).
    #[default]
    Replace,
    /// Everything seen so far, starting from `initial` real samples of the initial model
    /// (Marchi et al.; Gerstgrasser et al.). Kept as sufficient statistics. `initial` is drawn
    /// once, when the model is built, so it is a plain number, not a schedule.
    Accumulate {
        /// Size of the initial real dataset.
        initial: u64,
    },
    /// Each refit uses a fraction `lambda` of real samples from the initial model and
    /// `1 - lambda` synthetic ones, same total size (Fu et al.'s fresh-data loop).
    Fresh {
        /// Real-data fraction in `[0, 1]`, possibly scheduled over rounds (docs/model.md section 12).
        lambda: Schedule<f64>,
    },
}

impl DataPolicy {
    /// Number of real samples in a refit batch of `total` samples in round `round` (zero
    /// unless `Fresh`).
    ///
    /// Rounded to the nearest integer so that `lambda * total` is honoured as closely as a
    /// whole batch allows.
    pub fn real_count(&self, total: usize, round: u64) -> usize {
        match self {
            DataPolicy::Fresh { lambda } => ((lambda.at(round) * total as f64).round() as usize).min(total),
            _ => 0,
        }
    }
}
