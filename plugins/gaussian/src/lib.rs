//! # coevo-plugin-gaussian
//!
//! coevo's built-in image model (docs/model.md section 3) written as a plugin with the SDK: per text a
//! Gaussian `N(mu_i, Sigma_i)` in `R^d`, sampled through the eigendecomposition of `Sigma_i`
//! (eigenvalues clamped at the built-in model's floor where a covariance is singular), scored
//! by its log-density, refitted per text by maximum likelihood from centred sufficient
//! statistics. It lets `benches/plugin_overhead.rs` measure what the plugin boundary costs on
//! the same maths. See README.md for params, metrics and the checkpoint layout.

use coevo_plugin_api::serde_json::{self, Value};
use coevo_plugin_api::{
    ConditionalModelPlugin, DataPolicy, HostRng, ModelDescription, PluginResult, caption_groups, fresh_real_count, plugin_bail,
};
use nalgebra::{DMatrix, DMatrixView};

use factor::{Factor, draw};

// The factorisation with the built-in model's floors lives in its own file so that the
// mixture and KDE plugins include the same code (`#[path]`) instead of a copy: plugin crates
// cannot link each other (their `coevo_plugin_entry` symbols would clash).
mod factor;
use serde::Deserialize;

coevo_plugin_api::export_plugin! {
    name: "coevo-gaussian",
    version: env!("CARGO_PKG_VERSION"),
    models: [GaussianImage],
}

/// Version tag at the start of a checkpoint.
const CHECKPOINT_FORMAT: f64 = 1.0;
/// Samples scored per matrix product in `log_likelihood` (the built-in model's block size).
const BLOCK: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_dim")]
    dim: usize,
    #[serde(default = "default_variance")]
    variance: f64,
    #[serde(default)]
    means: Option<Value>,
    #[serde(default)]
    estimator: Option<String>,
    #[serde(default)]
    prior: Option<PriorParams>,
    #[serde(default = "default_min_evidence")]
    min_evidence: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorParams {
    #[serde(default)]
    mean: Option<Vec<f64>>,
    #[serde(default)]
    variance: Option<f64>,
}

fn default_dim() -> usize {
    2
}

fn default_variance() -> f64 {
    0.1
}

fn default_min_evidence() -> u64 {
    2
}

/// Centred sufficient statistics of a set of samples (count, mean, scatter about the mean).
#[derive(Debug, Clone, PartialEq)]
struct Stats {
    n: f64,
    mean: Vec<f64>,
    scatter: Vec<f64>,
}

impl Stats {
    fn empty(d: usize) -> Stats {
        Stats { n: 0.0, mean: vec![0.0; d], scatter: vec![0.0; d * d] }
    }

    /// Adds samples (rows of `d`) one at a time (Welford's update: no cancellation).
    fn add_rows(&mut self, rows: &[f64]) {
        let d = self.mean.len();
        let mut delta = vec![0.0; d];
        for y in rows.chunks_exact(d) {
            self.n += 1.0;
            for c in 0..d {
                delta[c] = y[c] - self.mean[c];
                self.mean[c] += delta[c] / self.n;
            }
            for ((yr, mr), row) in y.iter().zip(&self.mean).zip(self.scatter.chunks_exact_mut(d)) {
                let after = yr - mr;
                for (s, dc) in row.iter_mut().zip(&delta) {
                    *s += after * dc;
                }
            }
        }
    }
}

/// One text's conditional and its data-policy state.
#[derive(Debug, Clone, PartialEq)]
struct Text {
    mu: Vec<f64>,
    sigma: Vec<f64>,
    mu0: Vec<f64>,
    sigma0: Vec<f64>,
    acc: Stats,
    initial_drawn: bool,
    factor: Factor,
    factor0: Factor,
}

impl Text {
    fn new(mu: Vec<f64>, sigma: Vec<f64>) -> Text {
        let factor = Factor::new(&sigma, &mu);
        let d = mu.len();
        Text {
            mu0: mu.clone(),
            sigma0: sigma.clone(),
            mu,
            sigma,
            acc: Stats::empty(d),
            initial_drawn: false,
            factor0: factor.clone(),
            factor,
        }
    }

