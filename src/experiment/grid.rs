//! Running a sweep: every point times the replicates; shards, single points and claim
//! workers; failures and interruptions recorded point by point; resumption and merge.
//!
//! Layout of a sweep's output folder:
//! - `sweep.json`: the sweep's identity (scenario hash, parameter paths, number of points)
//!   and which shard this folder ran;
//! - `points/NNNN/`: one complete run output per point (`metrics` and `aggregate` tables,
//!   `phases.csv`, `summary.json`, `manifest.json`), plus its record once it ended:
//!   `done.json` when it completed, `failed.json` and `error.txt` when it failed (the
//!   manifest then says `failed: ...` too). A point that was interrupted has its manifest
//!   say `interrupted` (and a `checkpoint.json` with `--checkpoint-every`). A rerun skips
//!   done points, retries failed ones and resumes a point that has a checkpoint from it;
//! - `claims/NNNN.G`: the claim files of `--claim` workers (see [`super::claims`]);
//! - `sweep.csv`: one row per point and model, a column per swept parameter, the point's
//!   `status`, then its summary (see [`SWEEP_SUMMARY_COLUMNS`]). Rows are in point order,
//!   whatever ran in parallel, so a merge of shards, or the table of claim workers, is
//!   byte-identical to a single run.
//!
//! Which points a process runs is its [`Share`]: all of them, a shard (`--shard i/n`: the
//! points whose index is `i` modulo `n`, in a folder of its own, joined by `coevo merge`),
//! one point (`--point K`), or whichever are free (`--claim`: any number of workers on one
//! folder).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::claims::{Claims, Lease};
use crate::output::aggregate::Stats;
use crate::output::phases::LastPhases;
use crate::output::{Summary, format_value, write_atomic};
use crate::run::{Progress, RunFailure, RunOptions};
use crate::scenario::design::DesignPoints;
use crate::scenario::sweep::SweepValue;
use crate::scenario::{Scenario, TableFormat};

/// A deterministic share of a sweep: the points with `index % count == index_of_shard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// Parses `i/n` with `0 <= i < n`.
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "write the shard as i/n: shard i (numbered from 0) of n, e.g. 0/4 ... 3/4";
        let (i, n) = s.split_once('/').ok_or_else(|| format!("shard `{s}` has no `/`; {usage}"))?;
        let index: usize = i.trim().parse().map_err(|_| format!("shard index `{i}` is not a non-negative integer; {usage}"))?;
        let count: usize = n.trim().parse().map_err(|_| format!("shard count `{n}` is not a positive integer; {usage}"))?;
        if count == 0 {
            return Err(format!("shard count must be at least 1, got `{s}`; {usage}"));
        }
        if index >= count {
            return Err(format!("shard index {index} must be below the shard count {count} (shards are 0..{}); {usage}", count - 1));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Which points of a sweep a process runs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Share {
    /// Every point.
    #[default]
    All,
    /// One shard's points, into a folder of its own (`coevo merge` joins the shards).
    Shard(Shard),
    /// Exactly this point (a launcher that starts one process per point).
    Point(usize),
    /// Whichever points are free, through claim files in the shared folder, for as long as
    /// any is left; expired claims (dead workers) are taken over after the lease.
    Claim(Lease),
}

impl Share {
    /// Whether other processes may write the same folder at the same time: then `sweep.csv`
    /// is written only once every point ended (its bytes then do not depend on who writes it).
    fn shares_folder(self) -> bool {
        matches!(self, Share::Point(_) | Share::Claim(_))
    }
}

/// How to run a sweep.
#[derive(Debug, Clone, Default)]
pub struct SweepOptions {
    /// Output folder; default `out/<scenario name>-sweep`.
    pub out_dir: Option<PathBuf>,
    /// Which points this process runs.
    pub share: Share,
    /// Start over: discard the points already in the folder (of this sweep or another). Not
    /// with [`Share::Point`] or [`Share::Claim`], whose folder other processes use.
    pub force: bool,
    /// Told of the sweep's progress as one run: started once with the training rounds of
    /// every point this run may compute, advanced by each point's rounds as they complete
    /// (points run in parallel), finished once (see [`Progress`]).
    pub progress: Option<Arc<dyn Progress>>,
    /// Write a checkpoint of each point every this many rounds.
    pub checkpoint_every: Option<u64>,
    /// Raised (by the CLI's SIGINT/SIGTERM handler) to stop: every running point stops after
    /// its round in flight (its manifest says `interrupted`, its checkpoint is kept), no
    /// further point starts, and the sweep ends with [`SweepFailure::Interrupted`].
    pub interrupt: Option<Arc<AtomicBool>>,
}

/// `sweep.json`: what a sweep folder holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepManifest {
    /// coevo version that wrote it.
    pub coevo_version: String,
    /// The scenario file.
    pub scenario_file: String,
    /// SHA-256 of the scenario as run (source and command-line overrides).
    pub sweep_sha256: String,
    /// The swept parameter paths, in grid order.
    pub parameters: Vec<String>,
    /// Number of grid points.
    pub points: usize,
    /// The shard this folder ran (`None`: all points, or a merge, or a folder shared by
    /// `--point` runs or `--claim` workers).
    pub shard: Option<Shard>,
    /// The design, as written in the scenario (`None`: a grid, as before designs existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub design: Option<String>,
}

