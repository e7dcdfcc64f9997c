//! # coevo-plugin-template
//!
//! A complete, minimal coevo plugin to copy: one conditional model, `isotropic_gaussian`, in
//! which text `i`'s conditional is `N(μ_i, σ²_i I)` over vectors of `dim` values. It is fitted
//! by maximum likelihood (`μ̂` the sample mean, `σ̂²` the mean squared deviation per
//! coordinate), so with `Replace` it shows the same collapse as the built-in image model.
//!
//! Every choice the ABI forces on a plugin is commented where it is made: randomness only from
//! the host's stream, caller-allocated output buffers, the data policies the host actually
//! passes, checkpoints as a flat `f64` vector, and the metric columns (with `diversity` first).
//!
//! Params (JSON from the scenario's `params: {...}`, all optional):
//! `{"dim": 2, "spread": 4.0, "sigma": 1.0, "min_evidence": 2}`. Text `i` starts at mean
//! `spread * i` in every coordinate with standard deviation `sigma`; a text added later
//! (`add_text`) starts at mean 0 with standard deviation `sigma`. Texts with fewer than
//! `min_evidence` samples in a refit keep their parameters.

use coevo_plugin_api::serde_json::{self, Value};
use coevo_plugin_api::{ConditionalModelPlugin, DataPolicy, HostRng, ModelDescription, PluginResult, caption_groups, plugin_bail};
use rand::RngExt;
use rand_distr::StandardNormal;
use serde::Deserialize;

// The macro generates the C table and the one exported symbol, `coevo_plugin_entry`, and wraps
// every trait method in glue that checks pointers, buffer lengths, `num_texts`, temperature
// and input finiteness before your code runs, and turns a panic into an error status (the
// handle is then poisoned). `name` and `version` are what `coevo plugins list` and each run's
// manifest show; list every model type the library carries in `models`.
coevo_plugin_api::export_plugin! {
    name: "coevo-template",
    version: env!("CARGO_PKG_VERSION"),
    models: [IsotropicGaussian],
}

/// Smallest stored variance. A text whose samples all coincide has an MLE variance of 0, a
/// degenerate density; it is stored as this value instead and flagged in the `regularized`
/// metric, which coevo sums over texts into the model's `regularized` count.
pub const VAR_MIN: f64 = 1e-12;

/// Version tag at the start of a checkpoint, so an incompatible layout is refused clearly
/// instead of being misread.
const CHECKPOINT_FORMAT: f64 = 1.0;

/// Metric columns, in the order `metrics` writes them. coevo needs a column called
/// `diversity` (the modality's analogue of `trace Σ`: the coupling metrics read it) and by
/// convention the second is `fidelity` (distance from the text's initial parameters). Any
/// further columns are reported as they are; one called `regularized` is summed over texts.
const METRICS: [&str; 4] = ["diversity", "fidelity", "variance", "regularized"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)] // a typo in a scenario is an error naming the field, not ignored
struct Params {
    #[serde(default = "default_dim")]
    dim: usize,
    #[serde(default = "default_spread")]
    spread: f64,
    #[serde(default = "default_sigma")]
    sigma: f64,
    #[serde(default = "default_min_evidence")]
    min_evidence: u64,
}

fn default_dim() -> usize {
    2
}
fn default_spread() -> f64 {
    4.0
}
fn default_sigma() -> f64 {
    1.0
}
fn default_min_evidence() -> u64 {
    2
}

/// Count, mean and sum of squared deviations of a set of vectors: enough to refit, and
/// mergeable (Chan et al.), so `Accumulate` keeps constant memory and no catastrophic
/// cancellation of `Σ y²` against `n μ²`.
#[derive(Debug, Clone, PartialEq)]
struct Stats {
    n: f64,
    mean: Vec<f64>,
    m2: f64,
}

impl Stats {
    fn empty(dim: usize) -> Stats {
        Stats { n: 0.0, mean: vec![0.0; dim], m2: 0.0 }
    }

    /// Two-pass statistics of `rows` (row-major, `dim` values each).
    fn of(rows: &[f64], dim: usize) -> Stats {
        let mut s = Stats::empty(dim);
        s.n = (rows.len() / dim) as f64;
        if s.n == 0.0 {
            return s;
        }
        for row in rows.chunks_exact(dim) {
            for (m, y) in s.mean.iter_mut().zip(row) {
                *m += y;
            }
        }
        s.mean.iter_mut().for_each(|m| *m /= s.n);
        s.m2 = rows.chunks_exact(dim).map(|row| sq_dist(row, &s.mean)).sum();
        s
    }

