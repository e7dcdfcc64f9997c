//! Covariance families of the image model (docs/model.md section 14) and the exact square
//! roots samples are drawn through (docs/model.md section 3, "Singular covariances").
//!
//! - [`Structure`]: `Full`, `Diagonal` or `Isotropic`, an image model's scenario field;
//! - [`StructuredCovariance`]: one conditional's covariance in its family (a symmetric
//!   matrix, `d` variances, or one variance): `d^2`, `d` or one number, so a platform-scale
//!   model (`K = 1024`, `d = 512`) holds `O(K d)` numbers, not `O(K d^2)`;
//! - [`FactoredCovariance`]: a covariance with the exact square root `A` (`Sigma = A A^T`)
//!   its samples go through and its log-determinant, never floored. When a text refits on
//!   nothing but its own draws `y = mu + sqrt(c) A z`, the refit is done on the draws `z`:
//!   `A' = sqrt(c) A chol(S_z)` and `log det Sigma' = log det Sigma + d log c + log det S_z`,
//!   exactly at any condition number and any depth of collapse, where the same estimate
//!   computed from the rounded `y` loses everything below `eps |mu|`;
//! - [`DiagonalDensity`]: the exact `O(d)` log-densities of the structured families (a block
//!   of samples against every text, or one sample against one text), with the floor rule of
//!   `factor` (counted in `regularized`); the text phase screens them at matrix-product speed
//!   in `diagonal_loglik` and falls back on these.

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::factor::{EigenWorkspace, resolution_floor};
use super::kernels::affine;
use super::stats::SufficientStats;
use crate::linalg::eigen::symmetric_eigen;
use crate::metrics::gaussian as gm;

/// The family an image model's conditional covariances belong to (docs/model.md section 14).
/// The refit is the maximum-likelihood estimate within the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Structure {
    /// Any symmetric positive semi-definite matrix: `O(d^2)` per log-density.
    #[default]
    Full,
    /// Independent coordinates, `d` variances: `O(d)` per log-density.
    Diagonal,
    /// One variance times the identity: `O(d)` per log-density.
    Isotropic,
}

impl Structure {
    /// The family's name as a scenario writes it.
    pub fn name(self) -> &'static str {
        match self {
            Structure::Full => "Full",
            Structure::Diagonal => "Diagonal",
            Structure::Isotropic => "Isotropic",
        }
    }

    /// Numbers one covariance of the family stores in dimension `d`.
    pub fn stored(self, d: usize) -> usize {
        match self {
            Structure::Full => d * d,
            Structure::Diagonal => d,
            Structure::Isotropic => 1,
        }
    }

    /// Empty sufficient statistics with what a refit in the family needs: the whole scatter
    /// (`Full`) or its diagonal.
    pub fn empty_stats(self, d: usize) -> SufficientStats {
        match self {
            Structure::Full => SufficientStats::empty(d),
            Structure::Diagonal | Structure::Isotropic => SufficientStats::empty_diagonal(d),
        }
    }

    /// The smaller family of two that holds both (`Isotropic` within `Diagonal` within `Full`).
    pub fn widest(self, other: Structure) -> Structure {
        let rank = |s: Structure| match s {
            Structure::Isotropic => 0,
            Structure::Diagonal => 1,
            Structure::Full => 2,
        };
        if rank(self) >= rank(other) { self } else { other }
    }

    /// The family's code in a checkpoint state.
    pub(super) fn code(self) -> f64 {
        match self {
            Structure::Full => 0.0,
            Structure::Diagonal => 1.0,
            Structure::Isotropic => 2.0,
        }
    }

    /// The family of a checkpoint code.
    pub(super) fn from_code(code: f64) -> Option<Structure> {
        [Structure::Full, Structure::Diagonal, Structure::Isotropic].into_iter().find(|s| s.code() == code)
    }
}

/// One conditional's covariance, in its family: the family's invariant is carried by the
/// variant (a `Diagonal` covariance has no off-diagonal entries to get wrong).
#[derive(Debug, Clone, PartialEq)]
pub enum StructuredCovariance {
    /// A symmetric positive semi-definite `d x d` matrix.
    Full(DMatrix<f64>),
    /// The variances of `d` independent coordinates, each `>= 0`.
    Diagonal(DVector<f64>),
    /// `variance * I_dim`, `variance >= 0`.
    Isotropic {
        /// The common variance.
        variance: f64,
        /// The dimension `d`.
        dim: usize,
    },
}

impl From<DMatrix<f64>> for StructuredCovariance {
    fn from(m: DMatrix<f64>) -> Self {
        StructuredCovariance::Full(m)
    }
}

impl StructuredCovariance {
    /// Its family.
    pub fn structure(&self) -> Structure {
        match self {
            StructuredCovariance::Full(_) => Structure::Full,
            StructuredCovariance::Diagonal(_) => Structure::Diagonal,
            StructuredCovariance::Isotropic { .. } => Structure::Isotropic,
        }
    }

