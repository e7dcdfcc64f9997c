//! `laplace_motion`: a per-text Laplace model of a video's motion vector.
//!
//! Text i's conditional is a product of independent Laplace distributions,
//! `q(y | i) = Π_c exp(-|y_c - m_ic| / b_ic) / (2 b_ic)`, `y` in `R^dim`.
//!
//! - **Estimator** (`fit`), per text and coordinate: location `m̂` = median (the midpoint of the
//!   two middle values for an even count), scale `b̂ = (1/n) Σ |y - m̂|` (mean absolute deviation
//!   from the median). This pair is the Laplace MLE. Texts with fewer than `min_evidence`
//!   (default 2) samples keep their parameters.
//! - **Temperature** `T`: scale `b T` (the exact tempering `q^(1/T)`).
//! - **Metrics**: `diversity = Σ_c 2 b_c²` (total variance, the analogue of `trace Σ`),
//!   `fidelity = ||m - m⁰||`, `mean_scale`, `regularized` (1 if a scale is below [`SCALE_MIN`],
//!   which sampling and likelihoods then use instead of the stored exact estimate).
//! - **Data policies**: `replace` fits the batch; `fresh { lambda }` swaps `round(lambda n_i)` of
//!   the batch for draws from the initial conditional. `accumulate { initial }` needs the median
//!   of all data seen so far, which has no finite sufficient statistic, so the history is kept
//!   as a **quantile sketch** of at most `sketch_size` (default 256) weighted points per text and
//!   coordinate: exact until it overflows, afterwards the merged data are compressed to
//!   `sketch_size` equal-weight points at the mid-quantiles `(q + 1/2)/Q`. The estimate is then
//!   approximate (the median's quantile-level error is at most about `1/(2Q)`), memory is
//!   constant. The initial `initial` real samples per text are drawn at the first fit.

use coevo_plugin_api::serde_json::{self, Value};
use coevo_plugin_api::{
    ConditionalModelPlugin, DataPolicy, HostRng, ModelDescription, PluginResult, caption_groups, fresh_real_count, plugin_bail,
};
use core::f64::consts::TAU;
use rand::RngExt;
use rand::distr::Open01;
use serde::Deserialize;

/// Smallest scale used for sampling and likelihoods (a collapsed coordinate has `b = 0`).
pub const SCALE_MIN: f64 = 1e-12;

const CHECKPOINT_FORMAT: f64 = 1.0;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_dim")]
    dim: usize,
    #[serde(default = "default_scale0")]
    scale0: f64,
    #[serde(default)]
    means: Option<Value>,
    #[serde(default)]
    prior: Option<PriorParams>,
    #[serde(default = "default_min_evidence")]
    min_evidence: u64,
    #[serde(default = "default_sketch")]
    sketch_size: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorParams {
    location: Option<Vec<f64>>,
    scale: Option<f64>,
}

fn default_dim() -> usize {
    2
}
fn default_scale0() -> f64 {
    0.3
}
fn default_min_evidence() -> u64 {
    2
}
fn default_sketch() -> usize {
    256
}

/// Weighted points summarising one coordinate's accumulated history.
type Sketch = Vec<(f64, f64)>;

#[derive(Debug, Clone, PartialEq)]
struct Text {
    m: Vec<f64>,
    b: Vec<f64>,
    m0: Vec<f64>,
    b0: Vec<f64>,
    initial_drawn: bool,
    /// One sketch per coordinate (`accumulate` only; empty otherwise).
    sketch: Vec<Sketch>,
}

impl Text {
    fn new(m: Vec<f64>, scale: f64) -> Text {
        let d = m.len();
        Text { b: vec![scale; d], b0: vec![scale; d], m0: m.clone(), m, initial_drawn: false, sketch: vec![Vec::new(); d] }
    }
}

/// Per-text Laplace motion model (see the module docs).
#[derive(Debug, Clone)]
pub struct LaplaceMotion {
    dim: usize,
    texts: Vec<Text>,
    policy: DataPolicy,
    prior_location: Vec<f64>,
    prior_scale: f64,
    min_evidence: u64,
    sketch_size: usize,
}

/// One Laplace draw by inversion: `m - b sgn(u) ln(1 - 2|u|)`, `u` uniform on `(-1/2, 1/2)`.
fn draw<R: rand::Rng + ?Sized>(rng: &mut R, m: f64, b: f64) -> f64 {
    let u: f64 = rng.sample::<f64, _>(Open01) - 0.5;
    m - b * u.signum() * (1.0 - 2.0 * u.abs()).ln()
}

