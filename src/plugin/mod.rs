//! Dynamic plugins, host side: finding and loading plugin libraries, checking a scenario's
//! plugin models against them, and running each plugin model as a [`ConditionalModel`].
//!
//! The boundary itself (a versioned C ABI, the SDK plugin authors use, and the safe host-side
//! wrappers that detect misbehaving plugins) is the `coevo-plugin-api` crate in `plugins/api`.
//! This module adds what is specific to coevo:
//!
//! - [`library`]: the plugin search path, resolution of a scenario's `library` string, the
//!   consent rule for libraries outside it (`--allow-plugin`), a process-wide cache of
//!   libraries loaded in process (loaded once, never unloaded), log forwarding to `tracing`,
//!   and discovery for `coevo plugins list`;
//! - [`isolate`], [`serve`] and [`wire`]: plugin models run in plugin host processes by
//!   default (`coevo plugin-host`), so a plugin that crashes, hangs or exhausts memory fails
//!   the run with a message instead of taking it down; `--trusted-plugins` runs them in
//!   process ([`Isolation`]);
//! - [`adapter`]: [`PluginConditional`], a plugin model seen through the same trait as the
//!   built-in Gaussian image model, so the world's systems have no plugin special case;
//! - [`check_scenario`] and [`build_conditional`]: loading-time validation (exit code 2) and
//!   construction of a world's plugin models;
//! - `hosted`: the same for hosted models (a `PluginModel` without `library`), created in
//!   process from the [`HostedModels`] the program running coevo supplies;
//! - [`check`]: `coevo plugins check`, every model of a library exercised against the plugin
//!   contract (shapes, finiteness, determinism, checkpoint round trip) for plugin authors.
//!
//! [`ConditionalModel`]: crate::models::ConditionalModel

pub mod adapter;
pub mod check;
mod hosted;
pub mod isolate;
pub mod library;
pub mod serve;
pub mod wire;

use std::path::Path;

use rand::SeedableRng;

pub use adapter::{DIVERSITY_METRIC, PluginConditional, PluginState};
pub use isolate::{
    ChildLimits, HOST_COMMAND, Isolation, PluginInstance, PluginLibrary, RemoteLibrary, TableInfo, set_host_program, set_isolation,
};
pub use library::{Discovered, NotFound, PLUGIN_PATH_VAR, discover, resolve_library, search_path, set_allowed_plugins, set_plugin_dirs};

use crate::models::text::multinomial_counts;
use crate::models::{ConditionalModel, DataPolicy, HostedModels};
use crate::rng::Stream;
use crate::scenario::{EntitySpec, LibraryRecord, PluginModelSpec, Problem, Scenario};

/// Checks every library a scenario's plugin models name, and each model against it: the
/// library is found, the user consented to it if it is not on the plugin search path
/// ([`library::check_consent`]), it loads, speaks this ABI version and carries the model; the
/// model accepts its parameters for the text model's `K` and the data policy; it reports a
/// `diversity` metric. Records the resolved library (canonical path, SHA-256, name, version)
/// in each spec. Relative library paths are taken from the folder of `file`, the scenario file.
///
/// Nothing of a library runs in this process: it is loaded and its models created in a plugin
/// host process ([`isolate`]), whatever the [`Isolation`] of the run.
///
/// A hosted model (no `library`) is refused: none is supplied (see [`check_scenario_with`]).
///
/// Every problem names the entity, the field to fix, the plugin and the reason (the loader's
/// or the plugin's own message).
pub fn check_scenario(scenario: &mut Scenario, file: &Path) -> Result<(), Vec<Problem>> {
    check_scenario_with(scenario, file, &HostedModels::new())
}