    /// The dimension `d`.
    pub fn dim(&self) -> usize {
        match self {
            StructuredCovariance::Full(m) => m.nrows(),
            StructuredCovariance::Diagonal(v) => v.len(),
            StructuredCovariance::Isotropic { dim, .. } => *dim,
        }
    }

    /// `tr Sigma`.
    pub fn trace(&self) -> f64 {
        match self {
            StructuredCovariance::Full(m) => m.trace(),
            StructuredCovariance::Diagonal(v) => v.sum(),
            StructuredCovariance::Isotropic { variance, dim } => variance * *dim as f64,
        }
    }

    /// The variance of coordinate `k`, `Sigma_kk`.
    pub fn variance(&self, k: usize) -> f64 {
        match self {
            StructuredCovariance::Full(m) => m[(k, k)],
            StructuredCovariance::Diagonal(v) => v[k],
            StructuredCovariance::Isotropic { variance, .. } => *variance,
        }
    }

    /// The covariance as a dense `d x d` matrix (for the moments other code compares; a
    /// structured model never needs it itself).
    pub fn to_dense(&self) -> DMatrix<f64> {
        match self {
            StructuredCovariance::Full(m) => m.clone(),
            StructuredCovariance::Diagonal(v) => DMatrix::from_diagonal(v),
            StructuredCovariance::Isotropic { variance, dim } => DMatrix::identity(*dim, *dim) * *variance,
        }
    }

    /// Its stored numbers in a fixed order: the matrix column-major, the variances, or the
    /// one variance ([`Structure::stored`] of them).
    pub fn values(&self) -> &[f64] {
        match self {
            StructuredCovariance::Full(m) => m.as_slice(),
            StructuredCovariance::Diagonal(v) => v.as_slice(),
            StructuredCovariance::Isotropic { variance, .. } => std::slice::from_ref(variance),
        }
    }

    /// The covariance of family `structure` in dimension `d` whose [`values`](Self::values)
    /// are `values` (`Structure::stored(d)` of them).
    pub fn from_values(structure: Structure, d: usize, values: &[f64]) -> Self {
        match structure {
            Structure::Full => StructuredCovariance::Full(DMatrix::from_column_slice(d, d, values)),
            Structure::Diagonal => StructuredCovariance::Diagonal(DVector::from_column_slice(values)),
            Structure::Isotropic => StructuredCovariance::Isotropic { variance: values[0], dim: d },
        }
    }

    /// A covariance a scenario gives explicitly, as a member of `structure`: refused, with
    /// the entry that breaks the family's form, unless it lies in the family exactly (a model
    /// never silently starts from another covariance than the one written).
    pub fn within(structure: Structure, m: DMatrix<f64>) -> Result<Self, String> {
        let d = m.nrows();
        if structure != Structure::Full
            && let Some((r, c)) = (0..d).flat_map(|c| (0..d).map(move |r| (r, c))).find(|&(r, c)| r != c && m[(r, c)] != 0.0)
        {
            return Err(format!(
                "entry ({r}, {c}) is {}, but a {} model's covariances have no off-diagonal entries: give Diagonal([..]) or \
                 Isotropic(..) variances, or set `structure: Full`",
                m[(r, c)],
                structure.name()
            ));
        }
        match structure {
            Structure::Full => Ok(StructuredCovariance::Full(m)),
            Structure::Diagonal => Ok(StructuredCovariance::Diagonal(m.diagonal())),
            Structure::Isotropic => match (1..d).find(|&k| m[(k, k)] != m[(0, 0)]) {
                Some(k) => Err(format!(
                    "variances {} (coordinate 0) and {} (coordinate {k}) differ, but an Isotropic model's covariances are \
                     s^2 I: give Isotropic(s^2), or set `structure: Diagonal` or `Full`",
                    m[(0, 0)],
                    m[(k, k)]
                )),
                None => Ok(StructuredCovariance::Isotropic { variance: if d == 0 { 0.0 } else { m[(0, 0)] }, dim: d }),
            },
        }
    }

    /// The maximum-likelihood estimate within `structure` given the full sample covariance
    /// `m` of the same samples (SPEC 14): `m` itself, its diagonal, or `tr m / d` times `I`.
    pub fn estimate_within(structure: Structure, m: DMatrix<f64>) -> Self {
        let d = m.nrows();
        match structure {
            Structure::Full => StructuredCovariance::Full(m),
            Structure::Diagonal => StructuredCovariance::Diagonal(m.diagonal()),
            Structure::Isotropic => StructuredCovariance::Isotropic { variance: m.trace() / d.max(1) as f64, dim: d },
        }
    }

    /// The same covariance as a member of `structure`, a family that holds its own
    /// ([`Structure::widest`] of the two): exact, no information is lost.
    pub fn widened(self, structure: Structure) -> Self {
        match (self, structure) {
            (s @ StructuredCovariance::Full(_), _) => s,
            (s, Structure::Full) => StructuredCovariance::Full(s.to_dense()),
            (StructuredCovariance::Isotropic { variance, dim }, Structure::Diagonal) => {
                StructuredCovariance::Diagonal(DVector::from_element(dim, variance))
            }
            (s, _) => s,
        }
    }