/// The points of a sweep folder, one row per point (see [`DesignPoints::csv`]).
pub const DESIGN_FILE: &str = "design.csv";

/// The summary columns of `sweep.csv`, after `point`, the parameters, `status` and `model`.
///
/// - `diversity_metric`: what is summarised (`gini_simpson` for text models, the p-weighted
///   mean trace `weighted_trace` for image models);
/// - `initial`: its value at round 0 (replicate 0);
/// - `final_mean`, `final_se`: its value after the last round, mean and standard error over
///   replicates;
/// - `steady_mean`, `steady_se`: the steady-state level, the mean over the last 10% of rounds
///   (at least one) per replicate, then mean and standard error over replicates;
/// - `collapsed_fraction`: fraction of replicates that collapsed (the scenario's `collapse`
///   thresholds); `collapse_round_median`: median round of collapse over those (empty if none);
/// - `stationary_fraction`: fraction of replicates whose drift phase at the last round is
///   `stationary` (empty for models without drift curves).
pub const SWEEP_SUMMARY_COLUMNS: &str = "diversity_metric,replicates,initial,final_mean,final_se,steady_mean,steady_se,collapsed_fraction,collapse_round_median,stationary_fraction";

/// How a point ended: its `status` in `sweep.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PointStatus {
    /// Completed: one row per model with its summary.
    Ok,
    /// Its run failed (a model error, a panic, an I/O error): one row, no summary; the error
    /// is in `points/NNNN/error.txt`. A rerun retries it (`--claim` workers leave it alone).
    Failed,
    /// Stopped by SIGINT or SIGTERM after a round: one row, no summary. A rerun resumes it
    /// (from its checkpoint with `--checkpoint-every`).
    Interrupted,
}

impl PointStatus {
    /// The word in `sweep.csv`.
    pub fn label(self) -> &'static str {
        match self {
            PointStatus::Ok => "ok",
            PointStatus::Failed => "failed",
            PointStatus::Interrupted => "interrupted",
        }
    }
}

/// The record of a point that ended: `points/NNNN/done.json` (status `ok`) or `failed.json`
/// (status `failed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRecord {
    /// Point index.
    pub point: usize,
    /// How it ended.
    pub status: PointStatus,
    /// The point's parameter values (`path = value, ...`).
    pub values: String,
    /// Its `sweep.csv` rows, formatted.
    pub rows: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One point of a sweep: its index, parameter values and validated scenario.
#[derive(Debug, Clone)]
pub struct SweepPoint {
    /// Its index, from 0 (its folder `points/NNNN`, its row order in `sweep.csv`).
    pub index: usize,
    /// The `(path, value)` assignments that make it from the base scenario.
    pub values: Vec<(String, SweepValue)>,
    /// The base scenario with the values applied, validated, without a sweep section.
    pub scenario: Scenario,
}

impl SweepPoint {
    /// Its values as `path = value, ...` (for messages).
    pub fn describe(&self) -> String {
        self.values.iter().map(|(p, v)| format!("{p} = {v}")).collect::<Vec<_>>().join(", ")
    }
}

/// The points of a scenario's sweep, in order, each validated: the one place the points of a
/// sweep are enumerated (a run, `--list-points`, the table's rows of failed points). A value
/// that makes the scenario invalid is bad input, naming the point.
pub fn sweep_points(scenario: &Scenario, file: &Path) -> Result<Vec<SweepPoint>, RunFailure> {
    let design = design_points(scenario, file)?;
    (0..design.len())
        .map(|index| {
            let point =
                design.point(scenario, index).map_err(|e| RunFailure::BadInput(format!("{}: sweep point {index}: {e}", file.display())))?;
            Ok(SweepPoint { index, values: design.assignments(index), scenario: point })
        })
        .collect()
}

/// The design's points of a scenario's sweep ([`crate::scenario::design::points`]), or why
/// there are none.
pub fn design_points(scenario: &Scenario, file: &Path) -> Result<DesignPoints, RunFailure> {
    let Some(sweep) = &scenario.sweep else {
        return Err(RunFailure::BadInput(format!(
            "{}: the scenario has no `sweep` section; add one, e.g. sweep: (parameters: [(path: \"captioner.batch\", values: [100, 1000])])",
            file.display()
        )));
    };
    crate::scenario::design::points(sweep, scenario).map_err(|e| RunFailure::BadInput(format!("{}: {e}", file.display())))
}

/// The swept parameter paths of a scenario (the columns of `sweep.csv`; a table's header).
fn parameter_paths(scenario: &Scenario) -> Vec<String> {
    scenario.sweep.as_ref().map(crate::scenario::Sweep::paths).unwrap_or_default()
}

