//! `phases.csv`: the drift phase of every conditional model per replicate and round, written
//! as the run goes from the labels [`DriftChains`] emits (see `crate::diagnostics` for the
//! definitions). Rows are in the order of the metrics table: by round, then replicate, then model.
//! The chains see every round; only the rounds the `output` section records are written.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::diagnostics::{DiagnosticsSpec, DriftChains, PhaseRecord};
use crate::metrics::{MetricRow, format_value as f};

/// Header of `phases.csv`.
pub const PHASES_HEADER: &str = "replicate,round,model,local_drift,cumulative_drift,local_change,cumulative_change,phase\n";

/// Labels phases as rounds arrive and appends them to `phases.csv`.
pub struct PhasesWriter {
    chains: DriftChains,
    out: BufWriter<File>,
    error: Option<io::Error>,
}

impl PhasesWriter {
    /// Creates (truncates) `path` and writes the header.
    pub fn create(path: &Path, spec: &DiagnosticsSpec) -> io::Result<Self> {
        let mut out = BufWriter::new(File::create(path)?);
        out.write_all(PHASES_HEADER.as_bytes())?;
        Ok(PhasesWriter { chains: DriftChains::new(spec), out, error: None })
    }

    /// Opens an existing `phases.csv` cut back to `len` bytes (a checkpoint's) to append to,
    /// with the chains as they were at that checkpoint.
    pub fn resume(path: &Path, len: u64, chains: DriftChains) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        let out = BufWriter::new(std::fs::OpenOptions::new().append(true).open(path)?);
        Ok(PhasesWriter { chains, out, error: None })
    }

    /// The chains' state (what a checkpoint stores).
    pub fn chains(&self) -> &DriftChains {
        &self.chains
    }

    /// Labels one replicate's rows of one round, writing the labels if `record`; the first
    /// write error is kept for [`end_round`](Self::end_round).
    pub fn observe(&mut self, replicate: u64, rows: &[MetricRow], record: bool) {
        let (out, error) = (&mut self.out, &mut self.error);
        self.chains.observe(replicate, rows, |r: PhaseRecord<'_>| {
            if record && error.is_none() {
                let written = writeln!(
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
                if let Err(e) = written {
                    *error = Some(e);
                }
            }
        });
    }

    /// Flushes the round's labels to the file (a killed run leaves whole rounds, bar the one
    /// in flight) and reports the first error since the last call.
    pub fn end_round(&mut self) -> io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.out.flush()
    }
}
