//! Host-side helpers: validate a plugin table and call it safely.
//!
//! [`LoadedTable`] checks `struct_size`, `abi_version`, metadata strings and function pointers
//! once; [`PluginModel`] owns one model handle and wraps every call with an error buffer, size
//! checks and output checks that catch what a misbehaving plugin can be caught at:
//!
//! - outputs are pre-filled with a canary NaN bit pattern, and a few canary guard elements
//!   follow the buffer: a canary left inside the output means "claimed success but did not
//!   write everything", a changed guard means "wrote past the end";
//! - samples and metrics must be finite; log-likelihoods must not be NaN or `+inf` (`-inf`, a
//!   zero density, is allowed);
//! - `dim` must stay constant, `num_texts` must match after every call (`K + 1` after
//!   `add_text`).
//!
//! Loading a shared library ([`load_library`]) needs the `host` feature (libloading); the rest
//! works on any `*const CoevoPluginTable`, e.g. one generated in-process by
//! [`crate::plugin_table!`].

use core::ffi::{c_char, c_void};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::abi::*;
use crate::log::LogLevel;
use crate::sdk::{DataPolicy, RngLoan};

/// Capacity of the error buffer the host lends to every call.
const ERR_CAPACITY: usize = 4096;
/// Number of guard elements placed after every output buffer.
const GUARD: usize = 8;
/// A signalling-NaN bit pattern no arithmetic produces: marks "not written by the plugin".
const CANARY_BITS: u64 = 0x7FF4_DEAD_BEEF_C0DE;

/// Caps on what a plugin reports about itself, checked before the host allocates or reads
/// anything sized by it: a table claiming 2^31 models or a model claiming 2^31 metric names or
/// a dimension of 2^40 is refused as malformed instead of driving a huge read or allocation.
/// Generous for any real model (the largest examples use a handful of each).
pub const MAX_MODELS: usize = 1024;
/// See [`MAX_MODELS`]: per-text metrics a model may report.
pub const MAX_METRICS: usize = 4096;
/// See [`MAX_MODELS`]: the largest sample dimension a model may report (2^24 coordinates).
pub const MAX_DIM: usize = 1 << 24;
/// See [`MAX_MODELS`]: the longest string (name, description, metric name) read from a plugin,
/// in bytes; a string without a NUL within it is refused rather than read on.
pub const MAX_STRING: usize = 4096;

