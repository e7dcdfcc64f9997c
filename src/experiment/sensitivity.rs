//! Variance-based sensitivity of a `Sobol(n)` sweep: first-order and total Sobol indices of
//! every outcome of `sweep.csv`, per model, with bootstrap intervals (`coevo analyse`).
//!
//! The sweep's points follow the Saltelli scheme ([`crate::scenario::design`]): for each base
//! row `j`, `f(A_j)`, `f(AB_j^(i))` for every parameter `i`, then `f(B_j)`. With `V` the
//! variance of the `2n` values `f(A_j)`, `f(B_j)` (divisor `2n`):
//! - first order, Saltelli et al. (2010), eq. (b) of their table 2:
//!   `S_i = mean_j f(B_j) (f(AB_j^(i)) - f(A_j)) / V`;
//! - total, Jansen (1999): `ST_i = mean_j (f(A_j) - f(AB_j^(i)))^2 / (2 V)`.
//!
//! These are the estimators of SALib's `sobol.analyze`, so the two agree on the same table.
//! Uncertainty: the `n` base rows are resampled with replacement (`resamples` times, from a
//! fixed named stream, so the intervals are reproducible), the bootstrap standard error is the
//! standard deviation of the resampled indices, and the interval is the estimate plus or
//! minus `z` standard errors, `z` the normal quantile of the confidence level (SALib's
//! `S1_conf` is the half-width at 95%).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rand::RngExt as _;
use serde::Serialize;

use super::grid::{SweepManifest, sweep_header};
use crate::output::write_atomic;
use crate::run::RunFailure;

/// The outcome columns of `sweep.csv` analysed (the others are labels, counts or standard
/// errors).
pub const OUTCOMES: [&str; 5] = ["final_mean", "steady_mean", "collapsed_fraction", "collapse_round_median", "stationary_fraction"];

/// The file `coevo analyse` writes into the sweep folder.
pub const SENSITIVITY_FILE: &str = "sensitivity.csv";

/// The header of `sensitivity.csv`.
pub const SENSITIVITY_HEADER: &str = "model,outcome,parameter,S1,S1_se,S1_lo,S1_hi,ST,ST_se,ST_lo,ST_hi";

/// An index with its bootstrap standard error and interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// The estimate from all base rows.
    pub value: f64,
    /// Standard deviation of the bootstrap estimates.
    pub se: f64,
    /// `value - z se`.
    pub lo: f64,
    /// `value + z se`.
    pub hi: f64,
}

/// The first-order and total indices of one parameter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Indices {
    /// First-order index `S_i`.
    pub first: Estimate,
    /// Total index `ST_i`.
    pub total: Estimate,
}

/// How the intervals are made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bootstrap {
    /// Number of resamples of the base rows.
    pub resamples: usize,
    /// Two-sided confidence level of the intervals, in `(0, 1)`.
    pub confidence: f64,
    /// Seed of the resampling stream.
    pub seed: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap { resamples: 1000, confidence: 0.95, seed: 0 }
    }
}

/// The point estimates `(S_i, ST_i)` for every parameter from the base rows `rows` (indices
/// into the `n` blocks of `y`), or `None` when the outcome does not vary over them.
fn estimate(y: &[f64], k: usize, rows: &[usize]) -> Option<Vec<(f64, f64)>> {
    let block = k + 2;
    let (fa, fb) = (|j: usize| y[j * block], |j: usize| y[j * block + k + 1]);
    let n = rows.len() as f64;
    let mean = rows.iter().map(|&j| fa(j) + fb(j)).sum::<f64>() / (2.0 * n);
    let var = rows.iter().map(|&j| (fa(j) - mean).powi(2) + (fb(j) - mean).powi(2)).sum::<f64>() / (2.0 * n);
    if var <= 0.0 || !var.is_finite() {
        return None;
    }
    Some(
        (0..k)
            .map(|i| {
                let fab = |j: usize| y[j * block + 1 + i];
                let first = rows.iter().map(|&j| fb(j) * (fab(j) - fa(j))).sum::<f64>() / n / var;
                let total = rows.iter().map(|&j| (fa(j) - fab(j)).powi(2)).sum::<f64>() / n / (2.0 * var);
                (first, total)
            })
            .collect(),
    )
}

