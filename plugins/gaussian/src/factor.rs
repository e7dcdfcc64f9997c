//! The factorisation of a (possibly singular) covariance that sampling and scoring use, with
//! the built-in image model's eigenvalue floors (docs/model.md section 3, "Singular covariances").
//!
//! Shared source: `plugins/gaussian` declares it as its module `factor`, and `plugins/mixture`
//! and `plugins/kde` include this same file with `#[path]`, because plugin crates cannot depend
//! on each other (two `coevo_plugin_entry` symbols in one library would clash). One piece of
//! code for one idea, compiled into each library.

use coevo_plugin_api::HostRng;
use nalgebra::{DMatrix, SymmetricEigen};
use rand::RngExt;
use rand_distr::StandardNormal;

/// Relative eigenvalue floor (the built-in model's `RELATIVE_FLOOR`).
const RELATIVE_FLOOR: f64 = 1e-12;
/// Absolute eigenvalue floor, `sqrt(f64::MIN_POSITIVE)` (the built-in `ABSOLUTE_FLOOR`).
const ABSOLUTE_FLOOR: f64 = 1.4916681462400413e-154;
/// Resolution floor in units of the mean's f64 resolution (the built-in `RESOLUTION_FACTOR`).
const RESOLUTION_FACTOR: f64 = 16.0;

/// `Sigma = V diag(lambda) V^T`, clamped where singular: what sampling and scoring use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Factor {
    /// `V diag(sqrt(lambda'))`, row-major `d x d`: `y = mu + A z`.
    pub(crate) sqrt: Vec<f64>,
    /// `diag(1/sqrt(lambda')) V^T`, row-major `d x d`: whitens `y - mu`.
    pub(crate) whiten: Vec<f64>,
    /// `-(d log 2 pi + log det Sigma') / 2`.
    pub(crate) log_norm: f64,
    /// Whether an eigenvalue was clamped.
    pub(crate) regularized: bool,
}

impl Factor {
    /// Factorises `sigma` (row-major `d x d`, symmetric) for a conditional centred at `mu`.
    pub(crate) fn new(sigma: &[f64], mu: &[f64]) -> Factor {
        let d = mu.len();
        let eig = SymmetricEigen::new(DMatrix::from_row_slice(d, d, sigma));
        let max = eig.eigenvalues.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let resolution = RESOLUTION_FACTOR * f64::EPSILON * mu.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let floor = (RELATIVE_FLOOR * max).max(resolution * resolution).max(ABSOLUTE_FLOOR);
        let mut f = Factor { sqrt: vec![0.0; d * d], whiten: vec![0.0; d * d], log_norm: 0.0, regularized: false };
        let mut log_det = 0.0;
        for c in 0..d {
            let l = if eig.eigenvalues[c] < floor {
                f.regularized = true;
                floor
            } else {
                eig.eigenvalues[c]
            };
            log_det += l.ln();
            let root = l.sqrt();
            for r in 0..d {
                let v = eig.eigenvectors[(r, c)];
                f.sqrt[r * d + c] = v * root;
                f.whiten[c * d + r] = v / root;
            }
        }
        f.log_norm = -0.5 * (d as f64 * (2.0 * std::f64::consts::PI).ln() + log_det);
        f
    }
}

/// Draws rows of `N(mu, scale^2 A A^T)` into `out` (rows of `d`), `d` standard normals per row
/// from the host's stream; `z` is scratch of length `d`.
pub(crate) fn draw(mu: &[f64], factor: &Factor, scale: f64, rng: &mut HostRng<'_>, out: &mut [f64], z: &mut [f64]) {
    let d = mu.len();
    for y in out.chunks_exact_mut(d) {
        for v in z.iter_mut() {
            *v = rng.sample(StandardNormal);
        }
        for r in 0..d {
            let row = &factor.sqrt[r * d..(r + 1) * d];
            y[r] = mu[r] + scale * row.iter().zip(z.iter()).map(|(a, b)| a * b).sum::<f64>();
        }
    }
}
