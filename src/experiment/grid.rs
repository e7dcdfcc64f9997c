//! Running a sweep: every grid point times the replicates, shards, resumption and merge.
//!
//! Layout of a sweep's output folder:
//! - `sweep.json`: the sweep's identity (scenario hash, parameter paths, number of points,
//!   the design when it is not a grid) and which shard this folder ran;
//! - `design.csv`: the points (`point`, then a column per parameter with the values run), as
//!   [`crate::scenario::design::points`] made them from the `sweep` section;
//! - `points/NNNN/`: one complete run output per point (`metrics` and `aggregate` tables,
//!   `phases.csv`, `summary.json`, `manifest.json`), plus `done.json` written atomically when
//!   the point completed: a rerun of the sweep skips these points, and resumes a point that
//!   has a `checkpoint.json` from it;
//! - `sweep.csv`: one row per point and model, a column per swept parameter, then the
//!   point's summary (see [`SWEEP_SUMMARY_COLUMNS`]). Rows are in point order, whatever ran in
//!   parallel, so a merge of shards is byte-identical to a single run.
//!
//! `--shard i/n` runs the points whose index is `i` modulo `n`: the shards of an array job
//! partition the grid, and `coevo merge` joins their folders.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::output::aggregate::Stats;
use crate::output::{Summary, format_value, write_atomic};
use crate::run::{Progress, RunFailure, RunOptions};
use crate::scenario::SweepValue;
use crate::scenario::design::DesignPoints;
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

/// How to run a sweep.
#[derive(Debug, Clone, Default)]
pub struct SweepOptions {
    /// Output folder; default `out/<scenario name>-sweep`.
    pub out_dir: Option<PathBuf>,
    /// Run only this shard of the points.
    pub shard: Option<Shard>,
    /// Start over: discard the points already in the folder (of this sweep or another).
    pub force: bool,
    /// Told of the sweep's progress as one run: started once with the training rounds of
    /// every point this run computes, advanced by each point's rounds as they complete
    /// (points run in parallel), finished once (see [`Progress`]).
    pub progress: Option<Arc<dyn Progress>>,
    /// Write a checkpoint of each point every this many rounds.
    pub checkpoint_every: Option<u64>,
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
    /// The shard this folder ran (`None`: all points, or a merge).
    pub shard: Option<Shard>,
    /// The design, as written in the scenario (`None`: a grid, as before designs existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub design: Option<String>,
}

/// The summary columns of `sweep.csv`, after `point`, the parameters and `model`.
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

/// The points of a sweep folder, one row per point (see [`DesignPoints::csv`]).
pub const DESIGN_FILE: &str = "design.csv";

/// The completion marker of a point (`points/NNNN/done.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointDone {
    /// Point index.
    pub point: usize,
    /// Its `sweep.csv` rows, formatted.
    pub rows: String,
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
    let _ = writeln!(h, ",model,{SWEEP_SUMMARY_COLUMNS}");
    h
}

/// Folder of point `index` among `total`.
pub fn point_dir(dir: &Path, index: usize, total: usize) -> PathBuf {
    let width = total.saturating_sub(1).to_string().len().max(4);
    dir.join("points").join(format!("{index:0width$}"))
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
    /// Points in the grid.
    pub points: usize,
    /// Points this run computed (the others were done already or belong to other shards).
    pub computed: usize,
    /// Points done in this folder now.
    pub done: usize,
}