/// First-order and total Sobol indices of the `k` parameters from outputs `y` in Saltelli
/// order (`n (k + 2)` values, see the module docs), with bootstrap intervals. An error says
/// why they cannot be computed (wrong length, non-finite values, no variance).
pub fn sobol_indices(y: &[f64], k: usize, bootstrap: &Bootstrap) -> Result<Vec<Indices>, String> {
    let block = k + 2;
    if k == 0 || y.is_empty() || !y.len().is_multiple_of(block) {
        return Err(format!("{} outputs are not n (k + 2) for k = {k} parameters", y.len()));
    }
    if let Some(i) = y.iter().position(|v| !v.is_finite()) {
        return Err(format!("point {i} has no finite value"));
    }
    let n = y.len() / block;
    let all: Vec<usize> = (0..n).collect();
    let point = estimate(y, k, &all).ok_or("the outcome is the same at every point (no variance to apportion)")?;
    let mut stream = crate::rng::named_stream("sensitivity bootstrap", bootstrap.seed);
    let mut draws: Vec<Vec<(f64, f64)>> = Vec::with_capacity(bootstrap.resamples);
    let mut rows = vec![0; n];
    for _ in 0..bootstrap.resamples {
        for r in &mut rows {
            *r = stream.random_range(0..n);
        }
        // A resample with no variance (all rows alike) says nothing about the spread: skipped.
        if let Some(d) = estimate(y, k, &rows) {
            draws.push(d);
        }
    }
    let z = normal_quantile(0.5 + bootstrap.confidence / 2.0);
    let interval = |value: f64, pick: &dyn Fn(&(f64, f64)) -> f64, i: usize| {
        let values: Vec<f64> = draws.iter().map(|d| pick(&d[i])).collect();
        let stats = crate::output::aggregate::Stats::of(&values);
        // The standard deviation of the bootstrap estimates (Stats gives it as se * sqrt(n)).
        let se = stats.se * (stats.n as f64).sqrt();
        Estimate { value, se, lo: value - z * se, hi: value + z * se }
    };
    Ok(point
        .iter()
        .enumerate()
        .map(|(i, &(first, total))| Indices { first: interval(first, &|d| d.0, i), total: interval(total, &|d| d.1, i) })
        .collect())
}

/// The standard normal quantile `Phi^-1(p)` for `p` in `(0, 1)`, by Acklam's rational
/// approximation (relative error below 1.2e-9), which is ample for interval half-widths.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] =
        [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
    const B: [f64; 5] = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] =
        [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5]) / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    match p {
        p if p <= 0.0 => f64::NEG_INFINITY,
        p if p >= 1.0 => f64::INFINITY,
        p if p < 0.02425 => tail((-2.0 * p.ln()).sqrt()),
        p if p > 1.0 - 0.02425 => -tail((-2.0 * (1.0 - p).ln()).sqrt()),
        p => {
            let q = p - 0.5;
            let r = q * q;
            (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
                / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
        }
    }
}

/// The indices of one outcome of one model, or why there are none.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeSensitivity {
    /// The model (a `model` of `sweep.csv`).
    pub model: String,
    /// The outcome column.
    pub outcome: String,
    /// Per parameter, in the sweep's order; `Err` says why the outcome was not analysed (an
    /// empty cell, no variance).
    pub indices: Result<Vec<Indices>, String>,
}

/// What `coevo analyse` found in a sweep folder.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// The swept parameters.
    pub parameters: Vec<String>,
    /// Base rows `n` of the design.
    pub base_rows: usize,
    /// One entry per model and outcome, in model order then [`OUTCOMES`] order.
    pub outcomes: Vec<OutcomeSensitivity>,
    /// The file written.
    pub file: PathBuf,
}