/// Everything that can go wrong between the host and a plugin. Every variant names the plugin
/// (its name, or the library path before the name can be trusted).
#[derive(Debug, Clone, PartialEq)]
pub enum HostError {
    /// The shared library could not be opened.
    Load {
        /// Library path.
        path: String,
        /// The loader's message.
        message: String,
    },
    /// The library has no `coevo_plugin_entry` symbol.
    MissingEntry {
        /// Library path.
        path: String,
        /// The loader's message.
        message: String,
    },
    /// The table was built for another ABI version.
    AbiMismatch {
        /// Library path or label.
        origin: String,
        /// Version in the table.
        found: u32,
        /// Version this host speaks.
        expected: u32,
    },
    /// The table is malformed (null entry point, bad string, too small, ...).
    InvalidTable {
        /// Library path or label.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// No model of that name in the library.
    UnknownModel {
        /// Plugin name.
        plugin: String,
        /// Requested model.
        model: String,
        /// Models the library carries.
        available: Vec<String>,
    },
    /// The host called with arguments that do not fit the model (caught before the call).
    Usage {
        /// Plugin name.
        plugin: String,
        /// Model name.
        model: String,
        /// Operation.
        op: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The plugin returned an error status (model error, panic, invalid argument, ...).
    Call {
        /// Plugin name.
        plugin: String,
        /// Model name.
        model: String,
        /// Operation.
        op: &'static str,
        /// The status code.
        status: CoevoStatus,
        /// The plugin's message.
        message: String,
    },
    /// The plugin claimed success but broke the contract (NaN output, unwritten or overrun
    /// buffer, wrong K, ...).
    Contract {
        /// Plugin name.
        plugin: String,
        /// Model name.
        model: String,
        /// Operation.
        op: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The process hosting the plugin died or stopped answering during a call (a host that
    /// runs plugins out of process reports segfaults, aborts, exits and hangs this way).
    Crashed {
        /// Plugin name.
        plugin: String,
        /// Model name (empty if the call was not on a model).
        model: String,
        /// Operation.
        op: &'static str,
        /// What happened, e.g. `crashed (signal 11, SIGSEGV)`.
        reason: String,
    },
}

impl HostError {
    /// True if the plugin panicked during the failed call.
    pub fn is_panic(&self) -> bool {
        matches!(self, HostError::Call { status, .. } if *status == COEVO_ERR_PANIC)
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Load { path, message } => {
                write!(f, "cannot load plugin library {path}: {message}")
            }
            HostError::MissingEntry { path, message } => write!(f, "plugin library {path} has no `{COEVO_ENTRY_SYMBOL}` symbol: {message}"),
            HostError::AbiMismatch { origin, found, expected } => write!(
                f,
                "plugin library {origin} uses plugin ABI version {found}, but this host supports version {expected}; rebuild the plugin against coevo-plugin-api {expected}"
            ),
            HostError::InvalidTable { origin, reason } => {
                write!(f, "plugin library {origin} has an invalid table: {reason}")
            }
            HostError::UnknownModel { plugin, model, available } => {
                write!(f, "plugin `{plugin}` has no model `{model}` (it has: {})", available.join(", "))
            }
            HostError::Usage { plugin, model, op, message } => write!(f, "plugin `{plugin}` model `{model}` {op}: {message}"),
            HostError::Call { plugin, model, op, status, message } => {
                write!(f, "plugin `{plugin}` model `{model}` {op} failed ({}, status {status}): {message}", status_name(*status))
            }
            HostError::Contract { plugin, model, op, message } => {
                write!(f, "plugin `{plugin}` model `{model}` {op} broke the plugin contract: {message}")
            }
            HostError::Crashed { plugin, model, op, reason } if model.is_empty() => write!(f, "plugin `{plugin}` {reason} in {op}"),
            HostError::Crashed { plugin, model, op, reason } => write!(f, "plugin `{plugin}` {reason} in {op} (model `{model}`)"),
        }
    }
}

impl std::error::Error for HostError {}

/// Metadata of one model carried by a library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMeta {
    /// Model name (unique within the library).
    pub name: String,
    /// Modality, e.g. `"audio"`.
    pub modality: String,
    /// Human-readable dimension rule.
    pub dim_rule: String,
    /// Dimension if independent of params.
    pub fixed_dim: Option<usize>,
    /// One-line description.
    pub description: String,
}

/// The table's function pointers, checked non-null once.
#[derive(Clone, Copy)]
struct Fns {
    set_logger: SetLoggerFn,
    create: CreateFn,
    destroy: DestroyFn,
    dim: DimFn,
    num_texts: NumTextsFn,
    sample: SampleFn,
    log_likelihood: LogLikelihoodFn,
    fit: FitFn,
    metric_count: MetricCountFn,
    metric_name: MetricNameFn,
    metrics: MetricsFn,
    add_text: AddTextFn,
    get_params: GetParamsFn,
    set_params: SetParamsFn,
}

struct Inner {
    origin: String,
    name: String,
    version: String,
    models: Vec<ModelMeta>,
    fns: Fns,
}

/// A validated plugin table. Cheap to clone (shared), `Send + Sync`.
#[derive(Clone)]
pub struct LoadedTable {
    inner: Arc<Inner>,
}

impl fmt::Debug for LoadedTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedTable")
            .field("origin", &self.inner.origin)
            .field("name", &self.inner.name)
            .field("version", &self.inner.version)
            .field("models", &self.inner.models)
            .finish()
    }
}

/// Read a NUL-terminated UTF-8 string from the table.
unsafe fn table_str(ptr: *const c_char, what: &str, origin: &str) -> Result<String, HostError> {
    if ptr.is_null() {
        return Err(HostError::InvalidTable { origin: origin.to_owned(), reason: format!("{what} is null") });
    }
    // SAFETY: non-null; the ABI says it is a NUL-terminated static string, and `bounded_str`
    // reads no further than its NUL or `MAX_STRING` bytes.
    unsafe { bounded_str(ptr) }.map_err(|why| HostError::InvalidTable { origin: origin.to_owned(), reason: format!("{what} {why}") })
}

