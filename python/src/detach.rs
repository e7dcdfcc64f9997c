//! Library work with the GIL released, interruptible by Ctrl-C.
//!
//! Python delivers SIGINT to its main thread as a flag that only Python code (or
//! `PyErr_CheckSignals`) looks at. So the work runs on a thread of its own while the calling
//! thread, mostly with the GIL released, polls for signals; on one it raises the library's
//! interrupt flag ([`coevo::run::RunOptions::interrupt`], the flag the CLI's SIGINT handler
//! raises), waits for the run to stop after its round in flight (so every table written is
//! whole), and returns the signal's exception (`KeyboardInterrupt`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// How often the calling thread looks for a signal while the work runs.
const POLL: Duration = Duration::from_millis(50);

/// Runs `work` on its own thread, on a rayon pool of `threads` threads (default: one per
/// core), with the GIL released; a signal raises `interrupt` and, once `work` returned, is
/// returned as the error. A pool per call, not rayon's global one, so that a process forked
/// after a run (a `ProcessPoolExecutor`'s workers) never inherits a pool whose threads it has
/// not got.
pub fn interruptible<T: Send>(
    py: Python<'_>,
    threads: Option<usize>,
    interrupt: &Arc<AtomicBool>,
    work: impl FnOnce() -> T + Send,
) -> PyResult<T> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the worker threads: {e}")))?;
    // Set when `work` returned, so that the poll ends at once rather than at its next tick.
    let done = (Mutex::new(false), Condvar::new());
    std::thread::scope(|scope| {
        let (pool, done) = (&pool, &done);
        let handle = scope.spawn(move || {
            let out = pool.install(work);
            *done.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
            done.1.notify_all();
            out
        });
        let mut signal: Option<PyErr> = None;
        loop {
            let ended = py.detach(|| {
                let finished = done.0.lock().unwrap_or_else(PoisonError::into_inner);
                let (finished, _) = done.1.wait_timeout_while(finished, POLL, |f| !*f).unwrap_or_else(PoisonError::into_inner);
                *finished || handle.is_finished()
            });
            if ended {
                break;
            }
            if signal.is_none()
                && let Err(e) = py.check_signals()
            {
                interrupt.store(true, Ordering::Relaxed);
                signal = Some(e);
            }
        }
        let out = handle.join().map_err(|panic| {
            let message = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
            PyRuntimeError::new_err(format!("the run panicked: {}", message.unwrap_or_else(|| "(no message)".into())))
        })?;
        match signal {
            Some(e) => Err(e),
            None => Ok(out),
        }
    })
}
