//! Plugin-side FFI glue used by the export macros: the `extern "C"` entry points that validate
//! arguments, catch panics and forward to a [`ConditionalModelPlugin`].
//!
//! Not a stable API: reach it only through [`crate::export_plugin!`] / [`crate::plugin_table!`].

use core::ffi::{CStr, c_char, c_void};
use std::any::Any;
use std::ffi::CString;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::abi::*;
use crate::sdk::{ConditionalModelPlugin, DataPolicy, HostRng, ModelDescription, PluginResult};

/// Object-safe mirror of [`ConditionalModelPlugin`] so one set of `extern "C"` functions serves
/// every model type of a library.
pub trait DynModel: Send {
    /// See [`ConditionalModelPlugin::dim`].
    fn dim(&self) -> usize;
    /// See [`ConditionalModelPlugin::num_texts`].
    fn num_texts(&self) -> usize;
    /// See [`ConditionalModelPlugin::metric_names`].
    fn metric_names(&self) -> Vec<String>;
    /// See [`ConditionalModelPlugin::sample`].
    fn sample(&self, counts: &[u64], temperature: f64, rng: &mut HostRng<'_>, out: &mut [f64]) -> PluginResult<()>;
    /// See [`ConditionalModelPlugin::log_likelihood`].
    fn log_likelihood(&self, samples: &[f64], out: &mut [f64]) -> PluginResult<()>;
    /// See [`ConditionalModelPlugin::fit`].
    fn fit(&mut self, counts: &[u64], samples: &[f64], rng: &mut HostRng<'_>) -> PluginResult<()>;
    /// See [`ConditionalModelPlugin::metrics`].
    fn metrics(&self, out: &mut [f64]) -> PluginResult<()>;
    /// See [`ConditionalModelPlugin::add_text`].
    fn add_text(&mut self) -> PluginResult<()>;
    /// See [`ConditionalModelPlugin::get_params`].
    fn get_params(&self) -> Vec<f64>;
    /// See [`ConditionalModelPlugin::set_params`].
    fn set_params(&mut self, params: &[f64]) -> PluginResult<()>;
}

impl<T: ConditionalModelPlugin> DynModel for T {
    fn dim(&self) -> usize {
        ConditionalModelPlugin::dim(self)
    }
    fn num_texts(&self) -> usize {
        ConditionalModelPlugin::num_texts(self)
    }
    fn metric_names(&self) -> Vec<String> {
        ConditionalModelPlugin::metric_names(self)
    }
    fn sample(&self, counts: &[u64], temperature: f64, rng: &mut HostRng<'_>, out: &mut [f64]) -> PluginResult<()> {
        ConditionalModelPlugin::sample(self, counts, temperature, rng, out)
    }
    fn log_likelihood(&self, samples: &[f64], out: &mut [f64]) -> PluginResult<()> {
        ConditionalModelPlugin::log_likelihood(self, samples, out)
    }
    fn fit(&mut self, counts: &[u64], samples: &[f64], rng: &mut HostRng<'_>) -> PluginResult<()> {
        ConditionalModelPlugin::fit(self, counts, samples, rng)
    }
    fn metrics(&self, out: &mut [f64]) -> PluginResult<()> {
        ConditionalModelPlugin::metrics(self, out)
    }
    fn add_text(&mut self) -> PluginResult<()> {
        ConditionalModelPlugin::add_text(self)
    }
    fn get_params(&self) -> Vec<f64> {
        ConditionalModelPlugin::get_params(self)
    }
    fn set_params(&mut self, params: &[f64]) -> PluginResult<()> {
        ConditionalModelPlugin::set_params(self, params)
    }
}

type CreateBoxed = fn(&serde_json::Value, usize, DataPolicy) -> PluginResult<Box<dyn DynModel>>;

/// One model type of a library, as listed by the export macro.
pub struct Factory {
    /// The model's static description.
    pub description: ModelDescription,
    create: CreateBoxed,
}

impl Factory {
    /// The factory of model type `T`.
    pub const fn of<T: ConditionalModelPlugin>() -> Factory {
        fn create_boxed<T: ConditionalModelPlugin>(
            params: &serde_json::Value,
            num_texts: usize,
            policy: DataPolicy,
        ) -> PluginResult<Box<dyn DynModel>> {
            Ok(Box::new(T::create(params, num_texts, policy)?))
        }
        Factory { description: T::DESCRIPTION, create: create_boxed::<T> }
    }
}

/// `s` plus a trailing NUL, checked at compile time (no interior NUL, `N == s.len() + 1`).
pub const fn nul_terminate<const N: usize>(s: &str) -> [u8; N] {
    let b = s.as_bytes();
    assert!(b.len() + 1 == N, "nul_terminate: wrong array length");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < b.len() {
        assert!(b[i] != 0, "plugin name/version must not contain NUL");
        out[i] = b[i];
        i += 1;
    }
    out
}

/// What a handle points at: the model plus everything the cheap, infallible entry points
/// (`dim`, `num_texts`, `metric_count`, `metric_name`) answer from without calling plugin code.
struct Handle {
    model: Box<dyn DynModel>,
    name: &'static CStr,
    dim: usize,
    num_texts: usize,
    metric_names: Vec<CString>,
    /// Set when a call panicked: the model may be half-updated, so only `destroy` is allowed.
    poisoned: bool,
}

/// An error on its way to the caller's error buffer.
struct CallError {
    status: CoevoStatus,
    msg: String,
}

fn invalid(msg: impl Into<String>) -> CallError {
    CallError { status: COEVO_ERR_INVALID_ARGUMENT, msg: msg.into() }
}

fn model_err(e: crate::sdk::PluginError) -> CallError {
    CallError { status: COEVO_ERR_MODEL, msg: e.0 }
}

/// Write `msg` into the caller's buffer, truncated at a character boundary.
///
/// # Safety
/// `err` is null or points to a valid `CoevoErrorBuf` whose `ptr` has `capacity` writable bytes.
pub(crate) unsafe fn write_err(err: *mut CoevoErrorBuf, msg: &str) {
    if err.is_null() {
        return;
    }
    // SAFETY: non-null and valid by the caller's contract.
    let e = unsafe { &mut *err };
    e.written = 0;
    if e.ptr.is_null() || e.capacity == 0 {
        return;
    }
    let mut n = msg.len().min(e.capacity);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    // SAFETY: the caller's buffer has `capacity >= n` writable bytes; the regions are disjoint
    // because `msg` is plugin-owned memory.
    unsafe { core::ptr::copy_nonoverlapping(msg.as_ptr(), e.ptr, n) };
    e.written = n;
}

/// Mark an error buffer as empty (success).
unsafe fn clear_err(err: *mut CoevoErrorBuf) {
    if !err.is_null() {
        // SAFETY: non-null and valid by the caller's contract.
        unsafe { (*err).written = 0 };
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// A slice view of a caller buffer; `len == 0` accepts any pointer (even null).
unsafe fn raw_slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T], CallError> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(invalid(format!("{what} is null but its length is {len}")));
    }
    if !ptr.is_aligned() {
        return Err(invalid(format!("{what} is not aligned")));
    }
    // SAFETY: non-null, aligned, and the caller promises `len` readable elements.
    Ok(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// Mutable counterpart of [`raw_slice`].
unsafe fn raw_slice_mut<'a, T>(ptr: *mut T, len: usize, what: &str) -> Result<&'a mut [T], CallError> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(invalid(format!("{what} is null but its length is {len}")));
    }
    if !ptr.is_aligned() {
        return Err(invalid(format!("{what} is not aligned")));
    }
    // SAFETY: non-null, aligned, and the caller promises `len` writable elements it does not
    // otherwise access during the call.
    Ok(unsafe { core::slice::from_raw_parts_mut(ptr, len) })
}

fn check_finite(values: &[f64], what: &str) -> Result<(), CallError> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(j) => Err(invalid(format!("{what}[{j}] = {} is not finite", values[j]))),
    }
}