/// Reads a NUL-terminated UTF-8 string of at most [`MAX_STRING`] bytes, never scanning past
/// that many bytes for the NUL (an unterminated string is refused, not read on).
///
/// # Safety
/// `ptr` must be non-null and point to a NUL-terminated string, or to at least `MAX_STRING`
/// readable bytes.
unsafe fn bounded_str(ptr: *const c_char) -> Result<String, String> {
    let mut len = 0;
    // SAFETY: the caller guarantees every byte up to the NUL (or the first MAX_STRING) is readable.
    while len < MAX_STRING && unsafe { *ptr.add(len) } != 0 {
        len += 1;
    }
    if len == MAX_STRING {
        return Err(format!("is longer than {MAX_STRING} bytes or not NUL-terminated"));
    }
    // SAFETY: the `len` bytes before the NUL were just read.
    let bytes = unsafe { core::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    core::str::from_utf8(bytes).map(str::to_owned).map_err(|_| "is not UTF-8".to_owned())
}

impl LoadedTable {
    /// Validate a table: `abi_version` first, then `struct_size`, metadata and every function
    /// pointer. `origin` (the library path or a label) names the plugin in errors until its own
    /// name has been read.
    ///
    /// # Safety
    /// `table` must be null or point to memory that stays valid forever, readable for at least
    /// `size_of::<usize>() + size_of::<u32>()` bytes, and laid out as a `CoevoPluginTable` for
    /// as many bytes as its `struct_size` says; its strings and model array must be static.
    pub unsafe fn from_raw(table: *const CoevoPluginTable, origin: impl Into<String>) -> Result<LoadedTable, HostError> {
        let origin = origin.into();
        let invalid = |reason: String| HostError::InvalidTable { origin: origin.clone(), reason };
        if table.is_null() {
            return Err(invalid(format!("{COEVO_ENTRY_SYMBOL}() returned null")));
        }
        // Read only the two leading fields before trusting the layout.
        // SAFETY: the caller guarantees these leading bytes are readable.
        let (struct_size, abi_version) = unsafe {
            (core::ptr::addr_of!((*table).struct_size).read_unaligned(), core::ptr::addr_of!((*table).abi_version).read_unaligned())
        };
        if abi_version != COEVO_ABI_VERSION {
            return Err(HostError::AbiMismatch { origin, found: abi_version, expected: COEVO_ABI_VERSION });
        }
        if struct_size < core::mem::size_of::<CoevoPluginTable>() {
            return Err(invalid(format!("struct_size is {struct_size}, expected at least {}", core::mem::size_of::<CoevoPluginTable>())));
        }
        if !table.is_aligned() {
            return Err(invalid("table is not aligned".into()));
        }
        // SAFETY: non-null and aligned (checked above); `struct_size` covers a whole
        // `CoevoPluginTable` (checked above), and the caller guarantees the memory is laid out as
        // one and stays valid forever, so a `'static` shared reference is sound.
        let t: &'static CoevoPluginTable = unsafe { &*table };
        // SAFETY: `table_str` rejects null; the caller guarantees the table's strings are
        // NUL-terminated and static, which is what `bounded_str` needs.
        let name = unsafe { table_str(t.plugin_name, "plugin_name", &origin) }?;
        // SAFETY: the same contract as `plugin_name`, for the version string.
        let version = unsafe { table_str(t.plugin_version, "plugin_version", &origin) }?;
        if t.model_count == 0 {
            return Err(invalid("model_count is 0".into()));
        }
        if t.model_count > MAX_MODELS {
            return Err(invalid(format!("model_count is {}, more than the {MAX_MODELS} a host accepts", t.model_count)));
        }
        if t.models.is_null() || !t.models.is_aligned() {
            return Err(invalid("models is null or misaligned".into()));
        }
        // SAFETY: `models` is non-null and aligned (checked just above); the caller guarantees it
        // points to `model_count` initialised, static `CoevoModelInfo`s.
        let infos = unsafe { core::slice::from_raw_parts(t.models, t.model_count) };
        let mut models = Vec::with_capacity(infos.len());
        for (k, m) in infos.iter().enumerate() {
            // SAFETY: each `table_str` rejects null; the caller guarantees every non-null string of
            // a model entry is NUL-terminated and static.
            let meta = unsafe {
                ModelMeta {
                    name: table_str(m.name, &format!("models[{k}].name"), &origin)?,
                    modality: table_str(m.modality, &format!("models[{k}].modality"), &origin)?,
                    dim_rule: table_str(m.dim_rule, &format!("models[{k}].dim_rule"), &origin)?,
                    fixed_dim: (m.fixed_dim != 0).then_some(m.fixed_dim),
                    description: table_str(m.description, &format!("models[{k}].description"), &origin)?,
                }
            };
            if models.iter().any(|o: &ModelMeta| o.name == meta.name) {
                return Err(invalid(format!("duplicate model name `{}`", meta.name)));
            }
            models.push(meta);
        }
        macro_rules! req {
            ($f:ident) => {
                t.$f.ok_or_else(|| invalid(format!("function `{}` is null", stringify!($f))))?
            };
        }
        let fns = Fns {
            set_logger: req!(set_logger),
            create: req!(create),
            destroy: req!(destroy),
            dim: req!(dim),
            num_texts: req!(num_texts),
            sample: req!(sample),
            log_likelihood: req!(log_likelihood),
            fit: req!(fit),
            metric_count: req!(metric_count),
            metric_name: req!(metric_name),
            metrics: req!(metrics),
            add_text: req!(add_text),
            get_params: req!(get_params),
            set_params: req!(set_params),
        };
        Ok(LoadedTable { inner: Arc::new(Inner { origin, name, version, models, fns }) })
    }

    /// Where the table came from (library path or label).
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// Plugin name from the table.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Plugin version from the table.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// The models the library carries, in `model_index` order.
    pub fn models(&self) -> &[ModelMeta] {
        &self.inner.models
    }

    /// Index of the model called `name`.
    pub fn model_index(&self, name: &str) -> Result<usize, HostError> {
        self.inner.models.iter().position(|m| m.name == name).ok_or_else(|| HostError::UnknownModel {
            plugin: self.inner.name.clone(),
            model: name.to_owned(),
            available: self.inner.models.iter().map(|m| m.name.clone()).collect(),
        })
    }

    /// Install a raw log callback in the library (replacing any previous one).
    ///
    /// # Safety
    /// `log` must be callable with `ctx` from any thread, forever (or until replaced).
    pub unsafe fn set_logger_raw(&self, ctx: *mut c_void, log: Option<CoevoLogFn>) {
        // SAFETY: `set_logger` was checked non-null when the table was loaded, and the library
        // stays loaded forever; this function's caller guarantees that `log` may be called with
        // `ctx` from any thread for as long as it is installed, which is all the ABI asks.
        unsafe { (self.inner.fns.set_logger)(ctx, log) }
    }

    /// Route the library's log messages to `sink(plugin_name, level, message)`, e.g. a function
    /// that emits `tracing` events. A panic in `sink` is swallowed (it must not cross the FFI).
    pub fn set_log_sink(&self, sink: fn(&str, LogLevel, &str)) {
        struct SinkCtx {
            plugin: String,
            sink: fn(&str, LogLevel, &str),
        }
        unsafe extern "C" fn trampoline(ctx: *mut c_void, level: u32, msg: *const u8, len: usize) {
            // SAFETY: the only `ctx` ever installed with this trampoline is the leaked `SinkCtx`
            // below, never freed and only read, so a shared reference to it is always valid.
            let ctx = unsafe { &*(ctx as *const SinkCtx) };
            let bytes: &[u8] = if msg.is_null() || len == 0 {
                &[]
            } else {
                // SAFETY: `msg` is non-null (checked); the ABI's log callback contract is that
                // `msg` points to `len` readable bytes for the duration of the call.
                unsafe { core::slice::from_raw_parts(msg, len) }
            };
            let text = String::from_utf8_lossy(bytes);
            let _ = std::panic::catch_unwind(|| (ctx.sink)(&ctx.plugin, LogLevel::from_raw(level), &text));
        }
        // Leaked on purpose: the library may log at any time until the process ends, and
        // libraries are never unloaded. One small allocation per call.
        let ctx = Box::leak(Box::new(SinkCtx { plugin: self.inner.name.clone(), sink }));
        // SAFETY: the trampoline only reads its `SinkCtx` and catches panics of the sink, so it
        // may be called from any thread; `ctx` is leaked, so it lives forever.
        unsafe { self.set_logger_raw(ctx as *mut SinkCtx as *mut c_void, Some(trampoline)) }
    }

    /// Create a model by name. `params_json` is the scenario's JSON (`""` or `"{}"` for none).
    pub fn create_by_name(&self, model: &str, params_json: &str, num_texts: usize, policy: DataPolicy) -> Result<PluginModel, HostError> {
        self.create(self.model_index(model)?, params_json, num_texts, policy)
    }

    /// Create model `model_index` with `num_texts` texts, then check what it reports.
    pub fn create(&self, model_index: usize, params_json: &str, num_texts: usize, policy: DataPolicy) -> Result<PluginModel, HostError> {
        let meta = self.inner.models.get(model_index).ok_or_else(|| HostError::UnknownModel {
            plugin: self.inner.name.clone(),
            model: format!("#{model_index}"),
            available: self.inner.models.iter().map(|m| m.name.clone()).collect(),
        })?;
        let mut err = ErrBuf::new();
        let mut handle: *mut c_void = core::ptr::null_mut();
        // SAFETY: `create` was checked non-null at load; `params_json` is readable for its
        // `len()` bytes, `handle` and the error buffer are writable locals that outlive the call,
        // and `model_index` indexes the table's models (checked above), as the ABI requires.
        let status = unsafe {
            (self.inner.fns.create)(
                model_index,
                params_json.as_ptr(),
                params_json.len(),
                num_texts,
                policy.to_raw(),
                &mut handle,
                err.raw(),
            )
        };
        let fail =
            |message: String| HostError::Contract { plugin: self.inner.name.clone(), model: meta.name.clone(), op: "create", message };
        if status != COEVO_OK {
            if !handle.is_null() {
                // SAFETY: the plugin returned a handle despite failing; free it, never use it.
                unsafe { (self.inner.fns.destroy)(handle) };
            }
            return Err(HostError::Call {
                plugin: self.inner.name.clone(),
                model: meta.name.clone(),
                op: "create",
                status,
                message: err.message(),
            });
        }
        let handle = NonNull::new(handle).ok_or_else(|| fail("returned a null handle".into()))?;
        // From here the PluginModel owns the handle, so every early return destroys it.
        let mut model = PluginModel { table: self.clone(), model_index, handle, dim: 0, num_texts, metric_names: Vec::new() };
        let f = &self.inner.fns;
        // SAFETY: `handle` is the non-null handle `create` just returned with COEVO_OK and
        // nothing has destroyed it; no other thread can see it yet, so calls are not concurrent.
        let dim = unsafe { (f.dim)(handle.as_ptr()) };
        if dim == 0 || dim > MAX_DIM {
            return Err(fail(format!("dim is {dim}, expected 1 to {MAX_DIM}")));
        }
        if let Some(fixed) = meta.fixed_dim
            && fixed != dim
        {
            return Err(fail(format!("dim is {dim} but the table says {fixed}")));
        }
        model.dim = dim;
        // SAFETY: the same live, unshared handle as for `dim`.
        let k = unsafe { (f.num_texts)(handle.as_ptr()) };
        if k != num_texts {
            return Err(fail(format!("num_texts is {k}, expected {num_texts}")));
        }
        // SAFETY: the same live, unshared handle as for `dim`.
        let m = unsafe { (f.metric_count)(handle.as_ptr()) };
        if m > MAX_METRICS {
            return Err(fail(format!("metric_count is {m}, more than the {MAX_METRICS} a host accepts")));
        }
        for idx in 0..m {
            // SAFETY: the same live handle, and `idx < metric_count` as the ABI requires.
            let p = unsafe { (f.metric_name)(handle.as_ptr(), idx) };
            if p.is_null() {
                return Err(fail(format!("metric_name({idx}) is null")));
            }
            // SAFETY: non-null NUL-terminated string by the ABI; read at most MAX_STRING bytes
            // and copied immediately.
            let name = unsafe { bounded_str(p) }.map_err(|why| fail(format!("metric_name({idx}) {why}")))?;
            model.metric_names.push(name);
        }
        Ok(model)
    }
}

/// An error buffer owned by the host for one call.
struct ErrBuf {
    bytes: Vec<u8>,
    raw: CoevoErrorBuf,
}

impl ErrBuf {
    fn new() -> Box<ErrBuf> {
        let mut b = Box::new(ErrBuf {
            bytes: vec![0u8; ERR_CAPACITY],
            raw: CoevoErrorBuf { ptr: core::ptr::null_mut(), capacity: ERR_CAPACITY, written: 0 },
        });
        b.raw.ptr = b.bytes.as_mut_ptr();
        b
    }

    fn raw(&mut self) -> *mut CoevoErrorBuf {
        &mut self.raw
    }

    fn message(&self) -> String {
        let n = self.raw.written.min(ERR_CAPACITY);
        let msg = String::from_utf8_lossy(&self.bytes[..n]).into_owned();
        if msg.is_empty() { "(no message)".to_owned() } else { msg }
    }
}

/// An output buffer with canary fill and guard elements.
struct OutBuf {
    data: Vec<f64>,
    len: usize,
}

impl OutBuf {
    /// A canary-filled buffer of `len` values plus the guard zone. The size is checked, never
    /// wrapped (`len + GUARD` of a `u64::MAX` batch would otherwise be a 7-element buffer the
    /// plugin writes far past), and the allocation is fallible: an impossible size is an error.
    fn new(len: usize) -> Result<OutBuf, String> {
        let total = len
            .checked_add(GUARD)
            .filter(|n| n.checked_mul(core::mem::size_of::<f64>()).is_some_and(|b| b <= isize::MAX as usize))
            .ok_or_else(|| format!("an output of {len} values cannot be addressed"))?;
        let mut data = Vec::new();
        data.try_reserve_exact(total).map_err(|_| format!("cannot allocate an output of {len} values ({} bytes)", total * 8))?;
        data.resize(total, f64::from_bits(CANARY_BITS));
        Ok(OutBuf { data, len })
    }

    fn ptr(&mut self) -> *mut f64 {
        self.data.as_mut_ptr()
    }

    /// Check guard and canaries, then return the `len` values.
    fn finish(mut self) -> Result<Vec<f64>, String> {
        if self.data[self.len..].iter().any(|v| v.to_bits() != CANARY_BITS) {
            return Err(format!("wrote past the end of its {}-element output buffer (memory may be corrupted)", self.len));
        }
        if let Some(j) = self.data[..self.len].iter().position(|v| v.to_bits() == CANARY_BITS) {
            return Err(format!("reported success but left output element {j} of {} unwritten", self.len));
        }
        self.data.truncate(self.len);
        Ok(self.data)
    }
}

/// One model instance inside a plugin library. Destroyed on drop.
///
/// Every method that calls into the plugin takes `&mut self`, so calls on one handle are never
/// concurrent; that makes the type `Send + Sync` (it can live in an ECS component).
pub struct PluginModel {
    table: LoadedTable,
    model_index: usize,
    handle: NonNull<c_void>,
    dim: usize,
    num_texts: usize,
    metric_names: Vec<String>,
}

// SAFETY: the ABI allows a handle to be used from any thread as long as calls on it are not
// concurrent; all calling methods take `&mut self`.
unsafe impl Send for PluginModel {}
// SAFETY: `&self` methods only read host-side cached fields, never call the plugin.
unsafe impl Sync for PluginModel {}

impl fmt::Debug for PluginModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginModel")
            .field("plugin", &self.table.name())
            .field("model", &self.model_name())
            .field("dim", &self.dim)
            .field("num_texts", &self.num_texts)
            .finish()
    }
}