    /// Copies `other` (same family and dimension) into `self` without allocating.
    pub fn copy_from(&mut self, other: &StructuredCovariance) {
        match (self, other) {
            (StructuredCovariance::Full(a), StructuredCovariance::Full(b)) => a.copy_from(b),
            (StructuredCovariance::Diagonal(a), StructuredCovariance::Diagonal(b)) => a.copy_from(b),
            (a, b) => *a = b.clone(),
        }
    }

    /// Sets the covariance to the estimate within its family from `stats` with the
    /// estimator's `divisor` (`n` or `n - 1`), in place.
    fn set_from_stats(&mut self, stats: &SufficientStats, divisor: f64) {
        match self {
            StructuredCovariance::Full(m) => {
                for (s, x) in m.iter_mut().zip(stats.scatter.iter()) {
                    *s = x / divisor;
                }
            }
            StructuredCovariance::Diagonal(v) => {
                for (k, s) in v.iter_mut().enumerate() {
                    *s = stats.scatter_diagonal(k) / divisor;
                }
            }
            StructuredCovariance::Isotropic { variance, dim } => {
                let total: f64 = (0..*dim).map(|k| stats.scatter_diagonal(k)).sum();
                *variance = total / (*dim as f64 * divisor);
            }
        }
    }

    /// `tr Sigma^(1/2)` and the effective rank of a structured covariance (its eigenvalues are
    /// its variances); `None` for `Full`, whose eigenvalues come from its factorisation.
    pub fn structured_spectrum(&self) -> Option<(f64, f64)> {
        match self {
            StructuredCovariance::Full(_) => None,
            StructuredCovariance::Diagonal(v) => Some((gm::trace_sqrt(v), gm::effective_rank(v))),
            StructuredCovariance::Isotropic { variance, dim } => {
                let v = variance.max(0.0);
                Some((*dim as f64 * v.sqrt(), if v > 0.0 { *dim as f64 } else { 0.0 }))
            }
        }
    }

    /// Squared Frechet distance between `N(mu1, self)` and `N(mu2, other)` when neither is
    /// `Full`: the covariances commute, so it is `|mu1 - mu2|^2 + sum_k (sqrt a_k - sqrt b_k)^2`
    /// in `O(d)`. `None` when either is `Full` (use [`gm::frechet_sq`] on dense matrices).
    pub fn structured_frechet_sq(&self, mu1: &DVector<f64>, other: &StructuredCovariance, mu2: &DVector<f64>) -> Option<f64> {
        if self.structure() == Structure::Full || other.structure() == Structure::Full {
            return None;
        }
        let spread: f64 = (0..self.dim()).map(|k| (self.variance(k).max(0.0).sqrt() - other.variance(k).max(0.0).sqrt()).powi(2)).sum();
        Some((mu1 - mu2).norm_squared() + spread)
    }
}

/// The exact square root a conditional samples through: the symmetric-eigenvector root of a
/// covariance estimated from samples (or given), times the Cholesky factors of the exact
/// refits on its own draws since.
#[derive(Debug, Clone, PartialEq)]
enum Root {
    Full(DMatrix<f64>),
    Diagonal(DVector<f64>),
    Isotropic(f64),
}

impl Root {
    fn values(&self) -> &[f64] {
        match self {
            Root::Full(a) => a.as_slice(),
            Root::Diagonal(s) => s.as_slice(),
            Root::Isotropic(s) => std::slice::from_ref(s),
        }
    }
}

/// Caller-owned buffers of the `Full` refits (sized `d x d`; empty for the structured
/// families), so that a steady-state refit allocates nothing.
#[derive(Debug, Clone)]
pub struct RefitWorkspace {
    s: DMatrix<f64>,
    t: DMatrix<f64>,
    product: DMatrix<f64>,
    eigen: EigenWorkspace,
}

impl RefitWorkspace {
    /// Buffers for covariances of `structure` in dimension `d`.
    pub fn new(structure: Structure, d: usize) -> Self {
        let n = if structure == Structure::Full { d } else { 0 };
        RefitWorkspace { s: DMatrix::zeros(n, n), t: DMatrix::zeros(n, n), product: DMatrix::zeros(n, n), eigen: EigenWorkspace::new(n) }
    }
}

/// A covariance `Sigma` with the exact square root `A` (`Sigma = A A^T`) its samples go
/// through and `log det Sigma`. Nothing here is floored: a singular covariance has a singular
/// root and `log det = -inf`, which is the truth (the likelihoods' floor lives in `factor`
/// and [`DiagonalDensity`], counted).
#[derive(Debug, Clone, PartialEq)]
pub struct FactoredCovariance {
    sigma: StructuredCovariance,
    root: Root,
    log_det: f64,
}

