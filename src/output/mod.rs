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
pub mod files;
pub mod parquet;
pub mod phases;
mod summary;
pub mod table;
pub mod tidy;

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

pub use files::{write_atomic, write_atomic_with};

pub use summary::{ModelSummary, StoppedEarly, Summary, SummaryTracker, format_level};

use crate::metrics::MetricRow;
pub use crate::metrics::format_value;

/// Appends rounds of metric rows to `metrics.csv`.
pub struct MetricsWriter {
    file: File,
    line: String,
    /// Bytes of the header and the whole rounds written: where a failed write is cut back to.
    whole: u64,
}

/// Header of `metrics.csv`.
pub const METRICS_HEADER: &str = "replicate,round,model,text,metric,value\n";

impl MetricsWriter {
    /// Creates (truncates) `path` and writes the header.
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut file = files::create(path)?;
        file.write_all(METRICS_HEADER.as_bytes())?;
        file.flush()?;
        Ok(MetricsWriter { file, line: String::new(), whole: METRICS_HEADER.len() as u64 })
    }

    /// Opens an existing table to append to (resuming a run from a checkpoint).
    pub fn append(path: &Path) -> io::Result<Self> {
        let file = files::append(path)?;
        let whole = file.metadata()?.len();
        Ok(MetricsWriter { file, line: String::new(), whole })
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
        append_whole(&mut self.file, self.line.as_bytes(), &mut self.whole)
    }
}

/// Appends one round's `bytes` to a table whose whole rounds end at `whole` bytes, and
/// moves `whole` past them. A write that fails part way (a full disk, a file size limit) is
/// cut back to the last whole round, so the table never ends in a torn row; the write's error
/// is returned (the cut is best effort: a disk that refuses it has refused the write first).
pub fn append_whole(file: &mut File, bytes: &[u8], whole: &mut u64) -> io::Result<()> {
    match file.write_all(bytes).and_then(|()| file.flush()) {
        Ok(()) => {
            *whole += bytes.len() as u64;
            Ok(())
        }
        Err(e) => {
            let _ = file.set_len(*whole);
            Err(e)
        }
    }
}
