//! Running a scenario end to end: build the worlds, advance them round by round, write the
//! output folder, summarise.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::checkpoint::Checkpoint;
use crate::metrics::MetricRow;
use crate::output::aggregate::AggregateWriter;
use crate::output::phases::PhasesWriter;
use crate::output::{MetricsWriter, Summary, SummaryTracker, write_atomic};
use crate::resolve::{Resolved, ResolvedEntity};
use crate::rng::RNG_ALGORITHM;
use crate::scenario::{EntitySpec, Scenario};
use crate::world::{BuildError, RunError, Simulation};

/// Told how a run advances, round by round: the CLI draws a progress bar from it, a caller
/// embedding the library can log or ignore it. The library draws nothing itself, so it needs
/// no terminal crate.
///
/// What is counted is **training rounds**, `1..=rounds`: round 0 (the measurement of the
/// initial state) is not a training round and is not counted, so a run of R rounds goes from
/// 0/R to R/R. Calls come from the thread driving the round loop; a sweep runs its points on
/// several threads and reports to one `Progress` (hence `Send + Sync`).
pub trait Progress: Send + Sync {
    /// A run starts: `total` training rounds in all, `done` of them completed before (a resumed
    /// run starts at its checkpoint's round; a fresh run at 0).
    fn start(&self, name: &str, total: u64, done: u64);
    /// `rounds` more training rounds are complete (their rows are on disk).
    fn advance(&self, rounds: u64);
    /// The run ended, whether it completed, failed or was interrupted.
    fn finish(&self);
}

impl std::fmt::Debug for dyn Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn Progress")
    }
}

/// How to run a scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Output folder; default: the scenario's `output.dir`, else `out/<scenario name>`.
    pub out_dir: Option<PathBuf>,
    /// Overwrite an output folder that already holds a run.
    pub force: bool,
    /// Told of every completed training round (see [`Progress`]); `None`: nobody is.
    pub progress: Option<std::sync::Arc<dyn Progress>>,
    /// Write `checkpoint.json` every this many rounds (see [`crate::checkpoint`]).
    pub checkpoint_every: Option<u64>,
    /// Set (by the CLI's SIGINT/SIGTERM handler) to stop cleanly after the round in flight:
    /// that round's rows are written whole, the manifest says `interrupted`, and a checkpoint
    /// run can be resumed. Checked once per round, never inside a write.
    pub interrupt: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// Why a run did not complete.
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    /// The user asked for something invalid (exit code 2).
    #[error("{0}")]
    BadInput(String),
    /// Building a world failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// SIGINT or SIGTERM arrived; every round up to `round` is on disk, whole (exit code 130,
    /// the shell's convention for an interrupted command).
    #[error("interrupted after round {round}; rounds 0..={round} are complete on disk")]
    Interrupted {
        /// Last completed round.
        round: u64,
    },
    /// A round failed (exit code 1); rounds completed before it are on disk.
    #[error(transparent)]
    Runtime(#[from] RunError),
    /// Writing output failed (exit code 1).
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl RunFailure {
    /// Process exit code: 2 for bad input, 1 for a failure while running.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunFailure::BadInput(_) | RunFailure::Build(_) => 2,
            RunFailure::Runtime(_) | RunFailure::Io { .. } => 1,
            RunFailure::Interrupted { .. } => 130,
        }
    }
}

/// What a completed run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The output folder.
    pub out_dir: PathBuf,
    /// The summary (also in `summary.json`).
    pub summary: Summary,
}

#[derive(Serialize)]
struct Manifest<'a> {
    coevo_version: &'static str,
    scenario_file: String,
    scenario_sha256: String,
    seed: u64,
    rounds: u64,
    replicates: u64,
    rng: &'static str,
    status: &'a str,
    rounds_completed: u64,
    scenario: &'a Scenario,
    resolved: Vec<ResolvedModel>,
}

/// The initial parameters each model resolved to, defaults included.
#[derive(Serialize)]
struct ResolvedModel {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    p0: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    means: Option<Vec<Vec<f64>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    covariances: Option<Vec<Vec<Vec<f64>>>>,
    /// Plugin models: the library file loaded and what it said of itself, so a run records
    /// exactly which plugin produced its numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    plugin: Option<ResolvedPlugin>,
}

