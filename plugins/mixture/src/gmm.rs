//! A Gaussian mixture in `R^d`: its parameters, the initial layout a scenario gives, sampling,
//! log-density, moments and the squared Frechet distance between moment pairs.
//!
//! Shared source: `plugins/mixture` declares this file as its module `gmm`, and `plugins/kde`
//! includes it with `#[path]` (the KDE's initial conditionals are such mixtures, so both models
//! start from the same distribution). Plugin crates cannot depend on each other: two
//! `coevo_plugin_entry` symbols in one library would clash. It uses `crate::factor`, the
//! gaussian plugin's factorisation with the built-in model's eigenvalue floors.

use coevo_plugin_api::serde_json::{self, Value};
use coevo_plugin_api::{HostRng, PluginResult, plugin_bail};
use nalgebra::{DMatrix, SymmetricEigen};
use rand::RngExt;
use serde::Deserialize;

use crate::factor::{Factor, draw};

/// The initial conditionals a scenario gives (params key `"initial"`): text `i`'s mixture has
/// `components` Gaussians with covariance `variance * I`, centred at the text's centre
/// (`means`) plus one offset each, with the given weights.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)] // a typo is an error naming the field, not silently ignored
pub(crate) struct InitialParams {
    /// `"circle"` (text `i` at `(cos 2 pi (i+1)/K, sin 2 pi (i+1)/K, 0, ...)`, the built-in
    /// `UnitCircle`) or `K` explicit centres.
    #[serde(default)]
    means: Option<Value>,
    /// Number of components `M`.
    #[serde(default = "default_components")]
    components: usize,
    /// Offsets of the components from the text's centre (`M` vectors of `d`); default: `M`
    /// points evenly spaced on a circle of radius `radius` in the first two coordinates
    /// (component `m` at angle `2 pi m / M`), or the centre itself when `M = 1`.
    #[serde(default)]
    offsets: Option<Vec<Vec<f64>>>,
    /// Radius of the default offsets.
    #[serde(default = "default_radius")]
    radius: f64,
    /// Component weights (normalised); default uniform.
    #[serde(default)]
    weights: Option<Vec<f64>>,
    /// Per-coordinate variance of every component.
    #[serde(default = "default_variance")]
    variance: f64,
    /// Centre of a text added later (`add_text`); default the origin.
    #[serde(default)]
    prior_mean: Option<Vec<f64>>,
}

fn default_components() -> usize {
    3
}

fn default_radius() -> f64 {
    0.25
}

fn default_variance() -> f64 {
    0.01
}

impl Default for InitialParams {
    fn default() -> Self {
        serde_json::from_value(Value::Object(Default::default())).expect("every field has a default")
    }
}

impl InitialParams {
    /// The number of components `M`.
    pub(crate) fn components(&self) -> usize {
        self.components
    }

    /// Text `i`'s initial mixture for `i < K`, then the prior of added texts; validates every
    /// field (errors name it).
    pub(crate) fn build(&self, k: usize, d: usize) -> PluginResult<(Vec<Mixture>, Mixture)> {
        let m = self.components;
        if m == 0 {
            plugin_bail!("initial.components must be >= 1");
        }
        if !(self.variance.is_finite() && self.variance > 0.0) {
            plugin_bail!("initial.variance must be finite and > 0, got {}", self.variance);
        }
        let weights = match &self.weights {
            None => vec![1.0 / m as f64; m],
            Some(w) => {
                if w.len() != m || w.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
                    plugin_bail!("initial.weights must be {m} finite positive numbers (one per component), got {w:?}");
                }
                let total: f64 = w.iter().sum();
                w.iter().map(|x| x / total).collect()
            }
        };
        let offsets = match &self.offsets {
            Some(o) => {
                if o.len() != m || o.iter().any(|v| v.len() != d || v.iter().any(|x| !x.is_finite())) {
                    plugin_bail!("initial.offsets must be {m} vectors of {d} finite numbers (one per component)");
                }
                o.clone()
            }
            None if m == 1 => vec![vec![0.0; d]],
            None => {
                if d < 2 {
                    plugin_bail!("the default initial.offsets (a circle) need dim >= 2; give initial.offsets for dim = {d}");
                }
                if !(self.radius.is_finite() && self.radius >= 0.0) {
                    plugin_bail!("initial.radius must be finite and >= 0, got {}", self.radius);
                }
                (0..m)
                    .map(|c| {
                        let a = std::f64::consts::TAU * c as f64 / m as f64;
                        let mut v = vec![0.0; d];
                        (v[0], v[1]) = (self.radius * a.cos(), self.radius * a.sin());
                        v
                    })
                    .collect()
            }
        };
        let centres = centres(self.means.as_ref(), k, d)?;
        let prior_centre = self.prior_mean.clone().unwrap_or_else(|| vec![0.0; d]);
        if prior_centre.len() != d || prior_centre.iter().any(|x| !x.is_finite()) {
            plugin_bail!("initial.prior_mean must be {d} finite numbers");
        }
        let sigma = isotropic(d, self.variance);
        let layout = |centre: &[f64]| {
            let means = offsets.iter().map(|o| o.iter().zip(centre).map(|(a, b)| a + b).collect()).collect();
            Mixture::new(weights.clone(), means, vec![sigma.clone(); m])
        };
        Ok((centres.iter().map(|c| layout(c)).collect(), layout(&prior_centre)))
    }
}