/// `sum(counts)` as a row count, rejecting overflow.
fn total_rows(counts: &[u64]) -> Result<usize, CallError> {
    let mut total: u64 = 0;
    for &c in counts {
        total = total.checked_add(c).ok_or_else(|| invalid("sum of counts overflows"))?;
    }
    usize::try_from(total).map_err(|_| invalid("sum of counts does not fit in usize"))
}

fn checked_len(a: usize, b: usize, what: &str) -> Result<usize, CallError> {
    a.checked_mul(b).ok_or_else(|| invalid(format!("{what} overflows usize")))
}

fn check_num_texts(h: &Handle, num_texts: usize) -> Result<(), CallError> {
    if num_texts != h.num_texts {
        return Err(invalid(format!("num_texts is {num_texts} but the model has {} texts", h.num_texts)));
    }
    Ok(())
}

unsafe fn host_rng<'a>(rng: *mut CoevoRng) -> Result<HostRng<'a>, CallError> {
    if rng.is_null() {
        return Err(invalid("rng is null"));
    }
    // SAFETY: non-null; the caller lends a valid CoevoRng for the duration of the call.
    unsafe { HostRng::from_raw(&mut *rng) }.ok_or_else(|| invalid("rng.next_u64 is null"))
}

/// Run `f` on the handle with panic catching, poisoning and error reporting.
unsafe fn with_handle(
    handle: *mut c_void,
    err: *mut CoevoErrorBuf,
    op: &str,
    f: impl FnOnce(&mut Handle) -> Result<(), CallError>,
) -> CoevoStatus {
    // SAFETY: `with_handle`'s callers pass on the host's `err`, which the ABI makes null or a
    // valid, writable error buffer; `clear_err` accepts null.
    unsafe { clear_err(err) };
    if handle.is_null() {
        // SAFETY: `err` is null or valid, as for `clear_err`; `write_err` accepts null.
        unsafe { write_err(err, &format!("{op}: handle is null")) };
        return COEVO_ERR_INVALID_ARGUMENT;
    }
    // SAFETY: a non-null handle was produced by `create` and not yet destroyed (caller contract),
    // and calls on one handle are never concurrent, so this is the only reference.
    let h = unsafe { &mut *(handle as *mut Handle) };
    // Copied out (a `&'static CStr`), converted only when an error message needs it.
    let name: &'static CStr = h.name;
    let name = name.to_string_lossy();
    if h.poisoned {
        // SAFETY: `err` is null or valid (see `clear_err` above).
        unsafe { write_err(err, &format!("{name}.{op}: model is poisoned by an earlier panic; only destroy is allowed")) };
        return COEVO_ERR_POISONED;
    }
    match catch_unwind(AssertUnwindSafe(|| f(&mut *h))) {
        Ok(Ok(())) => COEVO_OK,
        Ok(Err(e)) => {
            // SAFETY: `err` is null or valid (see `clear_err` above).
            unsafe { write_err(err, &format!("{name}.{op}: {}", e.msg)) };
            e.status
        }
        Err(payload) => {
            h.poisoned = true;
            let msg = panic_message(payload.as_ref());
            // SAFETY: `err` is null or valid (see `clear_err` above).
            unsafe { write_err(err, &format!("{name}.{op}: plugin panicked: {msg}")) };
            COEVO_ERR_PANIC
        }
    }
}