    fn refit(&mut self, st: &Stats, min_evidence: u64, unbiased: bool) {
        let divisor = if unbiased { st.n - 1.0 } else { st.n };
        if st.n < min_evidence.max(2) as f64 || divisor <= 0.0 {
            return;
        }
        self.mu.copy_from_slice(&st.mean);
        for (s, x) in self.sigma.iter_mut().zip(&st.scatter) {
            *s = x / divisor;
        }
        // Symmetrise exactly: the scatter's two triangles may differ in the last bit.
        let d = self.mu.len();
        for r in 0..d {
            for c in r + 1..d {
                let m = 0.5 * (self.sigma[r * d + c] + self.sigma[c * d + r]);
                self.sigma[r * d + c] = m;
                self.sigma[c * d + r] = m;
            }
        }
        self.factor = Factor::new(&self.sigma, &self.mu);
    }
}

/// Every text's whitening matrix stacked (`K d x d`) with the whitened means: one matrix
/// product scores a block of samples against every text, as in the built-in model.
#[derive(Debug, Clone, Default)]
struct Stacked {
    whiten_all: DMatrix<f64>,
    shift_all: Vec<f64>,
    log_norm: Vec<f64>,
}

impl Stacked {
    fn new(texts: &[Text], d: usize) -> Stacked {
        let k = texts.len();
        let mut s = Stacked { whiten_all: DMatrix::zeros(k * d, d), shift_all: vec![0.0; k * d], log_norm: Vec::with_capacity(k) };
        for (i, t) in texts.iter().enumerate() {
            for r in 0..d {
                let row = &t.factor.whiten[r * d..(r + 1) * d];
                for (c, w) in row.iter().enumerate() {
                    s.whiten_all[(i * d + r, c)] = *w;
                }
                s.shift_all[i * d + r] = row.iter().zip(&t.mu).map(|(a, b)| a * b).sum();
            }
            s.log_norm.push(t.factor.log_norm);
        }
        s
    }
}

/// The per-text Gaussian image model (see the crate docs).
#[derive(Debug, Clone)]
pub struct GaussianImage {
    d: usize,
    texts: Vec<Text>,
    stack: Stacked,
    policy: DataPolicy,
    unbiased: bool,
    prior_mean: Vec<f64>,
    prior_variance: f64,
    min_evidence: u64,
}

fn isotropic(d: usize, variance: f64) -> Vec<f64> {
    let mut s = vec![0.0; d * d];
    for c in 0..d {
        s[c * d + c] = variance;
    }
    s
}

fn check_variance(what: &str, v: f64) -> PluginResult<()> {
    if !(v.is_finite() && v >= 0.0) {
        plugin_bail!("{what} must be finite and >= 0, got {v}");
    }
    Ok(())
}

impl ConditionalModelPlugin for GaussianImage {
    const DESCRIPTION: ModelDescription = ModelDescription {
        name: c"gaussian_image",
        modality: c"image",
        dim_rule: c"params.dim (default 2)",
        fixed_dim: 0,
        description: c"per-text Gaussian N(mu_i, Sigma_i) with maximum-likelihood refit (the built-in image model)",
    };