/// `--list-points`: a header line `point` then the parameter paths, and one line per point
/// with its index and values, tab-separated (a tab, newline or backslash inside a value is
/// written `\t`, `\n`, `\\`).
pub fn list_points(scenario: &Scenario, points: &[SweepPoint]) -> String {
    let escape = |s: &str| s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n");
    let mut out = String::from("point");
    for p in parameter_paths(scenario) {
        let _ = write!(out, "\t{}", escape(&p));
    }
    out.push('\n');
    for point in points {
        let _ = write!(out, "{}", point.index);
        for (_, v) in &point.values {
            let _ = write!(out, "\t{}", escape(&v.to_string()));
        }
        out.push('\n');
    }
    out
}

/// The default sweep folder.
pub fn sweep_dir(scenario: &Scenario, options: &SweepOptions) -> PathBuf {
    options.out_dir.clone().unwrap_or_else(|| Path::new("out").join(format!("{}-sweep", scenario.name)))
}

/// The header line of `sweep.csv` for the swept parameter paths.
pub fn sweep_header(parameters: &[String]) -> String {
    let mut h = String::from("point");
    for p in parameters {
        let _ = write!(h, ",{p}");
    }
    let _ = writeln!(h, ",status,model,{SWEEP_SUMMARY_COLUMNS}");
    h
}

/// The name of point `index` among `total`: its index, zero-padded to at least four digits
/// (its folder under `points/`, its claim files under `claims/`).
pub fn point_name(index: usize, total: usize) -> String {
    let width = total.saturating_sub(1).to_string().len().max(4);
    format!("{index:0width$}")
}

/// Folder of point `index` among `total`.
pub fn point_dir(dir: &Path, index: usize, total: usize) -> PathBuf {
    dir.join("points").join(point_name(index, total))
}

/// The RON source of a point's scenario (what its manifest hashes and its checkpoint embeds).
pub fn point_source(point: &Scenario) -> String {
    use ron::extensions::Extensions;
    let config = ron::ser::PrettyConfig::new().extensions(Extensions::UNWRAP_VARIANT_NEWTYPES | Extensions::IMPLICIT_SOME);
    ron::ser::to_string_pretty(point, config).expect("a scenario serialises to RON")
}

/// What a sweep run produced.
#[derive(Debug, Clone)]
pub struct SweepOutcome {
    /// The sweep folder.
    pub out_dir: PathBuf,
    /// Points in the sweep.
    pub points: usize,
    /// Points this run computed (the others were done already, or belong to other shards or
    /// workers).
    pub computed: usize,
    /// Points done in this folder now.
    pub done: usize,
    /// Whether `sweep.csv` was written (a process sharing the folder writes it only once
    /// every point ended).
    pub table_written: bool,
}

/// A point that failed: its index, values and error.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedPoint {
    /// Point index.
    pub point: usize,
    /// Its parameter values (`path = value, ...`).
    pub values: String,
    /// The error its run ended with.
    pub error: String,
}

/// Why a sweep did not end with every point of its share done.
#[derive(Debug, thiserror::Error)]
pub enum SweepFailure {
    /// The sweep could not run (bad input: exit code 2; its own files: 1).
    #[error(transparent)]
    Run(#[from] RunFailure),
    /// Every point ran, and these failed (exit code 1). The others are done, and in
    /// `sweep.csv` with the failed ones (status `failed`).
    #[error("{}", failed_message(.0))]
    PointsFailed(Vec<FailedPoint>),
    /// SIGINT or SIGTERM stopped the sweep (exit code 130).
    #[error(
        "interrupted: {} point(s) stopped after their round in flight{}, {not_started} other(s) not done; run the same command again to continue{}",
        stopped.len(),
        listed(stopped),
        if failed.is_empty() { String::new() } else { format!(". Also, {}", failed_message(failed)) }
    )]
    Interrupted {
        /// The points that were running (their manifests say `interrupted`).
        stopped: Vec<usize>,
        /// The other points of this process's share that have not ended (not started, or, for
        /// a claim worker, running in other workers).
        not_started: usize,
        /// Points that failed before the interruption.
        failed: Vec<FailedPoint>,
    },
}

impl SweepFailure {
    /// Process exit code: that of the run failure, 1 when points failed, 130 when interrupted.
    pub fn exit_code(&self) -> i32 {
        match self {
            SweepFailure::Run(e) => e.exit_code(),
            SweepFailure::PointsFailed(_) => 1,
            SweepFailure::Interrupted { .. } => 130,
        }
    }
}

/// ` (points 1, 3)`, or nothing for an empty list.
fn listed(points: &[usize]) -> String {
    if points.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = points.iter().take(20).map(usize::to_string).collect();
    let noun = if points.len() == 1 { "point" } else { "points" };
    format!(" ({noun} {}{})", shown.join(", "), if points.len() > 20 { ", ..." } else { "" })
}

fn failed_message(failed: &[FailedPoint]) -> String {
    let mut m = format!("{} point(s) failed; the others ran, and a rerun retries the failed ones:", failed.len());
    for f in failed {
        let _ = write!(m, "\n  point {} ({}): {}", f.point, f.values, f.error);
    }
    m
}