/// Body of the table's `set_logger`.
///
/// # Safety
/// `log`, if non-null, must stay callable with `ctx` from any thread until replaced.
pub unsafe extern "C" fn set_logger(ctx: *mut c_void, log: Option<CoevoLogFn>) {
    crate::log::set_logger(ctx, log);
}

/// Body of the table's `create` for a library whose models are `factories`.
///
/// # Safety
/// Pointer arguments must satisfy the ABI contract (README): `params` has `params_len`
/// readable bytes, `out_handle` is writable, `err` is null or valid.
#[allow(clippy::too_many_arguments, reason = "the C ABI fixes these parameters (`include/coevo_plugin.h`)")]
pub unsafe fn create(
    factories: &[Factory],
    model_index: usize,
    params: *const u8,
    params_len: usize,
    num_texts: usize,
    policy: CoevoDataPolicy,
    out_handle: *mut *mut c_void,
    err: *mut CoevoErrorBuf,
) -> CoevoStatus {
    // SAFETY: err is valid or null by contract.
    unsafe { clear_err(err) };
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<*mut Handle, CallError> {
        if out_handle.is_null() {
            return Err(invalid("create: out_handle is null"));
        }
        // SAFETY: non-null and writable by contract; cleared first so an error never leaves a
        // stale handle behind.
        unsafe { *out_handle = core::ptr::null_mut() };
        let factory = factories
            .get(model_index)
            .ok_or_else(|| invalid(format!("create: model_index {model_index} out of range (library has {} models)", factories.len())))?;
        let name = factory.description.name.to_string_lossy();
        let ctx = |e: CallError| CallError { status: e.status, msg: format!("{name}.create: {}", e.msg) };
        if num_texts == 0 {
            return Err(ctx(invalid("num_texts must be at least 1")));
        }
        // SAFETY: params_len readable bytes by contract.
        let bytes = unsafe { raw_slice(params, params_len, "params") }.map_err(ctx)?;
        let text = core::str::from_utf8(bytes).map_err(|e| ctx(invalid(format!("params are not UTF-8: {e}"))))?;
        let value = if text.trim().is_empty() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            serde_json::from_str(text).map_err(|e| ctx(invalid(format!("params are not valid JSON: {e}"))))?
        };
        let policy = DataPolicy::from_raw(policy).map_err(|e| ctx(invalid(e.0)))?;
        let model = (factory.create)(&value, num_texts, policy).map_err(|e| ctx(model_err(e)))?;
        let dim = model.dim();
        if dim == 0 {
            return Err(ctx(model_err("model reported dim 0".into())));
        }
        if model.num_texts() != num_texts {
            return Err(ctx(model_err(format!("model reports {} texts after create({num_texts})", model.num_texts()).into())));
        }
        let metric_names = model
            .metric_names()
            .into_iter()
            .map(|m| CString::new(m).map_err(|_| ctx(model_err("metric name contains NUL".into()))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::into_raw(Box::new(Handle { model, name: factory.description.name, dim, num_texts, metric_names, poisoned: false })))
    }));
    match result {
        Ok(Ok(h)) => {
            // SAFETY: checked non-null above (we only get here through that path).
            unsafe { *out_handle = h as *mut c_void };
            COEVO_OK
        }
        Ok(Err(e)) => {
            // SAFETY: err valid or null.
            unsafe { write_err(err, &e.msg) };
            e.status
        }
        Err(payload) => {
            let msg = panic_message(payload.as_ref());
            // SAFETY: err valid or null.
            unsafe { write_err(err, &format!("create: plugin panicked: {msg}")) };
            COEVO_ERR_PANIC
        }
    }
}

