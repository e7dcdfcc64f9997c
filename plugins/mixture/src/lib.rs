//! # coevo-plugin-mixture
//!
//! A richer conditional than one Gaussian per text (issue 15; Gao & Li leave open whether
//! collapse survives richer models): model `gaussian_mixture`, in which text `i`'s conditional
//! is a mixture of `M` Gaussians in `R^d`, refitted every image phase by expectation-
//! maximisation (EM) on the text's samples of the (pooled) batch.
//!
//! - **Warm start**: EM starts from the text's current parameters (last round's fit), so the
//!   components keep their identity round to round and a mode the loop loses stays lost: a
//!   component whose weight falls is not re-seeded. There are no random restarts, so `fit`
//!   draws nothing from the host stream (it would take any randomness from it: the ABI's only
//!   source).
//! - **Budget**: at most `iterations` EM steps per refit, stopping earlier when the mean
//!   log-likelihood per sample improves by less than `tolerance`.
//! - **Floors** (stated, counted): a component's covariance has its eigenvalues raised to
//!   `variance_floor` times the text's initial per-coordinate variance (`tr Sigma^0 / d`) after
//!   each M-step (EM's likelihood is unbounded when a component shrinks onto one sample), and
//!   sampling/scoring clamp singular factorisations at the built-in model's floor (shared code:
//!   `plugins/gaussian/src/factor.rs`); the per-text `regularized` metric counts the
//!   components either touched at the last refit.
//! - **Data policies**: the host passes `Replace` (refit on the batch, including the real
//!   samples it pools in for `Fresh` and user content) or `Accumulate { initial: 0 }`:
//!   incremental EM with frozen past responsibilities (each batch's soft sufficient statistics
//!   per component, merged into running totals after its refit: constant memory; exact for
//!   `M = 1`, where it is the built-in model's accumulated MLE).
//!
//! See README.md for the maths, params, metrics and the checkpoint layout.

use coevo_plugin_api::serde_json::{self, Value};
use coevo_plugin_api::{ConditionalModelPlugin, DataPolicy, HostRng, ModelDescription, PluginResult, caption_groups, plugin_bail};
use nalgebra::{DMatrix, SymmetricEigen};
use serde::Deserialize;

use gmm::{InitialParams, Mixture, frechet_sq, log_sum_exp, trace};

// The factorisation with the built-in model's floors is the gaussian plugin's own file, shared
// by path: plugin crates cannot link each other (their `coevo_plugin_entry` symbols clash).
#[path = "../../gaussian/src/factor.rs"]
mod factor;
pub(crate) mod gmm;

// The C table and the exported `coevo_plugin_entry` symbol; the generated glue checks every
// pointer, buffer length, `num_texts` and input finiteness before the trait methods run, and
// catches panics.
coevo_plugin_api::export_plugin! {
    name: "coevo-mixture",
    version: env!("CARGO_PKG_VERSION"),
    models: [GaussianMixture],
}

/// Version tag at the start of a checkpoint, so another layout is refused, not misread.
const CHECKPOINT_FORMAT: f64 = 1.0;

/// Metric columns in the order `metrics` writes them: `diversity` first (coevo's coupling
/// metrics read it) and `fidelity` second, by convention; `regularized` is summed by the host.
const METRICS: [&str; 6] = ["diversity", "fidelity", "live_components", "frechet_to_initial", "em_iterations", "regularized"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_dim")]
    dim: usize,
    #[serde(default)]
    initial: InitialParams,
    #[serde(default = "default_iterations")]
    iterations: u64,
    #[serde(default = "default_tolerance")]
    tolerance: f64,
    #[serde(default = "default_weight_threshold")]
    weight_threshold: f64,
    #[serde(default = "default_variance_floor")]
    variance_floor: f64,
    #[serde(default = "default_min_evidence")]
    min_evidence: u64,
}

fn default_dim() -> usize {
    2
}