    fn create(params: &Value, num_texts: usize, policy: DataPolicy) -> PluginResult<Self> {
        let p: Params = serde_json::from_value(params.clone())?;
        let d = p.dim;
        if d == 0 {
            plugin_bail!("dim must be >= 1");
        }
        check_variance("variance", p.variance)?;
        let unbiased = match p.estimator.as_deref() {
            None | Some("mle") => false,
            Some("unbiased") => true,
            Some(other) => plugin_bail!("estimator must be \"mle\" or \"unbiased\", got {other:?}"),
        };
        let means: Vec<Vec<f64>> = match &p.means {
            None => circle(num_texts, d)?,
            Some(Value::String(s)) if s == "circle" => circle(num_texts, d)?,
            Some(Value::Array(rows)) => {
                if rows.len() != num_texts {
                    plugin_bail!("means has {} rows but there are {num_texts} texts", rows.len());
                }
                let mut out = Vec::with_capacity(num_texts);
                for (i, row) in rows.iter().enumerate() {
                    let v: Vec<f64> = serde_json::from_value(row.clone()).map_err(|e| format!("means[{i}]: {e}"))?;
                    if v.len() != d || v.iter().any(|x| !x.is_finite()) {
                        plugin_bail!("means[{i}] must be {d} finite numbers, got {row}");
                    }
                    out.push(v);
                }
                out
            }
            Some(other) => plugin_bail!("means must be \"circle\" or an array of K means, got {other}"),
        };
        let (prior_mean, prior_variance) = match p.prior {
            None => (vec![0.0; d], p.variance),
            Some(pr) => (pr.mean.unwrap_or_else(|| vec![0.0; d]), pr.variance.unwrap_or(p.variance)),
        };
        if prior_mean.len() != d || prior_mean.iter().any(|x| !x.is_finite()) {
            plugin_bail!("prior.mean must be {d} finite numbers");
        }
        check_variance("prior.variance", prior_variance)?;
        let texts: Vec<Text> = means.into_iter().map(|m| Text::new(m, isotropic(d, p.variance))).collect();
        let stack = Stacked::new(&texts, d);
        Ok(GaussianImage { d, texts, stack, policy, unbiased, prior_mean, prior_variance, min_evidence: p.min_evidence })
    }

    fn dim(&self) -> usize {
        self.d
    }

    fn num_texts(&self) -> usize {
        self.texts.len()
    }

    fn metric_names(&self) -> Vec<String> {
        ["diversity", "fidelity", "regularized"].map(String::from).to_vec()
    }

    fn sample(&self, counts: &[u64], temperature: f64, rng: &mut HostRng<'_>, out: &mut [f64]) -> PluginResult<()> {
        let (d, scale) = (self.d, temperature.sqrt());
        let mut z = vec![0.0; d];
        let mut start = 0;
        for (t, &c) in self.texts.iter().zip(counts) {
            let end = start + c as usize * d;
            draw(&t.mu, &t.factor, scale, rng, &mut out[start..end], &mut z);
            start = end;
        }
        Ok(())
    }

    fn log_likelihood(&self, samples: &[f64], out: &mut [f64]) -> PluginResult<()> {
        let (d, k) = (self.d, self.texts.len());
        let n = samples.len() / d;
        let s = &self.stack;
        let mut block = DMatrix::zeros(k * d, BLOCK.min(n.max(1)));
        for start in (0..n).step_by(BLOCK) {
            let b = BLOCK.min(n - start);
            // Row-major n x d samples are a column-major d x n matrix: one sample per column.
            let y = DMatrixView::from_slice(&samples[start * d..(start + b) * d], d, b);
            let mut whitened = block.columns_mut(0, b);
            whitened.gemm(1.0, &s.whiten_all, &y, 0.0);
            for j in 0..b {
                let col = whitened.column(j);
                let col = col.as_slice();
                let row = &mut out[(start + j) * k..(start + j + 1) * k];
                for (i, o) in row.iter_mut().enumerate() {
                    let quad: f64 =
                        col[i * d..(i + 1) * d].iter().zip(&s.shift_all[i * d..(i + 1) * d]).map(|(a, b)| (a - b) * (a - b)).sum();
                    *o = s.log_norm[i] - 0.5 * quad;
                }
            }
        }
        Ok(())
    }

    fn fit(&mut self, counts: &[u64], samples: &[f64], rng: &mut HostRng<'_>) -> PluginResult<()> {
        let d = self.d;
        let mut z = vec![0.0; d];
        let groups = caption_groups(counts, samples, d);
        for (t, g) in self.texts.iter_mut().zip(groups) {
            let n = g.len() / d;
            let mut st = Stats::empty(d);
            match self.policy {
                DataPolicy::Replace => st.add_rows(g),
                DataPolicy::Fresh { lambda } => {
                    let real = fresh_real_count(n, lambda);
                    let mut draws = vec![0.0; real * d];
                    draw(&t.mu0, &t.factor0, 1.0, rng, &mut draws, &mut z);
                    st.add_rows(&draws);
                    st.add_rows(&g[..(n - real) * d]);
                }
                DataPolicy::Accumulate { initial } => {
                    if !t.initial_drawn {
                        let mut draws = vec![0.0; initial as usize * d];
                        draw(&t.mu0, &t.factor0, 1.0, rng, &mut draws, &mut z);
                        t.acc.add_rows(&draws);
                        t.initial_drawn = true;
                    }
                    t.acc.add_rows(g);
                    st = t.acc.clone();
                }
            }
            t.refit(&st, self.min_evidence, self.unbiased);
        }
        self.stack = Stacked::new(&self.texts, d);
        Ok(())
    }