impl FactoredCovariance {
    /// Factorises `sigma`.
    pub fn new(sigma: StructuredCovariance) -> Self {
        let d = sigma.dim();
        let root = match &sigma {
            StructuredCovariance::Full(_) => Root::Full(DMatrix::zeros(d, d)),
            StructuredCovariance::Diagonal(_) => Root::Diagonal(DVector::zeros(d)),
            StructuredCovariance::Isotropic { .. } => Root::Isotropic(0.0),
        };
        let mut f = FactoredCovariance { sigma, root, log_det: 0.0 };
        f.refactor(None, &mut RefitWorkspace::new(f.sigma.structure(), d));
        f
    }

    /// The covariance.
    pub fn sigma(&self) -> &StructuredCovariance {
        &self.sigma
    }

    /// `log det Sigma`: `-inf` exactly when `Sigma` is singular.
    pub fn log_det(&self) -> f64 {
        self.log_det
    }

    /// The root's stored numbers (`Structure::stored(d)` of them), for checkpoints.
    pub fn root_values(&self) -> &[f64] {
        self.root.values()
    }

    /// A factored covariance from its parts as [`sigma`](Self::sigma),
    /// [`root_values`](Self::root_values) and [`log_det`](Self::log_det) gave them.
    pub fn from_parts(sigma: StructuredCovariance, root: &[f64], log_det: f64) -> Self {
        let d = sigma.dim();
        let root = match sigma.structure() {
            Structure::Full => Root::Full(DMatrix::from_column_slice(d, d, root)),
            Structure::Diagonal => Root::Diagonal(DVector::from_column_slice(root)),
            Structure::Isotropic => Root::Isotropic(root[0]),
        };
        FactoredCovariance { sigma, root, log_det }
    }

    /// Recomputes the root and the log-determinant from `sigma`, the estimate of `count`
    /// samples if known (fewer than `d + 1` samples give a singular sample covariance, whatever
    /// rounding makes of it).
    fn refactor(&mut self, count: Option<f64>, ws: &mut RefitWorkspace) {
        self.log_det = match (&self.sigma, &mut self.root) {
            (StructuredCovariance::Full(s), Root::Full(a)) => {
                let log_det = symmetric_root(s, a, &mut ws.eigen);
                // A sample covariance of at most d samples is singular, whatever rounding
                // makes of its smallest eigenvalue.
                if count.is_some_and(|n| n <= s.nrows() as f64) { f64::NEG_INFINITY } else { log_det }
            }
            (StructuredCovariance::Diagonal(v), Root::Diagonal(sd)) => {
                sd.iter_mut().zip(v.iter()).for_each(|(s, v)| *s = v.max(0.0).sqrt());
                v.iter().map(|v| v.max(0.0).ln()).sum()
            }
            (StructuredCovariance::Isotropic { variance, dim }, Root::Isotropic(sd)) => {
                *sd = variance.max(0.0).sqrt();
                *dim as f64 * variance.max(0.0).ln()
            }
            _ => unreachable!("a root has its covariance's family"),
        };
    }

    /// Replaces `(mu, Sigma)` by the estimate from `stats` (the family's MLE with the
    /// estimator's `divisor`) and refactorises, if `stats` holds at least two samples (fewer
    /// carry no evidence about a covariance: docs/model.md section 3).
    pub fn refit(&mut self, mu: &mut DVector<f64>, stats: &SufficientStats, divisor: f64, ws: &mut RefitWorkspace) {
        if stats.count < 2.0 {
            return;
        }
        mu.copy_from(&stats.mean);
        self.sigma.set_from_stats(stats, divisor);
        self.refactor(Some(stats.count), ws);
    }

