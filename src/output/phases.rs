//! `phases.csv`: the drift phase of every conditional model per replicate and round, written
//! as the run goes from the labels [`DriftChains`] emits (see `crate::diagnostics` for the
//! definitions). Rows are in the order of the metrics table: by round, then replicate, then model.
//! The chains see every round; only the rounds the `output` section records are written.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use crate::diagnostics::{DiagnosticsSpec, DriftChains, PhaseRecord};
use crate::metrics::{MetricRow, format_value as f};

/// Header of `phases.csv`.
pub const PHASES_HEADER: &str = "replicate,round,model,local_drift,cumulative_drift,local_change,cumulative_change,phase\n";

/// Labels phases as rounds arrive and appends them to `phases.csv`.
pub struct PhasesWriter {
    chains: DriftChains,
    file: File,
    /// The round's rows, formatted as they come and written whole by
    /// [`end_round`](Self::end_round).
    line: String,
    /// Bytes of the header and the whole rounds written (see [`super::append_whole`]).
    whole: u64,
}

impl PhasesWriter {
    /// Creates (truncates) `path` and writes the header.
    pub fn create(path: &Path, spec: &DiagnosticsSpec) -> io::Result<Self> {
        let mut file = super::files::create(path)?;
        file.write_all(PHASES_HEADER.as_bytes())?;
        Ok(PhasesWriter { chains: DriftChains::new(spec), file, line: String::new(), whole: PHASES_HEADER.len() as u64 })
    }

    /// Opens an existing `phases.csv` cut back to `len` bytes (a checkpoint's) to append to,
    /// with the chains as they were at that checkpoint.
    pub fn resume(path: &Path, len: u64, chains: DriftChains) -> io::Result<Self> {
        super::files::open_rw(path)?.set_len(len)?;
        Ok(PhasesWriter { chains, file: super::files::append(path)?, line: String::new(), whole: len })
    }

    /// The chains' state (what a checkpoint stores).
    pub fn chains(&self) -> &DriftChains {
        &self.chains
    }

    /// Labels one replicate's rows of one round, keeping the labels for
    /// [`end_round`](Self::end_round) if `record`.
    pub fn observe(&mut self, replicate: u64, rows: &[MetricRow], record: bool) {
        use std::fmt::Write as _;
        let out = &mut self.line;
        self.chains.observe(replicate, rows, |r: PhaseRecord<'_>| {
            if record {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{}",
                    r.replicate,
                    r.round,
                    r.model,
                    f(r.local_drift),
                    f(r.cumulative_drift),
                    f(r.local_change),
                    f(r.cumulative_change),
                    r.phase
                );
            }
        });
    }

    /// Writes the round's labels to the file in one write (a killed run leaves whole rounds,
    /// bar the one in flight; a failed write is cut back to the last whole round).
    pub fn end_round(&mut self) -> io::Result<()> {
        let written = super::append_whole(&mut self.file, self.line.as_bytes(), &mut self.whole);
        self.line.clear();
        written
    }
}