impl Drop for PluginModel {
    fn drop(&mut self) {
        // SAFETY: `self` owns the handle (created with COEVO_OK, never shared as a raw pointer)
        // and `drop` runs once, so the handle is live here and never used after `destroy`.
        unsafe { (self.table.inner.fns.destroy)(self.handle.as_ptr()) }
    }
}

impl PluginModel {
    /// The library this model lives in.
    pub fn table(&self) -> &LoadedTable {
        &self.table
    }

    /// The model's metadata.
    pub fn meta(&self) -> &ModelMeta {
        &self.table.inner.models[self.model_index]
    }

    /// The model's name.
    pub fn model_name(&self) -> &str {
        &self.meta().name
    }

    /// Sample dimension (constant).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Current number of texts K.
    pub fn num_texts(&self) -> usize {
        self.num_texts
    }

    /// Names of the per-text metrics, in `metrics()` column order.
    pub fn metric_names(&self) -> &[String] {
        &self.metric_names
    }

    fn usage(&self, op: &'static str, message: String) -> HostError {
        HostError::Usage { plugin: self.table.name().to_owned(), model: self.model_name().to_owned(), op, message }
    }

    fn contract(&self, op: &'static str, message: String) -> HostError {
        HostError::Contract { plugin: self.table.name().to_owned(), model: self.model_name().to_owned(), op, message }
    }