    /// Pool `other` into `self`.
    fn merge(&mut self, other: &Stats) {
        let n = self.n + other.n;
        if other.n == 0.0 {
            return;
        }
        let delta2 = sq_dist(&other.mean, &self.mean);
        for (m, o) in self.mean.iter_mut().zip(&other.mean) {
            *m += (o - *m) * other.n / n;
        }
        self.m2 += other.m2 + delta2 * self.n * other.n / n;
        self.n = n;
    }
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// One text's conditional, its initial parameters (for `fidelity`) and its policy state.
#[derive(Debug, Clone, PartialEq)]
struct Text {
    mean: Vec<f64>,
    var: f64,
    mean0: Vec<f64>,
    var0: f64,
    /// `Accumulate`: everything fitted so far. Unused under `Replace`.
    acc: Stats,
    regularized: bool,
}

impl Text {
    fn new(mean: Vec<f64>, var: f64) -> Text {
        let dim = mean.len();
        Text { mean0: mean.clone(), mean, var0: var, var, acc: Stats::empty(dim), regularized: false }
    }

    /// Values per text in a checkpoint: mean, var, mean0, var0, acc.n, acc.mean, acc.m2,
    /// regularized.
    fn checkpoint_len(dim: usize) -> usize {
        3 * dim + 5
    }
}

/// Per-text isotropic Gaussian conditional (see the crate docs).
#[derive(Debug, Clone)]
pub struct IsotropicGaussian {
    dim: usize,
    texts: Vec<Text>,
    /// `true` under `Accumulate`: fit pools every batch into `Text::acc`.
    accumulate: bool,
    prior_var: f64,
    min_evidence: u64,
}

impl ConditionalModelPlugin for IsotropicGaussian {
    // Static metadata, shown by `coevo plugins list` and checked by the host: `fixed_dim` is
    // the dimension if it never depends on params, else 0 (here `dim` is a parameter).
    const DESCRIPTION: ModelDescription = ModelDescription {
        name: c"isotropic_gaussian",
        modality: c"vector",
        dim_rule: c"params.dim (default 2)",
        fixed_dim: 0,
        description: c"template: per-text isotropic Gaussian N(mu_i, sigma_i^2 I), fitted by maximum likelihood",
    };

    fn create(params: &Value, num_texts: usize, policy: DataPolicy) -> PluginResult<Self> {
        // A scenario without `params` arrives as `{}`; bad JSON never reaches this point (the
        // glue answers INVALID_ARGUMENT). Bad values are errors that name the field: the host
        // shows them to the user with the scenario file and entity.
        let p: Params = serde_json::from_value(params.clone())?;
        if p.dim == 0 || p.dim > 4096 {
            plugin_bail!("dim must be between 1 and 4096, got {}", p.dim);
        }
        if !(p.spread.is_finite()) {
            plugin_bail!("spread must be a finite number, got {}", p.spread);
        }
        if !(p.sigma.is_finite() && p.sigma > 0.0) {
            plugin_bail!("sigma must be finite and > 0, got {}", p.sigma);
        }
        // Data policies. coevo creates every plugin model with `Replace` or
        // `Accumulate { initial: 0 }` and never with `Fresh`: for `Fresh` it creates the plugin
        // with `Replace` and mixes real samples (drawn from a never-fitted twin of this model)
        // into the batch itself, and it draws `Accumulate`'s initial real dataset itself and
        // pools it into the first `fit`. So a plugin implements exactly two behaviours: refit
        // on the batch, or pool every batch into running statistics. The ABI still carries the
        // other cases; refuse them rather than carry code coevo never runs.
        let accumulate = match policy {
            DataPolicy::Replace => false,
            DataPolicy::Accumulate { initial: 0 } => true,
            DataPolicy::Accumulate { initial } => {
                plugin_bail!("accumulate with initial = {initial}: coevo draws initial real data itself and passes 0")
            }
            DataPolicy::Fresh { .. } => plugin_bail!("the fresh policy is mixed by the host; create with replace"),
        };
        let var = p.sigma * p.sigma;
        let texts = (0..num_texts).map(|i| Text::new(vec![p.spread * i as f64; p.dim], var)).collect();
        Ok(IsotropicGaussian { dim: p.dim, texts, accumulate, prior_var: var, min_evidence: p.min_evidence.max(2) })
    }

