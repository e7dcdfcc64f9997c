//! The `search` section of a scenario: which threshold `coevo search` looks for.
//!
//! The papers' central quantities are thresholds: the smallest real-data fraction that keeps
//! a model's diversity above a level, the injection that prevents collapse. A search names one
//! sweepable parameter (a path as in a sweep), the range to look in, and an outcome column of
//! `sweep.csv` with the level it should cross; [`crate::experiment::search`] bisects.

use serde::{Deserialize, Serialize};

use super::sweep::{SweepValue, apply, is_integer};
use super::{EntitySpec, Problem, Scenario};

/// The outcome columns of `sweep.csv` a search can target: each has a replicate-based
/// standard error (`final_se`, `steady_se`, or the binomial one of a fraction).
pub const SEARCH_TARGETS: [&str; 4] = ["final_mean", "steady_mean", "collapsed_fraction", "stationary_fraction"];

/// The `search` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpec {
    /// The parameter's path, as in a sweep (`"captioner.data.lambda"`).
    pub parameter: String,
    /// The interval to look in, `(a, b)` with `a < b`.
    pub range: (f64, f64),
    /// The outcome column of `sweep.csv` (one of [`SEARCH_TARGETS`]).
    pub target: String,
    /// The level the outcome should cross.
    pub level: f64,
    /// The model whose row is read (optional when the scenario has one model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Stop once the bracketing interval is at most this wide (default: the range / 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// The most evaluations (runs of every replicate at one value), the two ends included.
    #[serde(default = "default_budget")]
    pub budget: u64,
    /// Confidence with which an evaluation is called above or below the level: its mean must
    /// be more than `z` standard errors away, `z` the two-sided normal quantile.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
}

fn default_budget() -> u64 {
    16
}

fn default_confidence() -> f64 {
    0.99
}

impl SearchSpec {
    /// The tolerance in force: as written, or the range divided by 64.
    pub fn tolerance(&self) -> f64 {
        self.tolerance.unwrap_or((self.range.1 - self.range.0) / 64.0)
    }
}

/// The names of the models of a scenario (the `model` values of `sweep.csv`).
pub fn model_names(scenario: &Scenario) -> Vec<String> {
    scenario
        .entities
        .iter()
        .filter(|e| matches!(e, EntitySpec::TextModel(_) | EntitySpec::ImageModel(_) | EntitySpec::PluginModel(_)))
        .map(|e| e.name().to_string())
        .collect()
}

/// Problems of a scenario's search section, each keyed by its field (`search.range`).
pub fn check(scenario: &Scenario) -> Vec<Problem> {
    let Some(s) = &scenario.search else { return Vec::new() };
    let mut problems = Vec::new();
    let mut fail =
        |field: &str, message: String| problems.push(Problem { entity: None, kind: "", key: format!("search.{field}"), message });
    let (a, b) = s.range;
    if !(a.is_finite() && b.is_finite() && a < b) {
        fail("range", format!("the range needs two finite numbers a < b, got ({a}, {b})"));
    } else {
        match is_integer(scenario, &s.parameter) {
            Err(e) => fail("parameter", e),
            Ok(integer) => {
                if integer && (a.fract() != 0.0 || b.fract() != 0.0 || a < 0.0) {
                    fail("range", format!("`{}` takes whole numbers: the range needs whole ends, got ({a}, {b})", s.parameter));
                }
                for x in [a, b] {
                    let v = if integer { SweepValue::Unsigned(x.max(0.0) as u64) } else { SweepValue::Float(x) };
                    if let Err(e) = apply(scenario, &[(s.parameter.clone(), v)]) {
                        fail("range", e);
                        break;
                    }
                }
            }
        }
    }
    if !SEARCH_TARGETS.contains(&s.target.as_str()) {
        let list = SEARCH_TARGETS.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ");
        fail("target", format!("`{}` is not an outcome a search can target; use one of {list}", s.target));
    }
    if !s.level.is_finite() {
        fail("level", format!("the level must be a finite number, got {}", s.level));
    }
    let models = model_names(scenario);
    let list = models.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ");
    match &s.model {
        Some(m) if !models.contains(m) => fail("model", format!("`{m}` is not a model of the scenario; its models: {list}")),
        None if models.len() > 1 => {
            fail("model", format!("the scenario has several models: name the one whose outcome is searched ({list})"))
        }
        _ => {}
    }
    if let Some(t) = s.tolerance
        && !(t.is_finite() && t > 0.0)
    {
        fail("tolerance", format!("the tolerance must be a positive number, got {t}"));
    }
    if s.budget < 3 {
        fail("budget", format!("a search needs at least 3 evaluations (both ends and one inside), got {}", s.budget));
    }
    if !(s.confidence > 0.0 && s.confidence < 1.0) {
        fail("confidence", format!("the confidence must be in (0, 1), e.g. 0.99; got {}", s.confidence));
    }
    problems
}
