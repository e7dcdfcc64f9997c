//! Threshold search (`coevo search`): where does an outcome cross a level as one parameter
//! moves, found by bisection with replicate-based uncertainty instead of a grid.
//!
//! Each evaluation runs every replicate of the scenario at one parameter value and reads the
//! target outcome of `sweep.csv` (its mean and standard error over replicates). The
//! evaluation is **above** the level when the mean exceeds it by more than `z` standard
//! errors, **below** when it falls short by more than that, and **undecided** otherwise (`z`
//! the two-sided normal quantile of the search's confidence). Only decided evaluations move
//! the bracket:
//! 1. both ends of the range are evaluated; they must fall on opposite sides, which also says
//!    whether the outcome rises or falls with the parameter (else: not bracketed);
//! 2. the next value is the midpoint of the widest gap between the bracket's ends and the
//!    undecided values inside it (plain bisection while every evaluation is decided); a
//!    decided value replaces the bracket end on its side, an undecided one splits the gaps;
//! 3. the search stops when the bracket is at most the tolerance wide (`converged`), when
//!    every gap is (`noise_limited`: the outcome is within its uncertainty of the level over
//!    a band wider than the tolerance; more replicates narrow it), or when the budget of
//!    evaluations is spent (`budget`).
//!
//! The bracket contains the crossing unless a decision was wrong, which for each evaluation
//! has probability at most `(1 - confidence) / 2` (a mean beyond `z` standard errors on the
//! wrong side). Monotonicity is assumed; it is checked afterwards: two evaluations whose means
//! are ordered against the direction by more than `z` times the standard error of their
//! difference are reported as a violation.
//!
//! The search folder holds `search.csv` (one row per evaluation, in order), `search.json` (the
//! result) and `evaluations/NN/`, each a one-point sweep folder: a rerun of the same search
//! takes the same steps, so it skips the evaluations already done (an interrupted search
//! resumes).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::grid::{SweepFailure, SweepOptions, run_sweep, sweep_header};
use super::sensitivity::normal_quantile;
use crate::output::write_atomic;
use crate::run::{Progress, RunFailure};
use crate::scenario::search::SearchSpec;
use crate::scenario::sweep::is_integer;
use crate::scenario::{Scenario, Sweep, SweepParameter, SweepValue};

/// Where an evaluation's outcome lies relative to the level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Below the level by more than `z` standard errors.
    Below,
    /// Above the level by more than `z` standard errors.
    Above,
    /// Within `z` standard errors of the level.
    Undecided,
}

impl Side {
    /// The side of `mean` (standard error `se`) relative to `level` at `z` standard errors.
    pub fn of(mean: f64, se: f64, level: f64, z: f64) -> Side {
        let margin = z * if se.is_finite() { se } else { 0.0 };
        if mean - level > margin {
            Side::Above
        } else if level - mean > margin {
            Side::Below
        } else {
            Side::Undecided
        }
    }

    /// The name written in `search.csv`.
    pub fn label(self) -> &'static str {
        match self {
            Side::Below => "below",
            Side::Above => "above",
            Side::Undecided => "undecided",
        }
    }
}

/// One evaluation: the outcome's mean and standard error at a parameter value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evaluation {
    /// The parameter value.
    pub x: f64,
    /// Mean of the outcome over replicates.
    pub mean: f64,
    /// Its standard error.
    pub se: f64,
    /// Its side of the level.
    pub side: Side,
    /// The bracket after this evaluation (`None` until both ends are evaluated and decided).
    pub bracket: Option<(f64, f64)>,
}

/// Why a search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The bracket is at most the tolerance wide.
    Converged,
    /// Every gap between evaluations inside the bracket is at most the tolerance, but the
    /// bracket is wider: the outcome is within its uncertainty of the level there.
    NoiseLimited,
    /// The budget of evaluations was spent first.
    Budget,
    /// The ends of the range are not on opposite sides of the level.
    NotBracketed,
}

