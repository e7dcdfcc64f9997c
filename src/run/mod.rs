//! Running a scenario end to end: build the worlds, advance them round by round, write the
//! output folder, summarise; resume from a checkpoint.
//!
//! - this file: the options, the failure kinds and their exit codes, `run` and `resume`;
//! - `manifest`: `manifest.json`, rewritten as the run progresses;
//! - `tables`: the tables appended round by round (created, or cut back to a checkpoint);
//! - `rounds`: the round loop shared with recursive stability ([`Rounds`], [`drive`]).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

mod manifest;
mod rounds;
mod tables;

pub(crate) use manifest::ManifestWriter;
use rounds::drive_from;
pub use rounds::{Rounds, drive};
use tables::Tables;

use crate::checkpoint::{Checkpoint, Observers};
use crate::output::parquet::TableMark;
use crate::output::{Summary, SummaryTracker, write_atomic};
use crate::scenario::{Scenario, ScenarioErrors};
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

/// Where a run's results go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Destination {
    /// Its output folder (the CLI's runs).
    #[default]
    Folder,
    /// Nowhere on disk: the metrics come back as Arrow batches in
    /// [`RunOutcome::metrics`], the manifest and summary in the outcome. No aggregate table is
    /// computed, and no checkpoint can be taken.
    Memory,
    /// Both: the output folder, and the metrics in memory as well (no reading the table back).
    FolderAndMemory,
}

/// How to run a scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Output folder; default: the scenario's `output.dir`, else `out/<scenario name>`.
    pub out_dir: Option<PathBuf>,
    /// Whether the output folder is written, and whether the metrics are kept in memory.
    pub destination: Destination,
    /// Overwrite an output folder that already holds a run.
    pub force: bool,
    /// Told of every completed training round (see [`Progress`]); `None`: nobody is.
    pub progress: Option<std::sync::Arc<dyn Progress>>,
    /// Write `checkpoint.json` every this many rounds (see [`crate::checkpoint`]).
    pub checkpoint_every: Option<u64>,
    /// Set (by the CLI's SIGINT/SIGTERM handler) to stop cleanly after the round in flight:
    /// that round's rows are written whole, the manifest says `interrupted`, and a checkpoint
    /// run can be resumed. Checked between rounds and between the phases of a round (so a
    /// round of many steps stops in bounded time; a round stopped part way is not written),
    /// never inside a write.
    pub interrupt: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Refuse scenarios whose estimated peak memory exceeds this many bytes (see
    /// [`crate::scenario::footprint::Footprint`]); default: the memory the system reports available.
    pub max_memory: Option<u64>,
    /// The hosted models a resumed run's scenario names (see [`crate::models::hosted`]): a
    /// run's own scenario carries the models it was loaded with, but [`resume`] reads the
    /// scenario again from the checkpoint. Default: none.
    pub models: crate::models::HostedModels,
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
    /// The output folder (empty for [`Destination::Memory`]: none was written).
    pub out_dir: PathBuf,
    /// The summary (also in `summary.json`).
    pub summary: Summary,
    /// The final manifest, as JSON text (the bytes of `manifest.json`, when written).
    pub manifest: String,
    /// The metrics table (the rows of `metrics.csv`, with the columns and types of
    /// `metrics.parquet`), when the destination keeps it in memory.
    pub metrics: Option<Vec<arrow_array::RecordBatch>>,
    /// The drift phase of every conditional model and replicate at its last recorded round (the
    /// last row of each in `phases.csv`; since the resumption, for a resumed run).
    pub last_phases: crate::output::phases::LastPhases,
}

/// The output folder a run of `scenario` (read from `file`) writes to under `options`: the
/// command line's `--out` (any folder the user names), else the scenario's `output.dir`
/// joined to the scenario file's folder (validation keeps it relative and free of `..`, so a
/// received scenario cannot name a folder outside its own), else `out/<scenario name>`. The
/// path is normalised lexically (see [`crate::output::files::lexical`]), so the overwrite
/// guard sees the folder that will be written.
pub fn output_dir(scenario: &Scenario, file: &Path, options: &RunOptions) -> PathBuf {
    let dir = match (&options.out_dir, &scenario.output.dir) {
        (Some(out), _) => out.clone(),
        (None, Some(dir)) => file.parent().unwrap_or(Path::new("")).join(dir),
        (None, None) => Path::new("out").join(&scenario.name),
    };
    crate::output::files::lexical(&dir)
}

