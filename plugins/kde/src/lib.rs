//! # coevo-plugin-kde
//!
//! A non-parametric conditional (issue 15; KoyejoLab's collapse studies fit kernel density
//! estimates in their loops): model `kde`, in which text `i`'s conditional is a Gaussian kernel
//! density estimate over the samples of its last refit,
//! `q(y | i) = (1/n) sum_j N(y; x_j, h^2 I)`, with the bandwidth `h` set at every refit by a
//! stated rule (Scott's or Silverman's, on the points' pooled per-coordinate variance, or a
//! fixed `h`). Sampling is resampling plus kernel noise: pick a point uniformly, add
//! `N(0, T h^2 I)`.
//!
//! **Its law** (derived in README.md, tested in `tests.rs`): the KDE has mean `x̄` and
//! covariance `S + h^2 I` (`S` the points' covariance, divisor `n`), so a refit on `n'` of its
//! samples has `E[tr S' | S] = (1 - 1/n') (tr S + d h^2)`. With a rule `d h^2 = b_n^2 tr S`
//! (Scott: `b_n^2 = n^(-2/(d+4))`) the trace is multiplied by `(1 - 1/n)(1 + b_n^2)` per round
//! in expectation: above 1 for every `n >= 3` in every dimension (Silverman's too), so the KDE
//! **spreads** geometrically, losing its modes to the accumulated kernel noise, instead of
//! contracting like the Gaussian. With a fixed `h` it settles at `tr S = (n - 1) d h^2`.
//!
//! - **Initial conditionals**: before its first refit a text is the Gaussian mixture the
//!   params' `initial` describes (the same layout as `plugins/mixture`, whose `gmm.rs` this
//!   crate includes), so both plugins start from one distribution; `create` has no random
//!   stream to draw initial points with.
//! - **Memory is bounded by the batch**: under `Replace` a refit keeps its own samples (the
//!   batch, with any real samples the host pooled in); under `Accumulate { initial: 0 }` a
//!   uniform reservoir sample of everything fitted so far, at most `capacity` points per text,
//!   drawn with `fit`'s host stream (the one use of it in these example plugins).
//! - **Floor** (stated, counted): `h^2` is raised to `bandwidth_floor` times the text's initial
//!   per-coordinate variance when the rule gives less (points that all coincide); the per-text
//!   `regularized` metric is 1 then.

use coevo_plugin_api::serde_json::{self, Value};
use coevo_plugin_api::{ConditionalModelPlugin, DataPolicy, HostRng, ModelDescription, PluginResult, caption_groups, plugin_bail};
use rand::RngExt;
use rand_distr::StandardNormal;
use serde::Deserialize;

use gmm::{InitialParams, Mixture, frechet_sq, log_sum_exp, trace};

// Shared source, included by path (plugin crates cannot link each other: two
// `coevo_plugin_entry` symbols would clash): the built-in model's factorisation and the
// mixture plugin's Gaussian mixture, which gives the initial conditionals.
#[path = "../../gaussian/src/factor.rs"]
mod factor;
#[path = "../../mixture/src/gmm.rs"]
mod gmm;

coevo_plugin_api::export_plugin! {
    name: "coevo-kde",
    version: env!("CARGO_PKG_VERSION"),
    models: [KernelDensity],
}

/// Version tag at the start of a checkpoint.
const CHECKPOINT_FORMAT: f64 = 1.0;

/// Metric columns: `diversity` (`tr S + d h^2`, the KDE's total variance) and `fidelity`
/// first by convention; `regularized` is summed over texts by the host.
const METRICS: [&str; 6] = ["diversity", "fidelity", "bandwidth", "points", "frechet_to_initial", "regularized"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_dim")]
    dim: usize,
    #[serde(default)]
    initial: InitialParams,
    #[serde(default)]
    bandwidth: Option<Value>,
    #[serde(default = "default_capacity")]
    capacity: usize,
    #[serde(default = "default_bandwidth_floor")]
    bandwidth_floor: f64,
    #[serde(default = "default_min_evidence")]
    min_evidence: u64,
}

fn default_dim() -> usize {
    2
}

fn default_capacity() -> usize {
    1000
}

fn default_bandwidth_floor() -> f64 {
    1e-12
}

fn default_min_evidence() -> u64 {
    2
}

/// How `h` follows from the `n` points of a refit with pooled per-coordinate variance
/// `s^2 = tr S / d` (S with divisor `n`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bandwidth {
    /// Scott's rule: `h = s n^(-1/(d+4))`.
    Scott,
    /// Silverman's rule: `h = s (4 / ((d + 2) n))^(1/(d+4))`.
    Silverman,
    /// A fixed `h`, whatever the points.
    Fixed(f64),
}

