//! Models written in Python (issue 14 item 5): a Python class seen as a coevo
//! [`ConditionalModel`], so a scenario's `PluginModel` without `library` can name it.
//!
//! `coevo.run(scenario, models={"kde": Kde})` hands this module a dict of factories;
//! [`hosted_models`] turns it into the library's [`HostedModels`], whose factories create, once
//! per world, a `coevo._models._Hosted` adapter around `Kde(num_texts, params)`. Every call of
//! the model goes through that adapter with flat float64 buffers (bytes): it makes the numpy
//! arrays, checks what the model returns (shapes, finiteness) and turns an exception into one
//! line, which [`PyModel`] reports as a [`ModelError`] of the call, so coevo names the entity,
//! the call and the round as it does for a plugin.
//!
//! Random numbers: each `sample` and `sample_initial` call draws 128 bits from the entity's
//! stream and hands the model `numpy.random.default_rng(those bits)`, so a run is reproducible
//! whatever the number of threads, and the model has numpy's whole generator API.
//!
//! The GIL: worlds run in parallel Rust threads with the GIL released; every call into Python
//! takes it ([`Python::attach`]), so Python models run one call at a time: correct, and as fast
//! as Python is (they are for prototyping).

use coevo::models::{ConditionalModel, DataPolicy, HostedContext, HostedFactory, HostedModels, ModelError, PerTextMetrics};
use coevo::rng::Stream;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use rand::Rng;

/// The Python module holding the adapter every Python model is called through.
const ADAPTER_MODULE: &str = "coevo._models";

/// The hosted models of a `models=` dict: name -> a class or factory called as
/// `factory(num_texts, params)`. A value that is not callable raises `TypeError` naming it.
pub fn hosted_models(py: Python<'_>, models: Option<&Bound<'_, PyDict>>) -> PyResult<HostedModels> {
    let mut hosted = HostedModels::new();
    let Some(models) = models else { return Ok(hosted) };
    let adapter: Py<PyAny> = py.import(ADAPTER_MODULE)?.getattr("_Hosted")?.unbind();
    for (name, factory) in models.iter() {
        let name: String = name.extract().map_err(|_| PyTypeError::new_err("models= keys are model names (str)"))?;
        if !factory.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "models[{name:?}] is a {}, not a class or factory: coevo calls it as factory(num_texts, params)",
                factory.get_type().name()?
            )));
        }
        hosted.insert(name, PyFactory { factory: factory.unbind(), adapter: adapter.clone_ref(py) });
    }
    Ok(hosted)
}

/// Creates a Python model for a world: `_Hosted(factory, K, params JSON, model name)`.
struct PyFactory {
    factory: Py<PyAny>,
    adapter: Py<PyAny>,
}

impl HostedFactory for PyFactory {
    fn create(&self, context: &HostedContext<'_>, _rng: &mut Stream) -> Result<Box<dyn ConditionalModel>, String> {
        let params = serde_json::to_string(context.params).expect("a JSON value serialises");
        Python::attach(|py| {
            let created = self.adapter.call1(py, (self.factory.clone_ref(py), context.num_texts, params, context.model));
            let obj = created.map_err(|e| message(py, &e))?;
            let attr = |name: &str| obj.getattr(py, name).map_err(|e| message(py, &e));
            let dim: usize = attr("dim")?.extract(py).map_err(|e| message(py, &e))?;
            let modality: String = attr("modality")?.extract(py).map_err(|e| message(py, &e))?;
            let diversity: String = attr("diversity_metric")?.extract(py).map_err(|e| message(py, &e))?;
            Ok(Box::new(PyModel { obj, modality, diversity, dim, num_texts: context.num_texts, policy: context.policy.clone() })
                as Box<dyn ConditionalModel>)
        })
    }
}

/// The one line a Python failure is reported with: the adapter's own message (the user's
/// exception as the traceback's last line shows it, and where it was raised), else the
/// exception itself.
fn message(py: Python<'_>, e: &PyErr) -> String {
    if e.is_instance_of::<PyRuntimeError>(py)
        && let Ok(s) = e.value(py).str()
    {
        return s.to_string();
    }
    e.to_string()
}

/// A Python model (through its `_Hosted` adapter) as a [`ConditionalModel`].
struct PyModel {
    obj: Py<PyAny>,
    modality: String,
    diversity: String,
    dim: usize,
    num_texts: usize,
    /// The scenario's policy: `Replace` or `Fresh` (validation refuses `Accumulate` for hosted
    /// models), whose real data coevo pools in itself, so the Python model never sees it.
    policy: DataPolicy,
}

/// Float64 values as native-endian bytes (what `numpy.frombuffer` reads).
fn to_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// Native-endian bytes as float64 values, refusing a length that is not `expected` values.
fn from_bytes(call: &'static str, bytes: &[u8], expected: usize) -> Result<Vec<f64>, ModelError> {
    if bytes.len() != expected * 8 {
        return Err(ModelError::new(call, format!("returned {} bytes for {expected} float64 values", bytes.len())));
    }
    Ok(bytes.chunks_exact(8).map(|c| f64::from_ne_bytes(c.try_into().expect("8 bytes"))).collect())
}

/// A seed for `numpy.random.default_rng`: 128 bits from the entity's stream.
fn seed(rng: &mut Stream) -> u128 {
    u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())
}

