//! The two tables a run appends to round by round, `metrics` and `aggregate`, in the format the
//! scenario asks for (`output.format`): one type per table whatever the format, so the round
//! loop is written once.
//!
//! Each table is created fresh, or resumed from a checkpoint's [`TableMark`] (cut back to it);
//! [`mark`](MetricsTable::mark) says where it stands at a checkpoint (writing the rows a
//! Parquet table buffers as a row group first), and [`close`](MetricsTable::close) ends it (a
//! Parquet table writes its buffered rows; the file is complete after it).

use std::io;
use std::path::{Path, PathBuf};

use super::MetricsWriter;
use super::aggregate::AggregateWriter;
use super::parquet::{AggregateParquet, MetricsParquet, TableMark};
use crate::metrics::MetricRow;
use crate::scenario::TableFormat;

/// The file of table `stem` (`metrics`, `aggregate`) in `dir`, in `format`.
pub fn table_path(dir: &Path, stem: &str, format: TableFormat) -> PathBuf {
    dir.join(format!("{stem}.{}", format.extension()))
}

/// The file of table `stem` that `dir` holds, in whichever format: `None` if there is none; an
/// error naming both if there are two (a folder written by coevo never has both: a run
/// removes or refuses the other format's tables).
pub fn find_table(dir: &Path, stem: &str) -> io::Result<Option<PathBuf>> {
    let [csv, parquet] = [TableFormat::Csv, TableFormat::Parquet].map(|f| table_path(dir, stem, f));
    match (csv.exists(), parquet.exists()) {
        (true, true) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} and {} are both there: remove the one left by another run", csv.display(), parquet.display()),
        )),
        (true, false) => Ok(Some(csv)),
        (false, true) => Ok(Some(parquet)),
        (false, false) => Ok(None),
    }
}

/// Cuts the CSV table at `path` back to `mark` (a checkpoint's length), checking it is at
/// least that long.
fn cut_csv(path: &Path, mark: &TableMark) -> io::Result<()> {
    let file = super::files::open_rw(path)?;
    let have = file.metadata()?.len();
    if have < mark.bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} has {have} bytes but the checkpoint was taken after {}: the table was truncated or replaced",
                path.display(),
                mark.bytes
            ),
        ));
    }
    file.set_len(mark.bytes)
}

fn csv_mark(path: &Path) -> io::Result<TableMark> {
    Ok(TableMark { bytes: std::fs::metadata(path)?.len(), footer: None })
}

/// The tidy metrics table (`metrics.csv` or `metrics.parquet`).
pub enum MetricsTable {
    /// `metrics.csv`.
    Csv(MetricsWriter, PathBuf),
    /// `metrics.parquet` (boxed: its encoders make it large, and there is one per run).
    Parquet(Box<MetricsParquet>),
}

impl MetricsTable {
    /// Creates (truncates) the table at `path`, in `format`.
    pub fn create(path: &Path, format: TableFormat) -> io::Result<Self> {
        Ok(match format {
            TableFormat::Csv => MetricsTable::Csv(MetricsWriter::create(path)?, path.to_path_buf()),
            TableFormat::Parquet => MetricsTable::Parquet(Box::new(MetricsParquet::create(path)?)),
        })
    }

    /// Cuts the table at `path` back to a checkpoint's `mark` and opens it to append.
    pub fn resume(path: &Path, format: TableFormat, mark: &TableMark) -> io::Result<Self> {
        Ok(match format {
            TableFormat::Csv => {
                cut_csv(path, mark)?;
                MetricsTable::Csv(MetricsWriter::append(path)?, path.to_path_buf())
            }
            TableFormat::Parquet => MetricsTable::Parquet(Box::new(MetricsParquet::resume(path, mark)?)),
        })
    }

    /// Appends one round's rows of every replicate, in replicate order.
    pub fn write_round<'a>(&mut self, replicates: impl IntoIterator<Item = (u64, &'a [MetricRow])>) -> io::Result<()> {
        match self {
            MetricsTable::Csv(w, _) => w.write_round(replicates),
            MetricsTable::Parquet(w) => w.write_round(replicates),
        }
    }

    /// Where the table ends now, every round written so far included (a checkpoint's mark).
    pub fn mark(&mut self) -> io::Result<TableMark> {
        match self {
            MetricsTable::Csv(_, path) => csv_mark(path),
            MetricsTable::Parquet(w) => w.mark(),
        }
    }

    /// Ends the table: every round written is in the file.
    pub fn close(self) -> io::Result<()> {
        match self {
            MetricsTable::Csv(..) => Ok(()),
            MetricsTable::Parquet(w) => (*w).close(),
        }
    }
}

/// The table of statistics over replicates (`aggregate.csv` or `aggregate.parquet`).
pub enum AggregateTable {
    /// `aggregate.csv`.
    Csv(AggregateWriter, PathBuf),
    /// `aggregate.parquet` (boxed: its encoders make it large, and there is one per run).
    Parquet(Box<AggregateParquet>),
}

impl AggregateTable {
    /// Creates (truncates) the table at `path`, in `format`.
    pub fn create(path: &Path, format: TableFormat) -> io::Result<Self> {
        Ok(match format {
            TableFormat::Csv => AggregateTable::Csv(AggregateWriter::create(path)?, path.to_path_buf()),
            TableFormat::Parquet => AggregateTable::Parquet(Box::new(AggregateParquet::create(path)?)),
        })
    }

    /// Cuts the table at `path` back to a checkpoint's `mark` and opens it to append.
    pub fn resume(path: &Path, format: TableFormat, mark: &TableMark) -> io::Result<Self> {
        Ok(match format {
            TableFormat::Csv => {
                cut_csv(path, mark)?;
                AggregateTable::Csv(AggregateWriter::append(path)?, path.to_path_buf())
            }
            TableFormat::Parquet => AggregateTable::Parquet(Box::new(AggregateParquet::resume(path, mark)?)),
        })
    }

    /// Summarises one round's rows of every replicate (in replicate order) and appends them.
    pub fn write_round<'a>(&mut self, replicates: impl IntoIterator<Item = &'a [MetricRow]>) -> io::Result<()> {
        match self {
            AggregateTable::Csv(w, _) => w.write_round(replicates),
            AggregateTable::Parquet(w) => w.write_round(replicates),
        }
    }

    /// Where the table ends now, every round written so far included (a checkpoint's mark).
    pub fn mark(&mut self) -> io::Result<TableMark> {
        match self {
            AggregateTable::Csv(_, path) => csv_mark(path),
            AggregateTable::Parquet(w) => w.mark(),
        }
    }

    /// Ends the table: every round written is in the file.
    pub fn close(self) -> io::Result<()> {
        match self {
            AggregateTable::Csv(..) => Ok(()),
            AggregateTable::Parquet(w) => (*w).close(),
        }
    }
}
