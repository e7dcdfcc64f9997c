//! `phases.csv`: the drift phase of every conditional model per replicate and round, written
//! as the run goes from the labels [`DriftChains`] emits (see `crate::diagnostics` for the
//! definitions). Rows are in the order of the metrics table: by round, then replicate, then model.
//! The chains see every round; only the rounds the `output` section records are written.
//! A run that writes no folder keeps only each replicate's last recorded phase per model
//! ([`PhasesWriter::last_phases`]: what a sweep's `stationary_fraction` needs).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use crate::diagnostics::{DiagnosticsSpec, DriftChains, PhaseRecord};
use crate::metrics::{MetricRow, format_value as f};

/// Header of `phases.csv`.
pub const PHASES_HEADER: &str = "replicate,round,model,local_drift,cumulative_drift,local_change,cumulative_change,phase\n";

/// The phase of every (model, replicate) at the last round recorded for it.
pub type LastPhases = BTreeMap<(String, u64), String>;

/// Labels phases as rounds arrive and appends them to `phases.csv` (or, without a file, keeps
/// the last phase of each model and replicate only).
pub struct PhasesWriter {
    chains: DriftChains,
    /// `None`: a run that writes no folder.
    file: Option<File>,
    /// The phase of every (model, replicate) at its last recorded round.
    last: LastPhases,
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
        Ok(PhasesWriter {
            chains: DriftChains::new(spec),
            file: Some(file),
            last: LastPhases::new(),
            line: String::new(),
            whole: PHASES_HEADER.len() as u64,
        })
    }

    /// Labels phases without writing a file: only [`last_phases`](Self::last_phases) is kept.
    pub fn in_memory(spec: &DiagnosticsSpec) -> Self {
        PhasesWriter { chains: DriftChains::new(spec), file: None, last: LastPhases::new(), line: String::new(), whole: 0 }
    }

    /// The phase of every (model, replicate) at the last round recorded for it (a fresh run's;
    /// a resumed run's since it was resumed).
    pub fn last_phases(&self) -> &LastPhases {
        &self.last
    }

    /// Opens an existing `phases.csv` cut back to `len` bytes (a checkpoint's) to append to,
    /// with the chains as they were at that checkpoint.
    pub fn resume(path: &Path, len: u64, chains: DriftChains) -> io::Result<Self> {
        super::files::open_rw(path)?.set_len(len)?;
        Ok(PhasesWriter { chains, file: Some(super::files::append(path)?), last: LastPhases::new(), line: String::new(), whole: len })
    }

    /// The chains' state (what a checkpoint stores).
    pub fn chains(&self) -> &DriftChains {
        &self.chains
    }

    /// Labels one replicate's rows of one round, keeping the labels for
    /// [`end_round`](Self::end_round) if `record`.
    pub fn observe(&mut self, replicate: u64, rows: &[MetricRow], record: bool) {
        use std::fmt::Write as _;
        let (out, last, to_file) = (&mut self.line, &mut self.last, self.file.is_some());
        self.chains.observe(replicate, rows, |r: PhaseRecord<'_>| {
            if record {
                last.insert((r.model.to_string(), r.replicate), r.phase.label().to_string());
            }
            if record && to_file {
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
        let written = match &mut self.file {
            Some(file) => super::append_whole(file, self.line.as_bytes(), &mut self.whole),
            None => Ok(()),
        };
        self.line.clear();
        written
    }
}