/// Body of the table's `destroy`.
///
/// # Safety
/// `handle` is null or was returned by `create` and is not used afterwards.
pub unsafe extern "C" fn destroy(handle: *mut c_void) {
    if handle.is_null() {
        return;
    }
    // A panicking Drop must not unwind into the host; the memory is leaked in that case.
    let _ = catch_unwind(|| {
        // SAFETY: produced by Box::into_raw in `create`, destroyed once by contract.
        drop(unsafe { Box::from_raw(handle as *mut Handle) });
    });
}

/// Body of the table's `dim`.
///
/// # Safety
/// `handle` is null or a live handle.
pub unsafe extern "C" fn dim(handle: *mut c_void) -> usize {
    if handle.is_null() {
        return 0;
    }
    // SAFETY: live handle by contract.
    unsafe { (*(handle as *const Handle)).dim }
}

/// Body of the table's `num_texts`.
///
/// # Safety
/// `handle` is null or a live handle.
pub unsafe extern "C" fn num_texts(handle: *mut c_void) -> usize {
    if handle.is_null() {
        return 0;
    }
    // SAFETY: live handle by contract.
    unsafe { (*(handle as *const Handle)).num_texts }
}

/// Body of the table's `metric_count`.
///
/// # Safety
/// `handle` is null or a live handle.
pub unsafe extern "C" fn metric_count(handle: *mut c_void) -> usize {
    if handle.is_null() {
        return 0;
    }
    // SAFETY: live handle by contract.
    unsafe { (*(handle as *const Handle)).metric_names.len() }
}