#[derive(Serialize)]
struct ResolvedPlugin {
    library: String,
    plugin: String,
    version: String,
    abi_version: u32,
    model: String,
}

/// The manifest's record of each model's initial state, from the [`Resolved`] scenario.
fn resolve(scenario: &Scenario) -> Vec<ResolvedModel> {
    let Ok(resolved) = Resolved::of(scenario) else { return Vec::new() };
    let rows = |m: &nalgebra::DMatrix<f64>| m.row_iter().map(|r| r.iter().copied().collect()).collect();
    let mut out = Vec::new();
    for (e, r) in scenario.entities.iter().zip(&resolved.entities) {
        let name = e.name().to_string();
        let model = match (e, r) {
            (EntitySpec::TextModel(_), ResolvedEntity::Text { p0 }) => {
                ResolvedModel { name, p0: Some(p0.clone()), means: None, covariances: None, plugin: None }
            }
            (EntitySpec::ImageModel(_), ResolvedEntity::Conditional { initial: Some(g), .. }) => ResolvedModel {
                name,
                p0: None,
                means: Some(g.means.iter().map(|m| m.iter().copied().collect()).collect()),
                covariances: Some(g.covariances.iter().map(rows).collect()),
                plugin: None,
            },
            (EntitySpec::PluginModel(s), ResolvedEntity::Conditional { library, .. }) => {
                // The library was loaded when the scenario was checked (loads are cached).
                let plugin = library.as_deref().and_then(|path| crate::plugin::library::load(path).ok().map(|table| (path, table)));
                let plugin = plugin.map(|(path, table)| ResolvedPlugin {
                    library: path.display().to_string(),
                    plugin: table.name().to_string(),
                    version: table.version().to_string(),
                    abi_version: coevo_plugin_api::COEVO_ABI_VERSION,
                    model: s.model.clone(),
                });
                ResolvedModel { name, p0: None, means: None, covariances: None, plugin }
            }
            _ => continue,
        };
        out.push(model);
    }
    out
}

/// The output folder a run of `scenario` writes to under `options`.
pub fn output_dir(scenario: &Scenario, options: &RunOptions) -> PathBuf {
    options.out_dir.clone().or_else(|| scenario.output.dir.clone()).unwrap_or_else(|| Path::new("out").join(&scenario.name))
}

/// Runs every replicate of a validated scenario and writes the output folder.
///
/// Replicates advance round by round in parallel (each world on its own single-threaded
/// schedule); each round's rows are written in replicate order, so the files are identical
/// whatever the number of threads.
pub fn run(scenario: &Scenario, source: &str, file: &Path, options: &RunOptions) -> Result<RunOutcome, RunFailure> {
    let out_dir = output_dir(scenario, options);
    prepare_output(&out_dir, options.force)?;
    remove_if_present(&out_dir.join(crate::checkpoint::FILE))?;
    let sims: Vec<Simulation> = (0..scenario.replicates).map(|r| Simulation::new(scenario, r)).collect::<Result<_, _>>()?;
    let manifest = ManifestWriter::new(&out_dir, scenario, source, file);
    manifest.write("running", 0)?;
    let tracker = SummaryTracker::new(scenario.collapse.clone(), sims.len(), scenario.rounds);
    let tables = Tables::create(&out_dir, scenario)?;
    let source = RunSource { text: source, file };
    continue_run(sims, scenario, &source, options, &out_dir, &manifest, tracker, tables, 0)
}