/// How one point's run ended, in this process.
enum PointEnd {
    Done,
    Failed,
    Interrupted,
}

/// Runs the points of a sweep that this process's [`Share`] gives it and that are not done
/// yet (failed points are retried, interrupted ones resumed), then writes `sweep.csv` from
/// every point recorded in the folder.
pub fn run_sweep(scenario: &Scenario, source: &str, file: &Path, options: &SweepOptions) -> Result<SweepOutcome, SweepFailure> {
    let points = sweep_points(scenario, file)?;
    let dir = sweep_dir(scenario, options);
    let total = points.len();
    let bad = |m: String| SweepFailure::Run(RunFailure::BadInput(m));
    if options.force && options.share.shares_folder() {
        return Err(bad(
            "--force cannot be combined with --point or --claim: other processes use the folder; remove it before starting them to start over"
                .into(),
        ));
    }
    if let Share::Point(k) = options.share
        && k >= total
    {
        return Err(bad(format!("--point {k}: the sweep has {total} points, numbered 0 to {}", total.saturating_sub(1))));
    }
    let manifest = SweepManifest {
        coevo_version: env!("CARGO_PKG_VERSION").to_string(),
        scenario_file: file.display().to_string(),
        sweep_sha256: sweep_hash(scenario, source),
        parameters: parameter_paths(scenario),
        points: total,
        shard: if let Share::Shard(s) = options.share { Some(s) } else { None },
        design: scenario.sweep.as_ref().map(|s| &s.design).filter(|d| !d.is_grid()).map(ToString::to_string),
    };
    let manifest_path = dir.join("sweep.json");
    if let Ok(bytes) = std::fs::read(&manifest_path) {
        let old: SweepManifest = serde_json::from_slice(&bytes).map_err(|e| bad(format!("{}: {e}", manifest_path.display())))?;
        if old.sweep_sha256 != manifest.sweep_sha256 && !options.force {
            return Err(bad(format!(
                "{} holds points of another sweep (scenario or overrides changed); pass --force to start over, or --out DIR",
                dir.display()
            )));
        }
    }
    if options.force {
        // Start over: no point of an earlier sweep in this folder counts as done.
        for sub in ["points", "claims"] {
            let path = dir.join(sub);
            if path.exists() {
                std::fs::remove_dir_all(&path).map_err(io(&path))?;
            }
        }
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    write_atomic(&manifest_path, &serde_json::to_vec_pretty(&manifest).expect("serialises")).map_err(io(&manifest_path))?;
    let design_path = dir.join(DESIGN_FILE);
    write_atomic(&design_path, design_points(scenario, file)?.csv().as_bytes()).map_err(io(&design_path))?;

    let runner = PointRunner { dir: &dir, total, file, options, parameters: manifest.parameters.len() };
    let ended: Vec<(usize, PointEnd)> = match options.share {
        Share::Claim(lease) => runner.run_claimed(&points, lease)?,
        share => {
            let mine: Vec<usize> = match share {
                Share::Shard(s) => (0..total).filter(|i| i % s.count == s.index).collect(),
                Share::Point(k) => vec![k],
                _ => (0..total).collect(),
            };
            let pending: Vec<usize> = mine.into_iter().filter(|&i| !point_dir(&dir, i, total).join(DONE).exists()).collect();
            runner.run_listed(&points, &pending)
        }
    };

    let records = records(&dir, total)?;
    let finished = records.len() == total;
    let table_written = !options.share.shares_folder() || finished;
    if table_written {
        // A process alone on its folder also lists its interrupted points; processes that
        // share a folder write only the finished table, the same whoever writes it.
        let interrupted: Vec<&SweepPoint> = if options.share.shares_folder() {
            Vec::new()
        } else {
            points.iter().filter(|p| !records.contains_key(&p.index) && point_interrupted(&point_dir(&dir, p.index, total))).collect()
        };
        write_table(&dir, &manifest.parameters, &records, &interrupted)?;
    }
    let done = records.values().filter(|r| r.status == PointStatus::Ok).count();
    // This process's share of the points: a claim worker's is the whole sweep.
    let share: Vec<usize> = match options.share {
        Share::All | Share::Claim(_) => (0..total).collect(),
        Share::Shard(s) => (0..total).filter(|i| i % s.count == s.index).collect(),
        Share::Point(k) => vec![k],
    };
    let failed: Vec<FailedPoint> = share
        .iter()
        .filter_map(|i| records.get(i).filter(|r| r.status == PointStatus::Failed))
        .map(|r| FailedPoint { point: r.point, values: r.values.clone(), error: r.error.clone().unwrap_or_default() })
        .collect();
    let unfinished = share.iter().filter(|i| !records.contains_key(i)).count();
    if is_raised(options.interrupt.as_ref()) && unfinished > 0 {
        let stopped: Vec<usize> = ended.iter().filter(|(_, e)| matches!(e, PointEnd::Interrupted)).map(|(i, _)| *i).collect();
        return Err(SweepFailure::Interrupted { not_started: unfinished - stopped.len(), stopped, failed });
    }
    if !failed.is_empty() {
        return Err(SweepFailure::PointsFailed(failed));
    }
    let computed = ended.iter().filter(|(_, e)| matches!(e, PointEnd::Done)).count();
    Ok(SweepOutcome { out_dir: dir, points: total, computed, done, table_written })
}

fn is_raised(flag: Option<&Arc<AtomicBool>>) -> bool {
    flag.is_some_and(|f| f.load(Ordering::Relaxed))
}

/// The completion record of a done point, and of a failed one, in its folder.
const DONE: &str = "done.json";
const FAILED: &str = "failed.json";
/// The error of a failed point, as text.
const ERROR: &str = "error.txt";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RunFailure + use<> {
    let path = path.to_path_buf();
    move |source| RunFailure::Io { path, source }
}

/// Identity of a sweep: its source and the effective top-level values the CLI may override.
fn sweep_hash(scenario: &Scenario, source: &str) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update(format!("seed={} rounds={} replicates={}", scenario.seed, scenario.rounds, scenario.replicates).as_bytes());
    // `--format parquet` too, so a folder's points never mix formats (CSV, the default, adds
    // nothing: folders from before the option keep their identity).
    if scenario.output.format != TableFormat::Csv {
        h.update(format!(" format={:?}", scenario.output.format).as_bytes());
    }
    // A table's points are in its file, not in the source: a changed file is another sweep.
    if let Some(table) = scenario.sweep.as_ref().and_then(|s| s.table.as_ref()) {
        h.update(format!(" table={}", table.sha256).as_bytes());
    }
    format!("{:x}", h.finalize())
}

