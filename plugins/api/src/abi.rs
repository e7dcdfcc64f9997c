//! The plain C ABI: `#[repr(C)]` types, status codes and function-pointer types.
//!
//! Everything here has a fixed layout that a C compiler reproduces with the declarations in
//! `plugins/api/README.md`. Nothing in this module owns memory: every buffer is allocated by the
//! caller (the host) and only borrowed by the plugin for the duration of one call.

use core::ffi::{c_char, c_void};

/// Version of the ABI described by this module. A host refuses a table with any other version.
///
/// Bump it on every incompatible change (field order, types, semantics). Appending a field at the
/// end of [`CoevoPluginTable`] is compatible: the host accepts a `struct_size` larger than its own.
pub const COEVO_ABI_VERSION: u32 = 1;

/// Name of the one symbol a plugin library exports (without the trailing NUL).
pub const COEVO_ENTRY_SYMBOL: &str = "coevo_plugin_entry";

/// Status code returned by every fallible entry point.
pub type CoevoStatus = i32;

/// The call succeeded.
pub const COEVO_OK: CoevoStatus = 0;
/// The model refused the call (bad parameters, invalid data, ...). The error buffer says why.
pub const COEVO_ERR_MODEL: CoevoStatus = 1;
/// The plugin panicked; the error buffer holds the panic message. The handle is poisoned.
pub const COEVO_ERR_PANIC: CoevoStatus = 2;
/// The caller broke the contract: null pointer, wrong buffer size, wrong `num_texts`, bad index.
pub const COEVO_ERR_INVALID_ARGUMENT: CoevoStatus = 3;
/// `get_params` only: the output buffer is too small; `*needed` holds the required length.
pub const COEVO_ERR_BUFFER_TOO_SMALL: CoevoStatus = 4;
/// The handle is unusable because an earlier call on it panicked; only `destroy` is allowed.
pub const COEVO_ERR_POISONED: CoevoStatus = 5;

/// Human-readable name of a status code (for host error messages).
pub fn status_name(status: CoevoStatus) -> &'static str {
    match status {
        COEVO_OK => "ok",
        COEVO_ERR_MODEL => "model error",
        COEVO_ERR_PANIC => "panic",
        COEVO_ERR_INVALID_ARGUMENT => "invalid argument",
        COEVO_ERR_BUFFER_TOO_SMALL => "buffer too small",
        COEVO_ERR_POISONED => "poisoned handle",
        _ => "unknown status",
    }
}

/// Caller-allocated buffer that receives a UTF-8 error message.
///
/// The plugin writes at most `capacity` bytes at `ptr` (truncating at a UTF-8 character
/// boundary), writes no NUL terminator, and stores the number of bytes written in `written`
/// (0 on success). `ptr` may be null only if `capacity` is 0. The whole struct pointer may be
/// null, in which case the message is dropped.
#[repr(C)]
#[derive(Debug)]
pub struct CoevoErrorBuf {
    /// Start of the caller's byte buffer.
    pub ptr: *mut u8,
    /// Size of the caller's buffer in bytes.
    pub capacity: usize,
    /// Bytes actually written by the plugin.
    pub written: usize,
}

/// Random-number source lent by the host for one call.
///
/// The plugin draws only through `next_u64(ctx)`, so a run that uses plugins stays
/// reproducible from the host's seed. The callback is valid only during the call that received
/// this struct, and only on the calling thread.
#[repr(C)]
#[derive(Debug)]
pub struct CoevoRng {
    /// Opaque host state passed back to `next_u64`.
    pub ctx: *mut c_void,
    /// Returns the next 64 uniformly random bits of the host's stream. Must not be null.
    pub next_u64: Option<unsafe extern "C" fn(ctx: *mut c_void) -> u64>,
}

/// `CoevoDataPolicy::kind`: train on this round's batch only (Gao & Li).
pub const COEVO_POLICY_REPLACE: u32 = 0;
/// `CoevoDataPolicy::kind`: train on everything seen so far, starting from `initial` real samples
/// per text drawn from the initial conditional (sufficient statistics only).
pub const COEVO_POLICY_ACCUMULATE: u32 = 1;
/// `CoevoDataPolicy::kind`: each refit uses a fraction `lambda` of real samples from the initial
/// conditional and `1 - lambda` synthetic ones, same total size.
pub const COEVO_POLICY_FRESH: u32 = 2;

/// Data policy of a model (docs/model.md section 6), passed by value to `create`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoevoDataPolicy {
    /// One of `COEVO_POLICY_*`.
    pub kind: u32,
    /// `accumulate`: number of initial real samples per text. Ignored otherwise.
    pub initial: u64,
    /// `fresh`: fraction of real samples in `[0, 1]`. Ignored otherwise.
    pub lambda: f64,
}

/// Log levels passed to the host's log callback (same order as `tracing::Level`).
pub const COEVO_LOG_ERROR: u32 = 1;
/// Warning.
pub const COEVO_LOG_WARN: u32 = 2;
/// Information.
pub const COEVO_LOG_INFO: u32 = 3;
/// Debug detail.
pub const COEVO_LOG_DEBUG: u32 = 4;
/// Trace detail.
pub const COEVO_LOG_TRACE: u32 = 5;

