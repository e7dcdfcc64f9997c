//! `run` and `validate`: a scenario run by the library, in memory or into its folder too, and
//! what Python gets back.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use coevo::output::parquet::MetricsBatches;
use coevo::run::{Destination, RunFailure, RunOptions, RunOutcome};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::detach::interruptible;
use crate::scenario::{Overrides, Source, load};
use crate::table::ArrowTable;

/// The Python exception of a run that failed: bad input (exit code 2 in the CLI) is a
/// `ValueError`, a failure while running (exit code 1) a `RuntimeError`, each with the CLI's
/// message. (An interruption never gets here: the signal's `KeyboardInterrupt` is raised.)
pub fn run_error(e: &RunFailure) -> PyErr {
    match e.exit_code() {
        2 => PyValueError::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

/// Runs `options` over a loaded scenario with the GIL released (Ctrl-C stops it cleanly).
pub fn run_loaded(
    py: Python<'_>,
    loaded: &crate::scenario::Loaded,
    mut options: RunOptions,
    threads: Option<usize>,
) -> PyResult<RunOutcome> {
    let interrupt = Arc::new(AtomicBool::new(false));
    options.interrupt = Some(interrupt.clone());
    let outcome = interruptible(py, threads, &interrupt, || coevo::run::run(&loaded.scenario, &loaded.source, &loaded.file, &options))?;
    outcome.map_err(|e| run_error(&e))
}

/// Runs a scenario; returns a dict of `metrics` (an [`ArrowTable`]), `summary`, `manifest`
/// (JSON texts), `report` (the CLI's summary text) and `out_dir` (or `None`).
#[pyfunction]
#[pyo3(signature = (source, *, seed = None, rounds = None, replicates = None, out = None, force = false, threads = None, max_memory = None, models = None))]
#[expect(clippy::too_many_arguments, reason = "the keyword arguments of coevo.run, passed through")]
pub fn run<'py>(
    py: Python<'py>,
    source: Source,
    seed: Option<u64>,
    rounds: Option<u64>,
    replicates: Option<u64>,
    out: Option<PathBuf>,
    force: bool,
    threads: Option<usize>,
    max_memory: Option<u64>,
    models: Option<Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let models = crate::model::hosted_models(py, models.as_ref())?;
    let loaded = load(py, &source, Overrides { seed, rounds, replicates }, max_memory, &models)?;
    let destination = if out.is_some() { Destination::FolderAndMemory } else { Destination::Memory };
    let options = RunOptions { out_dir: out.clone(), destination, force, max_memory, ..Default::default() };
    let outcome = run_loaded(py, &loaded, options, threads)?;
    let d = PyDict::new(py);
    let batches = outcome.metrics.unwrap_or_default();
    d.set_item("metrics", ArrowTable::new(MetricsBatches::schema(), batches))?;
    d.set_item("summary", serde_json::to_string(&outcome.summary).expect("a summary serialises"))?;
    d.set_item("manifest", outcome.manifest)?;
    d.set_item("report", outcome.summary.report())?;
    d.set_item("out_dir", out.map(|_| outcome.out_dir.display().to_string()))?;
    Ok(d)
}

/// Loads and validates a scenario as a run would; returns it as JSON, every default filled in
/// (the form `coevo.run` accepts as a dict).
#[pyfunction]
#[pyo3(signature = (source, *, max_memory = None, models = None))]
pub fn validate(py: Python<'_>, source: Source, max_memory: Option<u64>, models: Option<Bound<'_, PyDict>>) -> PyResult<String> {
    let models = crate::model::hosted_models(py, models.as_ref())?;
    let loaded = load(py, &source, Overrides::default(), max_memory, &models)?;
    Ok(serde_json::to_string(&loaded.scenario).expect("a scenario serialises"))
}