fn default_iterations() -> u64 {
    100
}

fn default_tolerance() -> f64 {
    1e-8
}

fn default_weight_threshold() -> f64 {
    0.05
}

fn default_variance_floor() -> f64 {
    1e-6
}

fn default_min_evidence() -> u64 {
    2
}

/// Soft sufficient statistics of one component: responsibility mass `n`, weighted mean, and
/// weighted scatter about that mean (row-major). Centred, so a collapsing component keeps its
/// precision, and mergeable (Chan et al.), so `Accumulate` keeps constant memory.
#[derive(Debug, Clone, PartialEq)]
struct Soft {
    n: f64,
    mean: Vec<f64>,
    scatter: Vec<f64>,
}

impl Soft {
    fn empty(d: usize) -> Soft {
        Soft { n: 0.0, mean: vec![0.0; d], scatter: vec![0.0; d * d] }
    }

    /// The statistics of `rows` weighted by `resp[j * m_count + m]` (two passes: mean, then
    /// scatter about it).
    fn of_batch(rows: &[f64], resp: &[f64], m: usize, m_count: usize, d: usize) -> Soft {
        let mut s = Soft::empty(d);
        for (y, r) in rows.chunks_exact(d).zip(resp.chunks_exact(m_count)) {
            s.n += r[m];
            for (a, x) in s.mean.iter_mut().zip(y) {
                *a += r[m] * x;
            }
        }
        if s.n > 0.0 {
            for a in &mut s.mean {
                *a /= s.n;
            }
        }
        for (y, r) in rows.chunks_exact(d).zip(resp.chunks_exact(m_count)) {
            for (a, row) in s.scatter.chunks_exact_mut(d).enumerate() {
                let da = r[m] * (y[a] - s.mean[a]);
                for ((o, yb), mb) in row.iter_mut().zip(y).zip(&s.mean) {
                    *o += da * (yb - mb);
                }
            }
        }
        s
    }

    /// Pools two sets of statistics (Chan et al.'s parallel update).
    fn merge(&self, other: &Soft) -> Soft {
        let n = self.n + other.n;
        if self.n == 0.0 {
            return other.clone();
        }
        if other.n == 0.0 {
            return self.clone();
        }
        let d = self.mean.len();
        let delta: Vec<f64> = other.mean.iter().zip(&self.mean).map(|(b, a)| b - a).collect();
        let mean = self.mean.iter().zip(&delta).map(|(a, dl)| a + dl * other.n / n).collect();
        let mut scatter: Vec<f64> = self.scatter.iter().zip(&other.scatter).map(|(a, b)| a + b).collect();
        for a in 0..d {
            for b in 0..d {
                scatter[a * d + b] += delta[a] * delta[b] * self.n * other.n / n;
            }
        }
        Soft { n, mean, scatter }
    }
}

/// One text's conditional and its fitting state.
#[derive(Debug, Clone, PartialEq)]
struct Text {
    mixture: Mixture,
    initial: Mixture,
    /// Per-coordinate variance scale of the floor: `tr Sigma^0 / d` of the initial mixture.
    scale: f64,
    /// `Accumulate`'s per-component statistics of every past batch (empty under `Replace`).
    acc: Vec<Soft>,
    /// EM steps of the last refit.
    iterations: u64,
    /// Components floored or clamped at the last refit.
    regularized: u64,
}

impl Text {
    fn new(initial: Mixture, accumulate: bool) -> Text {
        let d = initial.dim();
        let scale = trace(&initial.moments().1, d) / d as f64;
        let regularized = initial.components.iter().filter(|c| c.factor.regularized).count() as u64;
        let acc = if accumulate { vec![Soft::empty(d); initial.components.len()] } else { Vec::new() };
        Text { mixture: initial.clone(), initial, scale, acc, iterations: 0, regularized }
    }
}

