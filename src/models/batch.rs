//! Batches as the models exchange them: flat, grouped by caption (`counts[i]` samples of text
//! `i`, in text order, each sample `dim` consecutive `f64`s), and the checks the engine makes
//! on what a model returns before anything else reads it.

use super::ModelError;

/// Pools several caption-grouped batches into one, still grouped by caption: for each text,
/// the samples of every batch in turn.
pub fn pool_by_text(batches: &[(&[usize], &[f64])], d: usize, counts: &mut Vec<usize>, out: &mut Vec<f64>) {
    let k = batches.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    counts.clear();
    counts.resize(k, 0);
    out.clear();
    let mut offsets = vec![0usize; batches.len()];
    for (i, total) in counts.iter_mut().enumerate() {
        for (b, (c, samples)) in batches.iter().enumerate() {
            let n = c.get(i).copied().unwrap_or(0);
            out.extend_from_slice(&samples[offsets[b] * d..(offsets[b] + n) * d]);
            offsets[b] += n;
            *total += n;
        }
    }
}

/// A model call returned `got` values where `expected` were due.
pub fn check_len(call: &'static str, got: usize, expected: usize) -> Result<(), ModelError> {
    if got == expected { Ok(()) } else { Err(ModelError::new(call, format!("returned {got} values, expected {expected}"))) }
}

/// Log-likelihoods must be finite or `-inf` (a sample impossible under a text).
pub fn check_finite(call: &'static str, values: &[f64]) -> Result<(), ModelError> {
    match values.iter().position(|v| v.is_nan() || *v == f64::INFINITY) {
        None => Ok(()),
        Some(i) => Err(ModelError::new(call, format!("value {i} is {} (log-likelihoods must be finite or -inf)", values[i]))),
    }
}