/// Runs every replicate of a validated scenario and writes the output folder.
///
/// Replicates advance round by round in parallel (each world on its own single-threaded
/// schedule); each round's rows are written in replicate order, so the files are identical
/// whatever the number of threads.
pub fn run(scenario: &Scenario, source: &str, file: &Path, options: &RunOptions) -> Result<RunOutcome, RunFailure> {
    if options.destination == Destination::Memory {
        return run_in_memory(scenario, source, file, options);
    }
    let out_dir = output_dir(scenario, file, options);
    let stale = tables::stale_tables(&out_dir, scenario);
    // Tables of another run that this one would not overwrite: refused, or removed with --force
    // (a folder must never mix two runs' tables).
    if let (Some((table, why)), false) = (stale.first(), options.force) {
        return Err(RunFailure::BadInput(format!(
            "{} is {why}: it is left from another run; pass --force to remove it, or --out DIR to write elsewhere",
            table.display()
        )));
    }
    // Nothing is removed or written before the folder is locked.
    let lock = prepare_output(&out_dir, options.force)?;
    for (table, _) in stale {
        remove_if_present(&table)?;
    }
    remove_if_present(&out_dir.join(crate::checkpoint::FILE))?;
    crate::output::files::remove_temp_files(&out_dir).map_err(io_error(&out_dir))?;
    let sims = build_worlds(scenario, options)?;
    let manifest = ManifestWriter::new(Some(&out_dir), scenario, source, file);
    manifest.write("running", 0)?;
    let tracker = SummaryTracker::new(scenario.collapse.clone(), scenario.stop.clone(), sims.len(), scenario.rounds);
    let mut tables = Tables::create(&out_dir, scenario)?;
    if options.destination == Destination::FolderAndMemory {
        tables = tables.keeping();
    }
    let source = RunSource { text: source, file };
    let outcome = continue_run(sims, scenario, &source, options, Some(&out_dir), &manifest, tracker, tables, 0);
    drop(lock);
    outcome
}

/// [`run`] for [`Destination::Memory`]: the same worlds and round loop, nothing written.
fn run_in_memory(scenario: &Scenario, source: &str, file: &Path, options: &RunOptions) -> Result<RunOutcome, RunFailure> {
    if options.checkpoint_every.is_some() {
        return Err(RunFailure::BadInput(
            "checkpoints are written to the output folder: a run kept in memory cannot take them; write a folder too".into(),
        ));
    }
    let sims = build_worlds(scenario, options)?;
    let manifest = ManifestWriter::new(None, scenario, source, file);
    manifest.write("running", 0)?;
    let tracker = SummaryTracker::new(scenario.collapse.clone(), scenario.stop.clone(), sims.len(), scenario.rounds);
    let source = RunSource { text: source, file };
    continue_run(sims, scenario, &source, options, None, &manifest, tracker, Tables::in_memory(scenario), 0)
}