/// Body of the table's `metric_name`.
///
/// # Safety
/// `handle` is null or a live handle.
pub unsafe extern "C" fn metric_name(handle: *mut c_void, index: usize) -> *const c_char {
    if handle.is_null() {
        return core::ptr::null();
    }
    // SAFETY: live handle by contract; the CString lives until destroy.
    let h = unsafe { &*(handle as *const Handle) };
    h.metric_names.get(index).map_or(core::ptr::null(), |s| s.as_ptr())
}

/// Body of the table's `sample`.
///
/// # Safety
/// Pointer arguments must satisfy the ABI contract (README).
#[allow(clippy::too_many_arguments, reason = "the C ABI fixes these parameters (`include/coevo_plugin.h`)")]
pub unsafe extern "C" fn sample(
    handle: *mut c_void,
    counts: *const u64,
    num_texts: usize,
    temperature: f64,
    rng: *mut CoevoRng,
    out: *mut f64,
    out_len: usize,
    err: *mut CoevoErrorBuf,
) -> CoevoStatus {
    // SAFETY: this function's caller (the host, per the ABI) passes a null or live handle with no
    // concurrent call on it, a null or valid `err`, `counts` readable for `num_texts` values,
    // `out` writable for `out_len` values and a lent `rng`; `with_handle` rejects a null
    // handle, and `raw_slice`/`raw_slice_mut` reject null or misaligned pointers and are given
    // exactly those lengths once they have been checked against the model.
    unsafe {
        with_handle(handle, err, "sample", |h| {
            check_num_texts(h, num_texts)?;
            let counts = raw_slice(counts, num_texts, "counts")?;
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(invalid(format!("temperature must be finite and > 0, got {temperature}")));
            }
            let expected = checked_len(total_rows(counts)?, h.dim, "sum(counts) * dim")?;
            if out_len != expected {
                return Err(invalid(format!("out_len is {out_len}, expected sum(counts) * dim = {expected}")));
            }
            let out = raw_slice_mut(out, out_len, "out")?;
            let mut rng = host_rng(rng)?;
            h.model.sample(counts, temperature, &mut rng, out).map_err(model_err)
        })
    }
}

/// Body of the table's `log_likelihood`.
///
/// # Safety
/// Pointer arguments must satisfy the ABI contract (README).
pub unsafe extern "C" fn log_likelihood(
    handle: *mut c_void,
    samples: *const f64,
    n: usize,
    out: *mut f64,
    out_len: usize,
    err: *mut CoevoErrorBuf,
) -> CoevoStatus {
    // SAFETY: the host passes a null or live, unshared handle, a null or valid `err`, `samples`
    // readable for `n * dim` values and `out` writable for `out_len` values; `with_handle`
    // rejects a null handle and the slices are taken with exactly those (checked) lengths.
    unsafe {
        with_handle(handle, err, "log_likelihood", |h| {
            let expected = checked_len(n, h.num_texts, "n * num_texts")?;
            if out_len != expected {
                return Err(invalid(format!("out_len is {out_len}, expected n * num_texts = {expected}")));
            }
            let samples = raw_slice(samples, checked_len(n, h.dim, "n * dim")?, "samples")?;
            check_finite(samples, "samples")?;
            let out = raw_slice_mut(out, out_len, "out")?;
            h.model.log_likelihood(samples, out).map_err(model_err)
        })
    }
}

/// Body of the table's `fit`.
///
/// # Safety
/// Pointer arguments must satisfy the ABI contract (README).
pub unsafe extern "C" fn fit(
    handle: *mut c_void,
    counts: *const u64,
    num_texts: usize,
    samples: *const f64,
    samples_len: usize,
    rng: *mut CoevoRng,
    err: *mut CoevoErrorBuf,
) -> CoevoStatus {
    // SAFETY: the host passes a null or live, unshared handle, a null or valid `err`, `counts`
    // readable for `num_texts` values, `samples` for `samples_len` values and a lent `rng`;
    // `with_handle` rejects a null handle and the slices are taken with exactly those lengths.
    unsafe {
        with_handle(handle, err, "fit", |h| {
            check_num_texts(h, num_texts)?;
            let counts = raw_slice(counts, num_texts, "counts")?;
            let expected = checked_len(total_rows(counts)?, h.dim, "sum(counts) * dim")?;
            if samples_len != expected {
                return Err(invalid(format!("samples_len is {samples_len}, expected sum(counts) * dim = {expected}")));
            }
            let samples = raw_slice(samples, samples_len, "samples")?;
            check_finite(samples, "samples")?;
            let mut rng = host_rng(rng)?;
            h.model.fit(counts, samples, &mut rng).map_err(model_err)
        })
    }
}

