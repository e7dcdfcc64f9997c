//! Running a scenario end to end: build the worlds, advance them round by round, write the
//! output folder, summarise.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::output::{MetricsWriter, Summary, SummaryTracker, write_atomic};
use crate::rng::RNG_ALGORITHM;
use crate::scenario::{EntitySpec, Means, Scenario};
use crate::world::{BuildError, RunError, Simulation};

/// How to run a scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Output folder; default: the scenario's `output.dir`, else `out/<scenario name>`.
    pub out_dir: Option<PathBuf>,
    /// Overwrite an output folder that already holds a run.
    pub force: bool,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
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
}

fn resolve(scenario: &Scenario) -> Vec<ResolvedModel> {
    use crate::world::{initial_covariances, unit_circle_means};
    let mut out = Vec::new();
    for e in &scenario.entities {
        match e {
            EntitySpec::TextModel(s) => {
                out.push(ResolvedModel { name: s.name.clone(), p0: Some(s.initial.probabilities()), means: None, covariances: None })
            }
            EntitySpec::ImageModel(s) => {
                let Some(EntitySpec::TextModel(t)) = scenario.entity(&s.conditioned_on) else { continue };
                let (k, d) = (t.initial.probabilities().len(), s.dim as usize);
                let means = match &s.means {
                    Means::UnitCircle => unit_circle_means(k, d).iter().map(|m| m.iter().copied().collect()).collect(),
                    Means::Explicit(m) => m.clone(),
                };
                let covariances = initial_covariances(&s.covariance, k, d)
                    .iter()
                    .map(|m| m.row_iter().map(|r| r.iter().copied().collect()).collect())
                    .collect();
                out.push(ResolvedModel { name: s.name.clone(), p0: None, means: Some(means), covariances: Some(covariances) });
            }
            EntitySpec::Temperature(_)
            | EntitySpec::CorpusInjector(_)
            | EntitySpec::UserContentInjector(_)
            | EntitySpec::PluginModel(_) => {}
        }
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
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RunFailure::Io { path, source }
    };
    if out_dir.join("manifest.json").exists() && !options.force {
        return Err(RunFailure::BadInput(format!(
            "{} already holds a run; pass --force to overwrite it, or --out DIR to write elsewhere",
            out_dir.display()
        )));
    }
    std::fs::create_dir_all(&out_dir).map_err(io(&out_dir))?;

    let replicates = scenario.replicates;
    let mut sims: Vec<Simulation> = (0..replicates).map(|r| Simulation::new(scenario, r)).collect::<Result<_, _>>()?;

    let resolved = resolve(scenario);
    let hash = format!("{:x}", Sha256::digest(source.as_bytes()));
    let manifest_path = out_dir.join("manifest.json");
    let write_manifest = |status: &str, completed: u64| -> Result<(), RunFailure> {
        let manifest = Manifest {
            coevo_version: env!("CARGO_PKG_VERSION"),
            scenario_file: file.display().to_string(),
            scenario_sha256: hash.clone(),
            seed: scenario.seed,
            rounds: scenario.rounds,
            replicates,
            rng: RNG_ALGORITHM,
            status,
            rounds_completed: completed,
            scenario,
            resolved: resolve(scenario),
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        write_atomic(&manifest_path, &json).map_err(io(&manifest_path))
    };
    drop(resolved);
    write_manifest("running", 0)?;

    let metrics_path = out_dir.join("metrics.csv");
    let mut writer = MetricsWriter::create(&metrics_path).map_err(io(&metrics_path))?;
    let mut tracker = SummaryTracker::new(scenario.collapse.clone(), replicates as usize);
    let progress = progress_bar(scenario, options);

    let mut completed = 0;
    let mut result: Result<(), RunFailure> = Ok(());
    for round in 0..=scenario.rounds {
        let outcomes: Vec<Result<(), RunError>> =
            sims.par_iter_mut().map(|s| if round == 0 { s.measure().map(|_| ()) } else { s.step().map(|_| ()) }).collect();
        if let Some(e) = outcomes.into_iter().find_map(Result::err) {
            result = Err(e.into());
            break;
        }
        let rows = sims.iter().enumerate().map(|(r, s)| (r as u64, measurements(s)));
        if let Err(e) = writer.write_round(rows) {
            result = Err(io(&metrics_path)(e));
            break;
        }
        for (r, s) in sims.iter().enumerate() {
            tracker.observe(r, measurements(s));
        }
        completed = round;
        tracing::debug!(round, "round complete");
        progress.inc(1);
    }
    progress.finish_and_clear();
    let summary = tracker.summary();
    let summary_path = out_dir.join("summary.json");
    write_atomic(&summary_path, &serde_json::to_vec_pretty(&summary).expect("summary serialises")).map_err(io(&summary_path))?;
    match result {
        Ok(()) => {
            write_manifest("complete", completed)?;
            tracing::info!(rounds = completed, dir = %out_dir.display(), "run complete");
            Ok(RunOutcome { out_dir, summary })
        }
        Err(e) => {
            write_manifest(&format!("failed: {e}"), completed)?;
            Err(e)
        }
    }
}

fn measurements(sim: &Simulation) -> &[crate::world::MetricRow] {
    &sim.world().resource::<crate::world::Measurements>().0
}

fn progress_bar(scenario: &Scenario, options: &RunOptions) -> indicatif::ProgressBar {
    if !options.progress || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(scenario.rounds + 1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:40}] round {pos}/{len} ({eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(scenario.name.clone());
    bar
}