/// Continues the run whose checkpoint is in `out_dir` (`coevo resume`): the metrics it
/// writes are byte for byte those of an uninterrupted run.
pub fn resume(out_dir: &Path, options: &RunOptions) -> Result<RunOutcome, RunFailure> {
    let bad = RunFailure::BadInput;
    let path = out_dir.join(crate::checkpoint::FILE);
    if !path.exists() {
        return Err(bad(format!(
            "{} has no {}: only a run started with --checkpoint-every K that has not completed can be resumed",
            out_dir.display(),
            crate::checkpoint::FILE
        )));
    }
    let checkpoint = Checkpoint::read(&path).map_err(bad)?;
    // Temporary files of atomic writes that a kill interrupted.
    for name in ["manifest.json.tmp", "summary.json.tmp", "checkpoint.json.tmp", "phases.csv.tmp"] {
        remove_if_present(&out_dir.join(name))?;
    }
    let manifest_path = out_dir.join("manifest.json");
    let manifest: serde_json::Value = std::fs::read(&manifest_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad(format!("{}: missing or unreadable; the folder is not a coevo run", manifest_path.display())))?;
    let field = |k: &str| manifest.get(k).cloned().unwrap_or(serde_json::Value::Null);
    let same = field("scenario_sha256") == serde_json::json!(checkpoint.scenario_sha256)
        && field("seed") == serde_json::json!(checkpoint.seed)
        && field("rounds") == serde_json::json!(checkpoint.rounds)
        && field("replicates") == serde_json::json!(checkpoint.replicates)
        && format!("{:x}", Sha256::digest(checkpoint.scenario_source.as_bytes())) == checkpoint.scenario_sha256;
    if !same {
        return Err(bad(format!(
            "{} is from another scenario: it holds scenario sha256 {} (seed {}, {} rounds, {} replicates) but {} records {} (seed {}, {} rounds, {} replicates)",
            path.display(),
            checkpoint.scenario_sha256,
            checkpoint.seed,
            checkpoint.rounds,
            checkpoint.replicates,
            manifest_path.display(),
            field("scenario_sha256"),
            field("seed"),
            field("rounds"),
            field("replicates"),
        )));
    }
    let file = PathBuf::from(&checkpoint.scenario_file);
    let mut scenario = Scenario::parse(&checkpoint.scenario_source, &file).map_err(|e| bad(e.to_string()))?;
    scenario.seed = checkpoint.seed;
    scenario.rounds = checkpoint.rounds;
    scenario.replicates = checkpoint.replicates;
    let mut sims: Vec<Simulation> = (0..scenario.replicates).map(|r| Simulation::new(&scenario, r)).collect::<Result<_, _>>()?;
    for (sim, state) in sims.iter_mut().zip(&checkpoint.worlds) {
        crate::checkpoint::restore(sim, state).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    }
    let mut tables = Tables::truncate(out_dir, checkpoint.metrics_bytes, checkpoint.aggregate_bytes, &scenario)?;
    // The summary and the phase labels are functions of the metric rows: replay them.
    let mut tracker = SummaryTracker::new(scenario.collapse.clone(), sims.len(), scenario.rounds);
    let metrics_path = out_dir.join("metrics.csv");
    crate::output::tidy::replay_rounds(&metrics_path, |replicate, rows| {
        tracker.observe(replicate as usize, rows);
        tables.phases.observe(replicate, rows);
    })
    .map_err(io_error(&metrics_path))?;
    tables.phases.end_round().map_err(io_error(&tables.paths.phases))?;
    let manifest = ManifestWriter::new(out_dir, &scenario, &checkpoint.scenario_source, &file);
    manifest.write("running", checkpoint.round)?;
    let source = RunSource { text: &checkpoint.scenario_source, file: &file };
    continue_run(sims, &scenario, &source, options, out_dir, &manifest, tracker, tables, checkpoint.round + 1)
}

/// The scenario source a run was started from (what checkpoints embed).
struct RunSource<'a> {
    text: &'a str,
    file: &'a Path,
}

fn remove_if_present(path: &Path) -> Result<(), RunFailure> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(path)(e)),
        _ => Ok(()),
    }
}