/// Body of the table's `metrics`.
///
/// # Safety
/// Pointer arguments must satisfy the ABI contract (README).
pub unsafe extern "C" fn metrics(handle: *mut c_void, out: *mut f64, out_len: usize, err: *mut CoevoErrorBuf) -> CoevoStatus {
    // SAFETY: the host passes a null or live, unshared handle, a null or valid `err` and `out`
    // writable for `out_len` values; the slice is taken only once `out_len` matches K * M.
    unsafe {
        with_handle(handle, err, "metrics", |h| {
            let expected = checked_len(h.num_texts, h.metric_names.len(), "num_texts * M")?;
            if out_len != expected {
                return Err(invalid(format!("out_len is {out_len}, expected num_texts * metric_count = {expected}")));
            }
            let out = raw_slice_mut(out, out_len, "out")?;
            h.model.metrics(out).map_err(model_err)
        })
    }
}

/// Body of the table's `add_text`.
///
/// # Safety
/// Pointer arguments must satisfy the ABI contract (README).
pub unsafe extern "C" fn add_text(handle: *mut c_void, err: *mut CoevoErrorBuf) -> CoevoStatus {
    // SAFETY: the host passes a null or live, unshared handle and a null or valid `err`, which
    // is all `with_handle` dereferences.
    unsafe {
        with_handle(handle, err, "add_text", |h| {
            h.model.add_text().map_err(model_err)?;
            let k = h.model.num_texts();
            if k != h.num_texts + 1 {
                // The model's state no longer matches what we told the host: refuse further use.
                h.poisoned = true;
                return Err(model_err(format!("model has {k} texts after add_text, expected {}", h.num_texts + 1).into()));
            }
            h.num_texts = k;
            Ok(())
        })
    }
}

/// Body of the table's `get_params`.
///
/// # Safety
/// Pointer arguments must satisfy the ABI contract (README).
pub unsafe extern "C" fn get_params(
    handle: *mut c_void,
    out: *mut f64,
    out_len: usize,
    needed: *mut usize,
    err: *mut CoevoErrorBuf,
) -> CoevoStatus {
    // SAFETY: the host passes a null or live, unshared handle, a null or valid `err`, a null
    // or writable `needed` (null is rejected before the write) and `out` writable for
    // `out_len` values; the slice is taken only once `out_len` covers the parameters.
    unsafe {
        with_handle(handle, err, "get_params", |h| {
            if needed.is_null() {
                return Err(invalid("needed is null"));
            }
            let params = h.model.get_params();
            *needed = params.len();
            if out_len < params.len() {
                return Err(CallError { status: COEVO_ERR_BUFFER_TOO_SMALL, msg: format!("out_len is {out_len}, needs {}", params.len()) });
            }
            let out = raw_slice_mut(out, out_len, "out")?;
            out[..params.len()].copy_from_slice(&params);
            Ok(())
        })
    }
}

/// Body of the table's `set_params`.
///
/// # Safety
/// Pointer arguments must satisfy the ABI contract (README).
pub unsafe extern "C" fn set_params(handle: *mut c_void, params: *const f64, len: usize, err: *mut CoevoErrorBuf) -> CoevoStatus {
    // SAFETY: the host passes a null or live, unshared handle, a null or valid `err` and
    // `params` readable for `len` values, the length the slice is taken with.
    unsafe {
        with_handle(handle, err, "set_params", |h| {
            let params = raw_slice(params, len, "params")?;
            check_finite(params, "params")?;
            h.model.set_params(params).map_err(model_err)?;
            if h.model.dim() != h.dim {
                h.poisoned = true;
                return Err(model_err("set_params changed the sample dimension".into()));
            }
            h.num_texts = h.model.num_texts();
            Ok(())
        })
    }
}