/// Host log callback: `msg[..len]` is UTF-8, not NUL-terminated, valid only during the call.
/// It may be called from any thread that is calling into the plugin.
pub type CoevoLogFn = unsafe extern "C" fn(ctx: *mut c_void, level: u32, msg: *const u8, len: usize);

/// Static description of one model carried by a library (an element of `CoevoPluginTable::models`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CoevoModelInfo {
    /// Model name, unique within the library, e.g. `"von_mises_pitch"`.
    pub name: *const c_char,
    /// Modality, e.g. `"audio"`, `"video"`, `"tags"`.
    pub modality: *const c_char,
    /// Human-readable rule for the sample dimension, e.g. `"1"` or `"params.dim (default 2)"`.
    pub dim_rule: *const c_char,
    /// The sample dimension if it never depends on the parameters, else 0 (ask `dim(handle)`).
    pub fixed_dim: usize,
    /// One-line description of the model.
    pub description: *const c_char,
}

/// `set_logger(ctx, log)`: install (or with `log == NULL` remove) the library-wide log callback.
pub type SetLoggerFn = unsafe extern "C" fn(ctx: *mut c_void, log: Option<CoevoLogFn>);
/// `create(model_index, params, params_len, num_texts, policy, out_handle, err)`.
pub type CreateFn = unsafe extern "C" fn(
    model_index: usize,
    params: *const u8,
    params_len: usize,
    num_texts: usize,
    policy: CoevoDataPolicy,
    out_handle: *mut *mut c_void,
    err: *mut CoevoErrorBuf,
) -> CoevoStatus;
/// `destroy(handle)`: free a handle (null is ignored). Never fails.
pub type DestroyFn = unsafe extern "C" fn(handle: *mut c_void);
/// `dim(handle)`: sample dimension (constant over the handle's life; 0 only for a null handle).
pub type DimFn = unsafe extern "C" fn(handle: *mut c_void) -> usize;
/// `num_texts(handle)`: current number of texts K.
pub type NumTextsFn = unsafe extern "C" fn(handle: *mut c_void) -> usize;
/// `sample(handle, counts, num_texts, temperature, rng, out, out_len, err)`.
pub type SampleFn = unsafe extern "C" fn(
    handle: *mut c_void,
    counts: *const u64,
    num_texts: usize,
    temperature: f64,
    rng: *mut CoevoRng,
    out: *mut f64,
    out_len: usize,
    err: *mut CoevoErrorBuf,
) -> CoevoStatus;
/// `log_likelihood(handle, samples, n, out, out_len, err)`.
pub type LogLikelihoodFn = unsafe extern "C" fn(
    handle: *mut c_void,
    samples: *const f64,
    n: usize,
    out: *mut f64,
    out_len: usize,
    err: *mut CoevoErrorBuf,
) -> CoevoStatus;
/// `fit(handle, counts, num_texts, samples, samples_len, rng, err)`.
pub type FitFn = unsafe extern "C" fn(
    handle: *mut c_void,
    counts: *const u64,
    num_texts: usize,
    samples: *const f64,
    samples_len: usize,
    rng: *mut CoevoRng,
    err: *mut CoevoErrorBuf,
) -> CoevoStatus;
/// `metric_count(handle)`: number M of per-text metrics (constant over the handle's life).
pub type MetricCountFn = unsafe extern "C" fn(handle: *mut c_void) -> usize;
/// `metric_name(handle, index)`: NUL-terminated name valid until `destroy`, or null if out of range.
pub type MetricNameFn = unsafe extern "C" fn(handle: *mut c_void, index: usize) -> *const c_char;
/// `metrics(handle, out, out_len, err)`: `out[i * M + m]`, `out_len == K * M`.
pub type MetricsFn = unsafe extern "C" fn(handle: *mut c_void, out: *mut f64, out_len: usize, err: *mut CoevoErrorBuf) -> CoevoStatus;
/// `add_text(handle, err)`: K grows by one; the new text starts at the model's prior.
pub type AddTextFn = unsafe extern "C" fn(handle: *mut c_void, err: *mut CoevoErrorBuf) -> CoevoStatus;
/// `get_params(handle, out, out_len, needed, err)`: checkpoint the full state as f64s.
pub type GetParamsFn =
    unsafe extern "C" fn(handle: *mut c_void, out: *mut f64, out_len: usize, needed: *mut usize, err: *mut CoevoErrorBuf) -> CoevoStatus;
/// `set_params(handle, params, len, err)`: restore a checkpoint written by `get_params`.
pub type SetParamsFn = unsafe extern "C" fn(handle: *mut c_void, params: *const f64, len: usize, err: *mut CoevoErrorBuf) -> CoevoStatus;