/// Analyses the `Sobol(n)` sweep in `dir` (its `sweep.json` and complete `sweep.csv`) and
/// writes `sensitivity.csv` there. A folder of another design, or one with points missing, is
/// bad input naming what is needed.
pub fn analyse(dir: &Path, bootstrap: &Bootstrap) -> Result<Analysis, RunFailure> {
    let bad = RunFailure::BadInput;
    let path = dir.join("sweep.json");
    let bytes = std::fs::read(&path).map_err(|e| bad(format!("{}: not a sweep folder ({e})", path.display())))?;
    let manifest: SweepManifest = serde_json::from_slice(&bytes).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let design = manifest.design.clone().unwrap_or_else(|| "Grid".into());
    let k = manifest.parameters.len();
    if !design.starts_with("Sobol(") || !manifest.points.is_multiple_of(k + 2) {
        return Err(bad(format!(
            "{}: the sweep's design is {design}; Sobol indices need the Saltelli points of a `design: Sobol(n)` sweep",
            dir.display()
        )));
    }
    let csv = dir.join("sweep.csv");
    let header = sweep_header(&manifest.parameters);
    let columns: Vec<&str> = header.trim_end().split(',').collect();
    let col = |name: &str| columns.iter().position(|c| *c == name).expect("a column of the header");
    let model_col = col("model");
    // model -> per outcome, the value at each point (NaN for an empty cell).
    let mut models: Vec<(String, Vec<Vec<f64>>)> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    crate::output::tidy::read_csv(&csv, &header, |n, f| {
        let m = match models.iter().position(|(m, _)| m == f[model_col]) {
            Some(m) => m,
            None => {
                models.push((f[model_col].to_string(), vec![Vec::new(); OUTCOMES.len()]));
                counts.push(0);
                models.len() - 1
            }
        };
        let point: usize = crate::output::tidy::parse(&csv, n, "point", f[0])?;
        if point != counts[m] {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}:{n}: point {point} of model `{}` comes where point {} was expected: the sweep is not complete (run it to the end, or merge its shards)", csv.display(), f[model_col], counts[m]),
            ));
        }
        counts[m] += 1;
        for (o, name) in OUTCOMES.iter().enumerate() {
            let cell = f[col(name)];
            let v = if cell.is_empty() { f64::NAN } else { crate::output::tidy::parse(&csv, n, name, cell)? };
            models[m].1[o].push(v);
        }
        Ok(())
    })
    .map_err(|e| bad(e.to_string()))?;
    if models.is_empty() || counts.iter().any(|&c| c != manifest.points) {
        return Err(bad(format!(
            "{}: {} of {} points are in the table: Sobol indices need every point (run the sweep to the end, or merge its shards)",
            csv.display(),
            counts.iter().min().copied().unwrap_or(0),
            manifest.points
        )));
    }
    let mut outcomes = Vec::new();
    let mut table = format!("{SENSITIVITY_HEADER}\n");
    for (model, values) in &models {
        for (o, name) in OUTCOMES.iter().enumerate() {
            let indices = sobol_indices(&values[o], k, bootstrap);
            if let Ok(indices) = &indices {
                for (p, ix) in manifest.parameters.iter().zip(indices) {
                    let _ = write!(table, "{model},{name},{p}");
                    for e in [ix.first, ix.total] {
                        for v in [e.value, e.se, e.lo, e.hi] {
                            let _ = write!(table, ",{}", crate::output::format_value(v));
                        }
                    }
                    table.push('\n');
                }
            }
            outcomes.push(OutcomeSensitivity { model: model.clone(), outcome: (*name).to_string(), indices });
        }
    }
    let file = dir.join(SENSITIVITY_FILE);
    write_atomic(&file, table.as_bytes()).map_err(|source| RunFailure::Io { path: file.clone(), source })?;
    Ok(Analysis { parameters: manifest.parameters, base_rows: manifest.points / (k + 2), outcomes, file })
}

impl Analysis {
    /// A plain-text table of the indices (one block per model and outcome), and the outcomes
    /// left out with their reason.
    pub fn report(&self) -> String {
        let width = self.parameters.iter().map(String::len).max().unwrap_or(9).max(9);
        let mut out = String::new();
        for o in &self.outcomes {
            match &o.indices {
                Ok(indices) => {
                    let _ = writeln!(out, "{} {}:", o.model, o.outcome);
                    let _ = writeln!(out, "  {:width$}  {:>22}  {:>22}", "parameter", "S1 [interval]", "ST [interval]");
                    for (p, ix) in self.parameters.iter().zip(indices) {
                        let cell = |e: &Estimate| format!("{:.3} [{:.3}, {:.3}]", e.value, e.lo, e.hi);
                        let _ = writeln!(out, "  {p:width$}  {:>22}  {:>22}", cell(&ix.first), cell(&ix.total));
                    }
                }
                Err(why) => {
                    let _ = writeln!(out, "{} {}: not analysed: {why}", o.model, o.outcome);
                }
            }
        }
        out
    }
}
