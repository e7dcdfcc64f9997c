//! The conditional Gaussian image model `q(y|i) = N(mu_i, Sigma_i)` (docs/model.md sections 1-3).
//!
//! - this file: the model, its refit and its [`ConditionalModel`] implementation;
//! - `factor`: the one regularised factorisation of a covariance (floors, `regularized`);
//! - `stats`: running sufficient statistics (the refit's input, `Accumulate`'s memory);
//! - `kernels`: sampling and distance loops;
//! - `loglik`: blocked log-densities (fast form, error bound, exact form) for the text phase.

mod factor;
mod kernels;
mod loglik;
mod stats;

pub use factor::{ABSOLUTE_FLOOR, EigenWorkspace, Factor, RELATIVE_FLOOR, RESOLUTION_FACTOR};
pub use stats::SufficientStats;

use kernels::{clamped_uses, sample_into, squared_distance};
use loglik::QuadraticForm;

use std::sync::Arc;

use nalgebra::{DMatrix, DMatrixView, DVector};
use serde::{Deserialize, Serialize};

use super::conditional::{ConditionalModel, ModelError, PerTextMetrics};
use super::policy::DataPolicy;
use crate::metrics::gaussian as gm;
use crate::metrics::names;
use crate::rng::Stream;

/// Labelled real vectors a model can draw real data from by label (a bootstrap): the dataset a
/// model was built from (docs/model.md section 10). Implemented by [`crate::data::Dataset`], which sits
/// above this module.
pub trait RealSource: Send + Sync + std::fmt::Debug {
    /// Number of labels; texts at or beyond it have no real rows.
    fn num_labels(&self) -> usize;
    /// Appends `n` rows of label `label` drawn uniformly with replacement, from `rng`.
    fn resample(&self, label: usize, n: usize, rng: &mut Stream, out: &mut Vec<f64>);
}

/// How many samples each text gets in an image-phase batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Allocation {
    /// `n_i` is whatever a batch of `N` captions drawn from the text model holds: rare texts
    /// get fewer samples (the Matthew effect).
    #[default]
    Binomial,
    /// Every text gets exactly this many samples (isolation experiments, exact theory checks).
    Fixed(usize),
}

/// The covariance estimator of the image refit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Estimator {
    /// Maximum likelihood: divisor `n_i`.
    #[default]
    Mle,
    /// Unbiased: divisor `n_i - 1`.
    Unbiased,
}

impl Estimator {
    /// The divisor of the scatter matrix for `count` samples: `n` (MLE) or `n - 1` (unbiased).
    pub fn divisor(self, count: f64) -> f64 {
        match self {
            Estimator::Mle => count,
            Estimator::Unbiased => count - 1.0,
        }
    }
}

/// Shrinks a covariance towards its isotropic part: `(1 - s) S + s (tr S / d) I` (docs/model.md
/// section 10), which keeps the trace and, for `s > 0` and `tr S > 0`, makes the matrix positive
/// definite.
pub fn shrink_to_isotropic(sigma: &DMatrix<f64>, s: f64) -> DMatrix<f64> {
    let d = sigma.nrows();
    let iso = sigma.trace() / d as f64;
    let mut out = sigma * (1.0 - s);
    for r in 0..d {
        out[(r, r)] += s * iso;
    }
    out
}