/// The fitting settings, from the params.
#[derive(Debug, Clone, Copy)]
struct Em {
    iterations: u64,
    tolerance: f64,
    variance_floor: f64,
    min_evidence: u64,
}

impl Em {
    /// Refits `text` on `rows` (its samples of the batch) by warm-started EM. Returns nothing:
    /// the text's mixture, iteration count and regularisation count are updated in place.
    fn refit(&self, text: &mut Text, rows: &[f64]) {
        let d = text.mixture.dim();
        let m = text.mixture.components.len();
        let n = rows.len() / d;
        let accumulate = !text.acc.is_empty();
        let past: f64 = text.acc.iter().map(|s| s.n).sum();
        if n == 0 || (n as f64 + past) < self.min_evidence as f64 {
            return;
        }
        let mut resp = vec![0.0; n * m];
        let mut batch = vec![Soft::empty(d); m];
        let mut previous = f64::NEG_INFINITY;
        let floor = self.variance_floor * text.scale;
        text.iterations = 0;
        for _ in 0..self.iterations {
            // E-step: responsibilities r_jm = w_m N(y_j; m) / q(y_j), in log space.
            let mut log_lik = 0.0;
            for (y, r) in rows.chunks_exact(d).zip(resp.chunks_exact_mut(m)) {
                text.mixture.log_joint(y, r);
                let norm = log_sum_exp(r);
                log_lik += norm;
                for x in r.iter_mut() {
                    *x = (*x - norm).exp();
                }
            }
            // The current parameters (warm start, or the last M-step) gained less than
            // `tolerance` per sample over the previous ones: converged.
            if (log_lik - previous) <= self.tolerance * n as f64 {
                break;
            }
            previous = log_lik;
            // M-step on the batch pooled with the frozen statistics of past batches.
            let mut regularized = 0;
            for (c, comp) in text.mixture.components.iter_mut().enumerate() {
                batch[c] = Soft::of_batch(rows, &resp, c, m, d);
                let total = if accumulate { text.acc[c].merge(&batch[c]) } else { batch[c].clone() };
                comp.weight = total.n;
                // A component with less than `min_evidence` responsibility mass keeps its
                // mean and covariance (no evidence; SPEC 3's rule for a text with n_i < 2).
                if total.n >= self.min_evidence as f64 {
                    comp.mu.clone_from(&total.mean);
                    comp.sigma = total.scatter.iter().map(|s| s / total.n).collect();
                    if floor_eigenvalues(&mut comp.sigma, d, floor) {
                        regularized += 1;
                    }
                }
            }
            let mass: f64 = text.mixture.components.iter().map(|c| c.weight).sum();
            for comp in &mut text.mixture.components {
                comp.weight /= mass;
                comp.factor = factor::Factor::new(&comp.sigma, &comp.mu);
                regularized += u64::from(comp.factor.regularized);
            }
            text.regularized = regularized;
            text.iterations += 1;
        }
        if accumulate {
            for (a, b) in text.acc.iter_mut().zip(&batch) {
                *a = a.merge(b);
            }
        }
    }
}

/// Symmetrises `sigma` and raises its eigenvalues below `floor` to `floor`; true if it did.
fn floor_eigenvalues(sigma: &mut [f64], d: usize, floor: f64) -> bool {
    for r in 0..d {
        for c in r + 1..d {
            let m = 0.5 * (sigma[r * d + c] + sigma[c * d + r]);
            (sigma[r * d + c], sigma[c * d + r]) = (m, m);
        }
    }
    let eig = SymmetricEigen::new(DMatrix::from_row_slice(d, d, sigma));
    if eig.eigenvalues.iter().all(|&l| l >= floor) {
        return false;
    }
    let raised = eig.eigenvalues.map(|l| l.max(floor));
    let s = &eig.eigenvectors * DMatrix::from_diagonal(&raised) * eig.eigenvectors.transpose();
    for r in 0..d {
        for c in 0..d {
            sigma[r * d + c] = 0.5 * (s[(r, c)] + s[(c, r)]);
        }
    }
    true
}