/// A point's view of the sweep's [`Progress`]: its rounds advance the sweep's count, its start
/// and end are not the sweep's. Rounds a resumed point did before its checkpoint are counted
/// when it starts, since the sweep's total includes them.
struct PointProgress(Arc<dyn Progress>);

impl Progress for PointProgress {
    fn start(&self, _name: &str, _total: u64, done: u64) {
        self.0.advance(done);
    }
    fn advance(&self, rounds: u64) {
        self.0.advance(rounds);
    }
    fn finish(&self) {}
}

/// Runs points of one sweep folder and records how each ended.
struct PointRunner<'a> {
    dir: &'a Path,
    total: usize,
    file: &'a Path,
    options: &'a SweepOptions,
    /// Number of swept parameters (the empty fields of a row without a summary).
    parameters: usize,
}

impl PointRunner<'_> {
    /// Starts the sweep's progress over `points`, and returns the points' view of it.
    fn progress(&self, label: &str, points: impl Iterator<Item = u64>) -> Option<Arc<dyn Progress>> {
        let p = self.options.progress.as_ref()?;
        p.start(label, points.sum(), 0);
        Some(Arc::new(PointProgress(p.clone())))
    }

    /// Runs the `pending` points, in parallel; once interrupted, no further point starts.
    fn run_listed(&self, points: &[SweepPoint], pending: &[usize]) -> Vec<(usize, PointEnd)> {
        let name = points.first().map_or("sweep", |p| p.scenario.name.as_str()).to_string();
        let progress = self.progress(&format!("{name}: {} points", pending.len()), pending.iter().map(|&i| points[i].scenario.rounds));
        let ended: Vec<Option<(usize, PointEnd)>> = pending
            .par_iter()
            .map(|&i| (!is_raised(self.options.interrupt.as_ref())).then(|| (i, self.run_point(&points[i], progress.clone()))))
            .collect();
        if let Some(p) = &self.options.progress {
            p.finish();
        }
        ended.into_iter().flatten().collect()
    }

    /// `--claim`: claims free points (then expired claims) and runs them, as many at a time
    /// as the thread pool has threads, until every point ended; while other workers hold the
    /// last points, waits for them (taking over any whose lease expires).
    fn run_claimed(&self, points: &[SweepPoint], lease: Lease) -> Result<Vec<(usize, PointEnd)>, RunFailure> {
        let claims_dir = self.dir.join("claims");
        let claims = Claims::new(self.dir, self.total, lease).map_err(io(&claims_dir))?;
        let ended_records = |i: usize| {
            let d = point_dir(self.dir, i, self.total);
            d.join(DONE).exists() || d.join(FAILED).exists()
        };
        let name = points.first().map_or("sweep", |p| p.scenario.name.as_str()).to_string();
        let progress = self
            .progress(&format!("{name}: claiming points"), points.iter().filter(|p| !ended_records(p.index)).map(|p| p.scenario.rounds));
        let ended = Mutex::new(Vec::new());
        let failure: Mutex<Option<RunFailure>> = Mutex::new(None);
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| claims.heartbeat(&stop));
            let workers = rayon::current_num_threads().clamp(1, self.total.max(1));
            loop {
                (0..workers).into_par_iter().for_each(|_| {
                    while !is_raised(self.options.interrupt.as_ref()) {
                        let claim = match claims.next(ended_records) {
                            Ok(Some(c)) => c,
                            Ok(None) => break,
                            Err(e) => {
                                *failure.lock().expect("not poisoned") = Some(io(&claims_dir)(e));
                                break;
                            }
                        };
                        let end = self.run_point(&points[claim.point], progress.clone());
                        let point = claim.point;
                        claims.end(claim, matches!(end, PointEnd::Interrupted));
                        ended.lock().expect("not poisoned").push((point, end));
                    }
                });
                if is_raised(self.options.interrupt.as_ref())
                    || failure.lock().expect("not poisoned").is_some()
                    || (0..self.total).all(ended_records)
                {
                    break;
                }
                // Other workers hold the last points: look again a heartbeat later.
                let wait = std::time::Instant::now();
                while wait.elapsed() < lease.heartbeat() && !is_raised(self.options.interrupt.as_ref()) {
                    std::thread::sleep(Duration::from_millis(20).min(lease.heartbeat()));
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        if let Some(p) = &self.options.progress {
            p.finish();
        }
        if let Some(e) = failure.into_inner().expect("not poisoned") {
            return Err(e);
        }
        let mut ended = ended.into_inner().expect("not poisoned");
        ended.sort_by_key(|(i, _)| *i);
        Ok(ended)
    }

    /// Runs one point (resuming it from its checkpoint if it has one) and records how it
    /// ended: `done.json`, or `failed.json` and `error.txt`. A panic in the point's run is
    /// its failure, not the sweep's.
    fn run_point(&self, point: &SweepPoint, progress: Option<Arc<dyn Progress>>) -> PointEnd {
        let (index, total) = (point.index, self.total);
        let out = point_dir(self.dir, index, total);
        let run_options = RunOptions {
            out_dir: Some(out.clone()),
            destination: crate::run::Destination::Folder,
            force: true,
            progress,
            checkpoint_every: self.options.checkpoint_every,
            interrupt: self.options.interrupt.clone(),
            // The sweep's size, every point included, was checked when its scenario was loaded.
            max_memory: None,
            // A point resumed from its checkpoint reads its scenario again: its hosted models
            // come from the sweep's scenario.
            models: point.scenario.hosted_models(),
        };
        let attempt = || -> Result<Summary, RunFailure> {
            clear_stale(&out)?;
            let outcome = if out.join(crate::checkpoint::FILE).exists() {
                crate::run::resume(&out, &run_options)?
            } else {
                let point_file = PathBuf::from(format!("{}#point{index}", self.file.display()));
                crate::run::run(&point.scenario, &point_source(&point.scenario), &point_file, &run_options)?
            };
            Ok(outcome.summary)
        };
        let error = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(attempt)) {
            Ok(Ok(summary)) => match self.record_done(point, &out, &summary) {
                Ok(()) => return PointEnd::Done,
                Err(e) => e.to_string(),
            },
            Ok(Err(RunFailure::Interrupted { .. })) => return PointEnd::Interrupted,
            Ok(Err(e)) => e.to_string(),
            Err(panic) => {
                let message = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
                format!("the run panicked: {}", message.unwrap_or_else(|| "(no message)".into()))
            }
        };
        let record = PointRecord {
            point: index,
            status: PointStatus::Failed,
            values: point.describe(),
            rows: status_row(index, &point.values, PointStatus::Failed, self.parameters),
            error: Some(error.clone()),
        };
        let written = write_atomic(&out.join(ERROR), format!("{error}\n").as_bytes())
            .and_then(|()| write_atomic(&out.join(FAILED), &serde_json::to_vec_pretty(&record).expect("serialises")));
        if let Err(e) = written {
            tracing::error!("point {index} failed ({error}), and recording it in {} failed: {e}", out.display());
        }
        PointEnd::Failed
    }

    fn record_done(&self, point: &SweepPoint, out: &Path, summary: &Summary) -> Result<(), RunFailure> {
        let rows = point_rows(point, summary, &last_phases(out).map_err(io(out))?);
        let done = PointRecord { point: point.index, status: PointStatus::Ok, values: point.describe(), rows, error: None };
        let path = out.join(DONE);
        write_atomic(&path, &serde_json::to_vec_pretty(&done).expect("serialises")).map_err(io(&path))
    }
}