/// Runs the points of a sweep (all, or one shard's) that are not done yet, then writes
/// `sweep.csv` from every done point of the folder.
pub fn run_sweep(scenario: &Scenario, source: &str, file: &Path, options: &SweepOptions) -> Result<SweepOutcome, RunFailure> {
    let Some(sweep) = &scenario.sweep else {
        return Err(RunFailure::BadInput(format!(
            "{}: the scenario has no `sweep` section; add one, e.g. sweep: (parameters: [(path: \"captioner.batch\", values: [100, 1000])])",
            file.display()
        )));
    };
    let dir = sweep_dir(scenario, options);
    let design = crate::scenario::design::points(sweep, scenario).map_err(|e| RunFailure::BadInput(format!("{}: {e}", file.display())))?;
    let total = design.len();
    let manifest = SweepManifest {
        coevo_version: env!("CARGO_PKG_VERSION").to_string(),
        scenario_file: file.display().to_string(),
        sweep_sha256: sweep_hash(scenario, source),
        parameters: design.parameters.clone(),
        points: total,
        shard: options.shard,
        design: (!design.design.is_grid()).then(|| design.design.to_string()),
    };
    let manifest_path = dir.join("sweep.json");
    if let Ok(bytes) = std::fs::read(&manifest_path) {
        let old: SweepManifest =
            serde_json::from_slice(&bytes).map_err(|e| RunFailure::BadInput(format!("{}: {e}", manifest_path.display())))?;
        if old.sweep_sha256 != manifest.sweep_sha256 && !options.force {
            return Err(RunFailure::BadInput(format!(
                "{} holds points of another sweep (scenario or overrides changed); pass --force to start over, or --out DIR",
                dir.display()
            )));
        }
    }
    if options.force {
        // Start over: no point of an earlier sweep in this folder counts as done.
        let points = dir.join("points");
        if points.exists() {
            std::fs::remove_dir_all(&points).map_err(io(&points))?;
        }
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    write_atomic(&manifest_path, &serde_json::to_vec_pretty(&manifest).expect("serialises")).map_err(io(&manifest_path))?;
    let design_path = dir.join(DESIGN_FILE);
    write_atomic(&design_path, design.csv().as_bytes()).map_err(io(&design_path))?;

    // Every point's scenario, validated before anything runs: a bad combination is bad input.
    let points: Vec<Scenario> = (0..total)
        .map(|i| design.point(scenario, i).map_err(|e| RunFailure::BadInput(format!("{}: sweep point {i}: {e}", file.display()))))
        .collect::<Result<_, _>>()?;
    let mine: Vec<usize> = (0..total).filter(|i| options.shard.is_none_or(|s| i % s.count == s.index)).collect();
    let pending: Vec<usize> = mine.iter().copied().filter(|&i| !point_dir(&dir, i, total).join("done.json").exists()).collect();

    // One progress over the whole sweep: the points report into it (see `PointProgress`).
    let total_rounds: u64 = pending.iter().map(|&i| points[i].rounds).sum();
    if let Some(p) = &options.progress {
        p.start(&format!("{}: {} points", scenario.name, pending.len()), total_rounds, 0);
    }
    let point_progress = options.progress.clone().map(|p| Arc::new(PointProgress(p)) as Arc<dyn Progress>);
    let first_error: Mutex<Option<(usize, RunFailure)>> = Mutex::new(None);
    pending.par_iter().for_each(|&i| {
        if first_error.lock().expect("not poisoned").is_some() {
            return;
        }
        if let Err(e) = run_point(&points[i], i, total, &dir, file, options, point_progress.clone(), &design) {
            let mut slot = first_error.lock().expect("not poisoned");
            // Keep the lowest failing point: the message does not depend on scheduling.
            if slot.as_ref().is_none_or(|(j, _)| i < *j) {
                *slot = Some((i, e));
            }
        }
    });
    if let Some(p) = &options.progress {
        p.finish();
    }
    let done = write_table(&dir, &design.parameters, total)?;
    if let Some((i, e)) = first_error.into_inner().expect("not poisoned") {
        return Err(match e {
            RunFailure::BadInput(m) => RunFailure::BadInput(format!("sweep point {i}: {m}")),
            other => other,
        });
    }
    Ok(SweepOutcome { out_dir: dir, points: total, computed: pending.len(), done })
}

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

#[expect(clippy::too_many_arguments, reason = "one point's scenario, index and folders plus the sweep's shared options and progress")]
fn run_point(
    point: &Scenario,
    index: usize,
    total: usize,
    dir: &Path,
    file: &Path,
    options: &SweepOptions,
    progress: Option<Arc<dyn Progress>>,
    design: &DesignPoints,
) -> Result<(), RunFailure> {
    let out = point_dir(dir, index, total);
    let run_options = RunOptions {
        out_dir: Some(out.clone()),
        force: true,
        progress,
        checkpoint_every: options.checkpoint_every,
        // A sweep is interrupted point by point: a killed point is recomputed (or resumed from
        // its checkpoint) on the next run, so it needs no signal flag.
        interrupt: None,
    };
    let outcome = if out.join(crate::checkpoint::FILE).exists() {
        crate::run::resume(&out, &run_options)?
    } else {
        let point_file = PathBuf::from(format!("{}#point{index}", file.display()));
        crate::run::run(point, &point_source(point), &point_file, &run_options)?
    };
    let rows = point_rows(index, &design.values[index], &out, &outcome.summary).map_err(io(&out))?;
    let done = PointDone { point: index, rows };
    let path = out.join("done.json");
    write_atomic(&path, &serde_json::to_vec_pretty(&done).expect("serialises")).map_err(io(&path))
}

/// The `sweep.csv` rows of one completed point whose parameters took `values`.
pub(crate) fn point_rows(index: usize, values: &[SweepValue], out: &Path, summary: &Summary) -> std::io::Result<String> {
    let Some(first) = summary.replicates.first() else { return Ok(String::new()) };
    let replicates = summary.replicates.len();
    let mut last_phase: BTreeMap<(String, u64), String> = BTreeMap::new();
    let phases = out.join("phases.csv");
    if phases.exists() {
        // Rows come in round order and each replicate's last round is always recorded (the
        // planned last round, or the one it stopped early at): the last row per replicate and
        // model is its phase at its last round.
        crate::output::tidy::read_csv(&phases, crate::output::phases::PHASES_HEADER, |n, f| {
            last_phase.insert((f[2].to_string(), crate::output::tidy::parse(&phases, n, "replicate", f[0])?), f[7].to_string());
            Ok(())
        })?;
    }
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
        let _ = write!(out_rows, "{index}");
        for v in values {
            let _ = write!(out_rows, ",{v}");
        }
        let _ = writeln!(
            out_rows,
            ",{},{},{replicates},{},{},{},{},{},{},{},{}",
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
    Ok(out_rows)
}

/// Reads the `done.json` markers of a sweep folder: point index to its rows.
fn done_points(dir: &Path, total: usize) -> Result<BTreeMap<usize, String>, RunFailure> {
    let mut done = BTreeMap::new();
    for i in 0..total {
        let path = point_dir(dir, i, total).join("done.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let d: PointDone = serde_json::from_slice(&bytes)
                    .map_err(|e| RunFailure::BadInput(format!("{}: not a point completion marker: {e}", path.display())))?;
                done.insert(i, d.rows);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    Ok(done)
}

/// Writes `sweep.csv` from the done points of `dir`; returns how many there are.
fn write_table(dir: &Path, paths: &[String], total: usize) -> Result<usize, RunFailure> {
    let done = done_points(dir, total)?;
    let mut table = sweep_header(paths);
    for rows in done.values() {
        table.push_str(rows);
    }
    let path = dir.join("sweep.csv");
    write_atomic(&path, table.as_bytes()).map_err(io(&path))?;
    Ok(done.len())
}

/// Joins the sweep folders of shards into `out` (`sweep.csv` and `sweep.json`): the same
/// table a single run of the whole sweep writes. Every point must be done in some folder, and
/// a point done in several must have the same rows.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<usize, RunFailure> {
    let bad = RunFailure::BadInput;
    let mut manifest: Option<(PathBuf, SweepManifest)> = None;
    let mut rows: BTreeMap<usize, (PathBuf, String)> = BTreeMap::new();
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
        for (i, r) in done_points(dir, m.points)? {
            if let Some((other, existing)) = rows.get(&i) {
                if *existing != r {
                    return Err(bad(format!("point {i} differs between {} and {}", other.display(), dir.display())));
                }
            } else {
                rows.insert(i, (dir.clone(), r));
            }
        }
        if manifest.is_none() {
            manifest = Some((dir.clone(), m));
        }
    }
    let Some((_, mut m)) = manifest else { return Err(bad("merge needs at least one sweep folder".into())) };
    let missing: Vec<usize> = (0..m.points).filter(|i| !rows.contains_key(i)).collect();
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().take(20).map(usize::to_string).collect();
        return Err(bad(format!(
            "{} of {} points are not done in any of the folders (points {}{}); run the missing shards first",
            missing.len(),
            m.points,
            shown.join(", "),
            if missing.len() > 20 { ", ..." } else { "" }
        )));
    }
    let mut table = sweep_header(&m.parameters);
    for (_, r) in rows.values() {
        table.push_str(r);
    }
    std::fs::create_dir_all(out).map_err(io(out))?;
    let path = out.join("sweep.csv");
    write_atomic(&path, table.as_bytes()).map_err(io(&path))?;
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
    Ok(m.points)
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
}