/// The conditional Gaussian image model: `N(mu_i, Sigma_i)` for every text `i`.
#[derive(Debug, Clone)]
pub struct GaussianImageModel {
    d: usize,
    /// Current means.
    pub mu: Vec<DVector<f64>>,
    /// Current covariances: always the exact estimator, never regularised.
    pub sigma: Vec<DMatrix<f64>>,
    /// Initial means.
    pub mu0: Vec<DVector<f64>>,
    /// Initial covariances.
    pub sigma0: Vec<DMatrix<f64>>,
    prev_mu: Vec<DVector<f64>>,
    prev_sigma: Vec<DMatrix<f64>>,
    sigma0_sqrt: Vec<DMatrix<f64>>,
    factors: Vec<Factor>,
    factors0: Vec<Factor>,
    factors_current: bool,
    /// Covariance estimator of the refit.
    pub estimator: Estimator,
    /// Data policy of the refit.
    pub policy: DataPolicy,
    /// Per-text statistics the policy keeps across refits: everything seen under
    /// `Accumulate`, the fixed real samples under `Augment` (empty otherwise).
    pub accumulated: Vec<SufficientStats>,
    /// Where real data comes from when the model was built from a dataset (else its initial
    /// conditionals).
    pub real_data: Option<Arc<dyn RealSource>>,
    /// The conditional a new text starts from (corpus injection `new_text`).
    pub new_text_prior: (DVector<f64>, DMatrix<f64>),
    regularized: u64,
    // Stacked whitening matrices and shifts of all texts: one matrix product scores a whole
    // block of samples against every text (the dominant cost of the text phase).
    whiten_all: DMatrix<f64>,
    shift_all: Vec<f64>,
    block: DMatrix<f64>,
    // Coefficients of the blocked log-densities of the text phase (`loglik`).
    quadratic: QuadraticForm,
    // Reused buffers of the refit and factorisation: a steady-state round allocates nothing.
    batch_stats: SufficientStats,
    pooled_stats: SufficientStats,
    eigen: EigenWorkspace,
    normals: Vec<f64>,
    real_buffer: Vec<f64>,
}

/// Samples scored per matrix product in [`GaussianImageModel::add_log_likelihood`]: large
/// enough to amortise the product's overhead, small enough that the `K d x BLOCK` result
/// stays in cache at mid scale.
const BLOCK: usize = 256;

impl GaussianImageModel {
    /// A model with initial conditionals `mu0[i]`, `sigma0[i]` (validated by the caller:
    /// equal dimensions, symmetric positive semi-definite).
    pub fn new(
        mu0: Vec<DVector<f64>>,
        sigma0: Vec<DMatrix<f64>>,
        estimator: Estimator,
        policy: DataPolicy,
        new_text_prior: (DVector<f64>, DMatrix<f64>),
    ) -> Self {
        let d = mu0.first().map_or(new_text_prior.0.len(), |m| m.len());
        let keeps_statistics = policy.keeps_statistics();
        let mut model = GaussianImageModel {
            d,
            mu: mu0.clone(),
            sigma: sigma0.clone(),
            prev_mu: mu0.clone(),
            prev_sigma: sigma0.clone(),
            sigma0_sqrt: sigma0.iter().map(gm::sqrtm_psd).collect(),
            factors0: sigma0.iter().zip(&mu0).map(|(s, m)| Factor::new(s, m)).collect(),
            factors: Vec::new(),
            factors_current: false,
            mu0,
            sigma0,
            estimator,
            policy,
            accumulated: Vec::new(),
            real_data: None,
            new_text_prior,
            regularized: 0,
            whiten_all: DMatrix::zeros(0, 0),
            shift_all: Vec::new(),
            block: DMatrix::zeros(0, 0),
            quadratic: QuadraticForm::default(),
            batch_stats: SufficientStats::empty(d),
            pooled_stats: SufficientStats::empty(d),
            eigen: EigenWorkspace::new(d),
            normals: Vec::new(),
            real_buffer: Vec::new(),
        };
        if keeps_statistics {
            model.accumulated = vec![SufficientStats::empty(d); model.mu.len()];
        }
        model
    }

    /// The model with `source` as its real data (a model built from a dataset).
    pub fn with_real_data(mut self, source: Arc<dyn RealSource>) -> Self {
        self.real_data = Some(source);
        self
    }

    /// Draws `counts[i]` real samples of every text `i` into `out`, grouped by text: from the
    /// dataset the model was built from (a bootstrap of label `i`'s rows; a text without rows,
    /// appended by a `NewText` injection, from its initial conditional, the new-text prior),
    /// else from the initial conditionals. Not counted in `regularized`: see `sample_initial`.
    fn draw_real(&mut self, counts: &[usize], rng: &mut Stream, out: &mut Vec<f64>) {
        let Some(data) = &self.real_data else {
            sample_into(&self.mu0, &self.factors0, counts, 1.0, rng, out, &mut self.normals);
            return;
        };
        out.clear();
        for (i, &n) in counts.iter().enumerate() {
            if i < data.num_labels() {
                data.resample(i, n, rng, out);
            } else if n > 0 {
                sample_into(&self.mu0[i..=i], &self.factors0[i..=i], &counts[i..=i], 1.0, rng, &mut self.real_buffer, &mut self.normals);
                out.extend_from_slice(&self.real_buffer);
            }
        }
    }

