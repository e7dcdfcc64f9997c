//! The names of the metrics the engine writes and reads, defined once.
//!
//! Conditional models name their own per-text metrics (a plugin reports whatever it
//! measures); the built-in Gaussian image model's names are here so that the diagnostics, the
//! summary and the plots that read them use the same constants.

/// Text model: Gini-Simpson diversity `1 - sum p_i^2`.
pub const GINI_SIMPSON: &str = "gini_simpson";
/// Text model: Shannon entropy (nats).
pub const ENTROPY: &str = "entropy";
/// Text model: effective number of texts `exp(H)`.
pub const EFFECTIVE_TEXTS: &str = "effective_texts";
/// Text model: number of texts with `p_i > 0`.
pub const SUPPORT: &str = "support";
/// Text model: largest probability.
pub const MAX_P: &str = "max_p";
/// Text model: `max p - min p`.
pub const SPREAD: &str = "spread";
/// Text model: total variation distance to `p^0`.
pub const TV_TO_INITIAL: &str = "tv_to_initial";
/// Text model, per text: the probability `p_i`.
pub const P: &str = "p";

/// Gaussian image model, per text: `tr Sigma_i` (its diversity metric).
pub const TRACE: &str = "trace";
/// Gaussian image model, per text: `tr Sigma_i^(1/2)`.
pub const TRACE_SQRT: &str = "trace_sqrt";
/// Gaussian image model, per text: `log det Sigma_i`.
pub const LOGDET: &str = "logdet";
/// Gaussian image model, per text: effective rank of `Sigma_i`.
pub const EFFECTIVE_RANK: &str = "effective_rank";
/// Gaussian image model, per text: `|mu_i - mu_i^0|`.
pub const FIDELITY: &str = "fidelity";
/// Gaussian image model, per text: squared Frechet distance to the initial conditional (the
/// cumulative drift of the diagnostics).
pub const FRECHET_TO_INITIAL: &str = "frechet_to_initial";
/// Gaussian image model, per text: squared Frechet distance to last round's conditional (the
/// local drift of the diagnostics).
pub const FRECHET_LOCAL: &str = "frechet_local";

/// Image model built from a dataset, per text: squared Frechet distance between the conditional
/// and the empirical moments (mean, MLE covariance) of the label's vectors (docs/model.md section 10).
pub const FRECHET_TO_DATA: &str = "frechet_to_data";
/// Image model built from a dataset: squared Frechet distance between the Gaussian with the
/// model's marginal moments (the `p`-mixture's mean and covariance) and the data's marginal
/// moments: an FID in the model's own embedding space (docs/model.md section 10).
pub const FRECHET_TO_DATA_MARGINAL: &str = "frechet_to_data_marginal";

/// Conditional model: prefix of the p-weighted mean of its diversity metric
/// (`weighted_trace` for the Gaussian image model); see [`weighted`].
pub const WEIGHTED_PREFIX: &str = "weighted_";
/// Conditional model: Matthew index (rank correlation of `p_i` and per-text diversity).
pub const MATTHEW_INDEX: &str = "matthew_index";
/// Conditional model: factorisations regularised since the last measurement.
pub const REGULARIZED: &str = "regularized";

/// Corpus injector: 1 if it injected this round, else 0.
pub const INJECTED: &str = "injected";

/// Recursive stability, text model: total variation between the twins.
pub const TV: &str = "tv";
/// Recursive stability, conditional model: squared Frechet distance between the twins, summed
/// over texts.
pub const FRECHET_SUM: &str = "frechet_sum";

/// The p-weighted mean of a conditional model's diversity metric: `weighted_<diversity>`.
pub fn weighted(diversity: &str) -> String {
    format!("{WEIGHTED_PREFIX}{diversity}")
}
