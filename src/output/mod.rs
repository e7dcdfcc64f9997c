//! Writers of a run's output folder.
//!
//! - `metrics`: tidy long table `replicate,round,model,text,metric,value`, one row per
//!   replicate, round, model, text (empty for model-level metrics) and metric, in the
//!   scenario's `output.format`:
//!   - `metrics.csv`: each round is appended with a single write and flushed, so a killed run
//!     leaves every completed round readable and at most the round in flight missing (or, if a
//!     SIGKILL lands inside that one write, cut short: see [`MetricsWriter::write_round`]);
//!   - `metrics.parquet` ([`parquet`]): written in row groups, a complete file after each, so a
//!     killed run leaves every row group written before it (unless the kill lands inside the
//!     write of one: see the module).
//!
//!   SIGINT and SIGTERM stop the CLI between rounds, so they never cut a round, and every
//!   table is closed with every completed round.
//! - `manifest.json`: coevo version, scenario file and hash, seed, resolved parameters, RNG
//!   algorithm, and how many rounds completed; rewritten atomically (write then rename).
//! - `summary.json`: final diversity and round of collapse per model, written at the end.
//! - [`aggregate`]: `aggregate`, every metric summarised over replicates per round (with at
//!   least 2 replicates, or when asked), in the same format.
//! - [`phases`]: `phases.csv`, the drift phase labels, streamed as rounds complete.
//! - [`table`]: the metrics and aggregate tables in either format, behind one type each.
//! - [`tidy`]: reading the tidy tables back (resume, sweeps, plots), whatever their format.

pub mod aggregate;
pub mod parquet;
pub mod phases;
mod summary;
pub mod table;
pub mod tidy;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use summary::{ModelSummary, StoppedEarly, Summary, SummaryTracker, format_level};

use crate::metrics::MetricRow;
pub use crate::metrics::format_value;

/// Appends rounds of metric rows to `metrics.csv`.
pub struct MetricsWriter {
    file: File,
    line: String,
}

/// Header of `metrics.csv`.
pub const METRICS_HEADER: &str = "replicate,round,model,text,metric,value\n";

impl MetricsWriter {
    /// Creates (truncates) `path` and writes the header.
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut file = File::create(path)?;
        file.write_all(METRICS_HEADER.as_bytes())?;
        file.flush()?;
        Ok(MetricsWriter { file, line: String::new() })
    }

    /// Opens an existing table to append to (resuming a run from a checkpoint).
    pub fn append(path: &Path) -> io::Result<Self> {
        Ok(MetricsWriter { file: fs::OpenOptions::new().append(true).open(path)?, line: String::new() })
    }

    /// Formats one round's rows of every replicate and appends them with a single write.
    pub fn write_round<'a>(&mut self, replicates: impl IntoIterator<Item = (u64, &'a [MetricRow])>) -> io::Result<()> {
        use std::fmt::Write as _;
        self.line.clear();
        for (replicate, rows) in replicates {
            for row in rows {
                let _ = write!(self.line, "{replicate},{},{},", row.round, row.model);
                if let Some(t) = row.text {
                    let _ = write!(self.line, "{t}");
                }
                let _ = writeln!(self.line, ",{},{}", row.metric, format_value(row.value));
            }
        }
        // What a kill can leave: the round is formatted in memory first, so nothing of it
        // reaches the file before all of it is ready, and it goes out in one write(2) of the
        // whole buffer (`File` is unbuffered; `write_all` loops only if the kernel takes part of
        // it). A SIGKILL while the round is computed or formatted therefore leaves whole rounds
        // only. The one remaining window is the write itself: Linux checks for a fatal signal
        // between page-cache pages, so a kill landing inside that system call (microseconds
        // per round) can end the file in a round cut at a page boundary, mid-line. No
        // append-only file rules that out (only rewriting the whole table and renaming it, at
        // quadratic cost); a reader that drops a last line without its newline is always safe.
        // SIGINT and SIGTERM, the signals of Ctrl-C, `kill` and batch schedulers, never cut a
        // round: the CLI turns them into a stop between rounds (`RunOptions::interrupt`).
        self.file.write_all(self.line.as_bytes())?;
        self.file.flush()
    }
}

/// Writes `contents` to `path` atomically: to a temporary file in the same folder, then
/// renamed over `path`, so a reader never sees a half-written file.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |out| out.write_all(contents))
}

/// [`write_atomic`] for contents produced piece by piece by `write` (e.g. a table streamed
/// from another file), through a buffered writer.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&mut io::BufWriter<File>) -> io::Result<()>) -> io::Result<()> {
    let tmp: PathBuf = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    write_through(&tmp, path, write)
}

/// [`write_atomic`] for a file that several processes may write at once (a sweep folder
/// shared by workers: `sweep.json`, `sweep.csv`): each writer has its own temporary file
/// (`NAME.PID-N.tmp`), so one writer never renames another's half-written file; the last
/// rename wins, whole.
pub fn write_atomic_shared(path: &Path, contents: &[u8]) -> io::Result<()> {
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!("{name}.{}-{n}.tmp", std::process::id()));
    write_through(&tmp, path, |out| out.write_all(contents))
}

/// Writes `tmp` with `write`, syncs it, and renames it over `path`.
fn write_through(tmp: &Path, path: &Path, write: impl FnOnce(&mut io::BufWriter<File>) -> io::Result<()>) -> io::Result<()> {
    {
        let mut out = io::BufWriter::new(File::create(tmp)?);
        write(&mut out)?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    fs::rename(tmp, path)
}
