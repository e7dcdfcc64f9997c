//! Test fixture: model `panicky`, a trivial working model (dim 1, text i's samples are all `i`)
//! that panics in the call named by its params, e.g. `{"panic_in": "sample"}`.
//!
//! `panic_in` is one of [`PANIC_POINTS`] (default `"none"`). The SDK must turn each panic into
//! status `COEVO_ERR_PANIC` with the panic message (which names the call), poison the handle,
//! and the host must report it as an error naming the plugin, never crash.

use coevo_plugin_api::serde_json::Value;
use coevo_plugin_api::{ConditionalModelPlugin, DataPolicy, HostRng, ModelDescription, PluginResult, plugin_bail};

coevo_plugin_api::export_plugin! {
    name: "faulty-panic",
    version: env!("CARGO_PKG_VERSION"),
    models: [Panicky],
}

/// Calls that can be made to panic.
pub const PANIC_POINTS: &[&str] =
    &["none", "create", "sample", "log_likelihood", "fit", "metrics", "add_text", "get_params", "set_params", "drop"];

/// See the crate docs.
pub struct Panicky {
    k: usize,
    panic_in: &'static str,
}

impl Panicky {
    fn maybe_panic(&self, call: &str) {
        if self.panic_in == call {
            // A formatted (String) payload, so the message must survive the downcast.
            panic!("faulty-panic: deliberate panic in {call} (k = {})", self.k);
        }
    }
}

impl Drop for Panicky {
    fn drop(&mut self) {
        self.maybe_panic("drop");
    }
}

impl ConditionalModelPlugin for Panicky {
    const DESCRIPTION: ModelDescription = ModelDescription {
        name: c"panicky",
        modality: c"test",
        dim_rule: c"1",
        fixed_dim: 1,
        description: c"test fixture: panics in the call named by params.panic_in",
    };

    fn create(params: &Value, num_texts: usize, _: DataPolicy) -> PluginResult<Self> {
        let want = match params.get("panic_in") {
            None => "none",
            Some(Value::String(s)) => s.as_str(),
            Some(other) => plugin_bail!("panic_in must be a string, got {other}"),
        };
        let Some(&panic_in) = PANIC_POINTS.iter().find(|p| **p == want) else {
            plugin_bail!("panic_in must be one of {PANIC_POINTS:?}, got {want:?}");
        };
        let m = Panicky { k: num_texts, panic_in };
        m.maybe_panic("create");
        Ok(m)
    }

    fn dim(&self) -> usize {
        1
    }

    fn num_texts(&self) -> usize {
        self.k
    }

    fn metric_names(&self) -> Vec<String> {
        vec!["diversity".into(), "fidelity".into()]
    }

    fn sample(&self, counts: &[u64], _: f64, _: &mut HostRng<'_>, out: &mut [f64]) -> PluginResult<()> {
        self.maybe_panic("sample");
        let mut j = 0;
        for (i, &c) in counts.iter().enumerate() {
            for _ in 0..c {
                out[j] = i as f64;
                j += 1;
            }
        }
        Ok(())
    }

    fn log_likelihood(&self, samples: &[f64], out: &mut [f64]) -> PluginResult<()> {
        self.maybe_panic("log_likelihood");
        for (j, y) in samples.iter().enumerate() {
            for i in 0..self.k {
                out[j * self.k + i] = -(y - i as f64).powi(2);
            }
        }
        Ok(())
    }

    fn fit(&mut self, _: &[u64], _: &[f64], _: &mut HostRng<'_>) -> PluginResult<()> {
        self.maybe_panic("fit");
        Ok(())
    }

    fn metrics(&self, out: &mut [f64]) -> PluginResult<()> {
        self.maybe_panic("metrics");
        for row in out.chunks_mut(2) {
            row[0] = 1.0;
            row[1] = 0.0;
        }
        Ok(())
    }

    fn add_text(&mut self) -> PluginResult<()> {
        self.maybe_panic("add_text");
        self.k += 1;
        Ok(())
    }

    fn get_params(&self) -> Vec<f64> {
        self.maybe_panic("get_params");
        vec![self.k as f64]
    }

    fn set_params(&mut self, params: &[f64]) -> PluginResult<()> {
        self.maybe_panic("set_params");
        match params {
            [k] if *k >= 1.0 && k.fract() == 0.0 => {
                self.k = *k as usize;
                Ok(())
            }
            _ => plugin_bail!("checkpoint must be [K]"),
        }
    }
}
