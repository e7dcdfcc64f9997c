//! The conditional Gaussian image model `q(y|i) = N(mu_i, Sigma_i)` (docs/model.md sections 1-3).
//!
//! - this file: the model, its refit and its [`ConditionalModel`] implementation;
//! - `structure`: the covariance families (`Full`, `Diagonal`, `Isotropic`), the exact roots
//!   samples go through with their exact refit on a text's own draws, and the `O(d)`
//!   log-densities of the structured families;
//! - `factor`: the one regularised factorisation of a full covariance for log-densities
//!   (floors, `regularized`);
//! - `stats`: running sufficient statistics (the refit's input, `Accumulate`'s memory);
//! - `kernels`: sampling and distance loops;
//! - `loglik`: blocked log-densities (fast form, error bound, exact form) for the text phase;
//! - `diagonal_loglik`: the same for the structured families (their exact form is in
//!   `structure`).

mod diagonal_loglik;
mod factor;
mod kernels;
mod loglik;
mod stats;
mod structure;

pub use factor::{ABSOLUTE_FLOOR, EigenWorkspace, Factor, RELATIVE_FLOOR, RESOLUTION_FACTOR, resolution_floor};
pub use stats::SufficientStats;
pub use structure::{DiagonalDensity, FactoredCovariance, RefitWorkspace, Structure, StructuredCovariance};

use diagonal_loglik::DiagonalForm;
use kernels::{clamped_uses, squared_distance};
use loglik::QuadraticForm;

use std::sync::Arc;

use rayon::prelude::*;

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::conditional::{ConditionalModel, ModelError, PerTextMetrics};
use super::policy::DataPolicy;
use crate::linalg::gemm::product;
use crate::metrics::gaussian as gm;
use crate::metrics::names;
use crate::rng::{Stream, standard_normals};

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

/// What a text's last draws were, so that a refit on exactly them can be done on the draws
/// themselves ([`FactoredCovariance::refit_on_own_draws`]). The standard-normal draws `z`
/// (`y = mu + sqrt(c) A z`) stay in the model's `own_normals` buffer until the next sampling
/// call; their statistics are computed only by the refit that uses them (most batches, those
/// of the text phase, are never refit on).
#[derive(Debug, Clone, Copy, Default)]
struct OwnDraws {
    /// The image temperature `c` they were drawn at.
    temperature: f64,
    /// Offset of the text's first draw in `own_normals` (in samples), number of samples and a
    /// fingerprint of their bits, `None` once used or when stale: a refit recognises its own
    /// draws by them, whatever pooled them.
    batch: Option<(usize, usize, u64)>,
}

/// A 64-bit fingerprint of the bits of `values` (a multiply-rotate hash, FxHash's step, on eight
/// interleaved lanes so that the chains run in parallel, then folded): two different sample
/// blocks share one with probability about `2^-64`. Eight lanes, not four: each step waits on
/// its lane's previous multiply, and with four the two fingerprints of a refit on its own draws
/// took about a tenth of the paper round.
fn fingerprint(values: &[f64]) -> u64 {
    let step = |h: u64, bits: u64| (h.rotate_left(5) ^ bits).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    let mut lanes = [0u64, 1, 2, 3, 4, 5, 6, 7];
    let mut chunks = values.chunks_exact(8);
    for q in chunks.by_ref() {
        for (h, v) in lanes.iter_mut().zip(q) {
            *h = step(*h, v.to_bits());
        }
    }
    let tail = chunks.remainder().iter().fold(values.len() as u64, |h, v| step(h, v.to_bits()));
    lanes.iter().fold(tail, |h, &lane| step(h, lane))
}