    /// The same refit when the samples were nothing but this conditional's own draws
    /// `y = mu + sqrt(c) A z`, computed from the statistics `z` of the standard-normal draws:
    /// `mu' = mu + sqrt(c) A zbar`, `A' = sqrt(c) A R` with `R R^T = S_z` (the family's estimate
    /// of the draws' covariance, divisor `divisor`), so `Sigma' = A' A'^T = c A S_z A^T` is the
    /// exact estimator of the exact samples, and `log det Sigma' = log det Sigma + d log c +
    /// log det S_z` (the Wishart law of docs/model.md section 3, at any condition number).
    pub fn refit_on_own_draws(&mut self, mu: &mut DVector<f64>, z: &SufficientStats, divisor: f64, c: f64, ws: &mut RefitWorkspace) {
        if z.count < 2.0 {
            return;
        }
        let d = mu.len();
        let scale = c.sqrt();
        let log_det_z = match (&mut self.sigma, &mut self.root) {
            (StructuredCovariance::Full(sigma), Root::Full(a)) => {
                for (s, x) in ws.s.iter_mut().zip(z.scatter.iter()) {
                    *s = x / divisor;
                }
                // R = chol(S_z), exact to rounding (S_z of standard normals is well
                // conditioned); with at most d draws S_z is singular and R its symmetric root.
                let log_det_z = match (z.count > d as f64).then(|| cholesky_into(&ws.s, &mut ws.t)).flatten() {
                    Some(log_det) => log_det,
                    None => {
                        symmetric_root(&ws.s, &mut ws.t, &mut ws.eigen);
                        f64::NEG_INFINITY
                    }
                };
                for r in 0..d {
                    mu[r] += scale * (0..d).map(|k| a[(r, k)] * z.mean[k]).sum::<f64>();
                }
                // A' = sqrt(c) A R, then Sigma' = A' A'^T, symmetric by construction.
                multiply(a, &ws.t, &mut ws.product);
                for (x, p) in a.iter_mut().zip(ws.product.iter()) {
                    *x = scale * p;
                }
                for col in 0..d {
                    for row in col..d {
                        let v: f64 = (0..d).map(|k| a[(row, k)] * a[(col, k)]).sum();
                        sigma[(row, col)] = v;
                        sigma[(col, row)] = v;
                    }
                }
                log_det_z
            }
            (StructuredCovariance::Diagonal(v), Root::Diagonal(sd)) => {
                let mut log_det_z = 0.0;
                for k in 0..d {
                    let s_z = z.scatter_diagonal(k) / divisor;
                    mu[k] += sd[k] * (z.mean[k] * scale);
                    sd[k] *= (c * s_z).sqrt();
                    v[k] = sd[k] * sd[k];
                    log_det_z += s_z.ln();
                }
                log_det_z
            }
            (StructuredCovariance::Isotropic { variance, .. }, Root::Isotropic(sd)) => {
                let s_z = (0..d).map(|k| z.scatter_diagonal(k)).sum::<f64>() / (d as f64 * divisor);
                for k in 0..d {
                    mu[k] += *sd * (z.mean[k] * scale);
                }
                *sd *= (c * s_z).sqrt();
                *variance = *sd * *sd;
                d as f64 * s_z.ln()
            }
            _ => unreachable!("a root has its covariance's family"),
        };
        self.log_det += d as f64 * c.ln() + log_det_z;
    }

    /// The samples `y = mu + sqrt(c) A z` of `N(mu, c Sigma)` from standard-normal draws `z`
    /// (same length as `out`) through the exact root. The draws are taken before, text after
    /// text from one stream; the transforms of different texts can then run in parallel.
    pub fn transform(&self, mu: &[f64], c: f64, z: &[f64], out: &mut [f64]) {
        let scale = c.sqrt();
        match &self.root {
            Root::Full(a) => affine(a, mu, scale, z, out),
            Root::Diagonal(sd) => {
                for (y, z) in out.chunks_exact_mut(mu.len()).zip(z.chunks_exact(mu.len())) {
                    for k in 0..mu.len() {
                        y[k] = mu[k] + sd[k] * (z[k] * scale);
                    }
                }
            }
            Root::Isotropic(sd) => {
                for (y, z) in out.chunks_exact_mut(mu.len()).zip(z.chunks_exact(mu.len())) {
                    for k in 0..mu.len() {
                        y[k] = mu[k] + sd * (z[k] * scale);
                    }
                }
            }
        }
    }
}

/// The symmetric-eigenvector square root `A = V diag(sqrt(lambda))` of the symmetric positive
/// semi-definite `s` into `a` (negative rounding clamped to zero, not floored: a singular `s`
/// keeps a singular root), and `log det s = sum log lambda` (`-inf` when singular). The root a
/// covariance computed from samples is drawn through: the same eigendecomposition the
/// likelihood factor makes, so a regular covariance samples exactly as it always has.
fn symmetric_root(s: &DMatrix<f64>, a: &mut DMatrix<f64>, eigen: &mut EigenWorkspace) -> f64 {
    let d = s.nrows();
    let (values, vectors) = eigen.decompose(s);
    let mut log_det = 0.0;
    for c in 0..d {
        let root = values[c].max(0.0).sqrt();
        log_det += values[c].max(0.0).ln();
        for r in 0..d {
            a[(r, c)] = vectors[c * d + r] * root;
        }
    }
    log_det
}

/// In-place Cholesky factorisation `s = L L^T` into `l` (lower triangle; the upper one
/// zeroed), returning `log det s = 2 sum log L_kk`; `None` unless every pivot is positive and
/// finite.
fn cholesky_into(s: &DMatrix<f64>, l: &mut DMatrix<f64>) -> Option<f64> {
    let d = s.nrows();
    l.fill(0.0);
    let mut log_det = 0.0;
    for j in 0..d {
        let pivot = s[(j, j)] - (0..j).map(|k| l[(j, k)] * l[(j, k)]).sum::<f64>();
        if !(pivot > 0.0 && pivot.is_finite()) {
            return None;
        }
        let ljj = pivot.sqrt();
        l[(j, j)] = ljj;
        log_det += pivot.ln();
        for i in j + 1..d {
            let v = s[(i, j)] - (0..j).map(|k| l[(i, k)] * l[(j, k)]).sum::<f64>();
            l[(i, j)] = v / ljj;
        }
    }
    Some(log_det)
}

