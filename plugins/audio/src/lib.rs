//! # coevo-plugin-audio
//!
//! An example coevo plugin: an **audio** modality whose per-text conditional is a von Mises
//! distribution over one angle (a pitch class or phase, in radians): `q(θ | i) = VM(μ_i, κ_i)`,
//! sample dimension 1.
//!
//! - **Estimator** (`fit`): per text, from the sufficient statistics `n, C = Σ cos θ,
//!   S = Σ sin θ`: mean direction `μ̂ = atan2(S, C)`, mean resultant length
//!   `R̄ = sqrt(C² + S²) / n`, concentration `κ̂ = A1⁻¹(R̄)` with `A1 = I1 / I0` (Best–Fisher
//!   approximation refined by Newton's method, i.e. the MLE). Texts with fewer than
//!   `min_evidence` (default 2) samples keep their parameters. If all angles coincide
//!   (`R̄ = 1`, κ̂ = ∞) κ is clamped to [`KAPPA_MAX`] and the text's `regularized` metric is 1.
//! - **Temperature** `T`: samples are drawn with concentration `κ / T` (the exact tempering
//!   `q^(1/T)` of a von Mises density), so `T > 1` disperses and `T < 1` sharpens.
//! - **Metrics** per text: `diversity` = circular variance `1 - A1(κ)` of the conditional (the
//!   analogue of `trace Σ`: 0 when collapsed, 1 when uniform), `fidelity` = angular distance
//!   `|wrap(μ - μ⁰)|` in `[0, π]` of the mean direction from its initial one, then `kappa`,
//!   `mean_direction`, `regularized`.
//! - **Data policies**: `replace` fits the batch; `accumulate { initial }` keeps `(n, C, S)` per
//!   text (constant memory), starting with `initial` draws from the text's initial conditional
//!   (drawn at the first `fit` after the text exists; coevo passes `initial = 0` and pools its
//!   own initial real data into the first fit). `fresh` is refused at `create`: coevo never
//!   passes it (for a `Fresh` scenario it creates the model with `replace` and mixes the real
//!   samples into the batch itself; see `plugins/api/README.md`, "Data policies").
//!
//! Params (JSON, all optional):
//! `{"kappa0": 4.0, "means": "uniform" | [angles...], "prior": {"mean": 0.0, "kappa": 4.0},
//!   "min_evidence": 2}`. `"uniform"` puts text i's mean at `2π (i+1) / K` (the spec's circle).
//! `prior` is the conditional given to a text added later (default: mean 0, kappa `kappa0`).

pub mod vonmises;

use coevo_plugin_api::serde_json::{self, Value};
use coevo_plugin_api::{
    ConditionalModelPlugin, DataPolicy, HostRng, ModelDescription, PluginResult, caption_groups, plugin_bail, plugin_log,
};
use core::f64::consts::TAU;
use serde::Deserialize;

coevo_plugin_api::export_plugin! {
    name: "coevo-audio",
    version: env!("CARGO_PKG_VERSION"),
    models: [VonMisesPitch],
}

/// Largest stored concentration: reached only when a text's angles all coincide.
pub const KAPPA_MAX: f64 = 1e10;

/// Version tag at the start of a checkpoint, so an incompatible layout is rejected clearly.
const CHECKPOINT_FORMAT: f64 = 1.0;
/// Values per text in a checkpoint: mu, kappa, mu0, kappa0, n, C, S, initial_drawn, regularized.
const PER_TEXT: usize = 9;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_kappa0")]
    kappa0: f64,
    #[serde(default)]
    means: Option<Value>,
    #[serde(default)]
    prior: Option<PriorParams>,
    #[serde(default = "default_min_evidence")]
    min_evidence: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorParams {
    #[serde(default)]
    mean: f64,
    kappa: Option<f64>,
}

fn default_kappa0() -> f64 {
    4.0
}

fn default_min_evidence() -> u64 {
    2
}

/// Sufficient statistics of a set of angles.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Stats {
    n: f64,
    c: f64,
    s: f64,
}

impl Stats {
    fn add(&mut self, theta: f64) {
        self.n += 1.0;
        self.c += theta.cos();
        self.s += theta.sin();
    }
}

/// One text's conditional and its data-policy state.
#[derive(Debug, Clone, PartialEq)]
struct Text {
    mu: f64,
    kappa: f64,
    mu0: f64,
    kappa0: f64,
    /// `accumulate`: everything seen so far (including the initial real draws).
    acc: Stats,
    /// `accumulate`: whether this text's initial real sample has been drawn.
    initial_drawn: bool,
    /// Whether κ was clamped at the last refit.
    regularized: bool,
}

