//! SIGINT and SIGTERM handling, installed by the binary only: the library just reads the flag
//! it is given (`RunOptions::interrupt`).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

/// A flag raised by SIGINT or SIGTERM, so a run stops after the round in flight with every
/// written round whole; a second signal exits at once (status 130, as an interrupted command
/// does). Installs the handlers on first use.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // A second signal while stopping terminates at once (exit code 130), as users
            // expect of a second Ctrl-C; registration can only fail for forbidden signals.
            let _ = signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone());
            let _ = signal_hook::flag::register(signal, flag.clone());
        }
        flag
    })
    .clone()
}