/// `out = a b` for square matrices, in plain loops (a `d^3` product per refit of a text: no
/// packing buffer, so a steady-state refit allocates nothing).
fn multiply(a: &DMatrix<f64>, b: &DMatrix<f64>, out: &mut DMatrix<f64>) {
    let d = a.nrows();
    out.fill(0.0);
    for c in 0..d {
        for k in 0..d {
            let bkc = b[(k, c)];
            if bkc == 0.0 {
                continue;
            }
            for r in 0..d {
                out[(r, c)] += a[(r, k)] * bkc;
            }
        }
    }
}

impl EigenWorkspace {
    /// Eigenvalues and column-major eigenvectors of the symmetric `s`, in these buffers.
    fn decompose(&mut self, s: &DMatrix<f64>) -> (&[f64], &[f64]) {
        let d = s.nrows();
        self.a.copy_from_slice(s.as_slice());
        symmetric_eigen(&mut self.a, d, &mut self.values, &mut self.vectors);
        (&self.values, &self.vectors)
    }
}

/// Log-densities of a structured family (`Diagonal`, `Isotropic`): per text its mean, the
/// inverse standard deviations of its floored variances and the constant
/// `-(d log 2 pi + log det)/2`, text-major (`K x d`), so that a block of samples is scored
/// against every text in `O(d)` per pair.
///
/// A variance below [`resolution_floor`] of its coordinate's mean (a collapsed coordinate:
/// exactly zero, or narrower than the f64 resolution of the mean) is clamped to it, and every
/// use of a text with a clamped variance is counted in `regularized`, as for `Full` in
/// `factor`. A diagonal needs no decomposition, so no relative floor applies.
#[derive(Debug, Clone, Default)]
pub struct DiagonalDensity {
    pub(super) d: usize,
    /// `K x d`, text-major.
    pub(super) mu: Vec<f64>,
    /// `K x d`, text-major: `1 / sqrt(v_ia)` of the floored variances.
    pub(super) inv_sd: Vec<f64>,
    /// `K`: `-(d log 2 pi + log det)/2` of the floored variances.
    pub(super) log_norm: Vec<f64>,
    clamped: Vec<bool>,
    /// Whether the texts are `Isotropic` (each row of `inv_sd` one number repeated).
    pub(super) isotropic: bool,
}

/// Texts scored together in [`DiagonalDensity::add_log_density`]: their means and inverse
/// standard deviations (`2 x 16 x d` numbers, 128 KiB at `d = 512`) stay in the core's L2
/// cache while a block of samples streams past.
const TEXT_TILE: usize = 16;

impl DiagonalDensity {
    /// Brings the per-text means, inverse standard deviations and constants up to date with
    /// `mu` and `sigma`, reusing the buffers (no allocation once sized).
    pub fn update(&mut self, mu: &[DVector<f64>], sigma: &[FactoredCovariance]) {
        let (k, d) = (mu.len(), mu.first().map_or(0, |m| m.len()));
        self.d = d;
        self.mu.resize(k * d, 0.0);
        self.inv_sd.resize(k * d, 0.0);
        self.log_norm.resize(k, 0.0);
        self.clamped.resize(k, false);
        self.isotropic = sigma.first().is_some_and(|s| s.sigma.structure() == Structure::Isotropic);
        let log_2pi = (2.0 * std::f64::consts::PI).ln();
        for (i, (m, s)) in mu.iter().zip(sigma).enumerate() {
            let isotropic_floor = resolution_floor(m.amax());
            let mut log_det = 0.0;
            self.clamped[i] = false;
            for k in 0..d {
                let floor = match s.sigma {
                    StructuredCovariance::Isotropic { .. } => isotropic_floor,
                    _ => resolution_floor(m[k].abs()),
                };
                let mut v = s.sigma.variance(k);
                if v.is_nan() || v < floor {
                    self.clamped[i] = true;
                    v = floor;
                }
                log_det += v.ln();
                self.mu[i * d + k] = m[k];
                self.inv_sd[i * d + k] = 1.0 / v.sqrt();
            }
            self.log_norm[i] = -0.5 * (d as f64 * log_2pi + log_det);
        }
    }

    /// Texts whose variances needed the floor (each counts once per log-density call).
    pub fn clamped_texts(&self) -> u64 {
        self.clamped.iter().filter(|&&c| c).count() as u64
    }

