//! # coevo-plugin-api
//!
//! The boundary between the coevo host and dynamically loaded model plugins.
//!
//! Rust has no stable ABI, so the boundary is a **versioned plain C ABI** ([`abi`]): a plugin
//! library exports one symbol, `coevo_plugin_entry`, returning a static `#[repr(C)]`
//! [`CoevoPluginTable`] (struct size and ABI version first, then metadata C strings and
//! `extern "C"` function pointers). No Rust-owned type (`Box`, `Vec`, `String`) crosses it;
//! every buffer is allocated by the caller, every call returns a status and writes a message
//! into a caller-provided error buffer, and randomness comes from the host through a callback,
//! so runs with plugins are reproducible. `plugins/api/README.md` specifies the ABI for C authors.
//!
//! Rust plugin authors implement the safe [`ConditionalModelPlugin`] trait and call
//! [`export_plugin!`]; the generated glue validates every pointer and size and turns panics
//! into error statuses.
//!
//! Hosts use [`host`] (compiled with the `host` feature, which adds libloading): it validates a
//! table and wraps each model handle in a safe [`host::PluginModel`] that also detects plugins
//! that claim success while returning NaN, unwritten or overrun buffers.

pub mod abi;
#[doc(hidden)]
pub mod ffi;
#[cfg(any(feature = "host", test))]
pub mod host;
pub mod log;
pub mod sdk;

pub use abi::{
    COEVO_ABI_VERSION, COEVO_ENTRY_SYMBOL, CoevoDataPolicy, CoevoErrorBuf, CoevoModelInfo, CoevoPluginTable, CoevoRng, CoevoStatus,
};
pub use log::LogLevel;
pub use sdk::{
    ConditionalModelPlugin, DataPolicy, HostRng, ModelDescription, PluginError, PluginResult, RngLoan, caption_groups, fresh_real_count,
};
/// Re-exported so plugins parse their params with the same `serde_json` as the SDK.
pub use serde_json;

/// Support items for the export macros; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::ffi::{
        Factory, add_text, create, destroy, dim, fit, get_params, log_likelihood, metric_count, metric_name, metrics, nul_terminate,
        num_texts, sample, set_logger, set_params,
    };
}

#[cfg(test)]
mod tests;