    fn dim(&self) -> usize {
        // Must never change for the life of the handle (the host checks after every call).
        self.dim
    }

    fn num_texts(&self) -> usize {
        self.texts.len()
    }

    fn metric_names(&self) -> Vec<String> {
        // Read once after `create`; the host keeps the names (as C strings until `destroy`).
        METRICS.map(String::from).to_vec()
    }

    fn sample(&self, counts: &[u64], temperature: f64, rng: &mut HostRng<'_>, out: &mut [f64]) -> PluginResult<()> {
        // Randomness: draw only from `rng`, the host's stream for this model, lent for this
        // call. Never use `thread_rng`, the clock or a generator of your own: runs must be
        // reproducible from the scenario seed (`coevo plugins check` calls this twice from the
        // same stream state and compares the outputs bit for bit).
        //
        // Buffers: `out` is the host's memory, exactly `sum(counts) * dim` values (the glue has
        // checked). Write every element and nothing else; keep no reference to it afterwards.
        // The host fills it with a canary pattern first and reports any element left unwritten.
        //
        // Temperature `T` scales dispersion: tempering a Gaussian density, `q^(1/T)`, multiplies
        // its variance by `T`, so `T = 1` is the model itself.
        let mut rows = out.chunks_exact_mut(self.dim);
        for (t, &c) in self.texts.iter().zip(counts) {
            let sd = (t.var * temperature).sqrt();
            for _ in 0..c {
                let row = rows.next().expect("the glue checked out.len() == sum(counts) * dim");
                for (y, m) in row.iter_mut().zip(&t.mean) {
                    let z: f64 = rng.sample(StandardNormal);
                    *y = m + sd * z;
                }
            }
        }
        Ok(())
    }

    fn log_likelihood(&self, samples: &[f64], out: &mut [f64]) -> PluginResult<()> {
        // `out[j * K + i] = log q(y_j | i)`: every sample under every text (the host combines
        // them into the caption posterior). `-inf` is allowed, NaN and `+inf` are not.
        let k = self.texts.len();
        let d = self.dim as f64;
        let norm: Vec<f64> = self.texts.iter().map(|t| 0.5 * d * (std::f64::consts::TAU * t.var).ln()).collect();
        for (j, y) in samples.chunks_exact(self.dim).enumerate() {
            for (i, t) in self.texts.iter().enumerate() {
                out[j * k + i] = -0.5 * sq_dist(y, &t.mean) / t.var - norm[i];
            }
        }
        Ok(())
    }

    fn fit(&mut self, counts: &[u64], samples: &[f64], _rng: &mut HostRng<'_>) -> PluginResult<()> {
        // The batch is grouped by caption: `counts[i]` rows for text `i`, in text order.
        // `_rng` would serve real-data draws; with the policies coevo passes there are none,
        // but if a fit of yours needs randomness, take it from here, never elsewhere.
        let groups = caption_groups(counts, samples, self.dim);
        for (t, rows) in self.texts.iter_mut().zip(groups) {
            let batch = Stats::of(rows, self.dim);
            let st = if self.accumulate {
                t.acc.merge(&batch);
                t.acc.clone()
            } else {
                batch
            };
            // Too little evidence: keep the parameters (the same rule as the built-in model).
            if st.n < self.min_evidence as f64 {
                continue;
            }
            let var = st.m2 / (st.n * self.dim as f64);
            t.regularized = var < VAR_MIN;
            t.var = var.max(VAR_MIN);
            t.mean = st.mean;
        }
        Ok(())
    }

    fn metrics(&self, out: &mut [f64]) -> PluginResult<()> {
        // `out[i * M + m]`, `M = METRICS.len()`, in `metric_names` order; all finite.
        for (row, t) in out.chunks_exact_mut(METRICS.len()).zip(&self.texts) {
            row[0] = self.dim as f64 * t.var; // diversity: trace of the covariance
            row[1] = sq_dist(&t.mean, &t.mean0).sqrt(); // fidelity: how far the mean moved
            row[2] = t.var;
            row[3] = f64::from(u8::from(t.regularized));
        }
        Ok(())
    }