/// Weighted median (midpoint when the cumulative weight hits exactly half) and weighted mean
/// absolute deviation from it. `points` must be non-empty and is sorted in place.
pub fn weighted_median_mad(points: &mut [(f64, f64)]) -> (f64, f64) {
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = points.iter().map(|p| p.1).sum();
    let half = total / 2.0;
    let mut cum = 0.0;
    let mut median = points[points.len() - 1].0;
    for (j, &(v, w)) in points.iter().enumerate() {
        cum += w;
        // Equal weights make `cum == half` exact for an even count: take the midpoint.
        if cum == half && j + 1 < points.len() {
            median = 0.5 * (v + points[j + 1].0);
            break;
        }
        if cum > half {
            median = v;
            break;
        }
    }
    let mad = points.iter().map(|&(v, w)| w * (v - median).abs()).sum::<f64>() / total;
    (median, mad)
}

/// Compress sorted weighted points to `q` equal-weight points at the mid-quantiles.
fn compress(points: &[(f64, f64)], q: usize) -> Sketch {
    let total: f64 = points.iter().map(|p| p.1).sum();
    let w = total / q as f64;
    let mut out = Vec::with_capacity(q);
    let mut cum = 0.0;
    let mut it = points.iter();
    let mut cur = it.next().copied();
    for k in 0..q {
        let level = (k as f64 + 0.5) * w;
        while let Some((v, wt)) = cur {
            if cum + wt >= level {
                out.push((v, w));
                break;
            }
            cum += wt;
            cur = it.next().copied();
        }
    }
    // Rounding can starve the last levels: pad with the maximum so the total weight is kept.
    while out.len() < q {
        out.push((points[points.len() - 1].0, w));
    }
    out
}

fn parse_means(v: &Option<Value>, k: usize, dim: usize) -> PluginResult<Vec<Vec<f64>>> {
    match v {
        None => Ok(circle(k, dim)),
        Some(Value::String(s)) if s == "circle" => Ok(circle(k, dim)),
        Some(Value::Array(rows)) => {
            if rows.len() != k {
                plugin_bail!("means has {} rows but there are {k} texts", rows.len());
            }
            rows.iter()
                .enumerate()
                .map(|(i, r)| {
                    let row: Vec<f64> =
                        serde_json::from_value(r.clone()).map_err(|_| format!("means[{i}] must be an array of {dim} numbers"))?;
                    if row.len() != dim || row.iter().any(|x| !x.is_finite()) {
                        plugin_bail!("means[{i}] must be an array of {dim} finite numbers");
                    }
                    Ok(row)
                })
                .collect()
        }
        Some(other) => plugin_bail!("means must be \"circle\" or an array of rows, got {other}"),
    }
}

/// Text i (0-based) at `(cos 2π(i+1)/K, sin 2π(i+1)/K, 0, ...)` (truncated for dim 1).
fn circle(k: usize, dim: usize) -> Vec<Vec<f64>> {
    (0..k)
        .map(|i| {
            let a = TAU * (i + 1) as f64 / k as f64;
            let mut m = vec![0.0; dim];
            m[0] = a.cos();
            if dim > 1 {
                m[1] = a.sin();
            }
            m
        })
        .collect()
}

impl LaplaceMotion {
    /// Refit text `i` from weighted points per coordinate (all coordinates have equal counts).
    fn refit(t: &mut Text, per_coord: &mut [Vec<(f64, f64)>], min_evidence: u64) {
        let n: f64 = per_coord[0].iter().map(|p| p.1).sum();
        if per_coord[0].is_empty() || n < min_evidence.max(1) as f64 {
            return;
        }
        for (c, pts) in per_coord.iter_mut().enumerate() {
            let (m, b) = weighted_median_mad(pts);
            t.m[c] = m;
            t.b[c] = b;
        }
    }
}

impl ConditionalModelPlugin for LaplaceMotion {
    const DESCRIPTION: ModelDescription = ModelDescription {
        name: c"laplace_motion",
        modality: c"video",
        dim_rule: c"params.dim (default 2)",
        fixed_dim: 0,
        description: c"per-text independent Laplace distributions over a motion vector",
    };

