//! The `output` and `stop` sections: what a run records and when a replicate ends early
//! (docs/model.md section 13).
//!
//! Recording less never changes what is computed: the summary, the collapse rounds, the drift
//! phases and the early-stop test see every round of every replicate; `every`, `metrics` and
//! `per_text` only choose which of those rows reach the tables.

use std::borrow::Cow;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::validate::Problem;
use crate::metrics::{MetricRow, names};

/// Where results are written and which rows are recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Output folder (default `out/<scenario name>`); the CLI's `--out` overrides it.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Record every `every`-th round (round 0 and each replicate's last round always); default 1.
    #[serde(default = "one")]
    pub every: u64,
    /// Record only these metrics (default: all). Names as in `metrics.csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Vec<String>>,
    /// Record per-text rows (`text` column set); `false` keeps model-level rows only.
    #[serde(default = "yes")]
    pub per_text: bool,
    /// Table format of `metrics` and `aggregate` (default `Csv`).
    #[serde(default)]
    pub format: TableFormat,
    /// When the table of statistics over replicates is written (default `Auto`).
    #[serde(default)]
    pub aggregate: AggregateWhen,
}

fn one() -> u64 {
    1
}
fn yes() -> bool {
    true
}

impl Default for OutputSpec {
    fn default() -> Self {
        OutputSpec {
            dir: None,
            every: 1,
            metrics: None,
            per_text: true,
            format: TableFormat::default(),
            aggregate: AggregateWhen::default(),
        }
    }
}

impl OutputSpec {
    /// Whether round `round` of a run of `rounds` rounds is recorded: round 0, every
    /// `every`-th round, and the last. (A replicate that stops early also records the round
    /// it stopped at.)
    pub fn records_round(&self, round: u64, rounds: u64) -> bool {
        round == 0 || round == rounds || round.is_multiple_of(self.every)
    }

    /// Whether a row of metric `metric` (per text when `per_text`) is recorded.
    pub fn records_metric(&self, metric: &str, per_text: bool) -> bool {
        (self.per_text || !per_text) && self.metrics.as_ref().is_none_or(|m| m.iter().any(|n| n == metric))
    }

    /// The rows of `rows` that are recorded (borrowed as they are when every metric is).
    pub fn select<'r>(&self, rows: &'r [MetricRow]) -> Cow<'r, [MetricRow]> {
        if self.per_text && self.metrics.is_none() {
            Cow::Borrowed(rows)
        } else {
            Cow::Owned(rows.iter().filter(|r| self.records_metric(&r.metric, r.text.is_some())).cloned().collect())
        }
    }

    /// Whether the aggregate table is written for a run of `replicates` replicates.
    pub fn writes_aggregate(&self, replicates: u64) -> bool {
        match self.aggregate {
            AggregateWhen::Auto => replicates >= 2,
            AggregateWhen::Always => true,
            AggregateWhen::Never => false,
        }
    }
}

/// The format of the tables a run appends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TableFormat {
    /// Comma-separated text (`metrics.csv`); byte-identical for the same scenario and seed.
    #[default]
    Csv,
    /// Apache Parquet (`metrics.parquet`), zstd-compressed, written in row groups as the run goes.
    Parquet,
}

impl TableFormat {
    /// The file extension of a table in this format.
    pub fn extension(self) -> &'static str {
        match self {
            TableFormat::Csv => "csv",
            TableFormat::Parquet => "parquet",
        }
    }
}

/// When `aggregate` (statistics over replicates, per round) is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum AggregateWhen {
    /// When there are at least 2 replicates (one replicate has nothing to aggregate).
    #[default]
    Auto,
    /// Always, even for one replicate.
    Always,
    /// Never.
    Never,
}

/// The `stop` section: a replicate ends early once a condition has held `patience` rounds in a
/// row (docs/model.md section 13).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopSpec {
    /// The condition.
    pub when: StopWhen,
    /// Consecutive rounds it must hold (at least 1; default 1).
    #[serde(default = "one")]
    pub patience: u64,
}

/// What ends a replicate early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopWhen {
    /// Every model has collapsed (the scenario's `collapse` thresholds).
    AllCollapsed,
    /// Every text model is absorbed: support 1, so `p` can no longer change.
    Absorbed,
}