/// Runs rounds `start..=rounds`, checkpointing if asked, then writes the summary, the phase
/// labels and the final manifest.
fn continue_run(
    mut sims: Vec<Simulation>,
    scenario: &Scenario,
    source: &RunSource<'_>,
    options: &RunOptions,
    out_dir: &Path,
    manifest: &ManifestWriter<'_>,
    mut tracker: SummaryTracker,
    tables: Tables,
    start: u64,
) -> Result<RunOutcome, RunFailure> {
    let checkpoint_path = out_dir.join(crate::checkpoint::FILE);
    let checkpoint = |round: u64, sims: &mut [Simulation], tables: &TablePaths| -> Result<(), RunFailure> {
        let Some(k) = options.checkpoint_every else { return Ok(()) };
        if round == 0 || !round.is_multiple_of(k) || round >= scenario.rounds {
            return Ok(());
        }
        let worlds = sims.iter().map(crate::checkpoint::capture).collect::<Result<Vec<_>, _>>().map_err(RunFailure::BadInput)?;
        let (metrics_bytes, aggregate_bytes) = tables.lengths()?;
        let c = Checkpoint {
            format: crate::checkpoint::FORMAT.to_string(),
            scenario_file: source.file.display().to_string(),
            scenario_sha256: format!("{:x}", Sha256::digest(source.text.as_bytes())),
            scenario_source: source.text.to_string(),
            seed: scenario.seed,
            rounds: scenario.rounds,
            replicates: scenario.replicates,
            round,
            metrics_bytes,
            aggregate_bytes,
            worlds,
        };
        c.write(out_dir).map_err(io_error(&checkpoint_path))?;
        manifest.write("running", round)
    };
    let (completed, result) = drive_from(&mut sims, scenario, options, tables, start, |r, rows| tracker.observe(r, rows), checkpoint);
    let summary = tracker.summary();
    let summary_path = out_dir.join("summary.json");
    write_atomic(&summary_path, &serde_json::to_vec_pretty(&summary).expect("summary serialises")).map_err(io_error(&summary_path))?;
    if result.is_ok() {
        remove_if_present(&checkpoint_path)?;
    }
    manifest.finish(completed, result)?;
    tracing::info!(rounds = completed, dir = %out_dir.display(), "run complete");
    Ok(RunOutcome { out_dir: out_dir.to_path_buf(), summary })
}

/// The tables a run appends to round by round: `metrics.csv`, `aggregate.csv` and
/// `phases.csv`.
pub(crate) struct Tables {
    metrics: MetricsWriter,
    aggregate: AggregateWriter,
    phases: PhasesWriter,
    paths: TablePaths,
}

/// Where a run's tables are.
pub(crate) struct TablePaths {
    metrics: PathBuf,
    aggregate: PathBuf,
    phases: PathBuf,
}

impl TablePaths {
    fn of(out_dir: &Path) -> Self {
        TablePaths { metrics: out_dir.join("metrics.csv"), aggregate: out_dir.join("aggregate.csv"), phases: out_dir.join("phases.csv") }
    }

    /// Current byte lengths of `metrics.csv` and `aggregate.csv`.
    fn lengths(&self) -> Result<(u64, u64), RunFailure> {
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).map_err(io_error(p));
        Ok((len(&self.metrics)?, len(&self.aggregate)?))
    }
}

impl Tables {
    /// Creates the tables (with their headers) in `out_dir`.
    fn create(out_dir: &Path, scenario: &Scenario) -> Result<Self, RunFailure> {
        let paths = TablePaths::of(out_dir);
        Ok(Tables {
            metrics: MetricsWriter::create(&paths.metrics).map_err(io_error(&paths.metrics))?,
            aggregate: AggregateWriter::create(&paths.aggregate).map_err(io_error(&paths.aggregate))?,
            phases: PhasesWriter::create(&paths.phases, &scenario.diagnostics).map_err(io_error(&paths.phases))?,
            paths,
        })
    }

    /// Cuts `metrics.csv` and `aggregate.csv` back to the given lengths (a checkpoint's) and
    /// opens them to append; `phases.csv` starts anew, for the caller to replay.
    fn truncate(out_dir: &Path, metrics_bytes: u64, aggregate_bytes: u64, scenario: &Scenario) -> Result<Self, RunFailure> {
        let paths = TablePaths::of(out_dir);
        for (path, len) in [(&paths.metrics, metrics_bytes), (&paths.aggregate, aggregate_bytes)] {
            let file = std::fs::OpenOptions::new().write(true).open(path).map_err(io_error(path))?;
            let have = file.metadata().map_err(io_error(path))?.len();
            if have < len {
                return Err(RunFailure::BadInput(format!(
                    "{} has {have} bytes but the checkpoint was taken after {len}: the table was truncated or replaced",
                    path.display()
                )));
            }
            file.set_len(len).map_err(io_error(path))?;
        }
        Ok(Tables {
            metrics: MetricsWriter::append(&paths.metrics).map_err(io_error(&paths.metrics))?,
            aggregate: AggregateWriter::append(&paths.aggregate).map_err(io_error(&paths.aggregate))?,
            phases: PhasesWriter::create(&paths.phases, &scenario.diagnostics).map_err(io_error(&paths.phases))?,
            paths,
        })
    }
}

