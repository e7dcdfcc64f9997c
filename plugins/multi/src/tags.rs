//! `tag_spectrum`: a per-text categorical distribution over tags.
//!
//! Text i holds `θ_i` in the simplex over `B = tags` tags. A sample is the count vector
//! (dimension B, non-negative integers summing to `per_item`) of `per_item` tags drawn
//! independently from `θ_i`, so `q(c | i) = per_item! / Π_k c_k! · Π_k θ_ik^c_k` (a multinomial).
//!
//! - **Estimator** (`fit`): the categorical MLE `θ̂_k = Σ_j c_jk / (n · per_item)`. Texts with
//!   fewer than `min_evidence` (default 2) samples keep their parameters. As for the text model
//!   itself, a tag whose probability reaches 0 never comes back (`support` shrinks): collapse.
//! - **Temperature** `T`: tags are drawn from `θ^(1/T) / Σ θ^(1/T)` (zeros stay zero).
//! - **Log-likelihood**: the multinomial log pmf; `-inf` when a sample uses a tag of
//!   probability 0. Samples that are not count vectors summing to `per_item` are an error.
//! - **Metrics**: `diversity` = Gini–Simpson `1 - Σ θ²` (this modality's analogue of
//!   `trace Σ`), `fidelity` = total variation `½ Σ |θ - θ⁰|` to the initial spectrum, `support`
//!   (tags with θ > 0), `entropy` (nats).
//! - **Data policies**: `accumulate` keeps `(n, Σ c)` per text (exact sufficient statistics),
//!   starting with `initial` multinomial draws from the initial spectrum at the first fit;
//!   `fresh { lambda }` swaps `round(lambda n_i)` of the batch for draws from the initial spectrum.

use coevo_plugin_api::serde_json::{self, Value};
use coevo_plugin_api::{
    ConditionalModelPlugin, DataPolicy, HostRng, ModelDescription, PluginResult, caption_groups, fresh_real_count, plugin_bail,
};
use rand::RngExt;
use serde::Deserialize;

const CHECKPOINT_FORMAT: f64 = 1.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_tags")]
    tags: usize,
    #[serde(default = "default_per_item")]
    per_item: u32,
    #[serde(default)]
    init: Option<Value>,
    #[serde(default = "default_peak")]
    peak: f64,
    #[serde(default)]
    prior: Option<Value>,
    #[serde(default = "default_min_evidence")]
    min_evidence: u64,
}

fn default_tags() -> usize {
    8
}
fn default_per_item() -> u32 {
    4
}
fn default_peak() -> f64 {
    0.5
}
fn default_min_evidence() -> u64 {
    2
}

#[derive(Debug, Clone, PartialEq)]
struct Text {
    theta: Vec<f64>,
    theta0: Vec<f64>,
    /// `accumulate`: number of samples and summed counts seen so far.
    acc_n: f64,
    acc_counts: Vec<f64>,
    initial_drawn: bool,
}

impl Text {
    fn new(theta: Vec<f64>) -> Text {
        let b = theta.len();
        Text { theta0: theta.clone(), theta, acc_n: 0.0, acc_counts: vec![0.0; b], initial_drawn: false }
    }
}

/// Per-text categorical tag spectrum (see the module docs).
#[derive(Debug, Clone)]
pub struct TagSpectrum {
    tags: usize,
    per_item: u32,
    texts: Vec<Text>,
    policy: DataPolicy,
    prior: Vec<f64>,
    min_evidence: u64,
    /// `ln(per_item!)`, the multinomial coefficient's numerator.
    ln_fact_m: f64,
}

fn ln_factorial(n: u32) -> f64 {
    (2..=n).map(|k| f64::from(k).ln()).sum()
}

/// Validate a probability vector given in params.
fn simplex(v: &Value, what: &str, b: usize) -> PluginResult<Vec<f64>> {
    let theta: Vec<f64> = serde_json::from_value(v.clone()).map_err(|_| format!("{what} must be an array of {b} probabilities"))?;
    if theta.len() != b {
        plugin_bail!("{what} has {} entries, expected {b} (one per tag)", theta.len());
    }
    if theta.iter().any(|&x| !(x.is_finite() && x >= 0.0)) {
        plugin_bail!("{what} must be non-negative and finite");
    }
    let s: f64 = theta.iter().sum();
    if (s - 1.0).abs() > 1e-9 {
        plugin_bail!("{what} must sum to 1, sums to {s}");
    }
    Ok(theta.iter().map(|x| x / s).collect())
}

/// Draw one tag index from cumulative weights `cum` (last entry = total).
fn draw_tag<R: rand::Rng + ?Sized>(rng: &mut R, cum: &[f64]) -> usize {
    let total = cum[cum.len() - 1];
    let u = rng.random::<f64>() * total;
    match cum.iter().position(|&c| u < c) {
        Some(k) => k,
        // Rounding put u at the very top: take the last tag with positive mass.
        None => cum.windows(2).rposition(|w| w[1] > w[0]).map_or(0, |k| k + 1),
    }
}

