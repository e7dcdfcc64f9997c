//! Plugin-side logging: messages go to the host's callback (installed with `set_logger`), so they
//! end up in the host's `tracing` output. Without a callback they are dropped.
//!
//! The callback lives in a static of the SDK, and the SDK is linked statically into each plugin
//! library, so every library has its own logger slot.

use core::ffi::c_void;
use std::sync::RwLock;

use crate::abi::{COEVO_LOG_DEBUG, COEVO_LOG_ERROR, COEVO_LOG_INFO, COEVO_LOG_TRACE, COEVO_LOG_WARN, CoevoLogFn};

/// Severity of a log message (numbering of `COEVO_LOG_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum LogLevel {
    /// Something failed.
    Error = COEVO_LOG_ERROR,
    /// Something is suspicious.
    Warn = COEVO_LOG_WARN,
    /// Progress information.
    Info = COEVO_LOG_INFO,
    /// Debug detail.
    Debug = COEVO_LOG_DEBUG,
    /// Trace detail.
    Trace = COEVO_LOG_TRACE,
}

impl LogLevel {
    /// Decode a raw level; unknown values map to `Trace` rather than failing, since a log line
    /// must never become an error.
    pub fn from_raw(level: u32) -> LogLevel {
        match level {
            COEVO_LOG_ERROR => LogLevel::Error,
            COEVO_LOG_WARN => LogLevel::Warn,
            COEVO_LOG_INFO => LogLevel::Info,
            COEVO_LOG_DEBUG => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }
}

#[derive(Clone, Copy)]
struct Logger {
    ctx: *mut c_void,
    log: CoevoLogFn,
}

// SAFETY: the host promises (README, "threading") that its callback and ctx may be used from any
// thread that calls into the plugin; the SDK only copies the pointer around.
unsafe impl Send for Logger {}
// SAFETY: as above.
unsafe impl Sync for Logger {}

static LOGGER: RwLock<Option<Logger>> = RwLock::new(None);

/// Install or remove the callback (the body of the table's `set_logger`).
pub(crate) fn set_logger(ctx: *mut c_void, log: Option<CoevoLogFn>) {
    let mut slot = LOGGER.write().unwrap_or_else(|e| e.into_inner());
    *slot = log.map(|log| Logger { ctx, log });
}

/// Send one message to the host (dropped if no callback is installed).
pub fn log(level: LogLevel, msg: &str) {
    let logger = *LOGGER.read().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = logger {
        // SAFETY: the host installed this callback and promised it stays valid until replaced.
        unsafe { (l.log)(l.ctx, level as u32, msg.as_ptr(), msg.len()) }
    }
}

/// `plugin_log!(Info, "fitted {} texts", k)`: format and send a message to the host's log.
#[macro_export]
macro_rules! plugin_log {
    ($level:ident, $($arg:tt)*) => {
        $crate::log::log($crate::log::LogLevel::$level, &::std::format!($($arg)*))
    };
}