/// Something that advances round by round and reports tidy metric rows: one world, or the
/// twin worlds of a recursive-stability run.
pub trait Rounds: Send {
    /// Measures the initial state (round 0) into [`rows`](Self::rows).
    fn measure(&mut self) -> Result<(), RunError>;
    /// Runs one round and measures it into [`rows`](Self::rows).
    fn step(&mut self) -> Result<(), RunError>;
    /// The rows of the last measured round.
    fn rows(&self) -> &[MetricRow];
}

impl Rounds for Simulation {
    fn measure(&mut self) -> Result<(), RunError> {
        Simulation::measure(self).map(|_| ())
    }
    fn step(&mut self) -> Result<(), RunError> {
        Simulation::step(self).map(|_| ())
    }
    fn rows(&self) -> &[MetricRow] {
        &self.world().resource::<crate::world::Measurements>().0
    }
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RunFailure + use<> {
    let path = path.to_path_buf();
    move |source| RunFailure::Io { path, source }
}

/// Creates the output folder, refusing one that already holds a run unless `force`.
pub(crate) fn prepare_output(out_dir: &Path, force: bool) -> Result<(), RunFailure> {
    if out_dir.join("manifest.json").exists() && !force {
        return Err(RunFailure::BadInput(format!(
            "{} already holds a run; pass --force to overwrite it, or --out DIR to write elsewhere",
            out_dir.display()
        )));
    }
    std::fs::create_dir_all(out_dir).map_err(io_error(out_dir))
}

/// Writes `manifest.json` as a run progresses.
pub(crate) struct ManifestWriter<'a> {
    path: PathBuf,
    scenario: &'a Scenario,
    file: &'a Path,
    hash: String,
}

impl<'a> ManifestWriter<'a> {
    pub(crate) fn new(out_dir: &Path, scenario: &'a Scenario, source: &str, file: &'a Path) -> Self {
        ManifestWriter { path: out_dir.join("manifest.json"), scenario, file, hash: format!("{:x}", Sha256::digest(source.as_bytes())) }
    }