/// The worlds of every replicate, each told of the interrupt flag so that a long round stops
/// between its phases (see [`Simulation::set_interrupt`]).
fn build_worlds(scenario: &Scenario, options: &RunOptions) -> Result<Vec<Simulation>, RunFailure> {
    let mut sims: Vec<Simulation> = (0..scenario.replicates).map(|r| Simulation::new(scenario, r)).collect::<Result<_, _>>()?;
    for sim in &mut sims {
        sim.set_interrupt(options.interrupt.clone());
    }
    Ok(sims)
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
    let lock = lock_output(out_dir)?;
    let checkpoint = Checkpoint::read(&path).map_err(bad)?;
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
    // Datasets are read again from the scenario's files, and must be the ones the run read.
    scenario.load_data(&file).map_err(|problems| bad(ScenarioErrors::invalid(&file, &checkpoint.scenario_source, problems).to_string()))?;
    crate::checkpoint::DatasetRecord::check_unchanged(&checkpoint.datasets, &crate::checkpoint::DatasetRecord::of(&scenario))
        .map_err(|e| bad(format!("{}: {e}", path.display())))?;
    // Plugin libraries are resolved as the run resolved them (from the scenario's folder, with
    // the same consent rule), and must be the files, and the bytes, the run loaded.
    crate::plugin::check_scenario_with(&mut scenario, &file, &options.models)
        .map_err(|problems| bad(ScenarioErrors::invalid(&file, &checkpoint.scenario_source, problems).to_string()))?;
    crate::checkpoint::PluginRecord::check_unchanged(&checkpoint.plugins, &crate::checkpoint::PluginRecord::of(&scenario))
        .map_err(|e| bad(format!("{}: {e}", path.display())))?;
    scenario.seed = checkpoint.seed;
    scenario.rounds = checkpoint.rounds;
    scenario.replicates = checkpoint.replicates;
    scenario.output = checkpoint.output.clone();
    let observers = Observers::decode(&checkpoint.observers).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    // The scenario is loaded from the checkpoint, not by `Scenario::load`: its size is
    // checked here, before any world is built.
    crate::scenario::footprint::check_memory(&scenario, options.max_memory)
        .map_err(|problems| bad(ScenarioErrors::invalid(&file, &checkpoint.scenario_source, problems).to_string()))?;
    let mut sims = build_worlds(&scenario, options)?;
    for (sim, state) in sims.iter_mut().zip(&checkpoint.worlds) {
        crate::checkpoint::restore(sim, state).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    }
    let marks = checkpoint.table_marks().map_err(|e| bad(format!("{}: {e}", path.display())))?;
    // Every mark is checked against its file before any file is cut back or written: a bad
    // checkpoint leaves the folder as it found it.
    Tables::check_marks(out_dir, &scenario, (&marks.0, &marks.1), checkpoint.phases_bytes)
        .map_err(|e| bad(format!("{}: corrupt checkpoint or table: {e}", path.display())))?;
    crate::output::files::remove_temp_files(out_dir).map_err(io_error(out_dir))?;
    let tables = Tables::resume(out_dir, &scenario, (&marks.0, &marks.1), checkpoint.phases_bytes, observers.phases)?;
    let tracker = observers.summary;
    let manifest = ManifestWriter::new(Some(out_dir), &scenario, &checkpoint.scenario_source, &file);
    manifest.write("running", checkpoint.round)?;
    let source = RunSource { text: &checkpoint.scenario_source, file: &file };
    let outcome = continue_run(sims, &scenario, &source, options, Some(out_dir), &manifest, tracker, tables, checkpoint.round + 1);
    drop(lock);
    outcome
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
/// labels and the final manifest (into `out_dir`; a run in memory, `None`, keeps them only).
#[expect(
    clippy::too_many_arguments,
    reason = "a run's worlds, scenario, source, options, folder, manifest, summary and tables, handed over by run and resume"
)]
fn continue_run(
    mut sims: Vec<Simulation>,
    scenario: &Scenario,
    source: &RunSource<'_>,
    options: &RunOptions,
    out_dir: Option<&Path>,
    manifest: &ManifestWriter<'_>,
    tracker: SummaryTracker,
    tables: Tables,
    start: u64,
) -> Result<RunOutcome, RunFailure> {
    let checkpoint_path = out_dir.map(|d| d.join(crate::checkpoint::FILE));
    let checkpoint = |round: u64, sims: &mut [Simulation], tables: &mut Tables, tracker: &SummaryTracker| -> Result<(), RunFailure> {
        let (Some(k), Some(out_dir), Some(checkpoint_path)) = (options.checkpoint_every, out_dir, &checkpoint_path) else {
            return Ok(());
        };
        if round == 0 || !round.is_multiple_of(k) || round >= scenario.rounds {
            return Ok(());
        }
        let worlds = sims.iter().map(crate::checkpoint::capture).collect::<Result<Vec<_>, _>>().map_err(RunFailure::BadInput)?;
        let (metrics, aggregate) = tables.marks()?;
        let footer = |mark: &TableMark| mark.footer.as_deref().map(crate::checkpoint::encode_bytes);
        let (phases_bytes, chains) = tables.phases_mark()?;
        let observers = Observers { summary: tracker.clone(), phases: chains };
        let c = Checkpoint {
            format: crate::checkpoint::FORMAT.to_string(),
            scenario_file: source.file.display().to_string(),
            scenario_sha256: format!("{:x}", Sha256::digest(source.text.as_bytes())),
            scenario_source: source.text.to_string(),
            seed: scenario.seed,
            rounds: scenario.rounds,
            replicates: scenario.replicates,
            datasets: crate::checkpoint::DatasetRecord::of(scenario),
            plugins: crate::checkpoint::PluginRecord::of(scenario),
            round,
            metrics_bytes: metrics.bytes,
            aggregate_bytes: aggregate.bytes,
            metrics_footer: footer(&metrics),
            aggregate_footer: footer(&aggregate),
            phases_bytes,
            output: scenario.output.clone(),
            observers: observers.encode(),
            worlds,
            sha256: None,
        };
        c.write(out_dir).map_err(io_error(checkpoint_path))?;
        manifest.write("running", round)
    };
    let live = (0..sims.len()).map(|r| !tracker.has_stopped(r)).collect();
    let tracker = std::cell::RefCell::new(tracker);
    let (completed, result, kept) = drive_from(
        &mut sims,
        scenario,
        options,
        tables,
        start,
        live,
        |r, rows| tracker.borrow_mut().observe(r, rows),
        |round, sims, tables| checkpoint(round, sims, tables, &tracker.borrow()),
    );
    let tracker = tracker.into_inner();
    let summary = tracker.summary();
    let result = match out_dir {
        Some(out_dir) => {
            let summary_path = out_dir.join("summary.json");
            let written = write_atomic(&summary_path, &serde_json::to_vec_pretty(&summary).expect("summary serialises"));
            first_failure(result, &summary_path, written)
        }
        None => result,
    };
    if let (Ok(()), Some(path)) = (&result, &checkpoint_path) {
        remove_if_present(path)?;
    }
    manifest.finish(completed, summary.stopped_early.as_deref(), result)?;
    let out_dir = out_dir.map(Path::to_path_buf).unwrap_or_default();
    tracing::info!(rounds = completed, dir = %out_dir.display(), "run complete");
    Ok(RunOutcome { out_dir, summary, manifest: manifest.last(), metrics: kept.metrics, last_phases: kept.last_phases })
}