/// The per-text Gaussian mixture model (see the crate docs).
#[derive(Debug, Clone)]
pub struct GaussianMixture {
    d: usize,
    m: usize,
    texts: Vec<Text>,
    prior: Mixture,
    accumulate: bool,
    em: Em,
    weight_threshold: f64,
}

impl ConditionalModelPlugin for GaussianMixture {
    const DESCRIPTION: ModelDescription = ModelDescription {
        name: c"gaussian_mixture",
        modality: c"image",
        dim_rule: c"params.dim (default 2)",
        fixed_dim: 0,
        description: c"per-text mixture of M Gaussians refitted by warm-started EM (budget and tolerance from params)",
    };

    fn create(params: &Value, num_texts: usize, policy: DataPolicy) -> PluginResult<Self> {
        let p: Params = serde_json::from_value(params.clone())?;
        if p.dim == 0 {
            plugin_bail!("dim must be >= 1");
        }
        if p.iterations == 0 {
            plugin_bail!("iterations must be >= 1 (the EM budget per refit)");
        }
        if !(p.tolerance.is_finite() && p.tolerance >= 0.0) {
            plugin_bail!("tolerance must be finite and >= 0 (mean log-likelihood gain per sample), got {}", p.tolerance);
        }
        if !(p.weight_threshold.is_finite() && (0.0..1.0).contains(&p.weight_threshold)) {
            plugin_bail!("weight_threshold must be in [0, 1), got {}", p.weight_threshold);
        }
        if !(p.variance_floor.is_finite() && p.variance_floor >= 0.0) {
            plugin_bail!("variance_floor must be finite and >= 0 (relative to tr Sigma0 / d), got {}", p.variance_floor);
        }
        // The host passes only Replace, or Accumulate with initial = 0 (it draws the initial
        // real data itself): refuse what coevo never sends rather than half-implement it.
        let accumulate = match policy {
            DataPolicy::Replace => false,
            DataPolicy::Accumulate { initial: 0 } => true,
            other => plugin_bail!("data policy {other:?} is not supported: coevo passes Replace or Accumulate {{ initial: 0 }}"),
        };
        let (initial, prior) = p.initial.build(num_texts, p.dim)?;
        let em = Em { iterations: p.iterations, tolerance: p.tolerance, variance_floor: p.variance_floor, min_evidence: p.min_evidence };
        Ok(GaussianMixture {
            d: p.dim,
            m: p.initial.components(),
            texts: initial.into_iter().map(|mix| Text::new(mix, accumulate)).collect(),
            prior,
            accumulate,
            em,
            weight_threshold: p.weight_threshold,
        })
    }

    fn dim(&self) -> usize {
        self.d
    }

    fn num_texts(&self) -> usize {
        self.texts.len()
    }

    fn metric_names(&self) -> Vec<String> {
        METRICS.map(String::from).to_vec()
    }

    /// Temperature `T` scales every component's covariance (the dispersion within modes; the
    /// exact tempering `q^(1/T)` of a mixture is not a mixture).
    fn sample(&self, counts: &[u64], temperature: f64, rng: &mut HostRng<'_>, out: &mut [f64]) -> PluginResult<()> {
        let (d, scale) = (self.d, temperature.sqrt());
        let mut z = vec![0.0; d];
        let mut start = 0;
        for (t, &c) in self.texts.iter().zip(counts) {
            let end = start + c as usize * d;
            t.mixture.sample_into(scale, rng, &mut out[start..end], &mut z);
            start = end;
        }
        Ok(())
    }

    fn log_likelihood(&self, samples: &[f64], out: &mut [f64]) -> PluginResult<()> {
        let k = self.texts.len();
        let mut scratch = vec![0.0; self.m];
        for (y, row) in samples.chunks_exact(self.d).zip(out.chunks_exact_mut(k)) {
            for (o, t) in row.iter_mut().zip(&self.texts) {
                *o = t.mixture.log_density(y, &mut scratch);
            }
        }
        Ok(())
    }