/// How a bisection runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bisection {
    /// The range `(a, b)`, `a < b`.
    pub range: (f64, f64),
    /// The level the outcome should cross.
    pub level: f64,
    /// Stop when the bracket is at most this wide.
    pub tolerance: f64,
    /// The most evaluations.
    pub budget: usize,
    /// Decisions at this many standard errors.
    pub z: f64,
    /// Evaluate whole numbers only (a count parameter): midpoints are rounded down.
    pub integer: bool,
}

/// What a bisection found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bisected {
    /// Every evaluation, in order.
    pub evaluations: Vec<Evaluation>,
    /// Why it stopped.
    pub status: Status,
    /// The final bracket of the crossing (`None` if not bracketed).
    pub bracket: Option<(f64, f64)>,
    /// Whether the outcome rises with the parameter (`None` if not bracketed).
    pub increasing: Option<bool>,
    /// A pair of evaluations (indices into `evaluations`) whose means are significantly in
    /// the wrong order for a monotone outcome, if any.
    pub monotonicity_violation: Option<(usize, usize)>,
}

/// Bisects for the crossing of `options.level` (see the module docs); `evaluate(x)` returns
/// the outcome's mean and standard error at `x`.
pub fn bisect<E>(options: &Bisection, mut evaluate: impl FnMut(f64) -> Result<(f64, f64), E>) -> Result<Bisected, E> {
    let (a, b) = options.range;
    let mut evaluations: Vec<Evaluation> = Vec::new();
    let mut eval = |x: f64, evaluations: &mut Vec<Evaluation>| -> Result<Side, E> {
        let (mean, se) = evaluate(x)?;
        let side = Side::of(mean, se, options.level, options.z);
        evaluations.push(Evaluation { x, mean, se, side, bracket: None });
        Ok(side)
    };
    let (side_a, side_b) = (eval(a, &mut evaluations)?, eval(b, &mut evaluations)?);
    let bracketed = side_a != Side::Undecided && side_b != Side::Undecided && side_a != side_b;
    if !bracketed {
        return Ok(Bisected { evaluations, status: Status::NotBracketed, bracket: None, increasing: None, monotonicity_violation: None });
    }
    let increasing = side_a == Side::Below;
    let (mut lo, mut hi) = (a, b);
    evaluations[1].bracket = Some((lo, hi));
    let mut undecided: Vec<f64> = Vec::new();
    // Whole-number parameters cannot be bracketed closer than 1.
    let tolerance = if options.integer { options.tolerance.max(1.0) } else { options.tolerance };
    let status = loop {
        if hi - lo <= tolerance {
            break Status::Converged;
        }
        let mut knots = vec![lo];
        knots.extend(undecided.iter().copied());
        knots.push(hi);
        // The widest gap, the leftmost of equals.
        let (left, right) =
            knots.windows(2).map(|w| (w[0], w[1])).fold((lo, lo), |best, g| if g.1 - g.0 > best.1 - best.0 { g } else { best });
        let mut x = left + (right - left) / 2.0;
        if options.integer {
            x = x.floor();
        }
        if right - left <= tolerance || x <= left || x >= right {
            break Status::NoiseLimited;
        }
        if evaluations.len() >= options.budget {
            break Status::Budget;
        }
        match eval(x, &mut evaluations)? {
            side if side == side_a => {
                lo = x;
                undecided.retain(|&u| u > x);
            }
            Side::Undecided => {
                let at = undecided.partition_point(|&u| u < x);
                undecided.insert(at, x);
            }
            _ => {
                hi = x;
                undecided.retain(|&u| u < x);
            }
        }
        evaluations.last_mut().expect("just evaluated").bracket = Some((lo, hi));
    };
    let monotonicity_violation = violation(&evaluations, increasing, options.z);
    Ok(Bisected { evaluations, status, bracket: Some((lo, hi)), increasing: Some(increasing), monotonicity_violation })
}