    /// Adds `log q(y_j | i)` to `out[j * K + i]` for every sample `j` of `samples` (row-major
    /// `n x d`) and every text `i`: `-(1/2) sum_k ((y_jk - mu_ik) / sd_ik)^2` plus the constant,
    /// the differences taken before scaling (exact where the expanded form
    /// `y^2/s - 2 y mu/s + mu^2/s` cancels: collapsed texts far from the origin).
    ///
    /// The same code runs with the widest vectors the CPU offers ([`crate::linalg`]'s
    /// `widest_vectors!`): the same operations in the same order, so the same values.
    pub fn add_log_density(&self, samples: &[f64], out: &mut [f64]) {
        let this = self;
        crate::linalg::widest_vectors!(DiagonalDensity::scan, this: &DiagonalDensity, samples: &[f64], out: &mut [f64]);
    }

    /// `log q(y | text)` of one sample `y` (`d` numbers): bit for bit the value
    /// [`add_log_density`](Self::add_log_density) adds for that pair (the same lanes in the
    /// same order), the exact form the text phase's guard falls back on. Its rounding error is
    /// at most `gamma_n Q / 2 + u |value|`, `n = d / 4 + 9`, with `Q` the exact scaled squared
    /// distance (all its terms are non-negative; Higham's `gamma_n = n u / (1 - n u)`).
    pub fn log_density(&self, y: &[f64], text: usize) -> f64 {
        let this = self;
        crate::linalg::widest_vectors!(DiagonalDensity::pair => f64, this: &DiagonalDensity, y: &[f64], text: usize)
    }

    #[inline(always)]
    fn pair(&self, y: &[f64], i: usize) -> f64 {
        let d = self.d;
        let (m, r) = (&self.mu[i * d..(i + 1) * d], &self.inv_sd[i * d..(i + 1) * d]);
        self.log_norm[i] - 0.5 * scaled_squared_distances(y, y, m, r, m, r)[0]
    }

    /// The loops of [`add_log_density`](Self::add_log_density): texts in tiles that stay in
    /// cache, and within a tile pairs of samples against pairs of texts (each sample and each
    /// text's coordinates loaded once for two products). Every entry is reduced in the same
    /// order whichever loop computes it, so the blocking does not change a value.
    #[inline(always)]
    fn scan(&self, samples: &[f64], out: &mut [f64]) {
        let (d, k) = (self.d, self.log_norm.len());
        if d == 0 || k == 0 {
            return;
        }
        let n = samples.len() / d;
        let text = |i: usize| (&self.mu[i * d..(i + 1) * d], &self.inv_sd[i * d..(i + 1) * d]);
        for first in (0..k).step_by(TEXT_TILE) {
            let last = (first + TEXT_TILE).min(k);
            let mut j = 0;
            while j < n {
                let pair = j + 1 < n;
                let y0 = &samples[j * d..(j + 1) * d];
                let y1 = if pair { &samples[(j + 1) * d..(j + 2) * d] } else { y0 };
                let mut i = first;
                while i < last {
                    let (m0, r0) = text(i);
                    let (m1, r1) = if i + 1 < last { text(i + 1) } else { (m0, r0) };
                    let q = scaled_squared_distances(y0, y1, m0, r0, m1, r1);
                    out[j * k + i] += self.log_norm[i] - 0.5 * q[0];
                    if i + 1 < last {
                        out[j * k + i + 1] += self.log_norm[i + 1] - 0.5 * q[1];
                    }
                    if pair {
                        out[(j + 1) * k + i] += self.log_norm[i] - 0.5 * q[2];
                        if i + 1 < last {
                            out[(j + 1) * k + i + 1] += self.log_norm[i + 1] - 0.5 * q[3];
                        }
                    }
                    i += 2;
                }
                j += 2;
            }
        }
    }
}

/// Largest number of roundings any term of the exact scaled squared distance
/// `sum_k ((y_k - m_k) r_k)^2` of [`scaled_squared_distances`] goes through in dimension `d`:
/// three for the term (difference, scaling, square), then at most `d / 4` in its lane and
/// three where the lanes and the tail are combined, or, for a tail term, at most four in the
/// tail and its addition. Higham's `gamma_n` with this `n` bounds the exact form's relative
/// error (all terms are non-negative).
pub(super) fn exact_depth(d: usize) -> usize {
    d / 4 + 9
}

/// Four lanes of partial sums (one AVX2 register).
type Lanes = [f64; 4];

/// `s` in chunks of four (the lanes of [`Lanes`]).
#[inline(always)]
fn quads(s: &[f64]) -> std::slice::ChunksExact<'_, f64> {
    s.chunks_exact(4)
}

/// `acc[l] += ((y[l] - m[l]) r[l])^2` lane by lane: written per pair so that the compiler maps
/// each pair's lanes onto one vector register (interleaving the pairs in one loop made it
/// vectorise across pairs instead, with a shuffle per operation).
#[inline(always)]
fn accumulate(acc: &mut Lanes, y: &[f64], m: &[f64], r: &[f64]) {
    for (((a, y), m), r) in acc.iter_mut().zip(y).zip(m).zip(r) {
        let t = (y - m) * r;
        *a += t * t;
    }
}