/// The table returned by `coevo_plugin_entry()`. Static, immutable, valid forever.
///
/// Field order is part of the ABI. The host reads `struct_size` and `abi_version` first and
/// rejects the table before touching anything else if they do not match. Every function pointer
/// must be non-null (the `Option` only lets the host check that without undefined behaviour).
#[repr(C)]
#[derive(Debug)]
pub struct CoevoPluginTable {
    /// `sizeof(CoevoPluginTable)` as compiled into the plugin.
    pub struct_size: usize,
    /// Must equal [`COEVO_ABI_VERSION`].
    pub abi_version: u32,
    /// NUL-terminated plugin (library) name.
    pub plugin_name: *const c_char,
    /// NUL-terminated plugin version, e.g. `"0.1.0"`.
    pub plugin_version: *const c_char,
    /// Number of entries in `models` (at least 1).
    pub model_count: usize,
    /// Array of `model_count` model descriptions; `create`'s `model_index` indexes it.
    pub models: *const CoevoModelInfo,
    /// See [`SetLoggerFn`].
    pub set_logger: Option<SetLoggerFn>,
    /// See [`CreateFn`].
    pub create: Option<CreateFn>,
    /// See [`DestroyFn`].
    pub destroy: Option<DestroyFn>,
    /// See [`DimFn`].
    pub dim: Option<DimFn>,
    /// See [`NumTextsFn`].
    pub num_texts: Option<NumTextsFn>,
    /// See [`SampleFn`].
    pub sample: Option<SampleFn>,
    /// See [`LogLikelihoodFn`].
    pub log_likelihood: Option<LogLikelihoodFn>,
    /// See [`FitFn`].
    pub fit: Option<FitFn>,
    /// See [`MetricCountFn`].
    pub metric_count: Option<MetricCountFn>,
    /// See [`MetricNameFn`].
    pub metric_name: Option<MetricNameFn>,
    /// See [`MetricsFn`].
    pub metrics: Option<MetricsFn>,
    /// See [`AddTextFn`].
    pub add_text: Option<AddTextFn>,
    /// See [`GetParamsFn`].
    pub get_params: Option<GetParamsFn>,
    /// See [`SetParamsFn`].
    pub set_params: Option<SetParamsFn>,
}

/// Signature of the exported entry symbol.
pub type CoevoEntryFn = unsafe extern "C" fn() -> *const CoevoPluginTable;

// SAFETY: a table only holds pointers to immutable `'static` data (C strings, the model array)
// and function pointers; nothing is ever written through them, so sharing across threads is sound.
unsafe impl Sync for CoevoPluginTable {}
// SAFETY: as above; the table is plain immutable data.
unsafe impl Send for CoevoPluginTable {}
// SAFETY: the model descriptions only point at immutable `'static` C strings.
unsafe impl Sync for CoevoModelInfo {}
// SAFETY: as above.
unsafe impl Send for CoevoModelInfo {}

impl CoevoPluginTable {
    /// A table with the right size and version but no metadata and no functions: a base for
    /// hand-written tables (`..CoevoPluginTable::EMPTY`) and for tests of the host's validation.
    pub const EMPTY: CoevoPluginTable = CoevoPluginTable {
        struct_size: core::mem::size_of::<CoevoPluginTable>(),
        abi_version: COEVO_ABI_VERSION,
        plugin_name: core::ptr::null(),
        plugin_version: core::ptr::null(),
        model_count: 0,
        models: core::ptr::null(),
        set_logger: None,
        create: None,
        destroy: None,
        dim: None,
        num_texts: None,
        sample: None,
        log_likelihood: None,
        fit: None,
        metric_count: None,
        metric_name: None,
        metrics: None,
        add_text: None,
        get_params: None,
        set_params: None,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    /// The documented C layout on 64-bit targets (README): pin it so a reordering is caught.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn table_layout_matches_readme() {
        assert_eq!(offset_of!(CoevoPluginTable, struct_size), 0);
        assert_eq!(offset_of!(CoevoPluginTable, abi_version), 8);
        assert_eq!(offset_of!(CoevoPluginTable, plugin_name), 16);
        assert_eq!(offset_of!(CoevoPluginTable, plugin_version), 24);
        assert_eq!(offset_of!(CoevoPluginTable, model_count), 32);
        assert_eq!(offset_of!(CoevoPluginTable, models), 40);
        assert_eq!(offset_of!(CoevoPluginTable, set_logger), 48);
        assert_eq!(offset_of!(CoevoPluginTable, set_params), 48 + 13 * 8);
        assert_eq!(size_of::<CoevoPluginTable>(), 48 + 14 * 8);
        assert_eq!(size_of::<CoevoModelInfo>(), 40);
        assert_eq!(size_of::<CoevoErrorBuf>(), 24);
        assert_eq!(size_of::<CoevoRng>(), 16);
        assert_eq!(size_of::<CoevoDataPolicy>(), 24);
        assert_eq!(offset_of!(CoevoDataPolicy, initial), 8);
        assert_eq!(offset_of!(CoevoDataPolicy, lambda), 16);
    }
}