/// The first pair `(i, j)` of evaluations with `x_i < x_j` whose means go against the
/// direction by more than `z` standard errors of their difference.
fn violation(evaluations: &[Evaluation], increasing: bool, z: f64) -> Option<(usize, usize)> {
    let sign = if increasing { 1.0 } else { -1.0 };
    for (i, e) in evaluations.iter().enumerate() {
        for (j, f) in evaluations.iter().enumerate() {
            let se = (e.se.powi(2) + f.se.powi(2)).sqrt();
            if e.x < f.x && sign * (e.mean - f.mean) > z * if se.is_finite() { se } else { 0.0 } {
                return Some((i, j));
            }
        }
    }
    None
}

/// How to run `coevo search`.
#[derive(Clone, Default)]
pub struct SearchOptions {
    /// Output folder; default `out/<scenario name>-search`.
    pub out_dir: Option<PathBuf>,
    /// Start over: discard evaluations already in the folder.
    pub force: bool,
    /// Told of each evaluation's rounds (one progress per evaluation).
    pub progress: Option<Arc<dyn Progress>>,
    /// Raised by SIGINT or SIGTERM: the evaluation in flight stops after its round (a rerun
    /// resumes the search).
    pub interrupt: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// What `coevo search` wrote and found.
#[derive(Debug, Clone, Serialize)]
pub struct SearchOutcome {
    /// The search folder.
    pub out_dir: PathBuf,
    /// The search as run.
    pub parameter: String,
    /// The outcome column.
    pub target: String,
    /// The model read.
    pub model: String,
    /// The level.
    pub level: f64,
    /// Replicates per evaluation.
    pub replicates: u64,
    /// Training rounds run in all (every evaluation's rounds times its replicates).
    pub replicate_rounds: u64,
    /// The bisection's result.
    pub result: Bisected,
}

/// The header of `search.csv`.
pub const SEARCH_HEADER: &str = "evaluation,value,mean,se,side,bracket_lo,bracket_hi";

/// Runs the scenario's search (its `search` section): evaluations in `OUT/evaluations/NN/`,
/// then `search.csv` and `search.json`. `on_evaluation(index, value, mean, se)` is told of each
/// evaluation as it ends.
pub fn run_search(
    scenario: &Scenario,
    source: &str,
    file: &Path,
    options: &SearchOptions,
    mut on_evaluation: impl FnMut(usize, f64, f64, f64),
) -> Result<SearchOutcome, SweepFailure> {
    let Some(spec) = &scenario.search else {
        return Err(SweepFailure::Run(RunFailure::BadInput(format!(
            "{}: no search: give --param, --range and --target, or add a `search: (parameter: .., range: (a, b), target: .., level: ..)` section",
            file.display()
        ))));
    };
    let model = spec.model.clone().or_else(|| crate::scenario::search::model_names(scenario).into_iter().next()).unwrap_or_default();
    let dir = options.out_dir.clone().unwrap_or_else(|| Path::new("out").join(format!("{}-search", scenario.name)));
    let integer = is_integer(scenario, &spec.parameter).map_err(RunFailure::BadInput)?;
    let bisection = Bisection {
        range: spec.range,
        level: spec.level,
        tolerance: spec.tolerance(),
        budget: spec.budget as usize,
        z: normal_quantile(0.5 + spec.confidence / 2.0),
        integer,
    };
    if options.force && dir.join("evaluations").exists() {
        std::fs::remove_dir_all(dir.join("evaluations")).map_err(|source| RunFailure::Io { path: dir.join("evaluations"), source })?;
    }
    let mut base = scenario.clone();
    base.search = None;
    let mut count = 0usize;
    let mut replicate_rounds = 0u64;
    let result = bisect(&bisection, |x| {
        let value = if integer { SweepValue::Unsigned(x as u64) } else { SweepValue::Float(x) };
        let (mean, se, rounds) =
            evaluate(&base, source, file, &dir.join("evaluations").join(format!("{count:02}")), spec, &model, value, options)?;
        replicate_rounds += rounds;
        on_evaluation(count, x, mean, se);
        count += 1;
        Ok::<_, SweepFailure>((mean, se))
    })?;
    let outcome = SearchOutcome {
        out_dir: dir.clone(),
        parameter: spec.parameter.clone(),
        target: spec.target.clone(),
        model,
        level: spec.level,
        replicates: scenario.replicates,
        replicate_rounds,
        result,
    };
    let mut table = format!("{SEARCH_HEADER}\n");
    for (i, e) in outcome.result.evaluations.iter().enumerate() {
        let (lo, hi) = e.bracket.map_or((String::new(), String::new()), |(l, h)| (fmt(l), fmt(h)));
        let _ = writeln!(table, "{i},{},{},{},{},{lo},{hi}", fmt(e.x), fmt(e.mean), fmt(e.se), e.side.label());
    }
    let io = |path: PathBuf| move |source| RunFailure::Io { path, source };
    let path = dir.join("search.csv");
    write_atomic(&path, table.as_bytes()).map_err(io(path.clone()))?;
    let path = dir.join("search.json");
    write_atomic(&path, &serde_json::to_vec_pretty(&outcome).expect("serialises")).map_err(io(path.clone()))?;
    Ok(outcome)
}

fn fmt(x: f64) -> String {
    crate::output::format_value(x)
}

/// One evaluation: the scenario at `value` as a one-point sweep in `dir` (skipped when done),
/// and the target's mean, standard error and the replicate rounds it took.
#[expect(clippy::too_many_arguments, reason = "the search's scenario, files and spec plus this evaluation's folder and value")]
fn evaluate(
    base: &Scenario,
    source: &str,
    file: &Path,
    dir: &Path,
    spec: &SearchSpec,
    model: &str,
    value: SweepValue,
    options: &SearchOptions,
) -> Result<(f64, f64, u64), SweepFailure> {
    let mut point = base.clone();
    point.sweep = Some(Sweep {
        parameters: vec![SweepParameter {
            path: Some(spec.parameter.clone()),
            entity: None,
            field: None,
            values: vec![value.clone()],
            min: None,
            max: None,
            log: false,
        }],
        ..Sweep::default()
    });
    // The evaluation's identity: the scenario and the value (a rerun of the same search finds
    // its evaluations done; a changed scenario is refused unless --force).
    let identity = format!("{source}\n// coevo search evaluation: {} = {value}\n", spec.parameter);
    let sweep_options = SweepOptions {
        out_dir: Some(dir.to_path_buf()),
        force: options.force,
        progress: options.progress.clone(),
        ..SweepOptions::default()
    };
    run_sweep(&point, &identity, file, &sweep_options)?;
    let csv = dir.join("sweep.csv");
    let header = sweep_header(std::slice::from_ref(&spec.parameter));
    let columns: Vec<&str> = header.trim_end().split(',').collect();
    let col = |name: &str| columns.iter().position(|c| *c == name).expect("a column of the header");
    let mut found = None;
    crate::output::tidy::read_csv(&csv, &header, |n, f| {
        if f[col("model")] == model {
            let number = |name: &str| crate::output::tidy::parse::<f64>(&csv, n, name, f[col(name)]);
            let replicates = number("replicates")?;
            let (mean, se) = match spec.target.as_str() {
                "final_mean" => (number("final_mean")?, number("final_se")?),
                "steady_mean" => (number("steady_mean")?, number("steady_se")?),
                fraction => {
                    let p = number(fraction)?;
                    (p, fraction_se(p, replicates))
                }
            };
            found = Some((mean, if se.is_nan() { 0.0 } else { se }));
        }
        Ok(())
    })
    .map_err(|e| RunFailure::BadInput(e.to_string()))?;
    let (mean, se) = found.ok_or_else(|| RunFailure::BadInput(format!("{}: no row of model `{model}`", csv.display())))?;
    Ok((mean, se, base.rounds * base.replicates))
}

/// Standard error of a fraction `p` of `n` replicates, with Agresti and Coull's adjustment
/// (two successes and two failures added): a fraction of 0 or 1 over a few replicates is
/// not certain, and the plain `sqrt(p (1 - p) / n)` would call it so.
fn fraction_se(p: f64, n: f64) -> f64 {
    let adjusted = (p * n + 2.0) / (n + 4.0);
    (adjusted * (1.0 - adjusted) / (n + 4.0)).sqrt()
}
