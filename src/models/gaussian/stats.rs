//! Running sufficient statistics of a text's samples, the refit's input.

use nalgebra::{DMatrix, DVector};

/// Running sufficient statistics of one text's samples (count, mean, scatter about the
/// mean): equivalent to count, sum and sum of outer products, stored centred so that the
/// covariance does not suffer cancellation when the spread is small next to the mean.
///
/// The scatter is either the whole `d x d` matrix or only its diagonal, a `d x 1` column
/// (what a `Diagonal` or `Isotropic` refit needs: `O(d)` memory and work per sample instead
/// of `O(d^2)`, docs/model.md section 14); [`SufficientStats::is_diagonal`] tells which.
#[derive(Debug, Clone, PartialEq)]
pub struct SufficientStats {
    /// Number of samples seen.
    pub count: f64,
    /// Their mean.
    pub mean: DVector<f64>,
    /// `sum (y - mean)(y - mean)^T`, or its diagonal as a column.
    pub scatter: DMatrix<f64>,
}

impl SufficientStats {
    /// No samples yet, in dimension `d`, keeping the whole scatter matrix.
    pub fn empty(d: usize) -> Self {
        SufficientStats { count: 0.0, mean: DVector::zeros(d), scatter: DMatrix::zeros(d, d) }
    }

    /// No samples yet, in dimension `d`, keeping only the scatter's diagonal.
    pub fn empty_diagonal(d: usize) -> Self {
        SufficientStats { count: 0.0, mean: DVector::zeros(d), scatter: DMatrix::zeros(d, 1) }
    }

    /// Whether only the scatter's diagonal is kept (a `d x 1` column).
    pub fn is_diagonal(&self) -> bool {
        self.scatter.ncols() == 1 && self.mean.len() != 1
    }

    /// `sum (y_k - mean_k)^2`, the scatter's diagonal entry `k`, whichever form is kept.
    pub fn scatter_diagonal(&self, k: usize) -> f64 {
        if self.scatter.ncols() == 1 { self.scatter[k] } else { self.scatter[(k, k)] }
    }

    /// Computes the statistics of a row-major `n x d` block of samples into `self`
    /// (two-pass: the exact mean first, then the scatter about it). No allocation.
    pub fn set_from(&mut self, samples: &[f64], d: usize) {
        let n = samples.len() / d;
        let diagonal = self.is_diagonal();
        self.count = n as f64;
        let mean = self.mean.as_mut_slice();
        mean.fill(0.0);
        let scatter = self.scatter.as_mut_slice();
        scatter.fill(0.0);
        if n == 0 {
            return;
        }
        // Up to d = 8 the sums run in registers (in memory, each addition waits for the
        // previous one's store: most of the paper round's refit); the same additions in the
        // same order either way.
        match d {
            1 => column_sums::<1>(samples, mean),
            2 => column_sums::<2>(samples, mean),
            3 => column_sums::<3>(samples, mean),
            4 => column_sums::<4>(samples, mean),
            5 => column_sums::<5>(samples, mean),
            6 => column_sums::<6>(samples, mean),
            7 => column_sums::<7>(samples, mean),
            8 => column_sums::<8>(samples, mean),
            _ => {
                for y in samples.chunks_exact(d) {
                    for (m, v) in mean.iter_mut().zip(y) {
                        *m += v;
                    }
                }
            }
        }
        for m in mean.iter_mut() {
            *m /= n as f64;
        }
        if diagonal {
            for y in samples.chunks_exact(d) {
                for ((s, v), m) in scatter.iter_mut().zip(y).zip(mean.iter()) {
                    *s += (v - m) * (v - m);
                }
            }
            return;
        }
        // Lower triangle of sum (y - mean)(y - mean)^T, column-major, then mirrored.
        match d {
            1 => lower_scatter::<1>(samples, mean, scatter),
            2 => lower_scatter::<2>(samples, mean, scatter),
            3 => lower_scatter::<3>(samples, mean, scatter),
            4 => lower_scatter::<4>(samples, mean, scatter),
            5 => lower_scatter::<5>(samples, mean, scatter),
            6 => lower_scatter::<6>(samples, mean, scatter),
            7 => lower_scatter::<7>(samples, mean, scatter),
            8 => lower_scatter::<8>(samples, mean, scatter),
            _ => lower_scatter_dyn(samples, d, mean, scatter),
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
        if self.is_diagonal() {
            for k in 0..d {
                let dk = other.mean[k] - self.mean[k];
                self.scatter[k] += other.scatter[k] + w * dk * dk;
            }
        } else {
            self.merge_full(other, w);
        }
        for r in 0..d {
            self.mean[r] += (other.mean[r] - self.mean[r]) * (other.count / n);
        }
        self.count = n;
    }

    fn merge_full(&mut self, other: &SufficientStats, w: f64) {
        let d = self.mean.len();
        for c in 0..d {
            let dc = other.mean[c] - self.mean[c];
            for r in 0..d {
                let dr = other.mean[r] - self.mean[r];
                self.scatter[(r, c)] += other.scatter[(r, c)] + w * dr * dc;
            }
        }
    }
}

/// The lower triangle of `sum (y - mean)(y - mean)^T` (column-major `d x d`) added into
/// `scatter`, sample by sample.
fn lower_scatter_dyn(samples: &[f64], d: usize, mean: &[f64], scatter: &mut [f64]) {
    for y in samples.chunks_exact(d) {
        for c in 0..d {
            let dc = y[c] - mean[c];
            let column = &mut scatter[c * d..(c + 1) * d];
            for r in c..d {
                column[r] += (y[r] - mean[r]) * dc;
            }
        }
    }
}

/// The column sums of a row-major `n x D` block into `sums` (zero on entry), sample by sample.
fn column_sums<const D: usize>(samples: &[f64], sums: &mut [f64]) {
    let mut acc = [0.0; D];
    for y in samples.chunks_exact(D) {
        for c in 0..D {
            acc[c] += y[c];
        }
    }
    sums.copy_from_slice(&acc);
}

/// [`lower_scatter_dyn`] compiled for dimension `D` (the per-sample loops unrolled, the
/// triangle kept in registers): the same operations in the same order, so the same values.
fn lower_scatter<const D: usize>(samples: &[f64], mean: &[f64], scatter: &mut [f64]) {
    let mut m = [0.0; D];
    m.copy_from_slice(mean);
    let mut acc = [[0.0; D]; D];
    for (a, column) in acc.iter_mut().zip(scatter.chunks_exact(D)) {
        a.copy_from_slice(column);
    }
    for y in samples.chunks_exact(D) {
        for c in 0..D {
            let dc = y[c] - m[c];
            for r in c..D {
                acc[c][r] += (y[r] - m[r]) * dc;
            }
        }
    }
    for (a, column) in acc.iter().zip(scatter.chunks_exact_mut(D)) {
        column.copy_from_slice(a);
    }
}
