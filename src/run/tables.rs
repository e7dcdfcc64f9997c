//! The tables a run appends to round by round, in the scenario's `output.format`: created
//! fresh, or cut back to a checkpoint; marked at checkpoints; closed when the loop ends. A
//! run that keeps its metrics in memory ([`super::Destination`]) has them as Arrow batches
//! beside (or instead of) the files.

use std::path::{Path, PathBuf};

use super::{RunFailure, io_error};
use crate::diagnostics::DriftChains;
use crate::output::MetricsWriter;
use crate::output::parquet::{MetricsBatches, TableMark};
use crate::output::phases::{LastPhases, PhasesWriter};
use crate::output::table::{AggregateTable, MetricsTable, table_path};
use crate::scenario::{Scenario, TableFormat};

/// The tables a run appends to round by round, each with its file: `metrics`, `aggregate`
/// (when [`writes_aggregate`](crate::scenario::OutputSpec::writes_aggregate)) and
/// `phases.csv` (a run's; a stability run writes its divergence table only), and the metrics
/// kept in memory when the run's destination asks for them.
pub(crate) struct Tables {
    /// `None`: a run that writes no folder.
    pub(super) metrics: Option<(MetricsTable, PathBuf)>,
    pub(super) aggregate: Option<(AggregateTable, PathBuf)>,
    /// The path is empty for a run that writes no folder (the writer then keeps the last
    /// phases only).
    pub(super) phases: Option<(PhasesWriter, PathBuf)>,
    /// The metric rows written, kept in memory too.
    pub(super) kept: Option<MetricsBatches>,
}

/// What the tables of a run kept in memory, once closed.
#[derive(Default)]
pub(super) struct Kept {
    /// The metrics table, if it was kept.
    pub(super) metrics: Option<Vec<arrow_array::RecordBatch>>,
    /// The last recorded phase of every model and replicate.
    pub(super) last_phases: LastPhases,
}

/// The tables every format has, by name (what a folder's stale tables are looked for among).
const STEMS: [&str; 2] = ["metrics", "aggregate"];

/// The tables of another run that a run of `scenario` would leave in `out_dir` beside its own,
/// each with why: those of the other format, and an aggregate table this run does not write.
pub(super) fn stale_tables(out_dir: &Path, scenario: &Scenario) -> Vec<(PathBuf, String)> {
    let output = &scenario.output;
    let mut stale = Vec::new();
    for stem in STEMS {
        for format in [TableFormat::Csv, TableFormat::Parquet] {
            let path = table_path(out_dir, stem, format);
            if !path.exists() {
                continue;
            }
            if format != output.format {
                stale.push((path, format!("a {format:?} table, but this run writes output.format: {:?}", output.format)));
            } else if stem == "aggregate" && !output.writes_aggregate(scenario.replicates) {
                stale.push((
                    path,
                    format!(
                        "an aggregate table, which this run does not write (output.aggregate: {:?} with {} replicate(s))",
                        output.aggregate, scenario.replicates
                    ),
                ));
            }
        }
    }
    stale
}

impl Tables {
    /// The table of a run that writes one tidy table only (a stability run's divergence).
    pub(super) fn single(table: &Path) -> Result<Self, RunFailure> {
        let writer = MetricsWriter::create(table).map_err(io_error(table))?;
        Ok(Tables {
            metrics: Some((MetricsTable::Csv(writer, table.to_path_buf()), table.to_path_buf())),
            aggregate: None,
            phases: None,
            kept: None,
        })
    }

    /// The tables of a run that writes no folder: the metrics in memory, the phases labelled
    /// (their last labels kept), no aggregate (a caller aggregates the kept metrics as it likes).
    pub(super) fn in_memory(scenario: &Scenario) -> Self {
        Tables {
            metrics: None,
            aggregate: None,
            phases: Some((PhasesWriter::in_memory(&scenario.diagnostics), PathBuf::new())),
            kept: Some(MetricsBatches::default()),
        }
    }

    /// Keeps the metrics in memory as well as in their file.
    pub(super) fn keeping(mut self) -> Self {
        self.kept = Some(MetricsBatches::default());
        self
    }

    /// Creates the tables in `out_dir`.
    pub(super) fn create(out_dir: &Path, scenario: &Scenario) -> Result<Self, RunFailure> {
        let format = scenario.output.format;
        let metrics = table_path(out_dir, "metrics", format);
        let aggregate = scenario.output.writes_aggregate(scenario.replicates).then(|| table_path(out_dir, "aggregate", format));
        let phases = out_dir.join("phases.csv");
        Ok(Tables {
            metrics: Some((MetricsTable::create(&metrics, format).map_err(io_error(&metrics))?, metrics)),
            aggregate: match aggregate {
                Some(path) => Some((AggregateTable::create(&path, format).map_err(io_error(&path))?, path)),
                None => None,
            },
            phases: Some((PhasesWriter::create(&phases, &scenario.diagnostics).map_err(io_error(&phases))?, phases)),
            kept: None,
        })
    }