    /// Seeds the statistics the policy keeps with real data: `counts[i]` real samples of text
    /// `i` (the initial dataset of `Accumulate { initial }`, the fixed real samples of
    /// `Augment`): bootstrap rows of its dataset, else draws of its initial conditionals.
    pub fn seed_accumulated(&mut self, counts: &[usize], rng: &mut Stream) {
        let mut buf = Vec::new();
        self.draw_real(counts, rng, &mut buf);
        let mut offset = 0;
        for (i, &n) in counts.iter().enumerate() {
            self.batch_stats.set_from(&buf[offset * self.d..(offset + n) * self.d], self.d);
            self.accumulated[i].merge(&self.batch_stats);
            offset += n;
        }
    }

    /// Brings the factorisations, stacked whitening matrices and shifts up to date with
    /// `sigma` and `mu`, in place.
    fn refresh_factors(&mut self) {
        if self.factors_current {
            return;
        }
        let (k, d) = (self.mu.len(), self.d);
        while self.factors.len() < k {
            self.factors.push(Factor::new(&self.sigma[self.factors.len()], &self.mu[self.factors.len()]));
        }
        if self.whiten_all.nrows() != k * d {
            self.whiten_all = DMatrix::zeros(k * d, d);
            self.shift_all.resize(k * d, 0.0);
        }
        for i in 0..k {
            let f = &mut self.factors[i];
            f.update(&self.sigma[i], &self.mu[i], &mut self.eigen);
            for c in 0..d {
                for r in 0..d {
                    self.whiten_all[(i * d + r, c)] = f.whiten[(r, c)];
                }
            }
            for r in 0..d {
                self.shift_all[i * d + r] = (0..d).map(|c| f.whiten[(r, c)] * self.mu[i][c]).sum();
            }
        }
        self.quadratic.update(&self.factors, d);
        self.factors_current = true;
    }

    /// Replaces text `i`'s parameters by the estimate from `stats`, if it holds at least two
    /// samples (fewer carry no evidence about a covariance: docs/model.md section 3).
    fn set_estimate(mu: &mut DVector<f64>, sigma: &mut DMatrix<f64>, stats: &SufficientStats, estimator: Estimator) {
        if stats.count < 2.0 {
            return;
        }
        let divisor = estimator.divisor(stats.count);
        mu.copy_from(&stats.mean);
        for (s, x) in sigma.iter_mut().zip(stats.scatter.iter()) {
            *s = x / divisor;
        }
    }
}

impl ConditionalModel for GaussianImageModel {
    fn modality(&self) -> &str {
        "image"
    }

    fn num_texts(&self) -> usize {
        self.mu.len()
    }

    fn dim(&self) -> usize {
        self.d
    }

    fn sample(&mut self, counts: &[usize], temperature: f64, rng: &mut Stream, out: &mut Vec<f64>) -> Result<(), ModelError> {
        self.refresh_factors();
        self.regularized += clamped_uses(&self.factors, Some(counts));
        sample_into(&self.mu, &self.factors, counts, temperature, rng, out, &mut self.normals);
        Ok(())
    }

    fn sample_initial(&mut self, counts: &[usize], rng: &mut Stream, out: &mut Vec<f64>) -> Result<(), ModelError> {
        match &self.real_data {
            // Only the texts without rows use a factorisation.
            Some(data) => {
                let rows = data.num_labels().min(counts.len());
                self.regularized += clamped_uses(&self.factors0[rows..], Some(&counts[rows..]));
            }
            None => self.regularized += clamped_uses(&self.factors0, Some(counts)),
        }
        self.draw_real(counts, rng, out);
        Ok(())
    }