    fn add_text(&mut self) -> PluginResult<()> {
        // A text appearing mid-run starts at the configured prior; under `Accumulate` its
        // statistics start empty (coevo pools its real data into the next fit).
        self.texts.push(Text::new(vec![0.0; self.dim], self.prior_var));
        Ok(())
    }

    fn get_params(&self) -> Vec<f64> {
        // Checkpoints: the *full* state as doubles, enough that `set_params` on a model created
        // with the same params continues exactly as this one would (parameters, initial
        // parameters for `fidelity`, policy statistics, flags). coevo stores it in its own
        // checkpoints and `coevo plugins check` tests the round trip.
        // Layout: [format, K, then per text: mean (dim), var, mean0 (dim), var0, n, acc.mean (dim),
        // acc.m2, regularized].
        let mut v = Vec::with_capacity(2 + self.texts.len() * Text::checkpoint_len(self.dim));
        v.extend([CHECKPOINT_FORMAT, self.texts.len() as f64]);
        for t in &self.texts {
            v.extend(&t.mean);
            v.push(t.var);
            v.extend(&t.mean0);
            v.extend([t.var0, t.acc.n]);
            v.extend(&t.acc.mean);
            v.extend([t.acc.m2, f64::from(u8::from(t.regularized))]);
        }
        v
    }

