//! The progress bar on stderr: the CLI's implementation of the library's
//! [`coevo::run::Progress`] with indicatif (the library draws nothing itself).
//!
//! The bar counts training rounds, `0/R` to `R/R` (round 0, the measurement of the initial
//! state, is not one), and labels its estimate: `coevolve [=====>    ] 37/100 rounds, ETA 12s`.
//! A sweep is one bar over the rounds of all the points it computes.

use std::io::IsTerminal;
use std::sync::Arc;

use coevo::run::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar on stderr.
pub struct Bar(ProgressBar);

impl Bar {
    /// The progress to give the library: a bar when stderr is a terminal and the user did not
    /// ask for `--quiet`, else none (a log file or a pipe gets no bar redrawn in it).
    pub fn on_stderr(quiet: bool) -> Option<Arc<dyn Progress>> {
        if quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        let style = ProgressStyle::with_template("{spinner} {msg} [{bar:40}] {pos}/{len} rounds, ETA {eta}")
            .expect("valid template")
            .progress_chars("=> ");
        // Hidden until `start` has set name, length and position: every setter may draw, and a
        // bar drawn earlier shows `0/0` or no name.
        Some(Arc::new(Bar(ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden()).with_style(style))))
    }
}

impl Progress for Bar {
    fn start(&self, name: &str, total: u64, done: u64) {
        self.0.set_message(name.to_string());
        self.0.set_length(total);
        self.0.set_position(done);
        // Rounds done before a resume took no time in this process: keep them out of the rate.
        self.0.reset_eta();
        self.0.set_draw_target(ProgressDrawTarget::stderr());
    }

    fn advance(&self, rounds: u64) {
        self.0.inc(rounds);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}