/// [`check_scenario`] with the hosted models a program supplies: a hosted model (no
/// `library`) is checked against `models` (see `hosted`): it is supplied, accepts its
/// parameters and reports its diversity metric; the scenario then carries `models` to the
/// worlds built from it.
pub fn check_scenario_with(scenario: &mut Scenario, file: &Path, models: &HostedModels) -> Result<(), Vec<Problem>> {
    let base = file.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p });
    let texts: Vec<(String, usize)> = scenario
        .entities
        .iter()
        .filter_map(|e| match e {
            EntitySpec::TextModel(t) => Some((t.name.clone(), scenario.texts_of(t)?)),
            _ => None,
        })
        .collect();
    let limits = match isolate::isolation() {
        Isolation::Child(limits) => limits,
        Isolation::InProcess => ChildLimits::default(),
    };
    let mut problems = Vec::new();
    let mut plugin_metrics: Vec<String> = Vec::new();
    for (i, entity) in scenario.entities.iter_mut().enumerate() {
        let EntitySpec::PluginModel(spec) = entity else { continue };
        let problem = |key: &str, message: String| Problem {
            entity: Some((i, spec.name.clone())),
            kind: "PluginModel",
            key: key.to_owned(),
            message,
        };
        let Some(library) = spec.library.clone() else {
            // Static validation already reported the wiring when `conditioned_on` is unknown.
            if let Some(&(_, k)) = texts.iter().find(|(name, _)| *name == spec.conditioned_on) {
                match hosted::check(spec, k, models) {
                    Ok(names) => {
                        plugin_metrics.extend(names);
                        spec.hosted = Some(models.clone());
                    }
                    Err((key, message)) => problems.push(problem(key, message)),
                }
            }
            continue;
        };
        let record = match locate(&library, base) {
            Ok(r) => r,
            Err(message) => {
                problems.push(problem("library", message));
                continue;
            }
        };
        let remote = match RemoteLibrary::open(&record.0, Some(&record.1), limits) {
            Ok(t) => t,
            Err(e) => {
                problems.push(problem("library", e.to_string()));
                continue;
            }
        };
        let info = remote.info().clone();
        if let Err(e) =
            info.models.iter().position(|m| m.name == spec.model).ok_or_else(|| coevo_plugin_api::host::HostError::UnknownModel {
                plugin: info.name.clone(),
                model: spec.model.clone(),
                available: info.models.iter().map(|m| m.name.clone()).collect(),
            })
        {
            problems.push(problem("model", e.to_string()));
            continue;
        }
        let Some(&(_, k)) = texts.iter().find(|(name, _)| *name == spec.conditioned_on) else {
            // Static validation already reported the wiring.
            continue;
        };
        let params = serde_json::to_string(&spec.params).expect("a JSON value serialises");
        let library = PluginLibrary::Child(remote);
        match PluginConditional::new(&library, &spec.model, &params, k, spec.data.clone(), Stream::from_seed([0; 32])) {
            Ok(model) if !model.metric_names().iter().any(|m| m == DIVERSITY_METRIC) => problems.push(problem(
                "model",
                format!(
                    "plugin `{}` model `{}` reports no `{DIVERSITY_METRIC}` metric (it reports {:?}); coevo's coupling metrics need one",
                    info.name,
                    spec.model,
                    model.metric_names()
                ),
            )),
            Ok(model) => {
                spec.resolved =
                    Some(LibraryRecord { path: record.0, sha256: record.1, plugin: info.name.clone(), version: info.version.clone() });
                plugin_metrics.extend(model.metric_names().iter().cloned());
                plugin_metrics.push(crate::metrics::names::weighted(DIVERSITY_METRIC));
            }
            Err(e) => problems.push(problem("params", e.to_string())),
        }
    }
    // `output.metrics` can name a plugin's metrics: checked now that they are known.
    if problems.is_empty() && scenario.entities.iter().any(|e| matches!(e, EntitySpec::PluginModel(_))) {
        problems.extend(crate::scenario::output::check_metric_names(&scenario.output, &plugin_metrics));
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// Finds the file a scenario's `library` names (from the scenario's folder `base`, the current
/// directory or the search path), checks the user's consent to a path outside the search path,
/// and returns its canonical path and SHA-256. The message says what failed.
fn locate(library: &str, base: Option<&Path>) -> Result<(std::path::PathBuf, String), String> {
    let path = library::resolve_library(library, base).map_err(|e| e.to_string())?;
    if library::is_path(library) {
        library::check_consent(&path, library)?;
    }
    let canonical = path.canonicalize().map_err(|e| format!("plugin library {}: {e}", path.display()))?;
    let sha256 = library::sha256_of(&canonical)?;
    Ok((canonical, sha256))
}

/// Builds the plugin model a spec describes for a text model with initial distribution `p0`,
/// drawing from the entity's stream exactly as the built-in image model does: first the seed
/// of the stream the plugin's `fit` uses, then, under `Accumulate { initial }`, the initial
/// real dataset (`initial` captions from `p0`, samples from the initial conditionals).
///
/// Uses the library recorded by [`check_scenario`] (refused if its bytes changed since),
/// else resolves `library` from the current directory and the plugin search path, with the
/// same consent rule. The model runs where [`isolate::isolation`] says.
///
/// A hosted model (no `library`) is created by its factory instead (see `hosted`).
pub fn build_conditional(spec: &PluginModelSpec, p0: &[f64], stream: &mut Stream) -> Result<Box<dyn ConditionalModel>, String> {
    let (path, sha256) = match (&spec.resolved, &spec.library) {
        (_, None) => return hosted::build(spec, p0.len(), stream),
        (Some(record), _) => (record.path.clone(), record.sha256.clone()),
        (None, Some(library)) => locate(library, None)?,
    };
    let table = library::open_for_run(&path, Some(&sha256)).map_err(|e| e.to_string())?;
    let fit_stream = Stream::from_rng(stream);
    let params = serde_json::to_string(&spec.params).expect("a JSON value serialises");
    let mut model =
        PluginConditional::new(&table, &spec.model, &params, p0.len(), spec.data.clone(), fit_stream).map_err(|e| e.to_string())?;
    if let DataPolicy::Accumulate { initial } = spec.data {
        let mut counts = Vec::new();
        multinomial_counts(initial, p0, stream, &mut counts);
        model.seed_accumulated(&counts, stream).map_err(|e| e.to_string())?;
    }
    Ok(Box::new(model))
}

/// The report of `coevo plugins list`: every file named like a plugin library in `dirs`
/// (default: the plugin search path) with its name, version, ABI version and models (name,
/// modality, dimension rule, description), then the files that are not usable plugins and
/// why. Each library is read in its own plugin host process: nothing of it runs in this one,
/// and one that crashes is reported among the unusable ones.
pub fn list_report(dirs: &[std::path::PathBuf]) -> Result<String, String> {
    use std::fmt::Write as _;
    let found = discover(dirs)?;
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let mut out = String::new();
    let (good, bad): (Vec<_>, Vec<_>) = found.iter().partition(|d| d.table.is_ok());
    let _ = writeln!(out, "{} plugin librar{} in {}", good.len(), if good.len() == 1 { "y" } else { "ies" }, searched.join(", "));
    for d in &good {
        let Ok(table) = &d.table else { continue };
        let _ = writeln!(out, "\n{} {} (ABI {})  {}", table.name, table.version, coevo_plugin_api::COEVO_ABI_VERSION, d.path.display());
        for m in &table.models {
            let _ = writeln!(out, "  {:<20} modality {:<8} dim {:<24} {}", m.name, m.modality, m.dim_rule, m.description);
        }
    }
    if !bad.is_empty() {
        let _ = writeln!(out, "\nnot usable as plugins:");
        for d in &bad {
            if let Err(e) = &d.table {
                let _ = writeln!(out, "  {}: {e}", d.path.display());
            }
        }
    }
    Ok(out)
}