/// Before a point (re)starts: the record of an earlier failure goes, and so do the temporary
/// files of atomic writes that a killed process left.
fn clear_stale(out: &Path) -> Result<(), RunFailure> {
    if !out.exists() {
        return Ok(());
    }
    crate::output::files::remove_temp_files(out).map_err(io(out))?;
    for record in [FAILED, ERROR] {
        let path = out.join(record);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&path)(e)),
            _ => {}
        }
    }
    Ok(())
}

/// Whether the point in `out` was interrupted (its manifest says so) and has not ended since.
fn point_interrupted(out: &Path) -> bool {
    let status = std::fs::read(out.join("manifest.json")).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    status.is_some_and(|m| m["status"] == "interrupted")
}

/// The one `sweep.csv` row of a point without a summary (failed or interrupted): its index,
/// values and status, the model and summary fields empty.
fn status_row(index: usize, values: &[(String, SweepValue)], status: PointStatus, parameters: usize) -> String {
    debug_assert_eq!(values.len(), parameters);
    let mut row = format!("{index}");
    for (_, v) in values {
        let _ = write!(row, ",{v}");
    }
    let empty = 1 + SWEEP_SUMMARY_COLUMNS.split(',').count();
    let _ = writeln!(row, ",{}{}", status.label(), ",".repeat(empty));
    row
}