impl Bandwidth {
    fn parse(v: Option<&Value>) -> PluginResult<Bandwidth> {
        match v {
            None => Ok(Bandwidth::Scott),
            Some(Value::String(s)) if s == "scott" => Ok(Bandwidth::Scott),
            Some(Value::String(s)) if s == "silverman" => Ok(Bandwidth::Silverman),
            Some(Value::Number(x)) => match x.as_f64() {
                Some(h) if h.is_finite() && h > 0.0 => Ok(Bandwidth::Fixed(h)),
                _ => plugin_bail!("bandwidth: a fixed h must be finite and > 0, got {x}"),
            },
            Some(other) => plugin_bail!("bandwidth must be \"scott\", \"silverman\" or a fixed h > 0, got {other}"),
        }
    }

    /// `b_n^2 = d h^2 / tr S` of the rules (`h^2 = b_n^2 s^2`); `None` for a fixed `h`.
    pub fn factor_sq(self, n: usize, d: usize) -> Option<f64> {
        let (n, d) = (n as f64, d as f64);
        match self {
            Bandwidth::Scott => Some(n.powf(-2.0 / (d + 4.0))),
            Bandwidth::Silverman => Some((4.0 / ((d + 2.0) * n)).powf(2.0 / (d + 4.0))),
            Bandwidth::Fixed(_) => None,
        }
    }

    /// `h^2` for `n` points with `tr S = trace_s` in `R^d`.
    fn h_sq(self, n: usize, d: usize, trace_s: f64) -> f64 {
        match self.factor_sq(n, d) {
            Some(b2) => b2 * trace_s / d as f64,
            None => match self {
                Bandwidth::Fixed(h) => h * h,
                _ => unreachable!("the rules have a factor"),
            },
        }
    }
}

/// Mean and covariance (divisor `n`, row-major) of the rows, two passes.
fn point_moments(points: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = (points.len() / d) as f64;
    let mut mean = vec![0.0; d];
    for y in points.chunks_exact(d) {
        for (m, x) in mean.iter_mut().zip(y) {
            *m += x / n;
        }
    }
    let mut cov = vec![0.0; d * d];
    for y in points.chunks_exact(d) {
        for (a, row) in cov.chunks_exact_mut(d).enumerate() {
            let da = (y[a] - mean[a]) / n;
            for ((o, yb), mb) in row.iter_mut().zip(y).zip(&mean) {
                *o += da * (yb - mb);
            }
        }
    }
    (mean, cov)
}

/// One text: its initial mixture, and after the first refit its points and bandwidth.
#[derive(Debug, Clone, PartialEq)]
struct Text {
    initial: Mixture,
    /// Per-coordinate variance scale of the floor: `tr Sigma^0 / d`.
    scale: f64,
    /// The kernel centres (rows of `d`); empty while the text is its initial mixture.
    points: Vec<f64>,
    h_sq: f64,
    /// `Accumulate`: samples fitted so far (the reservoir's denominator).
    seen: u64,
    regularized: bool,
}

impl Text {
    fn new(initial: Mixture) -> Text {
        let d = initial.dim();
        let scale = trace(&initial.moments().1, d) / d as f64;
        Text { initial, scale, points: Vec::new(), h_sq: 0.0, seen: 0, regularized: false }
    }

    /// Whether the text is a KDE yet (a bandwidth is set), else still its initial mixture.
    fn fitted(&self) -> bool {
        self.h_sq > 0.0
    }

    /// Mean and covariance of the text's distribution: `(x̄, S + h^2 I)` once fitted.
    fn moments(&self, d: usize) -> (Vec<f64>, Vec<f64>) {
        if !self.fitted() {
            return self.initial.moments();
        }
        let (mean, mut cov) = point_moments(&self.points, d);
        for c in 0..d {
            cov[c * d + c] += self.h_sq;
        }
        (mean, cov)
    }
}

/// The per-text kernel density model (see the crate docs).
#[derive(Debug, Clone)]
pub struct KernelDensity {
    d: usize,
    m: usize,
    texts: Vec<Text>,
    prior: Mixture,
    bandwidth: Bandwidth,
    /// `Some(capacity)` under `Accumulate` (the reservoir size), `None` under `Replace`.
    reservoir: Option<usize>,
    bandwidth_floor: f64,
    min_evidence: u64,
}

impl KernelDensity {
    /// Sets the bandwidth of a text from its points by the rule, raised to the floor.
    fn set_bandwidth(&self, t: &mut Text) {
        let n = t.points.len() / self.d;
        let (_, cov) = point_moments(&t.points, self.d);
        let h_sq = self.bandwidth.h_sq(n, self.d, trace(&cov, self.d));
        let floor = self.bandwidth_floor * t.scale;
        t.regularized = h_sq < floor;
        t.h_sq = h_sq.max(floor);
    }
}

