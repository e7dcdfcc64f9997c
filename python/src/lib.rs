//! `coevo._native`: the Python package's native module (PyO3), thin bindings over the coevo
//! library. The public Python API lives in `python/coevo/__init__.py`, which calls these
//! functions; nothing here is meant to be called by users directly.
//!
//! Modules, one per idea:
//! - `scenario`: a scenario handed over from Python (a file, RON text or a dict's JSON),
//!   loaded by the library's own loader, and `ScenarioError` with its field path and place;
//! - `table`: the metrics as Arrow record batches behind the Arrow C stream interface
//!   (`__arrow_c_stream__`), which polars and pyarrow read without a copy through a file;
//! - `detach`: running library work with the GIL released while the calling thread polls for
//!   Ctrl-C and raises the library's interrupt flag;
//! - `run`: `run` and `validate`;
//! - `sweep`: one sweep point (what `coevo.sweep` maps over an executor) and a design's points.
//! - `model`: models written in Python (`models=`), seen by the library as conditional
//!   models.

use pyo3::prelude::*;

mod detach;
mod model;
mod run;
mod scenario;
mod sweep;
mod table;

/// The native module: its functions, classes and exception.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ScenarioError", m.py().get_type::<scenario::ScenarioError>())?;
    m.add_class::<table::ArrowTable>()?;
    m.add_function(wrap_pyfunction!(run::run, m)?)?;
    m.add_function(wrap_pyfunction!(run::validate, m)?)?;
    m.add_function(wrap_pyfunction!(sweep::sweep_point, m)?)?;
    m.add_function(wrap_pyfunction!(sweep::design, m)?)?;
    m.add_function(wrap_pyfunction!(sweep::sweep_header, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