/// Why `dir` (a scenario's `output.dir`) could lead outside the scenario's folder, if it
/// could: absolute, empty, or with a `.` or `..` component. Checked on the text, before any
/// file system is consulted, so no link or missing folder can change the answer.
fn escapes(dir: &std::path::Path) -> Option<&'static str> {
    use std::path::Component;
    if dir.as_os_str().is_empty() {
        return Some("is empty");
    }
    for c in dir.components() {
        match c {
            Component::Normal(_) => {}
            Component::RootDir | Component::Prefix(_) => return Some("is absolute"),
            Component::CurDir | Component::ParentDir => return Some("has a `.` or `..` component"),
        }
    }
    // `Path::components` drops inner `.` components: look at the text too.
    let text = dir.to_string_lossy();
    if text.split(['/', '\\']).any(|part| part == "." || part == "..") {
        return Some("has a `.` or `..` component");
    }
    None
}

/// The metric names the engine itself writes (plugins add their own, checked once loaded).
pub fn builtin_metrics() -> Vec<String> {
    let mut all: Vec<String> = [
        names::GINI_SIMPSON,
        names::ENTROPY,
        names::EFFECTIVE_TEXTS,
        names::SUPPORT,
        names::MAX_P,
        names::SPREAD,
        names::TV_TO_INITIAL,
        names::P,
        names::TRACE,
        names::TRACE_SQRT,
        names::LOGDET,
        names::EFFECTIVE_RANK,
        names::FIDELITY,
        names::FRECHET_TO_INITIAL,
        names::FRECHET_LOCAL,
        names::MATTHEW_INDEX,
        names::REGULARIZED,
        names::INJECTED,
        names::FRECHET_TO_DATA,
        names::FRECHET_TO_DATA_MARGINAL,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.push(names::weighted(names::TRACE));
    all
}

/// Problems of the `output` and `stop` sections. Metric names are checked against the
/// built-in ones unless the scenario has plugin models (whose names are known once their
/// libraries are loaded: see `coevo::resolve`).
pub fn check(output: &OutputSpec, stop: Option<&StopSpec>, has_plugins: bool) -> Vec<Problem> {
    let problem = |key: &str, message: &str| Problem { entity: None, kind: "", key: key.into(), message: message.into() };
    let mut problems = Vec::new();
    if let Some(dir) = &output.dir
        && let Some(why) = escapes(dir)
    {
        problems.push(problem(
            "output.dir",
            &format!(
                "{} {why}: a scenario may only name a folder below its own (relative, e.g. \"runs/a\"); give any other folder with --out",
                super::error::shown(&dir.display().to_string())
            ),
        ));
    }
    if output.every == 0 {
        problems.push(problem("output.every", "every must be at least 1 (record every k-th round; 1 records all)"));
    }
    if output.metrics.as_ref().is_some_and(Vec::is_empty) {
        problems.push(problem("output.metrics", "an empty list records nothing; leave `metrics` out to record every metric"));
    }
    if !has_plugins {
        problems.extend(check_metric_names(output, &[]));
    }
    if stop.is_some_and(|s| s.patience == 0) {
        problems.push(problem("stop.patience", "patience must be at least 1 round (the condition must hold that many rounds in a row)"));
    }
    problems
}

/// Problems of `output.metrics`: names that are neither built in nor in `plugin_metrics` (the
/// names the scenario's plugin models report, once their libraries are loaded).
pub fn check_metric_names(output: &OutputSpec, plugin_metrics: &[String]) -> Vec<Problem> {
    let Some(metrics) = &output.metrics else { return Vec::new() };
    let mut known = builtin_metrics();
    known.extend(plugin_metrics.iter().filter(|m| !known.contains(m)).cloned().collect::<Vec<_>>());
    metrics
        .iter()
        .filter(|m| !known.contains(m))
        .map(|m| Problem {
            entity: None,
            kind: "",
            key: "output.metrics".into(),
            message: format!("unknown metric {m:?}; valid metrics: {}", known.join(", ")),
        })
        .collect()
}