impl PyModel {
    /// Calls the adapter's `method` and hands its result to `then`, every failure a
    /// [`ModelError`] of `call`.
    fn call<T>(
        &self,
        call: &'static str,
        invoke: impl FnOnce(Python<'_>, &Py<PyAny>) -> PyResult<Py<PyAny>>,
        then: impl FnOnce(Python<'_>, &Bound<'_, PyAny>) -> Result<T, ModelError>,
    ) -> Result<T, ModelError> {
        Python::attach(|py| {
            let result = invoke(py, &self.obj).map_err(|e| ModelError::new(call, message(py, &e)))?;
            then(py, result.bind(py))
        })
    }

    /// The bytes a call returned, as `expected` values.
    fn values(call: &'static str, result: &Bound<'_, PyAny>, expected: usize) -> Result<Vec<f64>, ModelError> {
        let bytes = result.cast::<PyBytes>().map_err(|_| ModelError::new(call, "the adapter returned no bytes"))?;
        from_bytes(call, bytes.as_bytes(), expected)
    }
}

impl ConditionalModel for PyModel {
    fn modality(&self) -> &str {
        &self.modality
    }

    fn num_texts(&self) -> usize {
        self.num_texts
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn sample(&mut self, counts: &[usize], temperature: f64, rng: &mut Stream, out: &mut Vec<f64>) -> Result<(), ModelError> {
        let (n, seed) = (counts.iter().sum::<usize>(), seed(rng));
        *out = self.call(
            "sample",
            |py, obj| obj.call_method1(py, "sample", (counts.to_vec(), temperature, seed)),
            |_, r| Self::values("sample", r, n * self.dim),
        )?;
        Ok(())
    }

    fn sample_initial(&mut self, counts: &[usize], rng: &mut Stream, out: &mut Vec<f64>) -> Result<(), ModelError> {
        let (n, seed) = (counts.iter().sum::<usize>(), seed(rng));
        *out = self.call(
            "sample_initial",
            |py, obj| obj.call_method1(py, "sample_initial", (counts.to_vec(), seed)),
            |_, r| Self::values("sample_initial", r, n * self.dim),
        )?;
        Ok(())
    }

    fn add_log_likelihood(&mut self, samples: &[f64], out: &mut [f64]) -> Result<(), ModelError> {
        let ll = self.call(
            "log_likelihood",
            |py, obj| obj.call_method1(py, "log_likelihood", (PyBytes::new(py, &to_bytes(samples)),)),
            |_, r| Self::values("log_likelihood", r, out.len()),
        )?;
        for (o, l) in out.iter_mut().zip(&ll) {
            *o += l;
        }
        Ok(())
    }

    fn data_policy(&self) -> &DataPolicy {
        &self.policy
    }

    fn fit(&mut self, counts: &[usize], samples: &[f64]) -> Result<(), ModelError> {
        self.call("fit", |py, obj| obj.call_method1(py, "fit", (counts.to_vec(), PyBytes::new(py, &to_bytes(samples)))), |_, _| Ok(()))
    }

    /// Python models keep no "last round" parameters for coevo: any local-drift metric is
    /// their own.
    fn begin_round(&mut self) {}

    fn metrics(&mut self, sink: &mut PerTextMetrics<'_>) -> Result<(), ModelError> {
        let k = self.num_texts;
        let metrics = self.call(
            "metrics",
            |py, obj| obj.call_method0(py, "metrics"),
            |_, r| {
                let list = r.cast::<PyList>().map_err(|_| ModelError::new("metrics", "the adapter returned no list"))?;
                list.iter()
                    .map(|item| {
                        let (name, bytes): (String, Vec<u8>) =
                            item.extract().map_err(|_| ModelError::new("metrics", "the adapter returned no (name, bytes) pair"))?;
                        Ok((name, from_bytes("metrics", &bytes, k)?))
                    })
                    .collect::<Result<Vec<_>, ModelError>>()
            },
        )?;
        for (name, values) in &metrics {
            for (i, &v) in values.iter().enumerate() {
                sink(name, i, v);
            }
        }
        Ok(())
    }

    fn diversity_metric(&self) -> &str {
        &self.diversity
    }

    fn take_regularized(&mut self) -> u64 {
        0
    }

    fn add_text(&mut self) -> Result<(), ModelError> {
        self.call("add_text", |py, obj| obj.call_method0(py, "add_text"), |_, _| Ok(()))?;
        self.num_texts += 1;
        Ok(())
    }

    /// `[K, the model's get_state() values...]`: `K` changes with `add_text`.
    fn save_state(&self) -> Result<Vec<f64>, ModelError> {
        let state = self.call(
            "save_state",
            |py, obj| obj.call_method0(py, "get_state"),
            |_, r| {
                let bytes = r.cast::<PyBytes>().map_err(|_| ModelError::new("save_state", "the adapter returned no bytes"))?;
                from_bytes("save_state", bytes.as_bytes(), bytes.as_bytes().len() / 8)
            },
        )?;
        Ok(std::iter::once(self.num_texts as f64).chain(state).collect())
    }

    fn load_state(&mut self, state: &[f64]) -> Result<(), ModelError> {
        let Some((&k, rest)) = state.split_first() else {
            return Err(ModelError::new("load_state", "the state is empty"));
        };
        if k.fract() != 0.0 || !(1.0..=u32::MAX as f64).contains(&k) {
            return Err(ModelError::new("load_state", format!("{k} is not a number of texts")));
        }
        let k = k as usize;
        self.call(
            "load_state",
            |py, obj| {
                obj.call_method1(py, "set_state", (PyBytes::new(py, &to_bytes(rest)),))?;
                obj.setattr(py, "num_texts", k)?;
                Ok(py.None())
            },
            |_, _| Ok(()),
        )?;
        self.num_texts = k;
        Ok(())
    }
}