    fn status(&self, op: &'static str, status: CoevoStatus, err: &ErrBuf) -> Result<(), HostError> {
        if status == COEVO_OK {
            return Ok(());
        }
        Err(HostError::Call {
            plugin: self.table.name().to_owned(),
            model: self.model_name().to_owned(),
            op,
            status,
            message: err.message(),
        })
    }

    /// Check that the plugin still reports our K and dim.
    fn check_shape(&self, op: &'static str) -> Result<(), HostError> {
        let f = &self.table.inner.fns;
        // SAFETY: `self.handle` is live until `drop`; `check_shape` is only called from methods
        // taking `&mut self`, so no other call on this handle runs at the same time.
        let (k, d) = unsafe { ((f.num_texts)(self.handle.as_ptr()), (f.dim)(self.handle.as_ptr())) };
        if k != self.num_texts {
            return Err(self.contract(op, format!("num_texts is {k}, expected {}", self.num_texts)));
        }
        if d != self.dim {
            return Err(self.contract(op, format!("dim changed from {} to {d}", self.dim)));
        }
        Ok(())
    }

    fn rows(&self, op: &'static str, counts: &[u64]) -> Result<usize, HostError> {
        if counts.len() != self.num_texts {
            return Err(self.usage(op, format!("{} counts for {} texts", counts.len(), self.num_texts)));
        }
        counts
            .iter()
            .try_fold(0usize, |a, &c| a.checked_add(usize::try_from(c).ok()?))
            .and_then(|n| n.checked_mul(self.dim))
            .ok_or_else(|| self.usage(op, "sum(counts) * dim overflows".into()))
    }