    /// Writes the manifest with `status` after `completed` rounds.
    pub(crate) fn write(&self, status: &str, completed: u64) -> Result<(), RunFailure> {
        let manifest = Manifest {
            coevo_version: env!("CARGO_PKG_VERSION"),
            scenario_file: self.file.display().to_string(),
            scenario_sha256: self.hash.clone(),
            seed: self.scenario.seed,
            rounds: self.scenario.rounds,
            replicates: self.scenario.replicates,
            rng: RNG_ALGORITHM,
            status,
            rounds_completed: completed,
            scenario: self.scenario,
            resolved: resolve(self.scenario),
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        write_atomic(&self.path, &json).map_err(io_error(&self.path))
    }

    /// Writes the final status (`complete` or `failed: ...`) and passes the result on.
    pub(crate) fn finish(&self, completed: u64, result: Result<(), RunFailure>) -> Result<(), RunFailure> {
        match result {
            Ok(()) => self.write("complete", completed),
            Err(e @ RunFailure::Interrupted { .. }) => {
                self.write("interrupted", completed)?;
                Err(e)
            }
            Err(e) => {
                self.write(&format!("failed: {e}"), completed)?;
                Err(e)
            }
        }
    }
}

/// Advances `worlds` (one per replicate) round-synchronously, in parallel, from round 0 to
/// `scenario.rounds`, appending every round's rows in replicate order to the tidy table at
/// `table` and showing them to `observe`. Returns the last completed round and how it ended;
/// rounds completed before a failure are on disk.
pub fn drive<W: Rounds>(
    worlds: &mut [W],
    scenario: &Scenario,
    options: &RunOptions,
    table: &Path,
    observe: impl FnMut(usize, &[MetricRow]),
) -> (u64, Result<(), RunFailure>) {
    let writer = match MetricsWriter::create(table) {
        Ok(w) => w,
        Err(e) => return (0, Err(io_error(table)(e))),
    };
    drive_rounds(worlds, scenario, options, table, writer, None, None, 0, observe, |_, _| Ok(()))
}

/// [`drive`] for a run's worlds from round `start`, also writing `aggregate.csv` and calling
/// `after_round` (checkpoints) once a round's rows are on disk.
fn drive_from(
    worlds: &mut [Simulation],
    scenario: &Scenario,
    options: &RunOptions,
    tables: Tables,
    start: u64,
    observe: impl FnMut(usize, &[MetricRow]),
    mut after_round: impl FnMut(u64, &mut [Simulation], &TablePaths) -> Result<(), RunFailure>,
) -> (u64, Result<(), RunFailure>) {
    let Tables { metrics, aggregate, phases, paths } = tables;
    let aggregate = Some((aggregate, paths.aggregate.clone()));
    let phases = Some((phases, paths.phases.clone()));
    drive_rounds(worlds, scenario, options, &paths.metrics, metrics, aggregate, phases, start, observe, |round, worlds| {
        after_round(round, worlds, &paths)
    })
}

/// The round loop shared by [`drive`] and [`drive_from`].
fn drive_rounds<W: Rounds>(
    worlds: &mut [W],
    scenario: &Scenario,
    options: &RunOptions,
    table: &Path,
    mut writer: MetricsWriter,
    mut aggregate: Option<(AggregateWriter, PathBuf)>,
    mut phases: Option<(PhasesWriter, PathBuf)>,
    start: u64,
    mut observe: impl FnMut(usize, &[MetricRow]),
    mut after_round: impl FnMut(u64, &mut [W]) -> Result<(), RunFailure>,
) -> (u64, Result<(), RunFailure>) {
    let progress = options.progress.as_deref();
    // Training rounds 1..start are done already when a checkpoint is resumed.
    if let Some(p) = progress {
        p.start(&scenario.name, scenario.rounds, start.saturating_sub(1));
    }
    let mut completed = start.saturating_sub(1);
    let mut result = Ok(());
    for round in start..=scenario.rounds {
        let outcomes: Vec<Result<(), RunError>> = worlds.par_iter_mut().map(|w| if round == 0 { w.measure() } else { w.step() }).collect();
        if let Some(e) = outcomes.into_iter().find_map(Result::err) {
            result = Err(e.into());
            break;
        }
        if let Err(e) = writer.write_round(worlds.iter().enumerate().map(|(r, w)| (r as u64, w.rows()))) {
            result = Err(io_error(table)(e));
            break;
        }
        if let Some((agg, path)) = &mut aggregate
            && let Err(e) = agg.write_round(worlds.iter().map(|w| w.rows()))
        {
            result = Err(io_error(path)(e));
            break;
        }
        if let Some((labels, path)) = &mut phases {
            for (r, w) in worlds.iter().enumerate() {
                labels.observe(r as u64, w.rows());
            }
            if let Err(e) = labels.end_round() {
                result = Err(io_error(path)(e));
                break;
            }
        }
        for (r, w) in worlds.iter().enumerate() {
            observe(r, w.rows());
        }
        completed = round;
        tracing::debug!(round, "round complete");
        // Round 0 measures the initial state: it is not a training round.
        if round > 0
            && let Some(p) = progress
        {
            p.advance(1);
        }
        if let Err(e) = after_round(round, worlds) {
            result = Err(e);
            break;
        }
        if round < scenario.rounds && options.interrupt.as_ref().is_some_and(|flag| flag.load(std::sync::atomic::Ordering::Relaxed)) {
            result = Err(RunFailure::Interrupted { round });
            break;
        }
    }
    if let Some(p) = progress {
        p.finish();
    }
    (completed, result)
}