    fn metrics(&self, out: &mut [f64]) -> PluginResult<()> {
        let d = self.d;
        for (row, t) in out.chunks_exact_mut(3).zip(&self.texts) {
            row[0] = (0..d).map(|c| t.sigma[c * d + c]).sum();
            row[1] = t.mu.iter().zip(&t.mu0).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
            row[2] = if t.factor.regularized { 1.0 } else { 0.0 };
        }
        Ok(())
    }

    fn add_text(&mut self) -> PluginResult<()> {
        self.texts.push(Text::new(self.prior_mean.clone(), isotropic(self.d, self.prior_variance)));
        self.stack = Stacked::new(&self.texts, self.d);
        Ok(())
    }

    fn get_params(&self) -> Vec<f64> {
        let mut v = vec![CHECKPOINT_FORMAT, self.texts.len() as f64, self.d as f64];
        for t in &self.texts {
            for part in [&t.mu, &t.sigma, &t.mu0, &t.sigma0] {
                v.extend_from_slice(part);
            }
            v.push(t.acc.n);
            v.extend_from_slice(&t.acc.mean);
            v.extend_from_slice(&t.acc.scatter);
            v.push(f64::from(u8::from(t.initial_drawn)));
        }
        v
    }

    fn set_params(&mut self, p: &[f64]) -> PluginResult<()> {
        let d = self.d;
        let per_text = 3 * d + 3 * d * d + 2;
        if p.len() < 3 || p[0] != CHECKPOINT_FORMAT || p[2] != d as f64 {
            plugin_bail!("not a gaussian_image checkpoint of dimension {d} (format {CHECKPOINT_FORMAT})");
        }
        let k = p[1] as usize;
        if k == 0 || p[1] != k as f64 || p.len() != 3 + per_text * k {
            plugin_bail!("checkpoint length {} does not match 3 + {per_text} * K (K = {})", p.len(), p[1]);
        }
        let mut texts = Vec::with_capacity(k);
        for r in p[3..].chunks_exact(per_text) {
            let mut at = 0;
            let mut take = |n: usize| {
                at += n;
                r[at - n..at].to_vec()
            };
            let (mu, sigma, mu0, sigma0) = (take(d), take(d * d), take(d), take(d * d));
            let n = take(1)[0];
            let (mean, scatter) = (take(d), take(d * d));
            let initial_drawn = take(1)[0] != 0.0;
            let mut t = Text::new(mu0, sigma0);
            t.factor = Factor::new(&sigma, &mu);
            (t.mu, t.sigma, t.acc, t.initial_drawn) = (mu, sigma, Stats { n, mean, scatter }, initial_drawn);
            texts.push(t);
        }
        self.stack = Stacked::new(&texts, d);
        self.texts = texts;
        Ok(())
    }
}

/// The spec's layout: text i (0-based) at `(cos 2 pi (i+1)/K, sin 2 pi (i+1)/K, 0, ...)`.
fn circle(k: usize, d: usize) -> PluginResult<Vec<Vec<f64>>> {
    if d < 2 {
        plugin_bail!("means \"circle\" needs dim >= 2, got dim = {d}; give explicit means");
    }
    Ok((0..k)
        .map(|i| {
            let a = std::f64::consts::TAU * (i + 1) as f64 / k as f64;
            let mut m = vec![0.0; d];
            m[0] = a.cos();
            m[1] = a.sin();
            m
        })
        .collect())
}

#[cfg(test)]
mod tests;