/// The phase of every model and replicate at its last round, from the `phases.csv` of the run
/// folder `out` (empty without one). Rows come in round order and each replicate's last round
/// is always recorded (the planned last round, or the one it stopped early at): the last row
/// per replicate and model is its phase at its last round. Read from the file, not from the
/// run's outcome, so that a point resumed from a checkpoint counts the replicates that
/// stopped before it.
fn last_phases(out: &Path) -> std::io::Result<LastPhases> {
    let mut last_phase = LastPhases::new();
    let phases = out.join("phases.csv");
    if phases.exists() {
        crate::output::tidy::read_csv(&phases, crate::output::phases::PHASES_HEADER, |n, f| {
            last_phase.insert((f[2].to_string(), crate::output::tidy::parse(&phases, n, "replicate", f[0])?), f[7].to_string());
            Ok(())
        })?;
    }
    Ok(last_phase)
}

/// The `sweep.csv` rows of one completed point, from its summary and the phase of each model
/// and replicate at its last round (a run's [`RunOutcome::last_phases`](crate::run::RunOutcome),
/// or its folder's `phases.csv`).
pub fn point_rows(point: &SweepPoint, summary: &Summary, last_phase: &LastPhases) -> String {
    let Some(first) = summary.replicates.first() else { return String::new() };
    let replicates = summary.replicates.len();
    let mut out_rows = String::new();
    for (m, model) in first.iter().enumerate() {
        let across: Vec<_> = summary.replicates.iter().filter_map(|r| r.get(m)).collect();
        let finals: Vec<f64> = across.iter().map(|s| s.last).collect();
        // The steady-state level each replicate's summary computed as the rows streamed past.
        let levels: Vec<f64> = across.iter().map(|s| s.steady_level.unwrap_or(f64::NAN)).collect();
        let collapsed: Vec<f64> = across.iter().filter_map(|s| s.collapsed_at).map(|r| r as f64).collect();
        let (f, s) = (Stats::of(&finals), Stats::of(&levels));
        let phase_count = (0..replicates as u64).filter(|&r| last_phase.contains_key(&(model.model.clone(), r))).count();
        let stationary = (0..replicates as u64)
            .filter(|&r| last_phase.get(&(model.model.clone(), r)).is_some_and(|p| p == crate::diagnostics::ChainPhase::Stationary.label()))
            .count();
        let _ = write!(out_rows, "{}", point.index);
        for (_, v) in &point.values {
            let _ = write!(out_rows, ",{v}");
        }
        let _ = writeln!(
            out_rows,
            ",{},{},{},{replicates},{},{},{},{},{},{},{},{}",
            PointStatus::Ok.label(),
            model.model,
            model.diversity_metric,
            format_value(model.initial),
            format_value(f.mean),
            format_value(f.se),
            format_value(s.mean),
            format_value(s.se),
            format_value(collapsed.len() as f64 / replicates as f64),
            if collapsed.is_empty() { String::new() } else { format_value(Stats::of(&collapsed).q50) },
            if phase_count == 0 { String::new() } else { format_value(stationary as f64 / phase_count as f64) },
        );
    }
    out_rows
}