    /// Draw `counts[i]` samples for text `i` (caption-grouped, row-major `n x dim`).
    pub fn sample<R: rand_core::Rng>(&mut self, counts: &[u64], temperature: f64, rng: &mut R) -> Result<Vec<f64>, HostError> {
        const OP: &str = "sample";
        let len = self.rows(OP, counts)?;
        let mut out = OutBuf::new(len).map_err(|m| self.usage(OP, m))?;
        let mut err = ErrBuf::new();
        let mut loan = RngLoan::new(rng);
        // SAFETY: live handle borrowed mutably (no concurrent call); `counts` is readable for
        // `counts.len() == num_texts` values (checked by `rows`); `out` is writable for `len`
        // values (plus a guard zone that catches overruns); the RNG loan and error buffer are
        // locals that outlive the call.
        let status = unsafe {
            (self.table.inner.fns.sample)(
                self.handle.as_ptr(),
                counts.as_ptr(),
                counts.len(),
                temperature,
                loan.as_raw(),
                out.ptr(),
                len,
                err.raw(),
            )
        };
        self.status(OP, status, &err)?;
        let values = out.finish().map_err(|m| self.contract(OP, m))?;
        if let Some(j) = values.iter().position(|v| !v.is_finite()) {
            return Err(self.contract(OP, format!("sample value {j} is {}", values[j])));
        }
        self.check_shape(OP)?;
        Ok(values)
    }

    /// `out[j * K + i] = log q(y_j | i)` for the `samples.len() / dim` samples. Entries may be
    /// `-inf`; NaN and `+inf` are contract violations.
    pub fn log_likelihood(&mut self, samples: &[f64]) -> Result<Vec<f64>, HostError> {
        const OP: &str = "log_likelihood";
        if !samples.len().is_multiple_of(self.dim) {
            return Err(self.usage(OP, format!("{} values is not a multiple of dim {}", samples.len(), self.dim)));
        }
        let n = samples.len() / self.dim;
        let len = n.checked_mul(self.num_texts).ok_or_else(|| self.usage(OP, "n * K overflows".into()))?;
        let mut out = OutBuf::new(len).map_err(|m| self.usage(OP, m))?;
        let mut err = ErrBuf::new();
        // SAFETY: live handle borrowed mutably; `samples` is readable for `n * dim` values
        // (`n` is its length over `dim`, checked divisible); `out` is writable for `len = n * K`
        // values (plus a guard zone); the error buffer outlives the call.
        let status = unsafe { (self.table.inner.fns.log_likelihood)(self.handle.as_ptr(), samples.as_ptr(), n, out.ptr(), len, err.raw()) };
        self.status(OP, status, &err)?;
        let values = out.finish().map_err(|m| self.contract(OP, m))?;
        if let Some(j) = values.iter().position(|v| v.is_nan() || *v == f64::INFINITY) {
            return Err(self.contract(
                OP,
                format!("log-likelihood of sample {} under text {} is {}", j / self.num_texts, j % self.num_texts, values[j]),
            ));
        }
        self.check_shape(OP)?;
        Ok(values)
    }

