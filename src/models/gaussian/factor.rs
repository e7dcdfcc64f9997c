//! The one regularised factorisation of a full covariance (eigendecomposition with stated
//! floors) for log-densities, and the floor rule it shares with the structured families
//! (`structure`). Sampling never uses it: samples go through the exact root of
//! `structure::FactoredCovariance`.

use nalgebra::{DMatrix, DVector};

use crate::linalg::eigen::symmetric_eigen;

/// Relative eigenvalue floor of the one regularised factorisation: eigenvalues below
/// `RELATIVE_FLOOR * lambda_max` are clamped. 1e-12 keeps the factor's condition number
/// below 1e12, far inside f64's 1e16 precision, while perturbing any covariance by less
/// than one part in 1e12 of its scale.
pub const RELATIVE_FLOOR: f64 = 1e-12;
/// Absolute eigenvalue floor: `sqrt(f64::MIN_POSITIVE)` (about 1.5e-154), so that a squared
/// Mahalanobis distance `|y - mu|^2 / lambda` stays finite for any `|y - mu| < 1e77`.
pub const ABSOLUTE_FLOOR: f64 = 1.4916681462400413e-154;
/// Resolution floor, in units of the mean's f64 resolution: eigenvalues below
/// `(RESOLUTION_FACTOR * eps * max|mu_k|)^2` are clamped. A sample (and the mean itself) is
/// only known to about `eps |mu|`; a conditional narrower than that cannot be represented, and
/// scoring its own samples against it would put them thousands of standard deviations away
/// (a degenerate refit on identical samples yields exactly such a covariance from the rounding
/// of the sample mean). At 16 resolutions per standard deviation the rounding of `y - mu`
/// moves a squared Mahalanobis distance by at most about `d / 256`.
pub const RESOLUTION_FACTOR: f64 = 16.0;

/// The one place where a covariance is factorised for sampling and log-densities.
///
/// `Sigma = V diag(lambda) V^T` by symmetric eigendecomposition; eigenvalues below
/// `max(RELATIVE_FLOOR * lambda_max, (RESOLUTION_FACTOR * eps * max|mu_k|)^2, ABSOLUTE_FLOOR)`
/// are clamped to that floor (an exactly singular or negative-roundoff covariance, as the
/// refit of a text with `n_i <= d` samples produces). Every use of a clamped factor (one text
/// in one sampling or log-likelihood call) is counted in the `regularized` metric. The stored
/// `Sigma` itself is never changed.
#[derive(Debug, Clone)]
pub struct Factor {
    /// `V diag(sqrt(lambda'))`: `y = mu + A z` with `z ~ N(0, I)` samples `N(mu, Sigma')`.
    pub sqrt: DMatrix<f64>,
    /// `diag(1/sqrt(lambda')) V^T`: whitens `y - mu`.
    pub whiten: DMatrix<f64>,
    /// `-(d log(2 pi) + log det Sigma') / 2`, the log-density's constant.
    pub log_norm: f64,
    /// The exact (unclamped) eigenvalues, for metrics.
    pub eigenvalues: DVector<f64>,
    /// Whether any eigenvalue was clamped.
    pub regularized: bool,
}

/// Caller-owned buffers of one eigendecomposition (see [`crate::linalg::eigen::symmetric_eigen`]).
#[derive(Debug, Clone)]
pub struct EigenWorkspace {
    pub(super) a: Vec<f64>,
    pub(super) values: Vec<f64>,
    pub(super) vectors: Vec<f64>,
}

impl EigenWorkspace {
    /// Buffers for `d x d` matrices.
    pub fn new(d: usize) -> Self {
        EigenWorkspace { a: vec![0.0; d * d], values: vec![0.0; d], vectors: vec![0.0; d * d] }
    }

    /// Resizes the buffers for `d x d` matrices (no allocation when they already fit).
    pub fn fit(&mut self, d: usize) {
        self.a.resize(d * d, 0.0);
        self.values.resize(d, 0.0);
        self.vectors.resize(d * d, 0.0);
    }
}

/// The floor a variance needs before a likelihood can divide by it, whatever the
/// factorisation: `max((RESOLUTION_FACTOR * eps * |mu|)^2, ABSOLUTE_FLOOR)` for a conditional
/// whose mean has magnitude `mu_scale` (see [`RESOLUTION_FACTOR`] and [`ABSOLUTE_FLOOR`]).
/// The eigendecomposition of a full covariance adds [`RELATIVE_FLOOR`]; a diagonal one needs
/// no decomposition, so this is all it gets.
pub fn resolution_floor(mu_scale: f64) -> f64 {
    let resolution = RESOLUTION_FACTOR * f64::EPSILON * mu_scale;
    (resolution * resolution).max(ABSOLUTE_FLOOR)
}

impl Factor {
    /// Factorises the covariance `sigma` (assumed symmetric) of a conditional with mean `mu`.
    pub fn new(sigma: &DMatrix<f64>, mu: &DVector<f64>) -> Factor {
        let d = sigma.nrows();
        let mut f = Factor {
            sqrt: DMatrix::zeros(d, d),
            whiten: DMatrix::zeros(d, d),
            log_norm: 0.0,
            eigenvalues: DVector::zeros(d),
            regularized: false,
        };
        f.update(sigma, mu, &mut EigenWorkspace::new(d));
        f
    }

    /// Refactorises `sigma` (mean `mu`) in place, reusing this factor's storage and `ws` (no allocation).
    pub fn update(&mut self, sigma: &DMatrix<f64>, mu: &DVector<f64>, ws: &mut EigenWorkspace) {
        let d = sigma.nrows();
        ws.a.copy_from_slice(sigma.as_slice());
        symmetric_eigen(&mut ws.a, d, &mut ws.values, &mut ws.vectors);
        let max = ws.values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let floor = (RELATIVE_FLOOR * max).max(resolution_floor(mu.amax()));
        self.regularized = false;
        let mut log_det = 0.0;
        for c in 0..d {
            let raw = ws.values[c];
            self.eigenvalues[c] = raw;
            let l = if raw < floor {
                self.regularized = true;
                floor
            } else {
                raw
            };
            log_det += l.ln();
            let root = l.sqrt();
            for k in 0..d {
                let v = ws.vectors[c * d + k];
                self.sqrt[(k, c)] = v * root;
                self.whiten[(c, k)] = v / root;
            }
        }
        self.log_norm = -0.5 * (d as f64 * (2.0 * std::f64::consts::PI).ln() + log_det);
    }
}