/// `sum_k ((y_k - m_k) r_k)^2` for the four pairs `(y0, m0 r0)`, `(y0, m1 r1)`, `(y1, m0 r0)`,
/// `(y1, m1 r1)`, each with four independent partial sums (vectorisable, in a fixed
/// grouping: every pair's value is the one it would have alone, reproducibly).
#[inline(always)]
fn scaled_squared_distances(y0: &[f64], y1: &[f64], m0: &[f64], r0: &[f64], m1: &[f64], r1: &[f64]) -> [f64; 4] {
    let mut acc = [[0.0f64; 4]; 4];
    for (((((c0, c1), a0), s0), a1), s1) in quads(y0).zip(quads(y1)).zip(quads(m0)).zip(quads(r0)).zip(quads(m1)).zip(quads(r1)) {
        accumulate(&mut acc[0], c0, a0, s0);
        accumulate(&mut acc[1], c0, a1, s1);
        accumulate(&mut acc[2], c1, a0, s0);
        accumulate(&mut acc[3], c1, a1, s1);
    }
    let body = y0.len() - y0.len() % 4;
    let mut tail = [0.0f64; 4];
    for k in body..y0.len() {
        let (a, b) = ((y0[k] - m0[k]) * r0[k], (y0[k] - m1[k]) * r1[k]);
        let (e, f) = ((y1[k] - m0[k]) * r0[k], (y1[k] - m1[k]) * r1[k]);
        tail[0] += a * a;
        tail[1] += b * b;
        tail[2] += e * e;
        tail[3] += f * f;
    }
    std::array::from_fn(|p| (acc[p][0] + acc[p][1]) + (acc[p][2] + acc[p][3]) + tail[p])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_singular_roots_reproduce_the_covariance() {
        let s = DMatrix::from_row_slice(3, 3, &[4.0, 2.0, 0.6, 2.0, 2.0, 0.5, 0.6, 0.5, 3.0]);
        let f = FactoredCovariance::new(StructuredCovariance::Full(s.clone()));
        let Root::Full(a) = &f.root else { unreachable!() };
        assert!((a * a.transpose() - &s).amax() < 1e-12);
        assert!((f.log_det() - s.determinant().ln()).abs() < 1e-12);
        let v = DVector::from_vec(vec![1.0, 2.0, 0.0]);
        let singular = &v * v.transpose();
        let f = FactoredCovariance::new(StructuredCovariance::Full(singular.clone()));
        let Root::Full(a) = &f.root else { unreachable!() };
        assert!((a * a.transpose() - &singular).amax() < 1e-12);
        assert_eq!(f.log_det(), f64::NEG_INFINITY);
    }

    #[test]
    fn explicit_covariances_outside_the_family_are_refused() {
        let full = DMatrix::from_row_slice(2, 2, &[1.0, 0.5, 0.5, 1.0]);
        assert!(StructuredCovariance::within(Structure::Diagonal, full.clone()).unwrap_err().contains("entry (1, 0)"));
        let diag = DMatrix::from_diagonal(&DVector::from_vec(vec![1.0, 2.0]));
        assert!(StructuredCovariance::within(Structure::Isotropic, diag.clone()).unwrap_err().contains("differ"));
        assert_eq!(
            StructuredCovariance::within(Structure::Diagonal, diag).unwrap(),
            StructuredCovariance::Diagonal(DVector::from_vec(vec![1.0, 2.0]))
        );
        assert_eq!(
            StructuredCovariance::estimate_within(Structure::Isotropic, full),
            StructuredCovariance::Isotropic { variance: 1.0, dim: 2 }
        );
    }

    #[test]
    fn diagonal_log_density_matches_the_dense_formula() {
        let mu = vec![DVector::from_vec(vec![1.0, -2.0, 0.5]), DVector::from_vec(vec![0.0, 0.0, 0.0])];
        let sigma = vec![
            FactoredCovariance::new(StructuredCovariance::Diagonal(DVector::from_vec(vec![0.5, 2.0, 0.1]))),
            FactoredCovariance::new(StructuredCovariance::Isotropic { variance: 0.3, dim: 3 }),
        ];
        let mut density = DiagonalDensity::default();
        density.update(&mu, &sigma);
        let y = [0.3, -1.0, 0.2, 1.5, 0.7, -0.4];
        let mut out = vec![0.0; 4];
        density.add_log_density(&y, &mut out);
        for j in 0..2 {
            for i in 0..2 {
                let s = sigma[i].sigma().to_dense();
                let v = DVector::from_column_slice(&y[3 * j..3 * j + 3]) - &mu[i];
                let quad = (v.transpose() * s.clone().try_inverse().unwrap() * &v)[0];
                let expected = -0.5 * (3.0 * (2.0 * std::f64::consts::PI).ln() + s.determinant().ln() + quad);
                assert!((out[j * 2 + i] - expected).abs() < 1e-12, "{} vs {expected}", out[j * 2 + i]);
            }
        }
        assert_eq!(density.clamped_texts(), 0);
    }
}