    fn add_log_likelihood(&mut self, samples: &[f64], out: &mut [f64]) -> Result<(), ModelError> {
        self.refresh_factors();
        self.regularized += clamped_uses(&self.factors, None);
        let (k, d) = (self.mu.len(), self.d);
        let n = samples.len() / d;
        if out.len() != n * k {
            return Err(ModelError::new("log_likelihood", format!("output holds {} values, expected {n} samples x {k} texts", out.len())));
        }
        if self.block.nrows() != k * d || self.block.ncols() != BLOCK {
            self.block = DMatrix::zeros(k * d, BLOCK);
        }
        for start in (0..n).step_by(BLOCK) {
            let b = BLOCK.min(n - start);
            let y = DMatrixView::from_slice(&samples[start * d..(start + b) * d], d, b);
            let mut block = self.block.columns_mut(0, b);
            block.gemm(1.0, &self.whiten_all, &y, 0.0);
            for j in 0..b {
                let col = block.column(j);
                let col = col.as_slice();
                let row = &mut out[(start + j) * k..(start + j + 1) * k];
                for i in 0..k {
                    let quad = squared_distance(&col[i * d..(i + 1) * d], &self.shift_all[i * d..(i + 1) * d]);
                    row[i] += self.factors[i].log_norm - 0.5 * quad;
                }
            }
        }
        Ok(())
    }

    fn prepare_log_density(&mut self) -> bool {
        self.refresh_factors();
        self.regularized += clamped_uses(&self.factors, None);
        true
    }

    fn log_density(&self) -> Option<&dyn crate::models::posterior::BlockLogDensity> {
        Some(self)
    }

    fn data_policy(&self) -> &DataPolicy {
        &self.policy
    }

    fn fit(&mut self, counts: &[usize], samples: &[f64]) -> Result<(), ModelError> {
        let d = self.d;
        if counts.len() != self.mu.len() || counts.iter().sum::<usize>() * d != samples.len() {
            return Err(ModelError::new(
                "fit",
                format!("{} texts and {} values do not match K = {} and d = {d}", counts.len(), samples.len(), self.mu.len()),
            ));
        }
        let mut offset = 0;
        for (i, &n) in counts.iter().enumerate() {
            self.batch_stats.set_from(&samples[offset * d..(offset + n) * d], d);
            offset += n;
            let stats = match self.policy {
                DataPolicy::Accumulate { .. } => {
                    self.accumulated[i].merge(&self.batch_stats);
                    &self.accumulated[i]
                }
                DataPolicy::Augment { .. } => {
                    // The fixed real samples plus this refit's generated ones.
                    let (pooled, real) = (&mut self.pooled_stats, &self.accumulated[i]);
                    pooled.count = real.count;
                    pooled.mean.copy_from(&real.mean);
                    pooled.scatter.copy_from(&real.scatter);
                    pooled.merge(&self.batch_stats);
                    &self.pooled_stats
                }
                _ => &self.batch_stats,
            };
            Self::set_estimate(&mut self.mu[i], &mut self.sigma[i], stats, self.estimator);
        }
        self.factors_current = false;
        Ok(())
    }

    fn begin_round(&mut self) {
        for (prev, now) in self.prev_mu.iter_mut().zip(&self.mu) {
            prev.copy_from(now);
        }
        for (prev, now) in self.prev_sigma.iter_mut().zip(&self.sigma) {
            prev.copy_from(now);
        }
    }

    fn metrics(&mut self, sink: &mut PerTextMetrics<'_>) -> Result<(), ModelError> {
        self.refresh_factors();
        for i in 0..self.mu.len() {
            let eig = &self.factors[i].eigenvalues;
            sink(names::TRACE, i, self.sigma[i].trace());
            sink(names::TRACE_SQRT, i, gm::trace_sqrt(eig));
            sink(names::LOGDET, i, gm::log_det(eig));
            sink(names::EFFECTIVE_RANK, i, gm::effective_rank(eig));
            sink(names::FIDELITY, i, (&self.mu[i] - &self.mu0[i]).norm());
            sink(
                names::FRECHET_TO_INITIAL,
                i,
                gm::frechet_sq_with_sqrt(&self.mu[i], &self.sigma[i], &self.mu0[i], &self.sigma0[i], &self.sigma0_sqrt[i]),
            );
            sink(names::FRECHET_LOCAL, i, gm::frechet_sq(&self.mu[i], &self.sigma[i], &self.prev_mu[i], &self.prev_sigma[i]));
        }
        Ok(())
    }