    fn set_params(&mut self, p: &[f64]) -> PluginResult<()> {
        // Validate everything before changing anything: a refused checkpoint must leave the
        // model as it was. K may differ from the current one (texts added during the run);
        // `dim` may not. The glue has already refused non-finite values.
        let per = Text::checkpoint_len(self.dim);
        if p.len() < 2 || p[0] != CHECKPOINT_FORMAT {
            plugin_bail!("not an isotropic_gaussian checkpoint (format {CHECKPOINT_FORMAT})");
        }
        let k = p[1] as usize;
        if k == 0 || p[1] != k as f64 || p.len() != 2 + per * k {
            plugin_bail!("checkpoint length {} does not match 2 + {per} * K for dim {} (K = {})", p.len(), self.dim, p[1]);
        }
        let d = self.dim;
        let mut texts = Vec::with_capacity(k);
        for (i, r) in p[2..].chunks_exact(per).enumerate() {
            let (var, var0, n, m2) = (r[d], r[2 * d + 1], r[2 * d + 2], r[3 * d + 3]);
            if !(var > 0.0 && var0 > 0.0 && n >= 0.0 && m2 >= 0.0) {
                plugin_bail!("checkpoint text {i}: variances must be > 0 and counts >= 0");
            }
            texts.push(Text {
                mean: r[..d].to_vec(),
                var,
                mean0: r[d + 1..2 * d + 1].to_vec(),
                var0,
                acc: Stats { n, mean: r[2 * d + 3..3 * d + 3].to_vec(), m2 },
                regularized: r[3 * d + 4] != 0.0,
            });
        }
        self.texts = texts;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! In-process tests through the generated C table, with the host-side safe wrapper.

    use super::*;
    use coevo_plugin_api::host::{LoadedTable, PluginModel};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn model(params: &str, k: usize, policy: DataPolicy) -> PluginModel {
        // SAFETY: the table is a static of this crate, valid for the life of the process.
        let table = unsafe { LoadedTable::from_raw(coevo_plugin_entry(), "template (in-process)") }.unwrap();
        table.create_by_name("isotropic_gaussian", params, k, policy).unwrap()
    }

    #[test]
    fn mle_recovers_mean_and_variance_and_temperature_scales_variance() {
        let n = 20_000u64;
        for temperature in [1.0, 2.0] {
            let mut source = model(r#"{"dim": 3, "sigma": 0.5}"#, 2, DataPolicy::Replace);
            let y = source.sample(&[n, n], temperature, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
            let mut m = model(r#"{"dim": 3}"#, 2, DataPolicy::Replace);
            m.fit(&[n, n], &y, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
            let metrics = m.metrics().unwrap();
            for i in 0..2 {
                let var = metrics[i * 4 + 2];
                assert!((var - 0.25 * temperature).abs() < 0.02 * temperature, "T {temperature}: var {var}");
                assert!((metrics[i * 4] - 3.0 * var).abs() < 1e-12);
            }
            // Text 1 started at mean 4 in every coordinate; the fit recovers it.
            assert!(metrics[4 + 1] < 0.05, "fidelity {}", metrics[5]);
        }
    }

    #[test]
    fn log_likelihood_is_the_gaussian_density() {
        let mut m = model(r#"{"dim": 2, "spread": 1.0, "sigma": 2.0}"#, 2, DataPolicy::Replace);
        let ll = m.log_likelihood(&[0.5, -1.0]).unwrap();
        let want = |mx: f64| -0.5 * ((0.5 - mx).powi(2) + (-1.0 - mx).powi(2)) / 4.0 - (std::f64::consts::TAU * 4.0).ln();
        assert!((ll[0] - want(0.0)).abs() < 1e-12 && (ll[1] - want(1.0)).abs() < 1e-12, "{ll:?}");
    }

    #[test]
    fn accumulate_pools_batches_like_one_big_batch() {
        let mut g = ChaCha8Rng::seed_from_u64(3);
        let mut source = model("", 1, DataPolicy::Replace);
        let (a, b) = (source.sample(&[7], 1.0, &mut g).unwrap(), source.sample(&[5], 1.0, &mut g).unwrap());
        let mut acc = model("", 1, DataPolicy::Accumulate { initial: 0 });
        acc.fit(&[7], &a, &mut g).unwrap();
        acc.fit(&[5], &b, &mut g).unwrap();
        let mut once = model("", 1, DataPolicy::Replace);
        once.fit(&[12], &[a, b].concat(), &mut g).unwrap();
        let (x, y) = (acc.metrics().unwrap(), once.metrics().unwrap());
        assert!(x.iter().zip(&y).all(|(x, y)| (x - y).abs() < 1e-12), "{x:?} vs {y:?}");
    }

    #[test]
    fn identical_samples_clamp_the_variance_and_flag_it() {
        let mut m = model(r#"{"dim": 1}"#, 1, DataPolicy::Replace);
        m.fit(&[3], &[0.7; 3], &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        assert_eq!(m.metrics().unwrap()[2..], [VAR_MIN, 1.0]);
        assert!(m.log_likelihood(&[0.7, 5.0]).unwrap().iter().all(|v| v.is_finite()));
    }

    #[test]
    fn bad_params_and_policies_are_refused_naming_the_field() {
        // SAFETY: as in `model`.
        let table = unsafe { LoadedTable::from_raw(coevo_plugin_entry(), "template (in-process)") }.unwrap();
        let err = |p: &str, policy| table.create_by_name("isotropic_gaussian", p, 2, policy).unwrap_err().to_string();
        assert!(err(r#"{"dim": 0}"#, DataPolicy::Replace).contains("dim must be between 1 and 4096"));
        assert!(err(r#"{"sigma": -1}"#, DataPolicy::Replace).contains("sigma must be finite and > 0"));
        assert!(err(r#"{"sigam": 1}"#, DataPolicy::Replace).contains("unknown field `sigam`"));
        assert!(err("", DataPolicy::Fresh { lambda: 0.5 }).contains("mixed by the host"));
        assert!(err("", DataPolicy::Accumulate { initial: 3 }).contains("passes 0"));
    }

    #[test]
    fn checkpoint_round_trip_and_refusal() {
        let mut g = ChaCha8Rng::seed_from_u64(4);
        let mut a = model("", 2, DataPolicy::Accumulate { initial: 0 });
        let y = a.sample(&[4, 4], 1.0, &mut g).unwrap();
        a.fit(&[4, 4], &y, &mut g).unwrap();
        a.add_text().unwrap();
        let ckpt = a.get_params().unwrap();
        let mut b = model("", 2, DataPolicy::Accumulate { initial: 0 });
        b.set_params(&ckpt).unwrap();
        assert_eq!((b.num_texts(), b.get_params().unwrap()), (3, ckpt.clone()));
        let e = b.set_params(&ckpt[..ckpt.len() - 1]).unwrap_err().to_string();
        assert!(e.contains("checkpoint length"), "{e}");
        assert_eq!(b.get_params().unwrap(), ckpt, "a refused checkpoint changes nothing");
    }
}
