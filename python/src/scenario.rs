//! A scenario handed over from Python, loaded by the library's one loader, and the
//! `ScenarioError` its problems raise.
//!
//! Python passes a scenario as `(kind, text, label)`: `kind` is `"file"` (`text` is its path),
//! `"ron"` (RON source) or `"json"` (a dict, serialised by the Python side); `label` names it in
//! errors and anchors its relative paths (datasets, plugins). Plain strings are picklable, so
//! the same triple goes to worker processes of a sweep.

use std::path::{Path, PathBuf};

use coevo::Scenario;
use coevo::models::HostedModels;
use coevo::scenario::{ScenarioError as Problem, ScenarioErrors};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

pyo3::create_exception!(
    _native,
    ScenarioError,
    PyValueError,
    "A scenario that cannot run: its `str` is the message the CLI prints; `.path` is the field path \
     of the first problem, `.file`, `.line` and `.column` where it is (line and column for files \
     and RON text only), `.errors` every problem as a dict with the same keys and `message`."
);

/// A scenario as Python hands it over: the tuple `(kind, text, label)`.
#[derive(Debug, Clone)]
pub struct Source {
    /// `file`, `ron` or `json`.
    pub kind: String,
    /// The path, the RON source or the JSON text.
    pub text: String,
    /// What errors call it (the path for a file; `<string>` or `<dict>`, or a path whose folder
    /// relative paths start from).
    pub label: String,
}

impl<'py> FromPyObject<'_, 'py> for Source {
    type Error = PyErr;

    fn extract(ob: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        let (kind, text, label) = ob.extract()?;
        Ok(Source { kind, text, label })
    }
}

/// The command line's overrides of a scenario's top-level counts, as `coevo run` applies them
/// (after loading, as `--seed`, `--rounds` and `--replicates` do).
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--rounds`.
    pub rounds: Option<u64>,
    /// `--replicates`.
    pub replicates: Option<u64>,
}

impl Overrides {
    fn apply(self, scenario: &mut Scenario) {
        scenario.seed = self.seed.unwrap_or(scenario.seed);
        scenario.rounds = self.rounds.unwrap_or(scenario.rounds);
        scenario.replicates = self.replicates.unwrap_or(scenario.replicates);
    }
}

/// A loaded scenario: what a run needs.
pub struct Loaded {
    /// The validated scenario, overrides applied.
    pub scenario: Scenario,
    /// Its source text (what the manifest hashes).
    pub source: String,
    /// Its file, or label.
    pub file: PathBuf,
}

/// Loads `source` with the library's loader (parse, validate, datasets, memory check,
/// plugins) and applies `overrides`; problems raise [`ScenarioError`].
/// `models`: the models written in Python it may name (`models=`, see [`crate::model`]).
pub fn load(py: Python<'_>, source: &Source, overrides: Overrides, max_memory: Option<u64>, models: &HostedModels) -> PyResult<Loaded> {
    let file = PathBuf::from(&source.label);
    let loaded = match source.kind.as_str() {
        "file" => Scenario::load_with_models(Path::new(&source.text), max_memory, models),
        "ron" => Scenario::from_source(&source.text, &file, max_memory, models).map(|s| (s, source.text.clone())),
        "json" => Scenario::from_json(&source.text, &file, max_memory, models).map(|s| (s, source.text.clone())),
        other => return Err(PyValueError::new_err(format!("unknown scenario kind {other:?}: expected file, ron or json"))),
    };
    let (mut scenario, text) = loaded.map_err(|e| scenario_error(py, &e))?;
    overrides.apply(&mut scenario);
    Ok(Loaded { scenario, source: text, file })
}

/// The Python exception for `errors`: the CLI's message, and each problem's place.
pub fn scenario_error(py: Python<'_>, errors: &ScenarioErrors) -> PyErr {
    let err = ScenarioError::new_err(errors.to_string());
    let described = || -> PyResult<()> {
        let value = err.value(py);
        let list = PyList::empty(py);
        for e in &errors.0 {
            let d = PyDict::new(py);
            let (file, line, column, path, message) = match e {
                Problem::Io { file, message } => (file, None, None, None, message.clone()),
                Problem::Syntax { file, line, col, message, hint } => {
                    let message = match hint {
                        Some(h) => format!("{message} (hint: {h})"),
                        None => message.clone(),
                    };
                    (file, Some(*line), Some(*col), None, message)
                }
                Problem::Invalid { file, position, field, message } => {
                    (file, position.map(|p| p.0), position.map(|p| p.1), Some(field.clone()), message.clone())
                }
            };
            d.set_item("file", file.display().to_string())?;
            d.set_item("line", line)?;
            d.set_item("column", column)?;
            d.set_item("path", path)?;
            d.set_item("message", message)?;
            list.append(d)?;
        }
        let first = list.get_item(0).ok();
        for key in ["file", "line", "column", "path"] {
            let v = match &first {
                Some(f) => f.get_item(key)?,
                None => py.None().into_bound(py),
            };
            value.setattr(key, v)?;
        }
        value.setattr("errors", list)?;
        Ok(())
    };
    match described() {
        Ok(()) => err,
        Err(e) => e,
    }
}