/// The text centres: `"circle"` (default) or `K` explicit vectors.
fn centres(means: Option<&Value>, k: usize, d: usize) -> PluginResult<Vec<Vec<f64>>> {
    match means {
        None => circle(k, d),
        Some(Value::String(s)) if s == "circle" => circle(k, d),
        Some(Value::Array(rows)) => {
            if rows.len() != k {
                plugin_bail!("initial.means has {} rows but there are {k} texts", rows.len());
            }
            rows.iter()
                .enumerate()
                .map(|(i, row)| match serde_json::from_value::<Vec<f64>>(row.clone()) {
                    Ok(v) if v.len() == d && v.iter().all(|x| x.is_finite()) => Ok(v),
                    _ => plugin_bail!("initial.means[{i}] must be {d} finite numbers, got {row}"),
                })
                .collect()
        }
        Some(other) => plugin_bail!("initial.means must be \"circle\" or an array of K centres, got {other}"),
    }
}

/// The spec's layout (the built-in `UnitCircle`): text i (0-based) at `(cos 2 pi (i+1)/K, sin 2 pi (i+1)/K, 0, ...)`.
fn circle(k: usize, d: usize) -> PluginResult<Vec<Vec<f64>>> {
    if d < 2 {
        plugin_bail!("initial.means \"circle\" needs dim >= 2, got dim = {d}; give explicit centres");
    }
    Ok((0..k)
        .map(|i| {
            let a = std::f64::consts::TAU * (i + 1) as f64 / k as f64;
            let mut m = vec![0.0; d];
            (m[0], m[1]) = (a.cos(), a.sin());
            m
        })
        .collect())
}

/// `variance * I`, row-major.
pub(crate) fn isotropic(d: usize, variance: f64) -> Vec<f64> {
    let mut s = vec![0.0; d * d];
    for c in 0..d {
        s[c * d + c] = variance;
    }
    s
}

/// Sum of the diagonal of a row-major `d x d` matrix.
pub(crate) fn trace(s: &[f64], d: usize) -> f64 {
    (0..d).map(|c| s[c * d + c]).sum()
}

/// `log sum exp(xs)`, exact for all `-inf` entries (returns `-inf`).
pub(crate) fn log_sum_exp(xs: &[f64]) -> f64 {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + xs.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
}

/// One Gaussian component: weight, mean, covariance (row-major) and its factorisation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Component {
    /// Mixing weight (the weights of a mixture sum to 1).
    pub(crate) weight: f64,
    /// Mean.
    pub(crate) mu: Vec<f64>,
    /// Covariance, row-major `d x d`, symmetric.
    pub(crate) sigma: Vec<f64>,
    /// What sampling and scoring use (eigenvalues clamped at the built-in floors).
    pub(crate) factor: Factor,
}

/// A Gaussian mixture `sum_m w_m N(mu_m, Sigma_m)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mixture {
    /// The components, in a fixed order (EM warm starts keep it).
    pub(crate) components: Vec<Component>,
}

impl Mixture {
    /// A mixture from its weights, means and covariances.
    pub(crate) fn new(weights: Vec<f64>, means: Vec<Vec<f64>>, sigmas: Vec<Vec<f64>>) -> Mixture {
        let components = weights
            .into_iter()
            .zip(means)
            .zip(sigmas)
            .map(|((weight, mu), sigma)| Component { weight, factor: Factor::new(&sigma, &mu), mu, sigma })
            .collect();
        Mixture { components }
    }

    /// Dimension of a sample.
    pub(crate) fn dim(&self) -> usize {
        self.components[0].mu.len()
    }

    /// Mean and covariance (row-major) of the mixture:
    /// `mean = sum w mu`, `cov = sum w (Sigma + mu mu^T) - mean mean^T`, computed about the
    /// mean (`sum w (Sigma + (mu - mean)(mu - mean)^T)`) so no cancellation occurs.
    pub(crate) fn moments(&self) -> (Vec<f64>, Vec<f64>) {
        let d = self.dim();
        let mut mean = vec![0.0; d];
        for c in &self.components {
            for (m, x) in mean.iter_mut().zip(&c.mu) {
                *m += c.weight * x;
            }
        }
        let mut cov = vec![0.0; d * d];
        for c in &self.components {
            for r in 0..d {
                for s in 0..d {
                    cov[r * d + s] += c.weight * (c.sigma[r * d + s] + (c.mu[r] - mean[r]) * (c.mu[s] - mean[s]));
                }
            }
        }
        (mean, cov)
    }