fn cumulative(theta: &[f64]) -> Vec<f64> {
    theta
        .iter()
        .scan(0.0, |acc, &p| {
            *acc += p;
            Some(*acc)
        })
        .collect()
}

impl TagSpectrum {
    /// Check that a row is a count vector summing to `per_item`.
    fn check_row(&self, row: &[f64], j: usize) -> PluginResult<()> {
        let mut total = 0.0;
        for &c in row {
            if c < 0.0 || c.fract() != 0.0 {
                plugin_bail!("sample {j} is not a count vector (entry {c})");
            }
            total += c;
        }
        if total != f64::from(self.per_item) {
            plugin_bail!("sample {j} has {total} tags, expected per_item = {}", self.per_item);
        }
        Ok(())
    }

    /// Add one multinomial draw from `cum` to `counts`.
    fn draw_item<R: rand::Rng + ?Sized>(&self, rng: &mut R, cum: &[f64], counts: &mut [f64]) {
        for _ in 0..self.per_item {
            counts[draw_tag(rng, cum)] += 1.0;
        }
    }
}

impl ConditionalModelPlugin for TagSpectrum {
    const DESCRIPTION: ModelDescription = ModelDescription {
        name: c"tag_spectrum",
        modality: c"tags",
        dim_rule: c"params.tags (default 8)",
        fixed_dim: 0,
        description: c"per-text categorical tag distribution; a sample is a bag of per_item tags",
    };

    fn create(params: &Value, num_texts: usize, policy: DataPolicy) -> PluginResult<Self> {
        let p: Params = serde_json::from_value(params.clone())?;
        let b = p.tags;
        if b < 2 {
            plugin_bail!("tags must be at least 2, got {b}");
        }
        if p.per_item == 0 {
            plugin_bail!("per_item must be at least 1");
        }
        if !(0.0..=1.0).contains(&p.peak) {
            plugin_bail!("peak must be in [0, 1], got {}", p.peak);
        }
        let uniform = vec![1.0 / b as f64; b];
        let peaked = |i: usize| -> Vec<f64> {
            let mut t = vec![(1.0 - p.peak) / b as f64; b];
            t[i % b] += p.peak;
            t
        };
        let thetas: Vec<Vec<f64>> = match &p.init {
            None => (0..num_texts).map(peaked).collect(),
            Some(Value::String(s)) if s == "peaked" => (0..num_texts).map(peaked).collect(),
            Some(Value::String(s)) if s == "uniform" => vec![uniform.clone(); num_texts],
            Some(Value::Array(rows)) => {
                if rows.len() != num_texts {
                    plugin_bail!("init has {} rows but there are {num_texts} texts", rows.len());
                }
                rows.iter().enumerate().map(|(i, r)| simplex(r, &format!("init[{i}]"), b)).collect::<Result<_, _>>()?
            }
            Some(other) => plugin_bail!("init must be \"peaked\", \"uniform\" or an array of probability rows, got {other}"),
        };
        let prior = match &p.prior {
            None => uniform,
            Some(Value::String(s)) if s == "uniform" => uniform,
            Some(v) => simplex(v, "prior", b)?,
        };
        Ok(TagSpectrum {
            tags: b,
            per_item: p.per_item,
            texts: thetas.into_iter().map(Text::new).collect(),
            policy,
            prior,
            min_evidence: p.min_evidence,
            ln_fact_m: ln_factorial(p.per_item),
        })
    }

    fn dim(&self) -> usize {
        self.tags
    }

    fn num_texts(&self) -> usize {
        self.texts.len()
    }

    fn metric_names(&self) -> Vec<String> {
        ["diversity", "fidelity", "support", "entropy"].map(String::from).to_vec()
    }

    fn sample(&self, counts: &[u64], temperature: f64, rng: &mut HostRng<'_>, out: &mut [f64]) -> PluginResult<()> {
        out.fill(0.0);
        let mut rows = out.chunks_mut(self.tags);
        for (t, &c) in self.texts.iter().zip(counts) {
            // Tempered spectrum θ^(1/T) (normalised by draw_tag through the cumulative total);
            // computed in log space relative to the largest entry to avoid underflow.
            let lmax = t.theta.iter().copied().fold(0.0f64, f64::max).ln();
            let tempered: Vec<f64> = t.theta.iter().map(|&p| if p > 0.0 { ((p.ln() - lmax) / temperature).exp() } else { 0.0 }).collect();
            let cum = cumulative(&tempered);
            for _ in 0..c {
                let row = rows.next().expect("SDK checked the output length");
                self.draw_item(rng, &cum, row);
            }
        }
        Ok(())
    }

    fn log_likelihood(&self, samples: &[f64], out: &mut [f64]) -> PluginResult<()> {
        let k = self.texts.len();
        let ln_theta: Vec<Vec<f64>> = self.texts.iter().map(|t| t.theta.iter().map(|p| p.ln()).collect()).collect();
        for (j, row) in samples.chunks(self.tags).enumerate() {
            self.check_row(row, j)?;
            let coef = self.ln_fact_m - row.iter().map(|&c| ln_factorial(c as u32)).sum::<f64>();
            for (i, lt) in ln_theta.iter().enumerate() {
                // 0 · ln 0 = 0: only tags that occur contribute (so unused zero tags are fine).
                out[j * k + i] = coef + row.iter().zip(lt).filter(|(c, _)| **c > 0.0).map(|(c, l)| c * l).sum::<f64>();
            }
        }
        Ok(())
    }