/// The conditional Gaussian image model: `N(mu_i, Sigma_i)` for every text `i`, with
/// covariances of one family ([`Structure`]).
#[derive(Debug, Clone)]
pub struct GaussianImageModel {
    d: usize,
    structure: Structure,
    /// Current means.
    pub mu: Vec<DVector<f64>>,
    /// Current covariances with their exact roots: always the exact estimator, never regularised.
    sigma: Vec<FactoredCovariance>,
    /// Initial means.
    pub mu0: Vec<DVector<f64>>,
    sigma0: Vec<FactoredCovariance>,
    prev_mu: Vec<DVector<f64>>,
    prev_sigma: Vec<StructuredCovariance>,
    /// `Sigma0^(1/2)` of `Full` covariances (for the Frechet distance to the initial state).
    sigma0_sqrt: Vec<DMatrix<f64>>,
    /// Likelihood factorisations of `Full` covariances.
    factors: Vec<Factor>,
    /// Likelihood constants of the structured families.
    diagonal: DiagonalDensity,
    /// Coefficients of their blocked log-densities (`diagonal_loglik`).
    diagonal_form: DiagonalForm,
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
    pub new_text_prior: (DVector<f64>, StructuredCovariance),
    regularized: u64,
    // Stacked whitening matrices (`K d x d`, by rows) and shifts of all texts: one matrix
    // product scores a whole block of samples against every text (the dense
    // `add_log_likelihood`; the text phase uses the blocked forms of `loglik`).
    whiten_all: Vec<f64>,
    shift_all: Vec<f64>,
    block: Vec<f64>,
    // Coefficients of the blocked log-densities of the text phase (`loglik`).
    quadratic: QuadraticForm,
    // Reused buffers of the refit and factorisation: a steady-state round allocates nothing.
    batch_stats: SufficientStats,
    pooled_stats: SufficientStats,
    eigen: EigenWorkspace,
    refit: RefitWorkspace,
    draws: Vec<OwnDraws>,
    /// The standard-normal draws of the last `sample` call, grouped by text (see [`OwnDraws`]).
    own_normals: Vec<f64>,
    normals: Vec<f64>,
    real_buffer: Vec<f64>,
}

/// Samples scored per matrix product in [`GaussianImageModel::add_log_likelihood`]: large
/// enough to amortise the product's overhead, small enough that the `K d x BLOCK` result
/// stays in cache at mid scale.
const BLOCK: usize = 256;

impl GaussianImageModel {
    /// A model with initial conditionals `mu0[i]`, `sigma0[i]` (validated by the caller:
    /// equal dimensions, one family, positive semi-definite); its family is theirs (or the
    /// new-text prior's when there are no texts yet).
    pub fn new(
        mu0: Vec<DVector<f64>>,
        sigma0: Vec<StructuredCovariance>,
        estimator: Estimator,
        policy: DataPolicy,
        new_text_prior: (DVector<f64>, StructuredCovariance),
    ) -> Self {
        let d = mu0.first().map_or(new_text_prior.0.len(), |m| m.len());
        let structure = sigma0.first().unwrap_or(&new_text_prior.1).structure();
        debug_assert!(sigma0.iter().all(|s| s.structure() == structure && s.dim() == d));
        let keeps_statistics = policy.keeps_statistics();
        let factored: Vec<FactoredCovariance> = sigma0.iter().cloned().map(FactoredCovariance::new).collect();
        let mut model = GaussianImageModel {
            d,
            structure,
            mu: mu0.clone(),
            sigma: factored.clone(),
            prev_mu: mu0.clone(),
            prev_sigma: sigma0.clone(),
            sigma0_sqrt: Vec::new(),
            factors: Vec::new(),
            diagonal: DiagonalDensity::default(),
            diagonal_form: DiagonalForm::default(),
            factors_current: false,
            mu0,
            sigma0: factored,
            estimator,
            policy,
            accumulated: Vec::new(),
            real_data: None,
            new_text_prior,
            regularized: 0,
            whiten_all: Vec::new(),
            shift_all: Vec::new(),
            block: Vec::new(),
            quadratic: QuadraticForm::default(),
            batch_stats: structure.empty_stats(d),
            pooled_stats: structure.empty_stats(d),
            eigen: EigenWorkspace::new(if structure == Structure::Full { d } else { 0 }),
            refit: RefitWorkspace::new(structure, d),
            draws: vec![OwnDraws::default(); sigma0.len()],
            own_normals: Vec::new(),
            normals: Vec::new(),
            real_buffer: Vec::new(),
        };
        model.sigma0_sqrt = sigma0.iter().filter_map(full_matrix).map(gm::sqrtm_psd).collect();
        if keeps_statistics {
            model.accumulated = vec![structure.empty_stats(d); model.mu.len()];
        }
        model
    }

