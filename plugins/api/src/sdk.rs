//! The safe SDK a plugin author implements: [`ConditionalModelPlugin`] and its helper types.
//!
//! The FFI glue in [`crate::ffi`] validates every pointer and buffer size before calling the
//! trait, so trait methods receive slices of exactly the documented lengths and finite inputs.

use core::convert::Infallible;
use core::ffi::{CStr, c_void};
use core::fmt;

use rand_core::{TryRng, utils};

use crate::abi::{COEVO_POLICY_ACCUMULATE, COEVO_POLICY_FRESH, COEVO_POLICY_REPLACE, CoevoDataPolicy, CoevoModelInfo, CoevoRng};

/// Error returned by a model: a message that reaches the host through the error buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError(pub String);

impl PluginError {
    /// An error with this message.
    pub fn new(msg: impl Into<String>) -> Self {
        PluginError(msg.into())
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PluginError {}

impl From<String> for PluginError {
    fn from(s: String) -> Self {
        PluginError(s)
    }
}

impl From<&str> for PluginError {
    fn from(s: &str) -> Self {
        PluginError(s.to_owned())
    }
}

impl From<serde_json::Error> for PluginError {
    fn from(e: serde_json::Error) -> Self {
        PluginError(format!("invalid params: {e}"))
    }
}

/// Result type of every model method.
pub type PluginResult<T> = Result<T, PluginError>;

/// Return early with a [`PluginError`] built from a format string.
#[macro_export]
macro_rules! plugin_bail {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::PluginError(::std::format!($($arg)*)))
    };
}

/// What a model trains on across generations (docs/model.md section 6), decoded from [`CoevoDataPolicy`].
///
/// **What a plugin receives from coevo:** only [`Replace`](DataPolicy::Replace) and
/// [`Accumulate { initial: 0 }`](DataPolicy::Accumulate), never [`Fresh`](DataPolicy::Fresh).
/// For a scenario's `Fresh` the host creates the plugin with `Replace` and mixes real samples
/// (from a never-fitted instance of the same model) into the batch before `fit`; for
/// `Accumulate(initial: l)` it draws the initial real data itself and pools it into the first
/// `fit`. So a plugin implements exactly two behaviours, refit on the batch and pool every batch
/// into running statistics, and may refuse `Fresh` and a nonzero `initial` at `create` (the ABI
/// still defines them; see `plugins/api/README.md`, "Data policies").
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DataPolicy {
    /// Only this round's batch.
    Replace,
    /// Everything fitted so far, as sufficient statistics (never the raw history). coevo always
    /// passes `initial: 0`.
    Accumulate {
        /// ABI meaning: real samples per text to draw from the initial conditional before the
        /// first fit. coevo passes 0 (it pools the initial real data into `fit` itself).
        initial: u64,
    },
    /// Never passed by coevo (the host mixes the real fraction itself). ABI meaning: a fraction
    /// `lambda` of each text's refit sample is real (drawn from the initial conditional), the
    /// rest synthetic; the total size is the batch's.
    Fresh {
        /// Real fraction in `[0, 1]`.
        lambda: f64,
    },
}

impl DataPolicy {
    /// Decode and validate the C struct.
    pub fn from_raw(raw: CoevoDataPolicy) -> PluginResult<Self> {
        match raw.kind {
            COEVO_POLICY_REPLACE => Ok(DataPolicy::Replace),
            COEVO_POLICY_ACCUMULATE => Ok(DataPolicy::Accumulate { initial: raw.initial }),
            COEVO_POLICY_FRESH => {
                if !(0.0..=1.0).contains(&raw.lambda) {
                    plugin_bail!("fresh data policy needs lambda in [0, 1], got {}", raw.lambda);
                }
                Ok(DataPolicy::Fresh { lambda: raw.lambda })
            }
            k => plugin_bail!("unknown data policy kind {k} (0 replace, 1 accumulate, 2 fresh)"),
        }
    }