/// How a run ended, once the write of `path` that follows its loop (the summary) returned
/// `written`: the loop's failure if it failed (a full disk that stopped the tables also
/// refuses the summary, and that second error would hide the first), else the write's. The
/// manifest is then written, best effort, with this as its status.
pub(crate) fn first_failure(result: Result<(), RunFailure>, path: &Path, written: std::io::Result<()>) -> Result<(), RunFailure> {
    match (result, written) {
        (Ok(()) | Err(RunFailure::Interrupted { .. }), Err(e)) => Err(io_error(path)(e)),
        (result, _) => result,
    }
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RunFailure + use<> {
    let path = path.to_path_buf();
    move |source| RunFailure::Io { path, source }
}

/// Creates the output folder and locks it (see [`lock_output`]), refusing one that already
/// holds a run unless `force`. The returned lock is held for the whole run.
pub(crate) fn prepare_output(out_dir: &Path, force: bool) -> Result<crate::output::files::DirLock, RunFailure> {
    if out_dir.join("manifest.json").exists() && !force {
        return Err(RunFailure::BadInput(format!(
            "{} already holds a run; pass --force to overwrite it, or --out DIR to write elsewhere",
            out_dir.display()
        )));
    }
    std::fs::create_dir_all(out_dir).map_err(io_error(out_dir))?;
    lock_output(out_dir)
}

/// Locks the output folder `out_dir` for this process (an advisory `flock`, released when the
/// run ends or the process dies), refusing it, even with `--force`, while another run holds
/// it: two writers would interleave rows and leave a manifest that says `running`.
pub(crate) fn lock_output(out_dir: &Path) -> Result<crate::output::files::DirLock, RunFailure> {
    match crate::output::files::DirLock::try_acquire(out_dir) {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => Err(RunFailure::BadInput(format!(
            "{} is in use by another coevo run (it holds the folder's lock); wait for it to end, or write elsewhere with --out DIR (--force does not override a run in progress)",
            out_dir.display()
        ))),
        Err(e) => Err(io_error(out_dir)(e)),
    }
}