impl ConditionalModelPlugin for KernelDensity {
    const DESCRIPTION: ModelDescription = ModelDescription {
        name: c"kde",
        modality: c"image",
        dim_rule: c"params.dim (default 2)",
        fixed_dim: 0,
        description: c"per-text Gaussian kernel density estimate on the last refit's samples (Scott, Silverman or fixed bandwidth)",
    };

    fn create(params: &Value, num_texts: usize, policy: DataPolicy) -> PluginResult<Self> {
        let p: Params = serde_json::from_value(params.clone())?;
        if p.dim == 0 {
            plugin_bail!("dim must be >= 1");
        }
        if p.capacity < 2 {
            plugin_bail!("capacity must be >= 2 (points kept per text under Accumulate), got {}", p.capacity);
        }
        if !(p.bandwidth_floor.is_finite() && p.bandwidth_floor > 0.0) {
            plugin_bail!("bandwidth_floor must be finite and > 0 (relative to tr Sigma0 / d), got {}", p.bandwidth_floor);
        }
        let bandwidth = Bandwidth::parse(p.bandwidth.as_ref())?;
        // coevo passes Replace, or Accumulate with initial = 0 (the host pools the initial real
        // data into the first fit): refuse what it never sends.
        let reservoir = match policy {
            DataPolicy::Replace => None,
            DataPolicy::Accumulate { initial: 0 } => Some(p.capacity),
            other => plugin_bail!("data policy {other:?} is not supported: coevo passes Replace or Accumulate {{ initial: 0 }}"),
        };
        let (initial, prior) = p.initial.build(num_texts, p.dim)?;
        Ok(KernelDensity {
            d: p.dim,
            m: p.initial.components(),
            texts: initial.into_iter().map(Text::new).collect(),
            prior,
            bandwidth,
            reservoir,
            bandwidth_floor: p.bandwidth_floor,
            min_evidence: p.min_evidence.max(2),
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

    /// Resample + kernel noise: a uniform point index, then `d` standard normals scaled by
    /// `sqrt(T) h` (temperature `T` scales the kernel's variance). A text still at its initial
    /// mixture samples the mixture at `T` (component covariances scaled).
    fn sample(&self, counts: &[u64], temperature: f64, rng: &mut HostRng<'_>, out: &mut [f64]) -> PluginResult<()> {
        let d = self.d;
        let mut z = vec![0.0; d];
        let mut start = 0;
        for (t, &c) in self.texts.iter().zip(counts) {
            let end = start + c as usize * d;
            let rows = &mut out[start..end];
            if t.fitted() {
                let (n, scale) = (t.points.len() / d, (temperature * t.h_sq).sqrt());
                for y in rows.chunks_exact_mut(d) {
                    let x = &t.points[rng.random_range(0..n) * d..][..d];
                    for (o, xc) in y.iter_mut().zip(x) {
                        *o = xc + scale * rng.sample::<f64, _>(StandardNormal);
                    }
                }
            } else {
                t.initial.sample_into(temperature.sqrt(), rng, rows, &mut z);
            }
            start = end;
        }
        Ok(())
    }

    /// `log q(y | i) = log sum_j exp(-|y - x_j|^2 / (2 h^2)) - log n - (d/2) log(2 pi h^2)`,
    /// by log-sum-exp: finite however far `y` is.
    fn log_likelihood(&self, samples: &[f64], out: &mut [f64]) -> PluginResult<()> {
        let (d, k) = (self.d, self.texts.len());
        let mut scratch = Vec::new();
        for (y, row) in samples.chunks_exact(d).zip(out.chunks_exact_mut(k)) {
            for (o, t) in row.iter_mut().zip(&self.texts) {
                if !t.fitted() {
                    scratch.resize(self.m, 0.0);
                    *o = t.initial.log_density(y, &mut scratch);
                    continue;
                }
                let n = t.points.len() / d;
                scratch.clear();
                scratch.extend(
                    t.points.chunks_exact(d).map(|x| -x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / (2.0 * t.h_sq)),
                );
                *o = log_sum_exp(&scratch) - (n as f64).ln() - 0.5 * d as f64 * (std::f64::consts::TAU * t.h_sq).ln();
            }
        }
        Ok(())
    }

    /// `Replace`: a text with at least `min_evidence` samples keeps exactly them. `Accumulate`:
    /// every sample goes through a reservoir of `capacity` points (Vitter's algorithm R: the
    /// `s`-th sample seen replaces a uniform slot with probability `capacity / s`), so the
    /// points are a uniform sample of everything fitted, drawn from `rng`, the host's stream.
    fn fit(&mut self, counts: &[u64], samples: &[f64], rng: &mut HostRng<'_>) -> PluginResult<()> {
        let d = self.d;
        let groups = caption_groups(counts, samples, d);
        let mut texts = std::mem::take(&mut self.texts);
        for (t, rows) in texts.iter_mut().zip(groups) {
            let n = rows.len() / d;
            match self.reservoir {
                None => {
                    if (n as u64) < self.min_evidence {
                        continue;
                    }
                    t.points.clear();
                    t.points.extend_from_slice(rows);
                }
                Some(capacity) => {
                    if n == 0 {
                        continue;
                    }
                    for y in rows.chunks_exact(d) {
                        t.seen += 1;
                        if t.points.len() < capacity * d {
                            t.points.extend_from_slice(y);
                        } else {
                            let slot = rng.random_range(0..t.seen) as usize;
                            if slot < capacity {
                                t.points[slot * d..(slot + 1) * d].copy_from_slice(y);
                            }
                        }
                    }
                    if ((t.points.len() / d) as u64) < self.min_evidence {
                        // Too little evidence yet: keep the initial mixture, remember the points.
                        t.h_sq = 0.0;
                        continue;
                    }
                }
            }
            self.set_bandwidth(t);
        }
        self.texts = texts;
        Ok(())
    }

    fn metrics(&self, out: &mut [f64]) -> PluginResult<()> {
        let d = self.d;
        for (row, t) in out.chunks_exact_mut(METRICS.len()).zip(&self.texts) {
            let usable = t.fitted();
            let (mean, cov) = t.moments(d);
            let (mean0, cov0) = t.initial.moments();
            row[0] = trace(&cov, d);
            row[1] = mean.iter().zip(&mean0).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
            row[2] = if usable { t.h_sq.sqrt() } else { 0.0 };
            row[3] = if usable { (t.points.len() / d) as f64 } else { 0.0 };
            row[4] = frechet_sq(&mean, &cov, &mean0, &cov0);
            row[5] = f64::from(u8::from(t.regularized));
        }
        Ok(())
    }

    fn add_text(&mut self) -> PluginResult<()> {
        self.texts.push(Text::new(self.prior.clone()));
        Ok(())
    }

    /// `[format, K, d, M, then per text: initial mixture (M x (weight, mu, Sigma)), h^2, seen,
    /// regularized, n, the n points (n x d)]`: variable length, bounded by the batch (or the
    /// reservoir's capacity).
    fn get_params(&self) -> Vec<f64> {
        let mut v = vec![CHECKPOINT_FORMAT, self.texts.len() as f64, self.d as f64, self.m as f64];
        for t in &self.texts {
            t.initial.save(&mut v);
            v.extend([t.h_sq, t.seen as f64, f64::from(u8::from(t.regularized)), (t.points.len() / self.d) as f64]);
            v.extend_from_slice(&t.points);
        }
        v
    }

    fn set_params(&mut self, p: &[f64]) -> PluginResult<()> {
        let (d, m) = (self.d, self.m);
        if p.len() < 4 || p[0] != CHECKPOINT_FORMAT || p[2] != d as f64 || p[3] != m as f64 {
            plugin_bail!("not a kde checkpoint with dim {d} and {m} initial components (format {CHECKPOINT_FORMAT})");
        }
        let k = p[1] as usize;
        if k == 0 || p[1] != k as f64 {
            plugin_bail!("checkpoint K = {} is not a positive whole number", p[1]);
        }
        let block = Mixture::saved_len(m, d);
        // Read everything before changing anything: a refused checkpoint leaves the model as it was.
        let mut texts = Vec::with_capacity(k);
        let mut at = 4;
        for i in 0..k {
            let Some(head) = p.get(at..at + block + 4) else { plugin_bail!("checkpoint truncated in text {i}") };
            let mut t = Text::new(Mixture::load(&head[..block], m, d));
            let n = head[block + 3];
            if n < 0.0 || n.fract() != 0.0 || head[block] < 0.0 {
                plugin_bail!("checkpoint text {i}: invalid point count {n} or bandwidth {}", head[block]);
            }
            (t.h_sq, t.seen, t.regularized) = (head[block], head[block + 1] as u64, head[block + 2] != 0.0);
            at += block + 4;
            let Some(points) = p.get(at..at + n as usize * d) else { plugin_bail!("checkpoint truncated in text {i}'s points") };
            t.points = points.to_vec();
            at += points.len();
            texts.push(t);
        }
        if at != p.len() {
            plugin_bail!("checkpoint has {} values after its {k} texts", p.len() - at);
        }
        self.texts = texts;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