    /// Cuts the tables in `out_dir` back to a checkpoint's marks and opens them to append;
    /// `phases.csv` is cut back to `phases_bytes` and labelled on from the checkpoint's
    /// drift chains.
    pub(super) fn resume(
        out_dir: &Path,
        scenario: &Scenario,
        (metrics, aggregate): (&TableMark, &TableMark),
        phases_bytes: u64,
        chains: DriftChains,
    ) -> Result<Self, RunFailure> {
        let format = scenario.output.format;
        let bad = |path: &Path| {
            let path = path.to_path_buf();
            move |e: std::io::Error| match e.kind() {
                std::io::ErrorKind::InvalidData => RunFailure::BadInput(e.to_string()),
                _ => RunFailure::Io { path, source: e },
            }
        };
        let metrics_path = table_path(out_dir, "metrics", format);
        let metrics = MetricsTable::resume(&metrics_path, format, metrics).map_err(bad(&metrics_path))?;
        let aggregate = match scenario.output.writes_aggregate(scenario.replicates).then(|| table_path(out_dir, "aggregate", format)) {
            Some(path) => Some((AggregateTable::resume(&path, format, aggregate).map_err(bad(&path))?, path)),
            None => None,
        };
        let phases = out_dir.join("phases.csv");
        let have = std::fs::metadata(&phases).map_err(io_error(&phases))?.len();
        if have < phases_bytes {
            return Err(RunFailure::BadInput(format!(
                "{} has {have} bytes but the checkpoint was taken after {phases_bytes}: the table was truncated or replaced",
                phases.display()
            )));
        }
        Ok(Tables {
            metrics: Some((metrics, metrics_path)),
            aggregate,
            phases: Some((PhasesWriter::resume(&phases, phases_bytes, chains).map_err(io_error(&phases))?, phases)),
            kept: None,
        })
    }

    /// Checks a checkpoint's marks against the files in `out_dir` without touching them:
    /// every table is at least as long as its mark, and each mark ends a whole row (a CSV
    /// mark is past the header and just after a newline; a Parquet mark is past the file's
    /// magic bytes). [`Tables::resume`] cuts the tables back only once all of them pass.
    pub(super) fn check_marks(
        out_dir: &Path,
        scenario: &Scenario,
        (metrics, aggregate): (&TableMark, &TableMark),
        phases_bytes: u64,
    ) -> Result<(), String> {
        let format = scenario.output.format;
        let mut tables = vec![(table_path(out_dir, "metrics", format), metrics.bytes, format)];
        if scenario.output.writes_aggregate(scenario.replicates) {
            tables.push((table_path(out_dir, "aggregate", format), aggregate.bytes, format));
        }
        tables.push((out_dir.join("phases.csv"), phases_bytes, TableFormat::Csv));
        for (path, mark, format) in tables {
            check_mark(&path, mark, format)?;
        }
        Ok(())
    }

    /// The length of `phases.csv` after the rounds written so far (its rows are flushed
    /// round by round), and its drift chains: what a checkpoint stores of the phase labels.
    pub(super) fn phases_mark(&self) -> Result<(u64, DriftChains), RunFailure> {
        let (writer, path) = self.phases.as_ref().expect("a run's tables include the phases");
        let len = std::fs::metadata(path).map_err(io_error(path))?.len();
        Ok((len, writer.chains().clone()))
    }

    /// Where `metrics` and `aggregate` (a default mark when there is none) stand after the
    /// rounds written so far: a checkpoint's marks.
    pub(super) fn marks(&mut self) -> Result<(TableMark, TableMark), RunFailure> {
        let (metrics, path) = self.metrics.as_mut().expect("checkpoints are taken of runs that write their tables");
        let metrics = metrics.mark().map_err(io_error(path))?;
        let aggregate = match &mut self.aggregate {
            Some((table, path)) => table.mark().map_err(io_error(path))?,
            None => TableMark::default(),
        };
        Ok((metrics, aggregate))
    }

    /// Ends the tables: every round written is in their files; what was kept in memory is
    /// returned, however the files closed.
    pub(super) fn close(self) -> (Result<(), RunFailure>, Kept) {
        let kept = Kept {
            metrics: self.kept.map(MetricsBatches::finish),
            last_phases: self.phases.map(|(p, _)| p.last_phases().clone()).unwrap_or_default(),
        };
        let closed = (|| {
            if let Some((metrics, path)) = self.metrics {
                metrics.close().map_err(io_error(&path))?;
            }
            if let Some((aggregate, path)) = self.aggregate {
                aggregate.close().map_err(io_error(&path))?;
            }
            Ok(())
        })();
        (closed, kept)
    }
}

/// Checks one table's mark (see [`Tables::check_marks`]).
fn check_mark(path: &Path, mark: u64, format: TableFormat) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let have = file.metadata().map_err(|e| format!("{}: {e}", path.display()))?.len();
    if have < mark {
        return Err(format!(
            "{} has {have} bytes but the checkpoint was taken after {mark}: the table was truncated or replaced",
            path.display()
        ));
    }
    // A CSV table starts with its header line; a Parquet file with its 4 magic bytes.
    let least = match format {
        TableFormat::Csv => {
            1 + std::io::BufRead::lines(std::io::BufReader::new(&file)).next().map_or(0, |l| l.map_or(0, |l| l.len() as u64))
        }
        TableFormat::Parquet => 4,
    };
    if mark < least {
        return Err(format!("the checkpoint cuts {} at byte {mark}, inside its header: the checkpoint is corrupt", path.display()));
    }
    if format == TableFormat::Csv {
        let mut last = [0u8];
        file.seek(SeekFrom::Start(mark - 1)).and_then(|_| file.read_exact(&mut last)).map_err(|e| format!("{}: {e}", path.display()))?;
        if last[0] != b'\n' {
            return Err(format!("the checkpoint cuts {} at byte {mark}, inside a row: the checkpoint is corrupt", path.display()));
        }
    }
    Ok(())
}