    fn create(params: &Value, num_texts: usize, policy: DataPolicy) -> PluginResult<Self> {
        let p: Params = serde_json::from_value(params.clone())?;
        if p.dim == 0 {
            plugin_bail!("dim must be at least 1");
        }
        if !(p.scale0.is_finite() && p.scale0 > 0.0) {
            plugin_bail!("scale0 must be finite and > 0, got {}", p.scale0);
        }
        if p.sketch_size < 2 {
            plugin_bail!("sketch_size must be at least 2, got {}", p.sketch_size);
        }
        let means = parse_means(&p.means, num_texts, p.dim)?;
        let (prior_location, prior_scale) = match p.prior {
            None => (vec![0.0; p.dim], p.scale0),
            Some(pr) => (pr.location.unwrap_or_else(|| vec![0.0; p.dim]), pr.scale.unwrap_or(p.scale0)),
        };
        if prior_location.len() != p.dim || prior_location.iter().any(|x| !x.is_finite()) {
            plugin_bail!("prior.location must be {} finite numbers", p.dim);
        }
        if !(prior_scale.is_finite() && prior_scale > 0.0) {
            plugin_bail!("prior.scale must be finite and > 0, got {prior_scale}");
        }
        Ok(LaplaceMotion {
            dim: p.dim,
            texts: means.into_iter().map(|m| Text::new(m, p.scale0)).collect(),
            policy,
            prior_location,
            prior_scale,
            min_evidence: p.min_evidence,
            sketch_size: p.sketch_size,
        })
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn num_texts(&self) -> usize {
        self.texts.len()
    }

    fn metric_names(&self) -> Vec<String> {
        ["diversity", "fidelity", "mean_scale", "regularized"].map(String::from).to_vec()
    }

    fn sample(&self, counts: &[u64], temperature: f64, rng: &mut HostRng<'_>, out: &mut [f64]) -> PluginResult<()> {
        let mut rows = out.chunks_mut(self.dim);
        for (t, &c) in self.texts.iter().zip(counts) {
            for _ in 0..c {
                let row = rows.next().expect("SDK checked the output length");
                for (d, y) in row.iter_mut().enumerate() {
                    *y = draw(rng, t.m[d], t.b[d].max(SCALE_MIN) * temperature);
                }
            }
        }
        Ok(())
    }

    fn log_likelihood(&self, samples: &[f64], out: &mut [f64]) -> PluginResult<()> {
        let k = self.texts.len();
        for (j, y) in samples.chunks(self.dim).enumerate() {
            for (i, t) in self.texts.iter().enumerate() {
                out[j * k + i] = y
                    .iter()
                    .enumerate()
                    .map(|(d, &v)| {
                        let b = t.b[d].max(SCALE_MIN);
                        -(2.0 * b).ln() - (v - t.m[d]).abs() / b
                    })
                    .sum();
            }
        }
        Ok(())
    }

    fn fit(&mut self, counts: &[u64], samples: &[f64], rng: &mut HostRng<'_>) -> PluginResult<()> {
        let dim = self.dim;
        let groups = caption_groups(counts, samples, dim);
        for (t, g) in self.texts.iter_mut().zip(groups) {
            let n = g.len() / dim;
            let mut per_coord: Vec<Vec<(f64, f64)>> = vec![Vec::with_capacity(n); dim];
            match self.policy {
                DataPolicy::Replace => {
                    for row in g.chunks(dim) {
                        for (c, &v) in row.iter().enumerate() {
                            per_coord[c].push((v, 1.0));
                        }
                    }
                }
                DataPolicy::Fresh { lambda } => {
                    let real = fresh_real_count(n, lambda);
                    for _ in 0..real {
                        for (c, pc) in per_coord.iter_mut().enumerate() {
                            pc.push((draw(rng, t.m0[c], t.b0[c]), 1.0));
                        }
                    }
                    for row in g.chunks(dim).take(n - real) {
                        for (c, &v) in row.iter().enumerate() {
                            per_coord[c].push((v, 1.0));
                        }
                    }
                }
                DataPolicy::Accumulate { initial } => {
                    if !t.initial_drawn {
                        for _ in 0..initial {
                            for (c, pc) in per_coord.iter_mut().enumerate() {
                                pc.push((draw(rng, t.m0[c], t.b0[c]), 1.0));
                            }
                        }
                        t.initial_drawn = true;
                    }
                    for row in g.chunks(dim) {
                        for (c, &v) in row.iter().enumerate() {
                            per_coord[c].push((v, 1.0));
                        }
                    }
                    for (c, pc) in per_coord.iter_mut().enumerate() {
                        pc.extend(t.sketch[c].iter().copied());
                    }
                }
            }
            Self::refit(t, &mut per_coord, self.min_evidence);
            if let DataPolicy::Accumulate { .. } = self.policy {
                // `refit` sorted the points (when it ran); sort anyway for the sketch.
                for (c, mut pc) in per_coord.into_iter().enumerate() {
                    pc.sort_by(|a, b| a.0.total_cmp(&b.0));
                    t.sketch[c] = if pc.len() > self.sketch_size { compress(&pc, self.sketch_size) } else { pc };
                }
            }
        }
        Ok(())
    }

    fn metrics(&self, out: &mut [f64]) -> PluginResult<()> {
        for (row, t) in out.chunks_mut(4).zip(&self.texts) {
            row[0] = t.b.iter().map(|b| 2.0 * b * b).sum();
            row[1] = t.m.iter().zip(&t.m0).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
            row[2] = t.b.iter().sum::<f64>() / self.dim as f64;
            row[3] = if t.b.iter().any(|&b| b < SCALE_MIN) { 1.0 } else { 0.0 };
        }
        Ok(())
    }

    fn add_text(&mut self) -> PluginResult<()> {
        self.texts.push(Text::new(self.prior_location.clone(), self.prior_scale));
        Ok(())
    }

    /// `[1, K, dim, then per text: m[dim], b[dim], m0[dim], b0[dim], initial_drawn, then per
    /// coordinate: L, L (value, weight) pairs]`.
    fn get_params(&self) -> Vec<f64> {
        let mut v = vec![CHECKPOINT_FORMAT, self.texts.len() as f64, self.dim as f64];
        for t in &self.texts {
            v.extend(&t.m);
            v.extend(&t.b);
            v.extend(&t.m0);
            v.extend(&t.b0);
            v.push(f64::from(u8::from(t.initial_drawn)));
            for s in &t.sketch {
                v.push(s.len() as f64);
                for &(x, w) in s {
                    v.extend([x, w]);
                }
            }
        }
        v
    }

    fn set_params(&mut self, p: &[f64]) -> PluginResult<()> {
        if p.len() < 3 || p[0] != CHECKPOINT_FORMAT {
            plugin_bail!("not a laplace_motion checkpoint (format {CHECKPOINT_FORMAT})");
        }
        if p[2] != self.dim as f64 {
            plugin_bail!("checkpoint has dim {}, this model has dim {}", p[2], self.dim);
        }
        let k = p[1] as usize;
        if k == 0 || p[1] != k as f64 {
            plugin_bail!("checkpoint has an invalid text count {}", p[1]);
        }
        let d = self.dim;
        let mut pos = 3;
        let mut take = |n: usize| -> PluginResult<&[f64]> {
            let s = p.get(pos..pos + n).ok_or_else(|| format!("checkpoint truncated at value {pos}"))?;
            pos += n;
            Ok(s)
        };
        let mut texts = Vec::with_capacity(k);
        for i in 0..k {
            let m = take(d)?.to_vec();
            let b = take(d)?.to_vec();
            let m0 = take(d)?.to_vec();
            let b0 = take(d)?.to_vec();
            if b.iter().chain(&b0).any(|&x| x < 0.0) {
                plugin_bail!("checkpoint text {i}: negative scale");
            }
            let initial_drawn = take(1)?[0] != 0.0;
            let mut sketch = Vec::with_capacity(d);
            for _ in 0..d {
                let l = take(1)?[0];
                if l < 0.0 || l.fract() != 0.0 || l > self.sketch_size.max(1 << 24) as f64 {
                    plugin_bail!("checkpoint text {i}: invalid sketch length {l}");
                }
                let pairs = take(2 * l as usize)?;
                sketch.push(pairs.chunks(2).map(|c| (c[0], c[1])).collect());
            }
            texts.push(Text { m, b, m0, b0, initial_drawn, sketch });
        }
        if pos != p.len() {
            plugin_bail!("checkpoint has {} trailing values", p.len() - pos);
        }
        self.texts = texts;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_mad() {
        let mut pts: Vec<_> = [3.0, 1.0, 2.0].iter().map(|&v| (v, 1.0)).collect();
        assert_eq!(weighted_median_mad(&mut pts), (2.0, 2.0 / 3.0));
        let mut pts: Vec<_> = [4.0, 1.0, 2.0, 3.0].iter().map(|&v| (v, 1.0)).collect();
        assert_eq!(weighted_median_mad(&mut pts), (2.5, 1.0));
        let mut pts = vec![(0.0, 3.0), (10.0, 1.0)];
        assert_eq!(weighted_median_mad(&mut pts).0, 0.0);
    }

    #[test]
    fn compression_keeps_weight_and_quantiles() {
        let pts: Vec<_> = (0..1000).map(|j| (j as f64, 1.0)).collect();
        let s = compress(&pts, 10);
        assert_eq!(s.len(), 10);
        assert!((s.iter().map(|p| p.1).sum::<f64>() - 1000.0).abs() < 1e-9);
        assert_eq!(s[0].0, 49.0);
        assert_eq!(s[9].0, 949.0);
        let mut s2 = s.clone();
        let (m, _) = weighted_median_mad(&mut s2);
        assert!((m - 499.5).abs() <= 50.0);
    }
}
