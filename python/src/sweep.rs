//! The sweep functions `coevo.sweep` is made of: one point run in memory and summarised as
//! `coevo sweep` summarises it (the same `sweep.csv` rows, from the library's own
//! [`point_rows`]), a scenario design's points, and the table's header. Points are applied to
//! the base scenario by the library's [`apply`], so a point has the seed `coevo sweep` gives
//! it (the base scenario's, unless `seed` is a swept parameter).

use coevo::experiment::grid::{SweepPoint, design_points, point_rows};
use coevo::run::{Destination, RunFailure, RunOptions};
use coevo::scenario::SweepValue;
use coevo::scenario::sweep::apply;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};

use crate::run::{run_error, run_loaded};
use crate::scenario::{Overrides, Source, load};

/// A parameter value from Python: a bool, a whole number, a float or a string.
pub struct Value(SweepValue);

impl<'py> FromPyObject<'_, 'py> for Value {
    type Error = PyErr;

    fn extract(ob: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        // A bool is an int in Python: it is asked first.
        if ob.is_instance_of::<PyBool>() {
            return Ok(Value(SweepValue::Bool(ob.extract()?)));
        }
        if ob.is_instance_of::<PyInt>() {
            return Ok(Value(match ob.extract::<u64>() {
                Ok(u) => SweepValue::Unsigned(u),
                Err(_) => SweepValue::Signed(ob.extract()?),
            }));
        }
        if ob.is_instance_of::<PyFloat>() {
            return Ok(Value(SweepValue::Float(ob.extract()?)));
        }
        if ob.is_instance_of::<PyString>() {
            return Ok(Value(SweepValue::Text(ob.extract()?)));
        }
        // numpy scalars and the like: as a float if they convert to one.
        ob.extract::<f64>()
            .map(|x| Value(SweepValue::Float(x)))
            .map_err(|_| PyValueError::new_err(format!("a parameter value must be a bool, int, float or str, not {}", ob.get_type())))
    }
}

/// A design value as Python sees it.
fn to_python<'py>(py: Python<'py>, v: &SweepValue) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        SweepValue::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        SweepValue::Unsigned(u) => u.into_pyobject(py)?.into_any(),
        SweepValue::Signed(i) => i.into_pyobject(py)?.into_any(),
        SweepValue::Float(x) => x.into_pyobject(py)?.into_any(),
        SweepValue::Text(s) => s.into_pyobject(py)?.into_any(),
    })
}

/// Runs point `index` (the base scenario with `values` applied at their parameter paths) in
/// memory; returns its `sweep.csv` rows, as `coevo sweep` writes them.
#[pyfunction]
#[pyo3(signature = (source, index, values, *, seed = None, rounds = None, replicates = None, threads = None, max_memory = None))]
#[expect(clippy::too_many_arguments, reason = "the keyword arguments of coevo.sweep, passed through")]
pub fn sweep_point(
    py: Python<'_>,
    source: Source,
    index: usize,
    values: Vec<(String, Value)>,
    seed: Option<u64>,
    rounds: Option<u64>,
    replicates: Option<u64>,
    threads: Option<usize>,
    max_memory: Option<u64>,
) -> PyResult<String> {
    let mut loaded = load(py, &source, Overrides { seed, rounds, replicates }, max_memory, &Default::default())?;
    let values: Vec<(String, SweepValue)> = values.into_iter().map(|(p, v)| (p, v.0)).collect();
    let scenario = apply(&loaded.scenario, &values)
        .map_err(|e| run_error(&RunFailure::BadInput(format!("{}: sweep point {index}: {e}", loaded.file.display()))))?;
    let point = SweepPoint { index, values, scenario };
    // The point runs as `coevo sweep` runs it: its own scenario, named after the point.
    loaded.file = format!("{}#point{index}", loaded.file.display()).into();
    loaded.scenario = point.scenario.clone();
    let options = RunOptions { destination: Destination::Memory, ..Default::default() };
    let outcome = run_loaded(py, &loaded, options, threads)?;
    Ok(point_rows(&point, &outcome.summary, &outcome.last_phases))
}

/// A design as Python gets it: the parameter paths, and each point's values.
type DesignTable<'py> = (Vec<String>, Vec<Vec<Bound<'py, PyAny>>>);

/// The points of the scenario's own `sweep` section: its parameter paths, and one list of
/// values per point, in point order (what `coevo sweep` runs).
#[pyfunction]
#[pyo3(signature = (source, *, seed = None, max_memory = None))]
pub fn design<'py>(py: Python<'py>, source: Source, seed: Option<u64>, max_memory: Option<u64>) -> PyResult<DesignTable<'py>> {
    let loaded = load(py, &source, Overrides { seed, ..Default::default() }, max_memory, &Default::default())?;
    let design = design_points(&loaded.scenario, &loaded.file).map_err(|e| run_error(&e))?;
    let rows =
        design.values.iter().map(|row| row.iter().map(|v| to_python(py, v)).collect::<PyResult<Vec<_>>>()).collect::<PyResult<_>>()?;
    Ok((design.parameters, rows))
}

/// The header line of `sweep.csv` for these parameter paths.
#[pyfunction]
pub fn sweep_header(parameters: Vec<String>) -> String {
    coevo::experiment::grid::sweep_header(&parameters)
}