    /// Refit on a caption-grouped batch (`samples.len() == sum(counts) * dim`).
    pub fn fit<R: rand_core::Rng>(&mut self, counts: &[u64], samples: &[f64], rng: &mut R) -> Result<(), HostError> {
        const OP: &str = "fit";
        let len = self.rows(OP, counts)?;
        if samples.len() != len {
            return Err(self.usage(OP, format!("{} sample values, expected sum(counts) * dim = {len}", samples.len())));
        }
        let mut err = ErrBuf::new();
        let mut loan = RngLoan::new(rng);
        // SAFETY: live handle borrowed mutably; `counts` has `num_texts` values (checked by
        // `rows`) and `samples` exactly `sum(counts) * dim` (checked above), both readable for
        // their lengths; the RNG loan and error buffer are locals that outlive the call.
        let status = unsafe {
            (self.table.inner.fns.fit)(
                self.handle.as_ptr(),
                counts.as_ptr(),
                counts.len(),
                samples.as_ptr(),
                samples.len(),
                loan.as_raw(),
                err.raw(),
            )
        };
        self.status(OP, status, &err)?;
        self.check_shape(OP)
    }

    /// Per-text metrics, `out[i * M + m]` (columns named by [`metric_names`](Self::metric_names)).
    /// All values must be finite.
    pub fn metrics(&mut self) -> Result<Vec<f64>, HostError> {
        const OP: &str = "metrics";
        let len = self.num_texts.checked_mul(self.metric_names.len()).ok_or_else(|| self.usage(OP, "K * M overflows".into()))?;
        let mut out = OutBuf::new(len).map_err(|m| self.usage(OP, m))?;
        let mut err = ErrBuf::new();
        // SAFETY: live handle borrowed mutably; `out` is writable for `len = K * M` values (plus
        // a guard zone); the error buffer outlives the call.
        let status = unsafe { (self.table.inner.fns.metrics)(self.handle.as_ptr(), out.ptr(), len, err.raw()) };
        self.status(OP, status, &err)?;
        let values = out.finish().map_err(|m| self.contract(OP, m))?;
        let m = self.metric_names.len().max(1);
        if let Some(j) = values.iter().position(|v| !v.is_finite()) {
            return Err(self.contract(OP, format!("metric `{}` of text {} is {}", self.metric_names[j % m], j / m, values[j])));
        }
        self.check_shape(OP)?;
        Ok(values)
    }

    /// Append a text (its conditional starts at the model's prior); K grows by one.
    pub fn add_text(&mut self) -> Result<(), HostError> {
        const OP: &str = "add_text";
        let mut err = ErrBuf::new();
        // SAFETY: live handle borrowed mutably; the error buffer outlives the call.
        let status = unsafe { (self.table.inner.fns.add_text)(self.handle.as_ptr(), err.raw()) };
        self.status(OP, status, &err)?;
        self.num_texts += 1;
        self.check_shape(OP)
    }

    /// Checkpoint the model's full state.
    pub fn get_params(&mut self) -> Result<Vec<f64>, HostError> {
        const OP: &str = "get_params";
        let f = self.table.inner.fns;
        let mut needed = 0usize;
        let mut err = ErrBuf::new();
        // SAFETY: live handle borrowed mutably; a null output with length 0 is the ABI's size
        // query, so nothing is written but `needed` (a writable local) and the error buffer.
        let status = unsafe { (f.get_params)(self.handle.as_ptr(), core::ptr::null_mut(), 0, &mut needed, err.raw()) };
        if status != COEVO_OK && status != COEVO_ERR_BUFFER_TOO_SMALL {
            self.status(OP, status, &err)?;
        }
        let mut out = OutBuf::new(needed).map_err(|m| self.contract(OP, format!("needs {needed} values: {m}")))?;
        let mut needed2 = 0usize;
        let mut err = ErrBuf::new();
        // SAFETY: live handle borrowed mutably; `out` is writable for `needed` values (plus a
        // guard zone) and `needed2` is a writable local.
        let status = unsafe { (f.get_params)(self.handle.as_ptr(), out.ptr(), needed, &mut needed2, err.raw()) };
        self.status(OP, status, &err)?;
        if needed2 != needed {
            return Err(self.contract(OP, format!("needed {needed} values, then {needed2} on the second call")));
        }
        let values = out.finish().map_err(|m| self.contract(OP, m))?;
        if let Some(j) = values.iter().position(|v| !v.is_finite()) {
            return Err(self.contract(OP, format!("parameter {j} is {}", values[j])));
        }
        Ok(values)
    }

