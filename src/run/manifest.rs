//! `manifest.json`: what a run is (coevo version, scenario file and hash, seed, rounds,
//! replicates, RNG, every model's resolved initial state and plugin provenance) and how far
//! it got, rewritten atomically as the run progresses (or only kept, by a run that writes no
//! folder).

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{RunFailure, io_error};
use crate::output::{StoppedEarly, write_atomic};
use crate::resolve::{Resolved, ResolvedEntity};
use crate::rng::RNG_ALGORITHM;
use crate::scenario::{EntitySpec, Scenario};

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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    datasets: Vec<crate::checkpoint::DatasetRecord>,
    resolved: Vec<ResolvedModel>,
    /// Per replicate, where and why it stopped early (`null`: it ran every round); only in the
    /// final manifest of a scenario with a `stop` section.
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_early: Option<&'a [Option<StoppedEarly>]>,
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
    /// The library file, absolute and canonical.
    library: String,
    /// SHA-256 of the library's bytes: the exact build that ran.
    sha256: String,
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
                // Recorded when the scenario was checked: nothing of the library runs here.
                let plugin = library.as_ref().map(|record| ResolvedPlugin {
                    library: record.path.display().to_string(),
                    sha256: record.sha256.clone(),
                    plugin: record.plugin.clone(),
                    version: record.version.clone(),
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

/// Writes `manifest.json` as a run progresses, and keeps the last one written.
pub(crate) struct ManifestWriter<'a> {
    /// `None`: a run that writes no folder (the manifest is only kept).
    path: Option<PathBuf>,
    scenario: &'a Scenario,
    file: &'a Path,
    hash: String,
    last: std::cell::RefCell<Vec<u8>>,
}

impl<'a> ManifestWriter<'a> {
    /// The manifest of a run in `out_dir` (`None`: a run that writes no folder).
    pub(crate) fn new(out_dir: Option<&Path>, scenario: &'a Scenario, source: &str, file: &'a Path) -> Self {
        ManifestWriter {
            path: out_dir.map(|d| d.join("manifest.json")),
            scenario,
            file,
            hash: format!("{:x}", Sha256::digest(source.as_bytes())),
            last: Default::default(),
        }
    }

    /// The last manifest written (or kept), as JSON.
    pub(crate) fn last(&self) -> serde_json::Value {
        serde_json::from_slice(&self.last.borrow()).unwrap_or(serde_json::Value::Null)
    }

    /// Writes the manifest with `status` after `completed` rounds.
    pub(crate) fn write(&self, status: &str, completed: u64) -> Result<(), RunFailure> {
        self.write_with(status, completed, None)
    }

    fn write_with(&self, status: &str, completed: u64, stopped_early: Option<&[Option<StoppedEarly>]>) -> Result<(), RunFailure> {
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
            datasets: crate::checkpoint::DatasetRecord::of(self.scenario),
            resolved: resolve(self.scenario),
            stopped_early,
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        let written = match &self.path {
            Some(path) => write_atomic(path, &json).map_err(io_error(path)),
            None => Ok(()),
        };
        *self.last.borrow_mut() = json;
        written
    }

    /// Writes the final status (`complete` or `failed: ...`) with where replicates stopped
    /// early, and passes the result on. After a failure the manifest is written best effort:
    /// if the disk refuses it too, that is logged and the first failure is the one returned.
    pub(crate) fn finish(
        &self,
        completed: u64,
        stopped_early: Option<&[Option<StoppedEarly>]>,
        result: Result<(), RunFailure>,
    ) -> Result<(), RunFailure> {
        let status = match &result {
            Ok(()) => "complete".to_string(),
            Err(RunFailure::Interrupted { .. }) => "interrupted".to_string(),
            Err(e) => format!("failed: {e}"),
        };
        match (self.write_with(&status, completed, stopped_early), result) {
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(first)) => {
                tracing::error!("writing the final manifest after the run failed: {e}");
                Err(first)
            }
            (Ok(()), result) => result,
        }
    }
}
