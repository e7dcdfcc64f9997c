//! The tables a run appends to round by round, created fresh or cut back to a checkpoint.

use std::path::{Path, PathBuf};

use super::{RunFailure, io_error};
use crate::checkpoint::Checkpoint;
use crate::diagnostics::DriftChains;
use crate::output::MetricsWriter;
use crate::output::aggregate::AggregateWriter;
use crate::output::phases::PhasesWriter;
use crate::scenario::Scenario;

/// The tables a run appends to round by round: `metrics.csv`, `aggregate.csv` and
/// `phases.csv`.
pub(crate) struct Tables {
    pub(super) metrics: MetricsWriter,
    pub(super) aggregate: AggregateWriter,
    pub(super) phases: PhasesWriter,
    pub(super) paths: TablePaths,
}

/// Where a run's tables are.
pub(crate) struct TablePaths {
    pub(super) metrics: PathBuf,
    pub(super) aggregate: PathBuf,
    pub(super) phases: PathBuf,
}

impl TablePaths {
    pub(super) fn of(out_dir: &Path) -> Self {
        TablePaths { metrics: out_dir.join("metrics.csv"), aggregate: out_dir.join("aggregate.csv"), phases: out_dir.join("phases.csv") }
    }

    /// Current byte lengths of `metrics.csv`, `aggregate.csv` and `phases.csv`.
    pub(super) fn lengths(&self) -> Result<(u64, u64, u64), RunFailure> {
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).map_err(io_error(p));
        Ok((len(&self.metrics)?, len(&self.aggregate)?, len(&self.phases)?))
    }
}

impl Tables {
    /// Creates the tables (with their headers) in `out_dir`.
    pub(super) fn create(out_dir: &Path, scenario: &Scenario) -> Result<Self, RunFailure> {
        let paths = TablePaths::of(out_dir);
        Ok(Tables {
            metrics: MetricsWriter::create(&paths.metrics).map_err(io_error(&paths.metrics))?,
            aggregate: AggregateWriter::create(&paths.aggregate).map_err(io_error(&paths.aggregate))?,
            phases: PhasesWriter::create(&paths.phases, &scenario.diagnostics).map_err(io_error(&paths.phases))?,
            paths,
        })
    }

    /// Cuts the tables back to a checkpoint's lengths and opens them to append, the phase
    /// labels continuing from the checkpoint's drift chains.
    pub(super) fn truncate(out_dir: &Path, checkpoint: &Checkpoint, chains: DriftChains) -> Result<Self, RunFailure> {
        let paths = TablePaths::of(out_dir);
        let c = checkpoint;
        for (path, len) in [(&paths.metrics, c.metrics_bytes), (&paths.aggregate, c.aggregate_bytes), (&paths.phases, c.phases_bytes)] {
            let file = std::fs::OpenOptions::new().write(true).open(path).map_err(io_error(path))?;
            let have = file.metadata().map_err(io_error(path))?.len();
            if have < len {
                return Err(RunFailure::BadInput(format!(
                    "{} has {have} bytes but the checkpoint was taken after {len}: the table was truncated or replaced",
                    path.display()
                )));
            }
            file.set_len(len).map_err(io_error(path))?;
        }
        Ok(Tables {
            metrics: MetricsWriter::append(&paths.metrics).map_err(io_error(&paths.metrics))?,
            aggregate: AggregateWriter::append(&paths.aggregate).map_err(io_error(&paths.aggregate))?,
            phases: PhasesWriter::resume(&paths.phases, c.phases_bytes, chains).map_err(io_error(&paths.phases))?,
            paths,
        })
    }
}
