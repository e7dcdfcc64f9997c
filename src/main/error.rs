//! Every way a command can fail, and the one mapping from a failure to what the user sees:
//! the message on stderr and the exit code (0 ok, 1 failure while running, 2 bad input,
//! 130 interrupted). `main` applies it; commands only return errors.

use std::fmt;

use coevo::experiment::grid::SweepFailure;
use coevo::run::RunFailure;

/// Why a command failed.
#[derive(Debug)]
pub enum CliError {
    /// A run, sweep, merge or plot failed: `error: <failure>`, with the failure's own exit
    /// code (2 bad input, 1 failure while running, 130 interrupted).
    Run(RunFailure),
    /// A sweep or merge ended with points failed or interrupted, or could not run: `error:
    /// <failure>` (listing the points), with the failure's own exit code (1 points failed,
    /// 130 interrupted, or the run failure's).
    Sweep(SweepFailure),
    /// Scenario diagnostics, printed as they are (each already says `error: FILE:LINE:COL`
    /// and carries its hints), one after the other; exit code 2.
    Scenario(Vec<String>),
    /// Bad input found by the CLI itself (a malformed `--shard`, no plugin folder):
    /// `error: <message>`, exit code 2.
    BadInput(String),
    /// A failure while working (a benchmark's round failed, stdout closed): `error:
    /// <message>`, exit code 1.
    Runtime(String),
}

impl CliError {
    /// The process exit code of this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            // RunFailure::exit_code is 1, 2 or 130: it fits.
            CliError::Run(e) => u8::try_from(e.exit_code()).unwrap_or(1),
            CliError::Sweep(e) => u8::try_from(e.exit_code()).unwrap_or(1),
            CliError::Scenario(_) | CliError::BadInput(_) => 2,
            CliError::Runtime(_) => 1,
        }
    }
}

/// What stderr shows, without the final newline.
impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Run(e) => write!(f, "error: {e}"),
            CliError::Sweep(e) => write!(f, "error: {e}"),
            CliError::Scenario(diagnostics) => f.write_str(&diagnostics.join("\n")),
            CliError::BadInput(m) | CliError::Runtime(m) => write!(f, "error: {m}"),
        }
    }
}

impl From<RunFailure> for CliError {
    fn from(e: RunFailure) -> Self {
        CliError::Run(e)
    }
}

impl From<SweepFailure> for CliError {
    fn from(e: SweepFailure) -> Self {
        match e {
            SweepFailure::Run(e) => CliError::Run(e),
            e => CliError::Sweep(e),
        }
    }
}

impl From<coevo::scenario::ScenarioErrors> for CliError {
    fn from(e: coevo::scenario::ScenarioErrors) -> Self {
        CliError::Scenario(vec![e.to_string()])
    }
}
