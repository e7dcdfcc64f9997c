//! Running sufficient statistics of a text's samples, the refit's input.

use nalgebra::{DMatrix, DVector};

/// Running sufficient statistics of one text's samples (count, mean, scatter about the
/// mean): equivalent to count, sum and sum of outer products, stored centred so that the
/// covariance does not suffer cancellation when the spread is small next to the mean.
#[derive(Debug, Clone, PartialEq)]
pub struct SufficientStats {
    /// Number of samples seen.
    pub count: f64,
    /// Their mean.
    pub mean: DVector<f64>,
    /// `sum (y - mean)(y - mean)^T`.
    pub scatter: DMatrix<f64>,
}

impl SufficientStats {
    /// No samples yet, in dimension `d`.
    pub fn empty(d: usize) -> Self {
        SufficientStats { count: 0.0, mean: DVector::zeros(d), scatter: DMatrix::zeros(d, d) }
    }

    /// Computes the statistics of a row-major `n x d` block of samples into `self`
    /// (two-pass: the exact mean first, then the scatter about it). No allocation.
    pub fn set_from(&mut self, samples: &[f64], d: usize) {
        let n = samples.len() / d;
        self.count = n as f64;
        let mean = self.mean.as_mut_slice();
        mean.fill(0.0);
        let scatter = self.scatter.as_mut_slice();
        scatter.fill(0.0);
        if n == 0 {
            return;
        }
        for y in samples.chunks_exact(d) {
            for (m, v) in mean.iter_mut().zip(y) {
                *m += v;
            }
        }
        for m in mean.iter_mut() {
            *m /= n as f64;
        }
        // Lower triangle of sum (y - mean)(y - mean)^T, column-major, then mirrored.
        for y in samples.chunks_exact(d) {
            for c in 0..d {
                let dc = y[c] - mean[c];
                let column = &mut scatter[c * d..(c + 1) * d];
                for r in c..d {
                    column[r] += (y[r] - mean[r]) * dc;
                }
            }
        }
        for c in 0..d {
            for r in c + 1..d {
                scatter[r * d + c] = scatter[c * d + r];
            }
        }
    }

    /// Merges another set of statistics in place (Chan et al.'s parallel update).
    pub fn merge(&mut self, other: &SufficientStats) {
        if other.count == 0.0 {
            return;
        }
        let n = self.count + other.count;
        let w = self.count * other.count / n;
        let d = self.mean.len();
        for c in 0..d {
            let dc = other.mean[c] - self.mean[c];
            for r in 0..d {
                let dr = other.mean[r] - self.mean[r];
                self.scatter[(r, c)] += other.scatter[(r, c)] + w * dr * dc;
            }
        }
        for r in 0..d {
            self.mean[r] += (other.mean[r] - self.mean[r]) * (other.count / n);
        }
        self.count = n;
    }
}