    fn diversity_metric(&self) -> &str {
        names::TRACE
    }

    fn take_regularized(&mut self) -> u64 {
        std::mem::take(&mut self.regularized)
    }

    fn add_text(&mut self) -> Result<(), ModelError> {
        let (mu, sigma) = self.new_text_prior.clone();
        self.sigma0_sqrt.push(gm::sqrtm_psd(&sigma));
        self.factors0.push(Factor::new(&sigma, &mu));
        for v in [&mut self.mu, &mut self.mu0, &mut self.prev_mu] {
            v.push(mu.clone());
        }
        for v in [&mut self.sigma, &mut self.sigma0, &mut self.prev_sigma] {
            v.push(sigma.clone());
        }
        if self.policy.keeps_statistics() {
            self.accumulated.push(SufficientStats::empty(self.d));
        }
        self.factors_current = false;
        Ok(())
    }

    fn moments(&self, text: usize) -> Option<(DVector<f64>, DMatrix<f64>)> {
        Some((self.mu.get(text)?.clone(), self.sigma[text].clone()))
    }

    /// Layout: `[STATE_VERSION, K, d, regularized, factors_current, accumulating]`, then per
    /// text `mu, Sigma, mu0, Sigma0, prev_mu, prev_Sigma` (matrices column-major), then, when
    /// the policy keeps statistics (`Accumulate`, `Augment`), per text `count, mean, scatter`. Everything else (square roots and
    /// factors of `Sigma0`, the current factors) is a deterministic function of these.
    fn save_state(&self) -> Result<Vec<f64>, ModelError> {
        let (k, d) = (self.mu.len(), self.d);
        let accumulating = !self.accumulated.is_empty();
        let mut out =
            vec![STATE_VERSION, k as f64, d as f64, self.regularized as f64, self.factors_current as u8 as f64, accumulating as u8 as f64];
        for i in 0..k {
            for v in [&self.mu[i], &self.mu0[i], &self.prev_mu[i]].into_iter().zip([&self.sigma[i], &self.sigma0[i], &self.prev_sigma[i]]) {
                out.extend_from_slice(v.0.as_slice());
                out.extend_from_slice(v.1.as_slice());
            }
        }
        for a in &self.accumulated {
            out.push(a.count);
            out.extend_from_slice(a.mean.as_slice());
            out.extend_from_slice(a.scatter.as_slice());
        }
        Ok(out)
    }

    fn load_state(&mut self, state: &[f64]) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::new("load_state", m));
        if state.len() < 6 || state[0] != STATE_VERSION {
            return bad(format!("not a Gaussian image model state of version {STATE_VERSION}"));
        }
        let (k, d, accumulating) = (state[1] as usize, state[2] as usize, state[5] != 0.0);
        if d != self.d {
            return bad(format!("state has image dimension {d}, the model has {}", self.d));
        }
        if accumulating != self.policy.keeps_statistics() {
            return bad("the state's data policy differs from the model's".into());
        }
        let per_text = 3 * (d + d * d) + if accumulating { 1 + d + d * d } else { 0 };
        if state.len() != 6 + k * per_text {
            return bad(format!("state has {} values, expected {} for K = {k}, d = {d}", state.len(), 6 + k * per_text));
        }
        let mut it = state[6..].iter().copied();
        let mut vector = |n: usize| DVector::from_iterator(n, it.by_ref().take(n));
        let mut parts: Vec<(DVector<f64>, DMatrix<f64>)> = Vec::with_capacity(3 * k);
        for _ in 0..3 * k {
            let mu = vector(d);
            let sigma = DMatrix::from_column_slice(d, d, vector(d * d).as_slice());
            parts.push((mu, sigma));
        }
        let mut accumulated = Vec::new();
        if accumulating {
            for _ in 0..k {
                let count = vector(1)[0];
                let mean = vector(d);
                let scatter = DMatrix::from_column_slice(d, d, vector(d * d).as_slice());
                accumulated.push(SufficientStats { count, mean, scatter });
            }
        }
        let mut parts = parts.into_iter();
        let (mut mu, mut sigma, mut mu0, mut sigma0, mut prev_mu, mut prev_sigma) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..k {
            for (m, s) in [(&mut mu, &mut sigma), (&mut mu0, &mut sigma0), (&mut prev_mu, &mut prev_sigma)] {
                let (a, b) = parts.next().expect("3 K parts");
                m.push(a);
                s.push(b);
            }
        }
        // The initial conditionals' root and factor, exactly as `new` and `add_text` make them.
        self.sigma0_sqrt = sigma0.iter().map(gm::sqrtm_psd).collect();
        self.factors0 = sigma0.iter().zip(&mu0).map(|(s, m)| Factor::new(s, m)).collect();
        (self.mu, self.sigma, self.mu0, self.sigma0, self.prev_mu, self.prev_sigma) = (mu, sigma, mu0, sigma0, prev_mu, prev_sigma);
        self.accumulated = accumulated;
        self.factors.clear();
        self.factors_current = false;
        if state[4] != 0.0 {
            // The factors were current when saved (they are after every Measure phase): an
            // uninterrupted run reuses them without counting them again, so refresh them now
            // and keep the saved count.
            self.refresh_factors();
        }
        self.regularized = state[3] as u64;
        Ok(())
    }
}