    /// The model with `source` as its real data (a model built from a dataset).
    pub fn with_real_data(mut self, source: Arc<dyn RealSource>) -> Self {
        self.real_data = Some(source);
        self
    }

    /// The covariance family of its conditionals.
    pub fn structure(&self) -> Structure {
        self.structure
    }

    /// Text `i`'s current covariance: the exact estimator, never regularised.
    pub fn covariance(&self, i: usize) -> &StructuredCovariance {
        self.sigma[i].sigma()
    }

    /// Text `i`'s current covariance with its exact root and log-determinant.
    pub fn factored_covariance(&self, i: usize) -> &FactoredCovariance {
        &self.sigma[i]
    }

    /// Text `i`'s initial covariance.
    pub fn initial_covariance(&self, i: usize) -> &StructuredCovariance {
        self.sigma0[i].sigma()
    }

    /// Draws `counts[i]` samples of `N(mu[i], c Sigma[i])` of every text into `out` through
    /// the exact roots `sigma` (never floored), grouped by text; when `record` holds one entry
    /// per text, each text's draws are recorded there for an exact refit on them.
    #[expect(clippy::too_many_arguments, reason = "the parameters, the draws' destination and the model's scratch buffers, borrowed apart")]
    fn draw(
        mu: &[DVector<f64>],
        sigma: &[FactoredCovariance],
        counts: &[usize],
        c: f64,
        rng: &mut Stream,
        out: &mut Vec<f64>,
        normals: &mut Vec<f64>,
        mut record: Option<&mut [OwnDraws]>,
    ) {
        let d = mu.first().map_or(0, |m| m.len());
        let total = counts.iter().sum::<usize>() * d;
        out.clear();
        out.resize(total, 0.0);
        // Sized by the batch, not by the largest text: the batch size is fixed, a text's share
        // varies from round to round (no allocation in a steady state).
        if normals.len() < total {
            normals.resize(total, 0.0);
        }
        // A text without draws in this call has none to refit on exactly.
        for own in record.iter_mut().flat_map(|r| r.iter_mut()) {
            own.batch = None;
        }
        // The standard normals first, text after text from the one stream (the generator
        // contract fixes their order; one call draws them in the same order as one call per
        // text), then each text's samples `mu + A z` and their fingerprint: independent per
        // text, so in parallel for a large batch (the same values whatever the thread count).
        standard_normals(rng, &mut normals[..total]);
        let normals = &normals[..total];
        let transform = |i: usize, first: usize, block: &mut [f64], own: Option<&mut OwnDraws>| {
            let n = block.len() / d.max(1);
            sigma[i].transform(mu[i].as_slice(), c, &normals[first * d..(first + n) * d], block);
            if let Some(own) = own {
                own.temperature = c;
                own.batch = Some((first, n, fingerprint(block)));
            }
        };
        let parallel = total * d >= PARALLEL_DRAW_WORK;
        transform_texts(&transform, d, counts, 0, 0, &mut out[..], record, parallel);
    }