/// Reads the records of the points of a sweep folder that ended: point index to its record
/// (`done.json` before `failed.json`: a point done by a retry is done).
fn records(dir: &Path, total: usize) -> Result<BTreeMap<usize, PointRecord>, RunFailure> {
    let mut ended = BTreeMap::new();
    for i in 0..total {
        for name in [DONE, FAILED] {
            let path = point_dir(dir, i, total).join(name);
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let r: PointRecord = serde_json::from_slice(&bytes).map_err(|e| {
                        RunFailure::BadInput(format!(
                            "{}: not a point record of this coevo version ({e}); rerun the sweep with --force to start over",
                            path.display()
                        ))
                    })?;
                    ended.insert(i, r);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
    }
    Ok(ended)
}

/// Writes `sweep.csv` in `dir`: the rows of every recorded point and of the `interrupted`
/// ones, in point order. Several processes may write it at once (see [`write_atomic`]: each writer has its own temporary file).
fn write_table(
    dir: &Path,
    parameters: &[String],
    records: &BTreeMap<usize, PointRecord>,
    interrupted: &[&SweepPoint],
) -> Result<(), RunFailure> {
    let mut rows: BTreeMap<usize, String> = records.iter().map(|(&i, r)| (i, r.rows.clone())).collect();
    for p in interrupted {
        rows.insert(p.index, status_row(p.index, &p.values, PointStatus::Interrupted, parameters.len()));
    }
    let mut table = sweep_header(parameters);
    for r in rows.values() {
        table.push_str(r);
    }
    let path = dir.join("sweep.csv");
    write_atomic(&path, table.as_bytes()).map_err(io(&path))
}

/// Joins the sweep folders of shards into `out` (`sweep.csv` and `sweep.json`): the same
/// table a single run of the whole sweep writes. Every point must have ended in some folder
/// (else bad input, naming the missing points and which of them were interrupted); a point
/// done in several must have the same rows, and a point done in one folder and failed in
/// another is done. Failed points are in the table (status `failed`), and the merge then
/// ends with [`SweepFailure::PointsFailed`]. Returns the number of points.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<usize, SweepFailure> {
    let bad = |m: String| SweepFailure::Run(RunFailure::BadInput(m));
    let mut manifest: Option<(PathBuf, SweepManifest)> = None;
    let mut ended: BTreeMap<usize, (PathBuf, PointRecord)> = BTreeMap::new();
    let mut interrupted = Vec::new();
    for dir in dirs {
        let path = dir.join("sweep.json");
        let bytes = std::fs::read(&path).map_err(|e| bad(format!("{}: not a sweep folder ({e})", path.display())))?;
        let m: SweepManifest = serde_json::from_slice(&bytes).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        if let Some((first, fm)) = &manifest
            && (fm.sweep_sha256 != m.sweep_sha256 || fm.parameters != m.parameters || fm.points != m.points || fm.design != m.design)
        {
            return Err(bad(format!(
                "{} and {} are shards of different sweeps (scenario, overrides or grid differ)",
                first.display(),
                dir.display()
            )));
        }
        let found = records(dir, m.points)?;
        interrupted.extend((0..m.points).filter(|i| !found.contains_key(i) && point_interrupted(&point_dir(dir, *i, m.points))));
        for (i, r) in found {
            match ended.get(&i) {
                Some((other, existing)) if existing.status == PointStatus::Ok && r.status == PointStatus::Ok => {
                    if existing.rows != r.rows {
                        return Err(bad(format!("point {i} differs between {} and {}", other.display(), dir.display())));
                    }
                }
                Some((_, existing)) if existing.status == PointStatus::Ok || r.status != PointStatus::Ok => {}
                _ => {
                    ended.insert(i, (dir.clone(), r));
                }
            }
        }
        if manifest.is_none() {
            manifest = Some((dir.clone(), m));
        }
    }
    let Some((_, mut m)) = manifest else { return Err(bad("merge needs at least one sweep folder".into())) };
    let missing: Vec<usize> = (0..m.points).filter(|i| !ended.contains_key(i)).collect();
    if !missing.is_empty() {
        interrupted.retain(|i| missing.contains(i));
        interrupted.sort_unstable();
        interrupted.dedup();
        return Err(bad(format!(
            "{} of {} points have not ended in any of the folders{}{}; run the missing shards (or rerun the interrupted ones) first",
            missing.len(),
            m.points,
            listed(&missing),
            if interrupted.is_empty() { String::new() } else { format!(", of which interrupted{}", listed(&interrupted)) },
        )));
    }
    let records: BTreeMap<usize, PointRecord> = ended.into_iter().map(|(i, (_, r))| (i, r)).collect();
    std::fs::create_dir_all(out).map_err(io(out))?;
    write_table(out, &m.parameters, &records, &[])?;
    m.shard = None;
    let path = out.join("sweep.json");
    write_atomic(&path, &serde_json::to_vec_pretty(&m).expect("serialises")).map_err(io(&path))?;
    // The shards share one design (same hash, hence same points): the first folder's table is
    // the merged sweep's. Folders from before design.csv existed have none.
    if let Some(first) = dirs.iter().map(|d| d.join(DESIGN_FILE)).find(|p| p.exists()) {
        let bytes = std::fs::read(&first).map_err(io(&first))?;
        let path = out.join(DESIGN_FILE);
        write_atomic(&path, &bytes).map_err(io(&path))?;
    }
    let failed: Vec<FailedPoint> = records
        .values()
        .filter(|r| r.status == PointStatus::Failed)
        .map(|r| FailedPoint { point: r.point, values: r.values.clone(), error: r.error.clone().unwrap_or_default() })
        .collect();
    if failed.is_empty() { Ok(m.points) } else { Err(SweepFailure::PointsFailed(failed)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs() {
        assert_eq!("1/4".parse::<Shard>(), Ok(Shard { index: 1, count: 4 }));
        assert!("3/2".parse::<Shard>().unwrap_err().contains("below the shard count 2"));
        assert!("0/0".parse::<Shard>().unwrap_err().contains("at least 1"));
        assert!("x".parse::<Shard>().unwrap_err().contains("i/n"));
    }

    #[test]
    fn a_row_without_summary_has_every_column_of_the_header() {
        let values = vec![("a".to_string(), SweepValue::Unsigned(3)), ("b.c".to_string(), SweepValue::Float(0.5))];
        let row = status_row(7, &values, PointStatus::Failed, 2);
        let header = sweep_header(&["a".into(), "b.c".into()]);
        assert_eq!(row.split(',').count(), header.split(',').count(), "{row}");
        assert!(row.starts_with("7,3,0.5,failed,,"), "{row}");
    }
}