    /// EM needs no randomness here (warm start, no restarts), so `rng` is unused.
    fn fit(&mut self, counts: &[u64], samples: &[f64], _rng: &mut HostRng<'_>) -> PluginResult<()> {
        for (t, rows) in self.texts.iter_mut().zip(caption_groups(counts, samples, self.d)) {
            self.em.refit(t, rows);
        }
        Ok(())
    }

    fn metrics(&self, out: &mut [f64]) -> PluginResult<()> {
        let d = self.d;
        for (row, t) in out.chunks_exact_mut(METRICS.len()).zip(&self.texts) {
            let (mean, cov) = t.mixture.moments();
            let (mean0, cov0) = t.initial.moments();
            row[0] = trace(&cov, d);
            row[1] = mean.iter().zip(&mean0).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
            row[2] = t.mixture.components.iter().filter(|c| c.weight > self.weight_threshold).count() as f64;
            row[3] = frechet_sq(&mean, &cov, &mean0, &cov0);
            row[4] = t.iterations as f64;
            row[5] = t.regularized as f64;
        }
        Ok(())
    }

    fn add_text(&mut self) -> PluginResult<()> {
        self.texts.push(Text::new(self.prior.clone(), self.accumulate));
        Ok(())
    }

    /// `[format, K, d, M, then per text: mixture, initial mixture (each M x (weight, mu,
    /// Sigma)), iterations, regularized, then M x (n, mean, scatter) of the accumulated
    /// statistics (zeros under Replace)]`.
    fn get_params(&self) -> Vec<f64> {
        let (d, m) = (self.d, self.m);
        let mut v = vec![CHECKPOINT_FORMAT, self.texts.len() as f64, d as f64, m as f64];
        for t in &self.texts {
            t.mixture.save(&mut v);
            t.initial.save(&mut v);
            v.extend([t.iterations as f64, t.regularized as f64]);
            for c in 0..m {
                let empty = Soft::empty(d);
                let s = t.acc.get(c).unwrap_or(&empty);
                v.push(s.n);
                v.extend_from_slice(&s.mean);
                v.extend_from_slice(&s.scatter);
            }
        }
        v
    }

    fn set_params(&mut self, p: &[f64]) -> PluginResult<()> {
        let (d, m) = (self.d, self.m);
        let block = Mixture::saved_len(m, d);
        let per_text = 3 * block + 2;
        if p.len() < 4 || p[0] != CHECKPOINT_FORMAT || p[2] != d as f64 || p[3] != m as f64 {
            plugin_bail!("not a gaussian_mixture checkpoint with dim {d} and {m} components (format {CHECKPOINT_FORMAT})");
        }
        let k = p[1] as usize;
        if k == 0 || p[1] != k as f64 || p.len() != 4 + per_text * k {
            plugin_bail!("checkpoint length {} does not match 4 + {per_text} * K (K = {})", p.len(), p[1]);
        }
        // Validate everything before changing anything: a refused checkpoint leaves the model as it was.
        let mut texts = Vec::with_capacity(k);
        for r in p[4..].chunks_exact(per_text) {
            let mixture = Mixture::load(&r[..block], m, d);
            let mut t = Text::new(Mixture::load(&r[block..2 * block], m, d), self.accumulate);
            (t.iterations, t.regularized) = (r[2 * block] as u64, r[2 * block + 1] as u64);
            if self.accumulate {
                for (s, v) in t.acc.iter_mut().zip(r[2 * block + 2..].chunks_exact(1 + d + d * d)) {
                    *s = Soft { n: v[0], mean: v[1..1 + d].to_vec(), scatter: v[1 + d..].to_vec() };
                }
            }
            t.mixture = mixture;
            texts.push(t);
        }
        self.texts = texts;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