    /// `out[m] = log w_m + log N(y; mu_m, Sigma_m)` (clamped factorisation), `-inf` for a
    /// component of weight 0.
    pub(crate) fn log_joint(&self, y: &[f64], out: &mut [f64]) {
        for (o, c) in out.iter_mut().zip(&self.components) {
            *o = if c.weight > 0.0 { c.weight.ln() + log_normal(&c.factor, &c.mu, y) } else { f64::NEG_INFINITY };
        }
    }

    /// `log q(y)`; `scratch` has one entry per component.
    pub(crate) fn log_density(&self, y: &[f64], scratch: &mut [f64]) -> f64 {
        self.log_joint(y, scratch);
        log_sum_exp(scratch)
    }

    /// Draws rows into `out`: per row, one uniform picks the component by its weight, then
    /// `d` standard normals give `mu_m + scale A_m z`. `z` is scratch of length `d`.
    pub(crate) fn sample_into(&self, scale: f64, rng: &mut HostRng<'_>, out: &mut [f64], z: &mut [f64]) {
        let d = self.dim();
        for y in out.chunks_exact_mut(d) {
            let c = self.pick(rng.random::<f64>());
            draw(&c.mu, &c.factor, scale, rng, y, z);
        }
    }

    /// The component whose cumulative weight first exceeds `u` (the last one of positive
    /// weight if rounding leaves `u` above the total).
    fn pick(&self, u: f64) -> &Component {
        let mut acc = 0.0;
        let mut last = &self.components[0];
        for c in self.components.iter().filter(|c| c.weight > 0.0) {
            acc += c.weight;
            last = c;
            if u < acc {
                return c;
            }
        }
        last
    }

    /// Appends the parameters (per component: weight, mu, Sigma) to a checkpoint.
    pub(crate) fn save(&self, out: &mut Vec<f64>) {
        for c in &self.components {
            out.push(c.weight);
            out.extend_from_slice(&c.mu);
            out.extend_from_slice(&c.sigma);
        }
    }

    /// Length of [`save`](Self::save)'s output for `m` components in `R^d`.
    pub(crate) fn saved_len(m: usize, d: usize) -> usize {
        m * (1 + d + d * d)
    }

    /// Reads what [`save`](Self::save) wrote (the factorisations are recomputed, which is
    /// deterministic, so a restored mixture samples and scores bit for bit like the saved one).
    pub(crate) fn load(values: &[f64], m: usize, d: usize) -> Mixture {
        let (mut weights, mut means, mut sigmas) = (Vec::with_capacity(m), Vec::with_capacity(m), Vec::with_capacity(m));
        for r in values.chunks_exact(1 + d + d * d).take(m) {
            weights.push(r[0]);
            means.push(r[1..1 + d].to_vec());
            sigmas.push(r[1 + d..].to_vec());
        }
        Mixture::new(weights, means, sigmas)
    }
}

/// `log N(y; mu, Sigma')` from the clamped factorisation.
pub(crate) fn log_normal(factor: &Factor, mu: &[f64], y: &[f64]) -> f64 {
    let d = mu.len();
    let quad: f64 = factor
        .whiten
        .chunks_exact(d)
        .map(|row| {
            let z: f64 = row.iter().zip(y.iter().zip(mu)).map(|(w, (a, b))| w * (a - b)).sum();
            z * z
        })
        .sum();
    factor.log_norm - 0.5 * quad
}

/// Symmetric square root of a PSD matrix (negative rounding eigenvalues taken as 0).
fn sqrtm_psd(s: &DMatrix<f64>) -> DMatrix<f64> {
    let eig = SymmetricEigen::new(s.clone());
    let roots = eig.eigenvalues.map(|l| l.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&roots) * eig.eigenvectors.transpose()
}

/// Squared Frechet (2-Wasserstein) distance between `N(mu_a, S_a)` and `N(mu_b, S_b)`:
/// `|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_b^(1/2) S_a S_b^(1/2))^(1/2))` (docs/model.md section 7).
/// The host computes the same quantity for the built-in model (`frechet_to_initial`); a plugin
/// cannot call into the host, hence this copy of the formula on the plugin's side.
pub(crate) fn frechet_sq(mu_a: &[f64], s_a: &[f64], mu_b: &[f64], s_b: &[f64]) -> f64 {
    let d = mu_a.len();
    let (a, b) = (DMatrix::from_row_slice(d, d, s_a), DMatrix::from_row_slice(d, d, s_b));
    let root_b = sqrtm_psd(&b);
    let cross = sqrtm_psd(&(&root_b * &a * &root_b));
    let mean: f64 = mu_a.iter().zip(mu_b).map(|(x, y)| (x - y) * (x - y)).sum();
    (mean + a.trace() + b.trace() - 2.0 * cross.trace()).max(0.0)
}