/// Generate `pub fn coevo_plugin_table() -> &'static CoevoPluginTable` for the listed models,
/// without exporting the entry symbol (use [`crate::export_plugin!`] for a real plugin; this
/// variant exists for tests and for libraries that wrap the table in their own entry).
///
/// ```text
/// coevo_plugin_api::plugin_table! { name: "my-plugin", version: "0.1.0", models: [ModelA, ModelB] }
/// ```
#[macro_export]
macro_rules! plugin_table {
    (name: $name:expr, version: $version:expr, models: [$($model:ty),+ $(,)?] $(,)?) => {
        /// The plugin's ABI table (generated by `coevo_plugin_api::plugin_table!`).
        pub fn coevo_plugin_table() -> &'static $crate::CoevoPluginTable {
            use $crate::__private as __p;
            static FACTORIES: &[__p::Factory] = &[$(__p::Factory::of::<$model>()),+];
            const MODELS: &[$crate::CoevoModelInfo] =
                &[$(<$model as $crate::ConditionalModelPlugin>::DESCRIPTION.to_raw()),+];
            const NAME: [u8; $name.len() + 1] = __p::nul_terminate($name);
            const VERSION: [u8; $version.len() + 1] = __p::nul_terminate($version);
            static NAME_S: [u8; NAME.len()] = NAME;
            static VERSION_S: [u8; VERSION.len()] = VERSION;

            #[allow(clippy::too_many_arguments, reason = "the C ABI fixes these parameters (`include/coevo_plugin.h`)")]
            unsafe extern "C" fn create(
                model_index: usize,
                params: *const u8,
                params_len: usize,
                num_texts: usize,
                policy: $crate::CoevoDataPolicy,
                out_handle: *mut *mut ::core::ffi::c_void,
                err: *mut $crate::CoevoErrorBuf,
            ) -> $crate::CoevoStatus {
                // SAFETY: this is the table's `create`; the host calls it under the ABI contract
                // that `__p::create` requires (`params` readable for `params_len` bytes,
                // `out_handle` writable, `err` null or valid), so the contract carries over.
                unsafe {
                    __p::create(
                        FACTORIES, model_index, params, params_len, num_texts, policy, out_handle,
                        err,
                    )
                }
            }

            static TABLE: $crate::CoevoPluginTable = $crate::CoevoPluginTable {
                struct_size: ::core::mem::size_of::<$crate::CoevoPluginTable>(),
                abi_version: $crate::COEVO_ABI_VERSION,
                plugin_name: NAME_S.as_ptr() as *const ::core::ffi::c_char,
                plugin_version: VERSION_S.as_ptr() as *const ::core::ffi::c_char,
                model_count: MODELS.len(),
                models: MODELS.as_ptr(),
                set_logger: Some(__p::set_logger),
                create: Some(create),
                destroy: Some(__p::destroy),
                dim: Some(__p::dim),
                num_texts: Some(__p::num_texts),
                sample: Some(__p::sample),
                log_likelihood: Some(__p::log_likelihood),
                fit: Some(__p::fit),
                metric_count: Some(__p::metric_count),
                metric_name: Some(__p::metric_name),
                metrics: Some(__p::metrics),
                add_text: Some(__p::add_text),
                get_params: Some(__p::get_params),
                set_params: Some(__p::set_params),
            };
            &TABLE
        }
    };
}

/// Generate the plugin's table and export the `coevo_plugin_entry` symbol.
///
/// ```text
/// coevo_plugin_api::export_plugin! {
///     name: "coevo-audio",
///     version: env!("CARGO_PKG_VERSION"),
///     models: [VonMisesPitch],
/// }
/// ```
///
/// Also defines `pub fn coevo_plugin_table()`, so tests can call the table in-process. Use it at
/// most once per library, and do not link two plugin crates that use it into one binary (their
/// entry symbols would clash); hosts load plugins as shared libraries instead.
#[macro_export]
macro_rules! export_plugin {
    ($($body:tt)*) => {
        $crate::plugin_table! { $($body)* }

        /// The plugin's entry symbol (generated by `coevo_plugin_api::export_plugin!`).
        #[unsafe(no_mangle)]
        pub extern "C" fn coevo_plugin_entry() -> *const $crate::CoevoPluginTable {
            coevo_plugin_table()
        }
    };
}
