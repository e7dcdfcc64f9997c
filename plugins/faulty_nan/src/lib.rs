//! Test fixture: model `liar`, which reports success while breaking the output contract in the
//! way named by its params, e.g. `{"mode": "nan_loglik"}`. The host helpers must detect each
//! of [`MODES`] (except `"none"` and `"neginf_loglik"`, which are legal):
//!
//! | mode | what the call does while returning `COEVO_OK` |
//! |---|---|
//! | `nan_loglik` / `posinf_loglik` | first log-likelihood is NaN / `+inf` |
//! | `neginf_loglik` | first log-likelihood is `-inf` (legal: zero density) |
//! | `short_loglik` | leaves the last log-likelihood entry unwritten |
//! | `overrun_loglik` | writes one element past `out_len` |
//! | `nan_sample` / `short_sample` | a NaN sample / the last sample unwritten |
//! | `nan_metrics` / `inf_metrics` / `short_metrics` | a NaN / `+inf` / unwritten metric |
//! | `nan_params` | `get_params` returns a NaN |
//! | `unseeded_sample` | samples come from a process-wide counter, not the host stream |
//! | `forgetful_params` | samples depend on the number of fits, which `get_params` leaves out |
//!
//! The last two return valid values from every single call, so only `coevo plugins check`
//! (determinism, checkpoint round trip) catches them.
//!
//! "Unwritten" means the model does not touch the element, so the caller's fill value stays.
//! The overrun cannot be expressed through the safe SDK, so this library wraps the SDK's
//! `log_likelihood` entry in its own table (see [`coevo_plugin_entry`]).

use core::ffi::c_void;
use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use coevo_plugin_api::serde_json::Value;
use coevo_plugin_api::{
    CoevoErrorBuf, CoevoPluginTable, CoevoStatus, ConditionalModelPlugin, DataPolicy, HostRng, ModelDescription, PluginResult, plugin_bail,
};

coevo_plugin_api::plugin_table! {
    name: "faulty-nan",
    version: env!("CARGO_PKG_VERSION"),
    models: [Liar],
}

/// Ways to misbehave.
pub const MODES: &[&str] = &[
    "none",
    "nan_loglik",
    "posinf_loglik",
    "neginf_loglik",
    "short_loglik",
    "overrun_loglik",
    "nan_sample",
    "short_sample",
    "nan_metrics",
    "inf_metrics",
    "short_metrics",
    "nan_params",
    "unseeded_sample",
    "forgetful_params",
];

/// `unseeded_sample`: a source of "randomness" that is not the host's stream.
static UNSEEDED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set by `Liar::log_likelihood` in `overrun_loglik` mode, read by the raw wrapper on the
    /// same thread right after the SDK call returns.
    static OVERRUN: Cell<bool> = const { Cell::new(false) };
}

/// See the crate docs.
pub struct Liar {
    k: usize,
    mode: &'static str,
    /// Fits so far (`forgetful_params` lets samples depend on it).
    fits: u64,
}

impl ConditionalModelPlugin for Liar {
    const DESCRIPTION: ModelDescription = ModelDescription {
        name: c"liar",
        modality: c"test",
        dim_rule: c"1",
        fixed_dim: 1,
        description: c"test fixture: claims success with bad outputs, per params.mode",
    };

    fn create(params: &Value, num_texts: usize, _: DataPolicy) -> PluginResult<Self> {
        let want = match params.get("mode") {
            None => "none",
            Some(Value::String(s)) => s.as_str(),
            Some(other) => plugin_bail!("mode must be a string, got {other}"),
        };
        let Some(&mode) = MODES.iter().find(|m| **m == want) else {
            plugin_bail!("mode must be one of {MODES:?}, got {want:?}");
        };
        Ok(Liar { k: num_texts, mode, fits: 0 })
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

    fn sample(&self, _: &[u64], _: f64, _: &mut HostRng<'_>, out: &mut [f64]) -> PluginResult<()> {
        let n = out.len();
        match self.mode {
            "short_sample" if n > 0 => out[..n - 1].fill(0.5),
            _ => out.fill(0.5),
        }
        if self.mode == "nan_sample" && n > 0 {
            out[0] = f64::NAN;
        }
        if self.mode == "unseeded_sample" {
            out.fill(0.5 + UNSEEDED.fetch_add(1, Ordering::Relaxed) as f64);
        }
        if self.mode == "forgetful_params" {
            out.fill(0.5 + self.fits as f64);
        }
        Ok(())
    }

    fn log_likelihood(&self, _: &[f64], out: &mut [f64]) -> PluginResult<()> {
        let n = out.len();
        match self.mode {
            "short_loglik" if n > 0 => out[..n - 1].fill(-1.0),
            _ => out.fill(-1.0),
        }
        if n > 0 {
            match self.mode {
                "nan_loglik" => out[0] = f64::NAN,
                "posinf_loglik" => out[0] = f64::INFINITY,
                "neginf_loglik" => out[0] = f64::NEG_INFINITY,
                "overrun_loglik" => OVERRUN.with(|f| f.set(true)),
                _ => {}
            }
        }
        Ok(())
    }

    fn fit(&mut self, _: &[u64], _: &[f64], _: &mut HostRng<'_>) -> PluginResult<()> {
        self.fits += 1;
        Ok(())
    }

    fn metrics(&self, out: &mut [f64]) -> PluginResult<()> {
        let n = out.len();
        match self.mode {
            "short_metrics" if n > 0 => out[..n - 1].fill(0.25),
            _ => out.fill(0.25),
        }
        if n > 0 {
            match self.mode {
                "nan_metrics" => out[0] = f64::NAN,
                "inf_metrics" => out[0] = f64::INFINITY,
                _ => {}
            }
        }
        Ok(())
    }

    fn add_text(&mut self) -> PluginResult<()> {
        self.k += 1;
        Ok(())
    }

    fn get_params(&self) -> Vec<f64> {
        if self.mode == "nan_params" { vec![self.k as f64, f64::NAN] } else { vec![self.k as f64] }
    }

    fn set_params(&mut self, params: &[f64]) -> PluginResult<()> {
        match params {
            [k] if *k >= 1.0 && k.fract() == 0.0 => {
                self.k = *k as usize;
                Ok(())
            }
            _ => plugin_bail!("checkpoint must be [K]"),
        }
    }
}

/// The SDK's `log_likelihood`, plus one write past the end of `out` when the model asked for it.
unsafe extern "C" fn overrunning_log_likelihood(
    handle: *mut c_void,
    samples: *const f64,
    n: usize,
    out: *mut f64,
    out_len: usize,
    err: *mut CoevoErrorBuf,
) -> CoevoStatus {
    OVERRUN.with(|f| f.set(false));
    // SAFETY: forwarded caller contract.
    let status = unsafe { coevo_plugin_api::ffi::log_likelihood(handle, samples, n, out, out_len, err) };
    if OVERRUN.with(|f| f.replace(false)) {
        // SAFETY: none — this is the deliberate contract violation under test. The coevo host
        // allocates guard elements after every output buffer, so this lands in host-owned
        // memory that it checks afterwards.
        unsafe { *out.add(out_len) = 0.0 };
    }
    status
}

/// Entry symbol: the SDK-generated table with `log_likelihood` wrapped.
#[unsafe(no_mangle)]
pub extern "C" fn coevo_plugin_entry() -> *const CoevoPluginTable {
    static TABLE: OnceLock<CoevoPluginTable> = OnceLock::new();
    TABLE.get_or_init(|| CoevoPluginTable { log_likelihood: Some(overrunning_log_likelihood), ..*coevo_plugin_table() })
}