    /// Restore a checkpoint from [`get_params`](Self::get_params). K may change (it is read
    /// back from the plugin); the dimension may not.
    pub fn set_params(&mut self, params: &[f64]) -> Result<(), HostError> {
        const OP: &str = "set_params";
        let mut err = ErrBuf::new();
        // SAFETY: live handle borrowed mutably; `params` is readable for `params.len()` values.
        let status = unsafe { (self.table.inner.fns.set_params)(self.handle.as_ptr(), params.as_ptr(), params.len(), err.raw()) };
        self.status(OP, status, &err)?;
        // SAFETY: live handle borrowed mutably.
        let k = unsafe { (self.table.inner.fns.num_texts)(self.handle.as_ptr()) };
        if k == 0 {
            return Err(self.contract(OP, "num_texts is 0".into()));
        }
        self.num_texts = k;
        self.check_shape(OP)
    }
}

/// Open a plugin library, find `coevo_plugin_entry`, and validate its table. The library is
/// never unloaded (its code may be referenced by handles and log callbacks until exit).
///
/// # Safety
/// Loading runs the library's initialisers and trusts its entry point to follow the ABI in
/// `plugins/api/README.md`: only load coevo plugins.
#[cfg(feature = "host")]
pub unsafe fn load_library(path: &std::path::Path) -> Result<LoadedTable, HostError> {
    let shown = path.display().to_string();
    // SAFETY: loading runs the library's initialisers; this function's caller guarantees the
    // file is a coevo plugin, whose initialisers are those of an ordinary Rust or C library.
    let lib = unsafe { open_now(path) }.map_err(|e| HostError::Load { path: shown.clone(), message: loader_message(&e) })?;
    // Never unloaded: handles, metric-name pointers and log callbacks point into it.
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    // SAFETY: the ABI fixes `coevo_plugin_entry`'s type as `CoevoEntryFn`, and the caller
    // guarantees the library follows the ABI; `lib` is leaked, so the symbol never dangles.
    let entry = unsafe { lib.get::<CoevoEntryFn>(COEVO_ENTRY_SYMBOL.as_bytes()) }
        .map_err(|e| HostError::MissingEntry { path: shown.clone(), message: loader_message(&e) })?;
    // SAFETY: calling the entry point is the documented way to obtain the table; the library
    // stays loaded forever, so the table does too.
    let table = unsafe { entry() };
    // SAFETY: the ABI makes the entry point return null or a table that is static in the
    // library, and the library is never unloaded, which is `from_raw`'s contract.
    unsafe { LoadedTable::from_raw(table, shown) }
}

/// The loader's error with its causes: libloading's own text is only `dlopen failed`, and the
/// dynamic linker's reason (`undefined symbol: foo`, `wrong ELF class`, ...) is its source.
#[cfg(feature = "host")]
fn loader_message(e: &libloading::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Open a shared library with every symbol resolved now.
///
/// `libloading::Library::new` uses `RTLD_LAZY` on Unix: a library with an unresolved symbol
/// then loads fine and the dynamic linker kills the whole process (exit status 127) at the
/// first call that needs the symbol, which no host can report. `RTLD_NOW` makes `dlopen` itself
/// fail with the linker's reason (e.g. `undefined symbol: foo`), an ordinary error.
/// `RTLD_LOCAL` keeps the library's symbols out of the global namespace, so two plugins cannot
/// bind to each other's `coevo_plugin_entry`. Windows resolves imports at load time anyway.
///
/// # Safety
/// As [`libloading::Library::new`]: loading runs the library's initialisers.
#[cfg(feature = "host")]
unsafe fn open_now(path: &std::path::Path) -> Result<libloading::Library, libloading::Error> {
    #[cfg(unix)]
    {
        use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
        // SAFETY: forwarded contract.
        unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map(libloading::Library::from)
    }
    #[cfg(not(unix))]
    {
        // SAFETY: forwarded contract.
        unsafe { libloading::Library::new(path) }
    }
}

/// Build a plugin package with cargo and return the path of its shared library.
///
/// Runs `$CARGO build -p <package> --message-format=json` (plus `extra_args`, e.g.
/// `["--release"]`) in `workspace_dir` and reads the `cdylib` artifact path from cargo's output.
/// For tests; never call it from a build script (it would deadlock on the target directory).
#[cfg(feature = "host")]
pub fn cargo_build_plugin(workspace_dir: &std::path::Path, package: &str, extra_args: &[&str]) -> Result<std::path::PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(&cargo)
        .current_dir(workspace_dir)
        .args(["build", "-p", package, "--message-format=json"])
        .args(extra_args)
        .output()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo build -p {package} failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let suffix = std::env::consts::DLL_SUFFIX;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let is_cdylib = msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if !is_cdylib {
            continue;
        }
        if let Some(files) = msg["filenames"].as_array() {
            for f in files.iter().filter_map(|f| f.as_str()) {
                if f.ends_with(suffix) {
                    return Ok(std::path::PathBuf::from(f));
                }
            }
        }
    }
    Err(format!("cargo build -p {package} produced no cdylib artifact"))
}