    /// Encode as the C struct.
    pub fn to_raw(self) -> CoevoDataPolicy {
        match self {
            DataPolicy::Replace => CoevoDataPolicy { kind: COEVO_POLICY_REPLACE, initial: 0, lambda: 0.0 },
            DataPolicy::Accumulate { initial } => CoevoDataPolicy { kind: COEVO_POLICY_ACCUMULATE, initial, lambda: 0.0 },
            DataPolicy::Fresh { lambda } => CoevoDataPolicy { kind: COEVO_POLICY_FRESH, initial: 0, lambda },
        }
    }
}

/// How many of `n` refit samples are real under `fresh { lambda }`: `round(lambda * n)`
/// (half away from zero), so every model splits the same way.
pub fn fresh_real_count(n: usize, lambda: f64) -> usize {
    ((lambda * n as f64).round() as usize).min(n)
}

/// Split a caption-grouped batch into one slice per text (`counts[i] * dim` values each).
///
/// The FFI layer has already checked `samples.len() == sum(counts) * dim`; this panics if not.
pub fn caption_groups<'a>(counts: &[u64], samples: &'a [f64], dim: usize) -> Vec<&'a [f64]> {
    let mut groups = Vec::with_capacity(counts.len());
    let mut start = 0usize;
    for &c in counts {
        let end = start + c as usize * dim;
        groups.push(&samples[start..end]);
        start = end;
    }
    assert_eq!(start, samples.len(), "samples do not match counts * dim");
    groups
}

/// Static metadata of a model type, turned into a [`CoevoModelInfo`] by the export macro.
#[derive(Debug, Clone, Copy)]
pub struct ModelDescription {
    /// Model name, unique within the library.
    pub name: &'static CStr,
    /// Modality, e.g. `c"audio"`.
    pub modality: &'static CStr,
    /// Human-readable dimension rule, e.g. `c"1"` or `c"params.dim (default 2)"`.
    pub dim_rule: &'static CStr,
    /// The dimension if it never depends on params, else 0.
    pub fixed_dim: usize,
    /// One-line description.
    pub description: &'static CStr,
}

impl ModelDescription {
    /// The C view (pointers into the `'static` strings).
    pub const fn to_raw(&self) -> CoevoModelInfo {
        CoevoModelInfo {
            name: self.name.as_ptr(),
            modality: self.modality.as_ptr(),
            dim_rule: self.dim_rule.as_ptr(),
            fixed_dim: self.fixed_dim,
            description: self.description.as_ptr(),
        }
    }
}

/// The host's random stream, lent for one call. Implements rand_core 0.10's `TryRng` with
/// `Error = Infallible`, hence `rand_core::Rng`, so `rand::RngExt` and `rand_distr` work on it.
///
/// `next_u32` uses the high half of one `next_u64`, and `fill_bytes` consumes whole `u64`s
/// (little-endian), so the number of host draws is a documented function of the calls made.
pub struct HostRng<'a> {
    ctx: *mut c_void,
    next: unsafe extern "C" fn(*mut c_void) -> u64,
    // Ties the lifetime to the borrowed C struct so the callback cannot outlive the call.
    _borrow: core::marker::PhantomData<&'a mut CoevoRng>,
}

impl<'a> HostRng<'a> {
    /// Wrap a host RNG struct; `None` if its callback is null.
    ///
    /// # Safety
    /// `raw.next_u64(raw.ctx)` must be safe to call for the lifetime `'a` on this thread.
    pub unsafe fn from_raw(raw: &'a mut CoevoRng) -> Option<Self> {
        Some(HostRng { ctx: raw.ctx, next: raw.next_u64?, _borrow: core::marker::PhantomData })
    }
}

impl TryRng for HostRng<'_> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        // SAFETY: guaranteed by the contract of `from_raw`.
        Ok(unsafe { (self.next)(self.ctx) })
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        utils::fill_bytes_via_next_word(dst, || self.try_next_u64())
    }
}

/// Lend any Rust RNG to a plugin as a [`CoevoRng`] (host side and tests).
///
/// The returned struct borrows `rng` through a raw pointer: use it only while `rng` is alive
/// and not otherwise used (the borrow checker enforces this via the `'a` of [`RngLoan`]).
pub struct RngLoan<'a> {
    raw: CoevoRng,
    _borrow: core::marker::PhantomData<&'a mut ()>,
}