    fn fit(&mut self, counts: &[u64], samples: &[f64], rng: &mut HostRng<'_>) -> PluginResult<()> {
        let b = self.tags;
        for (j, row) in samples.chunks(b).enumerate() {
            self.check_row(row, j)?;
        }
        let groups = caption_groups(counts, samples, b);
        let policy = self.policy;
        let min_evidence = self.min_evidence.max(1) as f64;
        let per_item = f64::from(self.per_item);
        let mut texts = std::mem::take(&mut self.texts);
        for (t, g) in texts.iter_mut().zip(groups) {
            let n = g.len() / b;
            let mut sum = vec![0.0; b];
            let add_rows = |rows: &[f64], sum: &mut [f64]| {
                for row in rows.chunks(b) {
                    sum.iter_mut().zip(row).for_each(|(s, c)| *s += c);
                }
            };
            let total_n = match policy {
                DataPolicy::Replace => {
                    add_rows(g, &mut sum);
                    n as f64
                }
                DataPolicy::Fresh { lambda } => {
                    let real = fresh_real_count(n, lambda);
                    let cum = cumulative(&t.theta0);
                    for _ in 0..real {
                        self.draw_item(rng, &cum, &mut sum);
                    }
                    add_rows(&g[..(n - real) * b], &mut sum);
                    n as f64
                }
                DataPolicy::Accumulate { initial } => {
                    if !t.initial_drawn {
                        let cum = cumulative(&t.theta0);
                        for _ in 0..initial {
                            self.draw_item(rng, &cum, &mut t.acc_counts);
                        }
                        t.acc_n += initial as f64;
                        t.initial_drawn = true;
                    }
                    add_rows(g, &mut t.acc_counts);
                    t.acc_n += n as f64;
                    sum.copy_from_slice(&t.acc_counts);
                    t.acc_n
                }
            };
            if total_n >= min_evidence {
                let denom = total_n * per_item;
                t.theta.iter_mut().zip(&sum).for_each(|(p, s)| *p = s / denom);
            }
        }
        self.texts = texts;
        Ok(())
    }

    fn metrics(&self, out: &mut [f64]) -> PluginResult<()> {
        for (row, t) in out.chunks_mut(4).zip(&self.texts) {
            row[0] = 1.0 - t.theta.iter().map(|p| p * p).sum::<f64>();
            row[1] = 0.5 * t.theta.iter().zip(&t.theta0).map(|(a, b)| (a - b).abs()).sum::<f64>();
            row[2] = t.theta.iter().filter(|&&p| p > 0.0).count() as f64;
            row[3] = -t.theta.iter().filter(|&&p| p > 0.0).map(|p| p * p.ln()).sum::<f64>();
        }
        Ok(())
    }

    fn add_text(&mut self) -> PluginResult<()> {
        self.texts.push(Text::new(self.prior.clone()));
        Ok(())
    }

    /// `[1, K, B, then per text: θ[B], θ⁰[B], n, Σc[B], initial_drawn]`.
    fn get_params(&self) -> Vec<f64> {
        let mut v = vec![CHECKPOINT_FORMAT, self.texts.len() as f64, self.tags as f64];
        for t in &self.texts {
            v.extend(&t.theta);
            v.extend(&t.theta0);
            v.push(t.acc_n);
            v.extend(&t.acc_counts);
            v.push(f64::from(u8::from(t.initial_drawn)));
        }
        v
    }

    fn set_params(&mut self, p: &[f64]) -> PluginResult<()> {
        let b = self.tags;
        let per = 3 * b + 2;
        if p.len() < 3 || p[0] != CHECKPOINT_FORMAT {
            plugin_bail!("not a tag_spectrum checkpoint (format {CHECKPOINT_FORMAT})");
        }
        if p[2] != b as f64 {
            plugin_bail!("checkpoint has {} tags, this model has {b}", p[2]);
        }
        let k = p[1] as usize;
        if k == 0 || p[1] != k as f64 || p.len() != 3 + per * k {
            plugin_bail!("checkpoint length {} does not match 3 + (3B + 2) K", p.len());
        }
        let mut texts = Vec::with_capacity(k);
        for (i, r) in p[3..].chunks(per).enumerate() {
            if r.iter().any(|&x| x < 0.0) {
                plugin_bail!("checkpoint text {i} has negative entries");
            }
            texts.push(Text {
                theta: r[..b].to_vec(),
                theta0: r[b..2 * b].to_vec(),
                acc_n: r[2 * b],
                acc_counts: r[2 * b + 1..3 * b + 1].to_vec(),
                initial_drawn: r[3 * b + 1] != 0.0,
            });
        }
        self.texts = texts;
        Ok(())
    }
}
