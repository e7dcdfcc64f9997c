//! The round loop: worlds advance round-synchronously in parallel, each round's rows are
//! written in replicate order (so files do not depend on the thread count), observed, and
//! checkpointed; an interrupt stops the loop between rounds.

use std::path::Path;

use rayon::prelude::*;

use super::tables::Tables;
use super::{RunFailure, RunOptions, io_error};
use crate::metrics::MetricRow;
use crate::scenario::Scenario;
use crate::world::{RunError, Simulation};

/// Something that advances round by round and reports tidy metric rows: one world, or the
/// twin worlds of a recursive-stability run.
pub trait Rounds: Send {
    /// Measures the initial state (round 0) into [`rows`](Self::rows).
    fn measure(&mut self) -> Result<(), RunError>;
    /// Runs one round and measures it into [`rows`](Self::rows).
    fn step(&mut self) -> Result<(), RunError>;
    /// The rows of the last measured round.
    fn rows(&self) -> &[MetricRow];
}

impl Rounds for Simulation {
    fn measure(&mut self) -> Result<(), RunError> {
        Simulation::measure(self).map(|_| ())
    }
    fn step(&mut self) -> Result<(), RunError> {
        Simulation::step(self).map(|_| ())
    }
    fn rows(&self) -> &[MetricRow] {
        &self.world().resource::<crate::world::Measurements>().0
    }
}

/// Advances `worlds` (one per replicate) round-synchronously, in parallel, from round 0 to
/// `scenario.rounds`, appending every round's rows in replicate order to the tidy table at
/// `table` (CSV) and showing them to `observe`. Returns the last completed round and how it
/// ended; rounds completed before a failure are on disk.
pub fn drive<W: Rounds>(
    worlds: &mut [W],
    scenario: &Scenario,
    options: &RunOptions,
    table: &Path,
    observe: impl FnMut(usize, &[MetricRow]),
) -> (u64, Result<(), RunFailure>) {
    let tables = match Tables::single(table) {
        Ok(t) => t,
        Err(e) => return (0, Err(e)),
    };
    drive_from(worlds, scenario, options, tables, 0, observe, |_, _, _| Ok(()))
}

/// The round loop of [`drive`] and of a run (from round `start`, writing its [`Tables`] and
/// calling `after_round`, for checkpoints, once a round's rows are written). The tables are
/// closed however the loop ends (completed, failed or interrupted), so every round written is
/// in them.
pub(super) fn drive_from<W: Rounds>(
    worlds: &mut [W],
    scenario: &Scenario,
    options: &RunOptions,
    mut tables: Tables,
    start: u64,
    mut observe: impl FnMut(usize, &[MetricRow]),
    mut after_round: impl FnMut(u64, &mut [W], &mut Tables) -> Result<(), RunFailure>,
) -> (u64, Result<(), RunFailure>) {
    let progress = options.progress.as_deref();
    // Training rounds 1..start are done already when a checkpoint is resumed.
    if let Some(p) = progress {
        p.start(&scenario.name, scenario.rounds, start.saturating_sub(1));
    }
    let mut completed = start.saturating_sub(1);
    let mut result = Ok(());
    for round in start..=scenario.rounds {
        let outcomes: Vec<Result<(), RunError>> = worlds.par_iter_mut().map(|w| if round == 0 { w.measure() } else { w.step() }).collect();
        if let Some(e) = outcomes.into_iter().find_map(Result::err) {
            result = Err(e.into());
            break;
        }
        let (writer, table) = &mut tables.metrics;
        if let Err(e) = writer.write_round(worlds.iter().enumerate().map(|(r, w)| (r as u64, w.rows()))) {
            result = Err(io_error(table)(e));
            break;
        }
        if let Some((agg, path)) = &mut tables.aggregate
            && let Err(e) = agg.write_round(worlds.iter().map(|w| w.rows()))
        {
            result = Err(io_error(path)(e));
            break;
        }
        if let Some((labels, path)) = &mut tables.phases {
            for (r, w) in worlds.iter().enumerate() {
                labels.observe(r as u64, w.rows());
            }
            if let Err(e) = labels.end_round() {
                result = Err(io_error(path)(e));
                break;
            }
        }
        for (r, w) in worlds.iter().enumerate() {
            observe(r, w.rows());
        }
        completed = round;
        tracing::debug!(round, "round complete");
        // Round 0 measures the initial state: it is not a training round.
        if round > 0
            && let Some(p) = progress
        {
            p.advance(1);
        }
        if let Err(e) = after_round(round, worlds, &mut tables) {
            result = Err(e);
            break;
        }
        if round < scenario.rounds && options.interrupt.as_ref().is_some_and(|flag| flag.load(std::sync::atomic::Ordering::Relaxed)) {
            result = Err(RunFailure::Interrupted { round });
            break;
        }
    }
    // A failure to close the tables loses rows: it is the run's failure if it completed or was
    // interrupted (both promise every round on disk), else it is logged beside the failure
    // that ended the loop.
    if let Err(e) = tables.close() {
        match result {
            Ok(()) | Err(RunFailure::Interrupted { .. }) => result = Err(e),
            Err(_) => tracing::error!("closing the tables after the run failed: {e}"),
        }
    }
    if let Some(p) = progress {
        p.finish();
    }
    (completed, result)
}