impl<'a> RngLoan<'a> {
    /// Lend `rng` for the lifetime of the loan. (For an unsized `R`, lend `&mut &mut R`, which
    /// is itself an `Rng`.)
    pub fn new<R: rand_core::Rng>(rng: &'a mut R) -> Self {
        unsafe extern "C" fn trampoline<R: rand_core::Rng>(ctx: *mut c_void) -> u64 {
            // SAFETY: ctx is the `&'a mut R` stored by `RngLoan::new`; the loan (and so every
            // call made with it) cannot outlive 'a, and the loan holds the unique borrow.
            let rng = unsafe { &mut *(ctx as *mut R) };
            rng.next_u64()
        }
        RngLoan { raw: CoevoRng { ctx: rng as *mut R as *mut c_void, next_u64: Some(trampoline::<R>) }, _borrow: core::marker::PhantomData }
    }

    /// Pointer to pass as the `rng` argument of `sample`/`fit`.
    pub fn as_raw(&mut self) -> *mut CoevoRng {
        &mut self.raw
    }
}

/// A conditional model of a text model with K texts, implemented safely by a plugin author.
///
/// Samples are flat `f64` vectors of dimension [`dim`](Self::dim). A batch is grouped by caption:
/// `counts[i]` samples for text `i`, in text order, row-major. Calls on one instance are never
/// concurrent, but different instances may be used from different threads at once (hence
/// `Send`); keep no mutable global state.
///
/// Before any method is called the SDK has checked: `counts.len() == num_texts()`, buffer
/// lengths (`out.len()` as documented per method), sample values finite, temperature finite and
/// positive. A panic in any method is caught and reported; the instance is then poisoned.
pub trait ConditionalModelPlugin: Send + Sized + 'static {
    /// Static metadata (name, modality, dimension rule).
    const DESCRIPTION: ModelDescription;

    /// Build a model with `num_texts >= 1` texts from the scenario's JSON params (`{}` when the
    /// scenario gave none). Reject bad params with a message naming the field. coevo passes
    /// `policy` = `Replace` or `Accumulate { initial: 0 }` only (see [`DataPolicy`]).
    fn create(params: &serde_json::Value, num_texts: usize, policy: DataPolicy) -> PluginResult<Self>;

    /// Sample dimension; must stay constant for the life of the instance.
    fn dim(&self) -> usize;

    /// Current number of texts K.
    fn num_texts(&self) -> usize;

    /// Per-text metric names (at least a diversity and a fidelity metric). Read once after
    /// `create`; must not change afterwards.
    fn metric_names(&self) -> Vec<String>;

    /// Draw `counts[i]` samples from text `i`'s conditional at `temperature` (1.0 = identity;
    /// scales dispersion), written row-major into `out` (`out.len() == sum(counts) * dim`).
    fn sample(&self, counts: &[u64], temperature: f64, rng: &mut HostRng<'_>, out: &mut [f64]) -> PluginResult<()>;

    /// `out[j * K + i] = log q(y_j | i)` for the `n = samples.len() / dim` samples.
    /// `-inf` is allowed (zero density); NaN and `+inf` are rejected by the host.
    fn log_likelihood(&self, samples: &[f64], out: &mut [f64]) -> PluginResult<()>;

    /// Refit on a caption-grouped batch, honouring the data policy given at `create`. Texts with
    /// too little evidence keep their parameters. `rng` is the host's stream for any randomness
    /// `fit` needs (none under the policies coevo passes: see [`DataPolicy`]).
    fn fit(&mut self, counts: &[u64], samples: &[f64], rng: &mut HostRng<'_>) -> PluginResult<()>;

    /// Per-text metrics, `out[i * M + m]` with `M = metric_names().len()`.
    fn metrics(&self, out: &mut [f64]) -> PluginResult<()>;

    /// Append a text whose conditional starts at the model's configured prior.
    fn add_text(&mut self) -> PluginResult<()>;

    /// Checkpoint the full state (parameters, initial parameters, data-policy statistics).
    fn get_params(&self) -> Vec<f64>;

    /// Restore a checkpoint from [`get_params`](Self::get_params); may change K. Validate fully
    /// before changing anything, so a rejected checkpoint leaves the model as it was.
    fn set_params(&mut self, params: &[f64]) -> PluginResult<()>;
}