impl Text {
    fn new(mu: f64, kappa: f64) -> Text {
        Text { mu, kappa, mu0: mu, kappa0: kappa, acc: Stats::default(), initial_drawn: false, regularized: false }
    }

    /// Refit from statistics if there is enough evidence.
    fn refit(&mut self, st: Stats, min_evidence: u64) {
        if st.n < min_evidence.max(1) as f64 {
            return;
        }
        let r = (st.c.hypot(st.s) / st.n).clamp(0.0, 1.0);
        // With R̄ = 0 the direction is undefined; keep the old one (κ = 0 makes it irrelevant).
        if r > 0.0 {
            self.mu = st.s.atan2(st.c);
        }
        let k = vonmises::kappa_mle(r);
        self.regularized = k > KAPPA_MAX;
        self.kappa = k.min(KAPPA_MAX);
    }
}

/// Per-text von Mises conditional over a pitch/phase angle (see the crate docs).
#[derive(Debug, Clone)]
pub struct VonMisesPitch {
    texts: Vec<Text>,
    /// `Some(initial)` under `accumulate { initial }`, `None` under `replace` (the only two
    /// policies `create` accepts).
    accumulate: Option<u64>,
    prior_mean: f64,
    prior_kappa: f64,
    min_evidence: u64,
}

fn check_kappa(what: &str, k: f64) -> PluginResult<()> {
    if !(k.is_finite() && k > 0.0) {
        plugin_bail!("{what} must be finite and > 0, got {k}");
    }
    Ok(())
}

impl ConditionalModelPlugin for VonMisesPitch {
    const DESCRIPTION: ModelDescription = ModelDescription {
        name: c"von_mises_pitch",
        modality: c"audio",
        dim_rule: c"1",
        fixed_dim: 1,
        description: c"per-text von Mises distribution over a pitch/phase angle (radians)",
    };