/// Version tag of [`GaussianImageModel`]'s checkpoint state.
const STATE_VERSION: f64 = 1.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factor_reconstructs_a_positive_definite_covariance() {
        let s = DMatrix::from_row_slice(2, 2, &[2.0, 0.5, 0.5, 1.0]);
        let f = Factor::new(&s, &DVector::zeros(2));
        assert!(!f.regularized);
        assert!((&f.sqrt * f.sqrt.transpose() - &s).norm() < 1e-12);
        let whitened = &f.whiten * &s * f.whiten.transpose();
        assert!((whitened - DMatrix::identity(2, 2)).norm() < 1e-12);
        assert!((f.log_norm + 0.5 * (2.0 * (2.0 * std::f64::consts::PI).ln() + (1.75f64).ln())).abs() < 1e-12);
    }

    #[test]
    fn singular_covariance_is_clamped_and_counted() {
        let s = DMatrix::from_row_slice(2, 2, &[1.0, 1.0, 1.0, 1.0]);
        let f = Factor::new(&s, &DVector::zeros(2));
        assert!(f.regularized);
        assert!(f.log_norm.is_finite());
        let zero = Factor::new(&DMatrix::zeros(2, 2), &DVector::zeros(2));
        assert!(zero.regularized && zero.log_norm.is_finite());
    }

    #[test]
    fn log_likelihood_matches_the_closed_form() {
        let mu0 = vec![DVector::from_vec(vec![1.0, 0.0]), DVector::from_vec(vec![0.0, 1.0])];
        let s0 = vec![DMatrix::from_row_slice(2, 2, &[0.3, 0.1, 0.1, 0.2]), DMatrix::identity(2, 2) * 0.1];
        let mut m = GaussianImageModel::new(mu0.clone(), s0.clone(), Estimator::Mle, DataPolicy::Replace, (mu0[0].clone(), s0[0].clone()));
        let y = [0.3, -0.2, 1.5, 0.7, -0.1, 0.9];
        let mut out = vec![0.0; 6];
        m.add_log_likelihood(&y, &mut out).unwrap();
        for j in 0..3 {
            for i in 0..2 {
                let v = DVector::from_vec(vec![y[2 * j] - mu0[i][0], y[2 * j + 1] - mu0[i][1]]);
                let inv = s0[i].clone().try_inverse().unwrap();
                let quad = (v.transpose() * inv * &v)[0];
                let expected = -0.5 * (2.0 * (2.0 * std::f64::consts::PI).ln() + s0[i].determinant().ln() + quad);
                assert!((out[j * 2 + i] - expected).abs() < 1e-12, "{} vs {}", out[j * 2 + i], expected);
            }
        }
    }
}