    /// Draws `counts[i]` real samples of every text `i` into `out`, grouped by text: from the
    /// dataset the model was built from (a bootstrap of label `i`'s rows; a text without rows,
    /// appended by a `NewText` injection, from its initial conditional, the new-text prior),
    /// else from the initial conditionals (through their exact roots: nothing is floored).
    fn draw_real(&mut self, counts: &[usize], rng: &mut Stream, out: &mut Vec<f64>) {
        let Some(data) = &self.real_data else {
            Self::draw(&self.mu0, &self.sigma0, counts, 1.0, rng, out, &mut self.normals, None);
            return;
        };
        out.clear();
        for (i, &n) in counts.iter().enumerate() {
            if i < data.num_labels() {
                data.resample(i, n, rng, out);
            } else if n > 0 {
                Self::draw(&self.mu0[i..=i], &self.sigma0[i..=i], &counts[i..=i], 1.0, rng, &mut self.real_buffer, &mut self.normals, None);
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

    /// Brings the likelihood factorisations (`Full`: factors, stacked whitening matrices and
    /// shifts; structured families: the per-text precisions) up to date with `sigma` and
    /// `mu`, in place.
    fn refresh_factors(&mut self) {
        if self.factors_current {
            return;
        }
        if self.structure != Structure::Full {
            self.diagonal.update(&self.mu, &self.sigma);
            self.diagonal_form.update(&self.diagonal);
            self.factors_current = true;
            return;
        }
        let (k, d) = (self.mu.len(), self.d);
        while self.factors.len() < k {
            let i = self.factors.len();
            self.factors.push(Factor::new(&self.sigma[i].sigma().to_dense(), &self.mu[i]));
        }
        self.whiten_all.resize(k * d * d, 0.0);
        self.shift_all.resize(k * d, 0.0);
        let refactor = |f: &mut Factor, sigma: &FactoredCovariance, mu: &DVector<f64>, ws: &mut EigenWorkspace| {
            let StructuredCovariance::Full(sigma) = sigma.sigma() else { unreachable!("a Full model's covariances are Full") };
            f.update(sigma, mu, ws);
        };
        // Each text's eigendecomposition is its own: in parallel over texts when they are
        // many and large (the same values whatever the thread count), so that a large world's
        // round is not held to one core outside the posterior.
        if k > 1 && k * d * d * d >= PARALLEL_FACTOR_WORK {
            // Sized here, on the calling thread (which also takes texts), so that no later
            // round allocates on it.
            EIGEN.with_borrow_mut(|ws| ws.fit(d));
            self.factors[..k].par_iter_mut().zip(&self.sigma[..k]).zip(&self.mu[..k]).for_each(|((f, sigma), mu)| {
                EIGEN.with_borrow_mut(|ws| {
                    ws.fit(d);
                    refactor(f, sigma, mu, ws);
                })
            });
        } else {
            for ((f, sigma), mu) in self.factors[..k].iter_mut().zip(&self.sigma).zip(&self.mu) {
                refactor(f, sigma, mu, &mut self.eigen);
            }
        }
        for i in 0..k {
            let f = &self.factors[i];
            for c in 0..d {
                for r in 0..d {
                    self.whiten_all[(i * d + r) * d + c] = f.whiten[(r, c)];
                }
            }
            for r in 0..d {
                self.shift_all[i * d + r] = (0..d).map(|c| f.whiten[(r, c)] * self.mu[i][c]).sum();
            }
        }
        self.quadratic.update(&self.factors, d);
        self.factors_current = true;
    }

    /// Whether text `i`'s refit input `samples` is exactly its last draws, untouched and alone
    /// (no real data, user content or accumulated statistics mixed in): then the refit is
    /// done exactly on the draws (docs/model.md section 3): the offset of its draws in
    /// `own_normals` and their temperature. Consumes the record.
    fn own_draws(&mut self, i: usize, samples: &[f64]) -> Option<(usize, f64)> {
        let OwnDraws { temperature, batch } = std::mem::take(&mut self.draws[i]);
        let (first, n, print) = batch?;
        let pure = !self.policy.keeps_statistics() && n == samples.len() / self.d.max(1) && print == fingerprint(samples);
        pure.then_some((first, temperature))
    }
}

/// The samples of one text from its draws: `(text, first sample, its block, its record)`.
type TextTransform<'a> = dyn Fn(usize, usize, &mut [f64], Option<&mut OwnDraws>) + Sync + 'a;

/// Runs `transform(i, first, block, own)` for texts `offset..offset + counts.len()` of
/// dimension `d` (`first`: the first one's first sample, `out`: their blocks, `own`: their
/// records), halving the range with `rayon::join` when `parallel` (no allocation, unlike
/// spawned tasks). Each text's work is its own, so the order they run in changes nothing.
#[allow(clippy::too_many_arguments)]
fn transform_texts(
    transform: &TextTransform<'_>,
    d: usize,
    counts: &[usize],
    offset: usize,
    first: usize,
    out: &mut [f64],
    own: Option<&mut [OwnDraws]>,
    parallel: bool,
) {
    if parallel && counts.len() > 1 {
        let half = counts.len() / 2;
        let left: usize = counts[..half].iter().sum();
        let (out_left, out_right) = out.split_at_mut(left * d);
        let (own_left, own_right) = match own {
            Some(r) if r.len() > half => {
                let (a, b) = r.split_at_mut(half);
                (Some(a), Some(b))
            }
            other => (other, None),
        };
        rayon::join(
            || transform_texts(transform, d, &counts[..half], offset, first, out_left, own_left, parallel),
            || transform_texts(transform, d, &counts[half..], offset + half, first + left, out_right, own_right, parallel),
        );
        return;
    }
    let (mut rest, mut first, mut own) = (out, first, own.map(|r| r.iter_mut()));
    for (i, &n) in counts.iter().enumerate() {
        let (block, tail) = std::mem::take(&mut rest).split_at_mut(n * d);
        rest = tail;
        transform(offset + i, first, block, own.as_mut().and_then(|o| o.next()));
        first += n;
    }
}

/// Samples times `d^2` (the draws' transforms) above which the texts' samples are made in
/// parallel: about a millisecond of work.
const PARALLEL_DRAW_WORK: usize = 1 << 20;

/// Texts times `d^3` (the eigendecompositions' work) above which the factors are refreshed in
/// parallel: about a millisecond of Jacobi sweeps, well above rayon's per-task cost.
const PARALLEL_FACTOR_WORK: usize = 1 << 20;

thread_local! {
    // One eigendecomposition workspace per worker thread for the parallel refresh, kept across
    // rounds (no allocation once sized).
    static EIGEN: std::cell::RefCell<EigenWorkspace> = std::cell::RefCell::new(EigenWorkspace::new(0));
}

/// The matrix of a `Full` covariance (`None` for the structured families).
fn full_matrix(s: &StructuredCovariance) -> Option<&DMatrix<f64>> {
    match s {
        StructuredCovariance::Full(m) => Some(m),
        _ => None,
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
        if counts.len() > self.mu.len() {
            return Err(ModelError::new("sample", format!("{} counts for K = {} texts", counts.len(), self.mu.len())));
        }
        // The recorded draws' normals go to their own buffer, kept until the next call.
        Self::draw(&self.mu, &self.sigma, counts, temperature, rng, out, &mut self.own_normals, Some(&mut self.draws));
        Ok(())
    }

    fn sample_initial(&mut self, counts: &[usize], rng: &mut Stream, out: &mut Vec<f64>) -> Result<(), ModelError> {
        self.draw_real(counts, rng, out);
        Ok(())
    }

    fn add_log_likelihood(&mut self, samples: &[f64], out: &mut [f64]) -> Result<(), ModelError> {
        self.refresh_factors();
        let (k, d) = (self.mu.len(), self.d);
        let n = samples.len() / d;
        if out.len() != n * k {
            return Err(ModelError::new("log_likelihood", format!("output holds {} values, expected {n} samples x {k} texts", out.len())));
        }
        if self.structure != Structure::Full {
            self.regularized += self.diagonal.clamped_texts();
            self.diagonal.add_log_density(samples, out);
            return Ok(());
        }
        self.regularized += clamped_uses(&self.factors, None);
        self.block.resize(k * d * BLOCK, 0.0);
        for start in (0..n).step_by(BLOCK) {
            let b = BLOCK.min(n - start);
            let y = &samples[start * d..(start + b) * d];
            product(k * d, d, b, &self.whiten_all, d, y, d, &mut self.block);
            for j in 0..b {
                let col = &self.block[j * k * d..(j + 1) * k * d];
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
        self.regularized +=
            if self.structure == Structure::Full { clamped_uses(&self.factors, None) } else { self.diagonal.clamped_texts() };
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
            let block = &samples[offset * d..(offset + n) * d];
            offset += n;
            if let Some((first, temperature)) = self.own_draws(i, block) {
                // The statistics of the standard normals behind exactly these samples.
                self.batch_stats.set_from(&self.own_normals[first * d..first * d + block.len()], d);
                let divisor = self.estimator.divisor(self.batch_stats.count);
                self.sigma[i].refit_on_own_draws(&mut self.mu[i], &self.batch_stats, divisor, temperature, &mut self.refit);
                continue;
            }
            self.batch_stats.set_from(block, d);
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
            self.sigma[i].refit(&mut self.mu[i], stats, self.estimator.divisor(stats.count), &mut self.refit);
        }
        self.factors_current = false;
        Ok(())
    }

    fn begin_round(&mut self) {
        for (prev, now) in self.prev_mu.iter_mut().zip(&self.mu) {
            prev.copy_from(now);
        }
        for (prev, now) in self.prev_sigma.iter_mut().zip(&self.sigma) {
            prev.copy_from(now.sigma());
        }
    }

    fn metrics(&mut self, sink: &mut PerTextMetrics<'_>) -> Result<(), ModelError> {
        self.refresh_factors();
        for i in 0..self.mu.len() {
            let (sigma, sigma0, prev) = (self.sigma[i].sigma(), self.sigma0[i].sigma(), &self.prev_sigma[i]);
            let (trace_sqrt, rank) = sigma.structured_spectrum().unwrap_or_else(|| {
                let eig = &self.factors[i].eigenvalues;
                (gm::trace_sqrt(eig), gm::effective_rank(eig))
            });
            sink(names::TRACE, i, sigma.trace());
            sink(names::TRACE_SQRT, i, trace_sqrt);
            sink(names::LOGDET, i, self.sigma[i].log_det());
            sink(names::EFFECTIVE_RANK, i, rank);
            sink(names::FIDELITY, i, (&self.mu[i] - &self.mu0[i]).norm());
            let (to_initial, local) = match (full_matrix(sigma), full_matrix(sigma0), full_matrix(prev)) {
                (Some(s), Some(s0), Some(p)) => (
                    gm::frechet_sq_with_sqrt(&self.mu[i], s, &self.mu0[i], s0, &self.sigma0_sqrt[i]),
                    gm::frechet_sq(&self.mu[i], s, &self.prev_mu[i], p),
                ),
                _ => (
                    sigma.structured_frechet_sq(&self.mu[i], sigma0, &self.mu0[i]).unwrap_or(f64::NAN),
                    sigma.structured_frechet_sq(&self.mu[i], prev, &self.prev_mu[i]).unwrap_or(f64::NAN),
                ),
            };
            sink(names::FRECHET_TO_INITIAL, i, to_initial);
            sink(names::FRECHET_LOCAL, i, local);
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
        if let Some(m) = full_matrix(&sigma) {
            self.sigma0_sqrt.push(gm::sqrtm_psd(m));
        }
        let factored = FactoredCovariance::new(sigma.clone());
        for v in [&mut self.mu, &mut self.mu0, &mut self.prev_mu] {
            v.push(mu.clone());
        }
        self.sigma.push(factored.clone());
        self.sigma0.push(factored);
        self.prev_sigma.push(sigma);
        self.draws.push(OwnDraws::default());
        if self.policy.keeps_statistics() {
            self.accumulated.push(self.structure.empty_stats(self.d));
        }
        self.factors_current = false;
        Ok(())
    }

    fn moments(&self, text: usize) -> Option<(DVector<f64>, DMatrix<f64>)> {
        Some((self.mu.get(text)?.clone(), self.sigma[text].sigma().to_dense()))
    }

    /// Layout (version 2): `[STATE_VERSION, K, d, regularized, factors_current, accumulating,
    /// structure]`, then per text `mu, Sigma, A, log det Sigma, mu0, Sigma0, prev_mu,
    /// prev_Sigma` (each covariance and root as its family stores it: `d^2` numbers
    /// column-major, `d`, or one), then, when the policy keeps statistics (`Accumulate`,
    /// `Augment`), per text `count, mean, scatter` (`d^2` numbers, or `d` for the structured
    /// families). The root `A` is saved because after exact refits it is no longer a function
    /// of `Sigma`; everything else (the initial conditionals' roots, the likelihood factors) is
    /// a deterministic function of these. Version 1 (before covariance families) loads as `Full`.
    fn save_state(&self) -> Result<Vec<f64>, ModelError> {
        let (k, d) = (self.mu.len(), self.d);
        let accumulating = !self.accumulated.is_empty();
        let mut out = vec![
            STATE_VERSION,
            k as f64,
            d as f64,
            self.regularized as f64,
            self.factors_current as u8 as f64,
            accumulating as u8 as f64,
            self.structure.code(),
        ];
        for i in 0..k {
            out.extend_from_slice(self.mu[i].as_slice());
            out.extend_from_slice(self.sigma[i].sigma().values());
            out.extend_from_slice(self.sigma[i].root_values());
            out.push(self.sigma[i].log_det());
            out.extend_from_slice(self.mu0[i].as_slice());
            out.extend_from_slice(self.sigma0[i].sigma().values());
            out.extend_from_slice(self.prev_mu[i].as_slice());
            out.extend_from_slice(self.prev_sigma[i].values());
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
        let version = state.first().copied();
        if state.len() < 6 || !(version == Some(STATE_VERSION) || version == Some(1.0)) {
            return bad(format!("not a Gaussian image model state of version 1 or {STATE_VERSION}"));
        }
        let (k, d, accumulating) = (state[1] as usize, state[2] as usize, state[5] != 0.0);
        // Version 1 predates the families: its covariances are Full.
        let (structure, header) = match version {
            Some(1.0) => (Some(Structure::Full), 6),
            _ => (state.get(6).copied().and_then(Structure::from_code), 7),
        };
        let Some(structure) = structure else { return bad("the state names no covariance family".into()) };
        if d != self.d {
            return bad(format!("state has image dimension {d}, the model has {}", self.d));
        }
        if structure != self.structure {
            return bad(format!("the state's covariances are {}, the model's are {}", structure.name(), self.structure.name()));
        }
        if accumulating != self.policy.keeps_statistics() {
            return bad("the state's data policy differs from the model's".into());
        }
        let (c, v1) = (structure.stored(d), header == 6);
        let scatter = if structure == Structure::Full { d * d } else { d };
        let per_text = if v1 { 3 * (d + c) } else { 3 * d + 4 * c + 1 } + if accumulating { 1 + d + scatter } else { 0 };
        if state.len() != header + k * per_text {
            return bad(format!("state has {} values, expected {} for K = {k}, d = {d}", state.len(), header + k * per_text));
        }
        let mut it = state[header..].iter().copied();
        let mut next = |n: usize| DVector::from_iterator(n, it.by_ref().take(n));
        let (mut mu, mut sigma, mut mu0, mut sigma0, mut prev_mu, mut prev_sigma) = (vec![], vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..k {
            mu.push(next(d));
            let s = StructuredCovariance::from_values(structure, d, next(c).as_slice());
            sigma.push(if v1 {
                FactoredCovariance::new(s)
            } else {
                let root = next(c);
                FactoredCovariance::from_parts(s, root.as_slice(), next(1)[0])
            });
            mu0.push(next(d));
            sigma0.push(FactoredCovariance::new(StructuredCovariance::from_values(structure, d, next(c).as_slice())));
            prev_mu.push(next(d));
            prev_sigma.push(StructuredCovariance::from_values(structure, d, next(c).as_slice()));
        }
        let mut accumulated = Vec::new();
        if accumulating {
            for _ in 0..k {
                let count = next(1)[0];
                let mean = next(d);
                let scatter = DMatrix::from_column_slice(d, scatter / d, next(scatter).as_slice());
                accumulated.push(SufficientStats { count, mean, scatter });
            }
        }
        // The initial conditionals' roots, exactly as `new` and `add_text` make them.
        self.sigma0_sqrt = sigma0.iter().filter_map(|s| full_matrix(s.sigma())).map(gm::sqrtm_psd).collect();
        (self.mu, self.sigma, self.mu0, self.sigma0, self.prev_mu, self.prev_sigma) = (mu, sigma, mu0, sigma0, prev_mu, prev_sigma);
        self.accumulated = accumulated;
        self.draws = vec![OwnDraws::default(); k];
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

/// Version tag of [`GaussianImageModel`]'s checkpoint state (2: covariance families and exact
/// roots; 1, `Full` covariances only, still loads).
const STATE_VERSION: f64 = 2.0;

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
        let s0 = [DMatrix::from_row_slice(2, 2, &[0.3, 0.1, 0.1, 0.2]), DMatrix::identity(2, 2) * 0.1];
        let structured = s0.iter().cloned().map(StructuredCovariance::Full).collect();
        let mut m =
            GaussianImageModel::new(mu0.clone(), structured, Estimator::Mle, DataPolicy::Replace, (mu0[0].clone(), s0[0].clone().into()));
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