    fn create(params: &Value, num_texts: usize, policy: DataPolicy) -> PluginResult<Self> {
        let accumulate = match policy {
            DataPolicy::Replace => None,
            DataPolicy::Accumulate { initial } => Some(initial),
            DataPolicy::Fresh { .. } => {
                plugin_bail!("the fresh data policy is mixed by the host (coevo creates plugins with replace for it); create with replace")
            }
        };
        let p: Params = serde_json::from_value(params.clone())?;
        check_kappa("kappa0", p.kappa0)?;
        let means: Vec<f64> = match &p.means {
            None => uniform_means(num_texts),
            Some(Value::String(s)) if s == "uniform" => uniform_means(num_texts),
            Some(Value::Array(a)) => {
                if a.len() != num_texts {
                    plugin_bail!("means has {} angles but there are {num_texts} texts", a.len());
                }
                a.iter()
                    .enumerate()
                    .map(|(i, v)| match v.as_f64() {
                        Some(x) if x.is_finite() => Ok(x),
                        _ => Err(format!("means[{i}] must be a finite number (radians), got {v}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            Some(other) => {
                plugin_bail!("means must be \"uniform\" or an array of angles, got {other}")
            }
        };
        let (prior_mean, prior_kappa) = match p.prior {
            None => (0.0, p.kappa0),
            Some(pr) => (pr.mean, pr.kappa.unwrap_or(p.kappa0)),
        };
        if !prior_mean.is_finite() {
            plugin_bail!("prior.mean must be finite");
        }
        check_kappa("prior.kappa", prior_kappa)?;
        plugin_log!(Debug, "von_mises_pitch: {num_texts} texts, kappa0 {}, policy {policy:?}", p.kappa0);
        Ok(VonMisesPitch {
            texts: means.into_iter().map(|m| Text::new(vonmises::wrap(m), p.kappa0)).collect(),
            accumulate,
            prior_mean: vonmises::wrap(prior_mean),
            prior_kappa,
            min_evidence: p.min_evidence,
        })
    }

    fn dim(&self) -> usize {
        1
    }

    fn num_texts(&self) -> usize {
        self.texts.len()
    }

    fn metric_names(&self) -> Vec<String> {
        ["diversity", "fidelity", "kappa", "mean_direction", "regularized"].map(String::from).to_vec()
    }

    fn sample(&self, counts: &[u64], temperature: f64, rng: &mut HostRng<'_>, out: &mut [f64]) -> PluginResult<()> {
        let mut j = 0;
        for (t, &c) in self.texts.iter().zip(counts) {
            let k = t.kappa / temperature;
            for _ in 0..c {
                out[j] = vonmises::sample(rng, t.mu, k);
                j += 1;
            }
        }
        Ok(())
    }

    fn log_likelihood(&self, samples: &[f64], out: &mut [f64]) -> PluginResult<()> {
        let k = self.texts.len();
        // ln I0 once per text, not per sample.
        let norm: Vec<f64> = self.texts.iter().map(|t| vonmises::log_i0_scaled(t.kappa) + TAU.ln()).collect();
        for (j, &theta) in samples.iter().enumerate() {
            for (i, t) in self.texts.iter().enumerate() {
                let s = ((theta - t.mu) / 2.0).sin();
                out[j * k + i] = -2.0 * t.kappa * s * s - norm[i];
            }
        }
        Ok(())
    }

    fn fit(&mut self, counts: &[u64], samples: &[f64], rng: &mut HostRng<'_>) -> PluginResult<()> {
        let groups = caption_groups(counts, samples, 1);
        let min_evidence = self.min_evidence;
        for (t, g) in self.texts.iter_mut().zip(groups) {
            let mut st = Stats::default();
            match self.accumulate {
                None => g.iter().for_each(|&y| st.add(y)),
                Some(initial) => {
                    if !t.initial_drawn {
                        for _ in 0..initial {
                            t.acc.add(vonmises::sample(rng, t.mu0, t.kappa0));
                        }
                        t.initial_drawn = true;
                    }
                    g.iter().for_each(|&y| t.acc.add(y));
                    st = t.acc;
                }
            }
            t.refit(st, min_evidence);
        }
        Ok(())
    }

    fn metrics(&self, out: &mut [f64]) -> PluginResult<()> {
        for (row, t) in out.chunks_mut(5).zip(&self.texts) {
            row[0] = vonmises::one_minus_a1(t.kappa);
            row[1] = vonmises::angular_distance(t.mu, t.mu0);
            row[2] = t.kappa;
            row[3] = t.mu;
            row[4] = if t.regularized { 1.0 } else { 0.0 };
        }
        Ok(())
    }

    fn add_text(&mut self) -> PluginResult<()> {
        self.texts.push(Text::new(self.prior_mean, self.prior_kappa));
        Ok(())
    }

    fn get_params(&self) -> Vec<f64> {
        let mut v = Vec::with_capacity(2 + PER_TEXT * self.texts.len());
        v.push(CHECKPOINT_FORMAT);
        v.push(self.texts.len() as f64);
        for t in &self.texts {
            v.extend([
                t.mu,
                t.kappa,
                t.mu0,
                t.kappa0,
                t.acc.n,
                t.acc.c,
                t.acc.s,
                f64::from(u8::from(t.initial_drawn)),
                f64::from(u8::from(t.regularized)),
            ]);
        }
        v
    }

    fn set_params(&mut self, p: &[f64]) -> PluginResult<()> {
        if p.len() < 2 || p[0] != CHECKPOINT_FORMAT {
            plugin_bail!("not a von_mises_pitch checkpoint (format {CHECKPOINT_FORMAT})");
        }
        let k = p[1] as usize;
        if k == 0 || p[1] != k as f64 || p.len() != 2 + PER_TEXT * k {
            plugin_bail!("checkpoint length {} does not match 2 + {PER_TEXT} * K (K = {})", p.len(), p[1]);
        }
        let mut texts = Vec::with_capacity(k);
        for (i, r) in p[2..].chunks(PER_TEXT).enumerate() {
            if r[1] < 0.0 || r[3] <= 0.0 || r[4] < 0.0 {
                plugin_bail!("checkpoint text {i}: negative kappa or count");
            }
            texts.push(Text {
                mu: r[0],
                kappa: r[1],
                mu0: r[2],
                kappa0: r[3],
                acc: Stats { n: r[4], c: r[5], s: r[6] },
                initial_drawn: r[7] != 0.0,
                regularized: r[8] != 0.0,
            });
        }
        self.texts = texts;
        Ok(())
    }
}

/// The spec's default layout: text i (0-based) at angle `2π (i+1) / K`.
fn uniform_means(k: usize) -> Vec<f64> {
    (0..k).map(|i| TAU * (i + 1) as f64 / k as f64).collect()
}

#[cfg(test)]
mod tests;
