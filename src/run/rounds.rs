//! The round loop: worlds advance round-synchronously in parallel, each round's rows are
//! written in replicate order (so files do not depend on the thread count), observed, and
//! checkpointed; an interrupt stops the loop between rounds.

use std::borrow::Cow;
use std::path::Path;

use rayon::prelude::*;

use super::tables::{Kept, Tables};
use super::{RunFailure, RunOptions, io_error};
use crate::metrics::MetricRow;
use crate::scenario::{OutputSpec, Scenario};
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
/// ended; rounds completed before a failure are on disk. Rounds are thinned by `output.every`
/// (the metric selection applies to runs' metric rows, not to this table's own quantities,
/// e.g. divergences), `observe` sees every round, and no world stops early.
pub fn drive<W: Rounds>(
    worlds: &mut [W],
    scenario: &Scenario,
    options: &RunOptions,
    table: &Path,
    mut observe: impl FnMut(usize, &[MetricRow]),
) -> (u64, Result<(), RunFailure>) {
    let tables = match Tables::single(table) {
        Ok(t) => t,
        Err(e) => return (0, Err(e)),
    };
    let record = OutputSpec { every: scenario.output.every, ..OutputSpec::default() };
    let loop_ = RoundLoop { scenario, options, record: &record, start: 0, live: vec![true; worlds.len()] };
    let observe = |r: usize, rows: &[MetricRow]| {
        observe(r, rows);
        false
    };
    let (completed, result, _) = loop_.run(worlds, tables, observe, |_, _, _| Ok(()));
    (completed, result)
}

/// The round loop of a run: from round `start`, writing its [`Tables`] as `scenario.output`
/// asks and calling `after_round` (checkpoints) once a round's rows are written. `observe`
/// sees every row of every live replicate and says whether the replicate stops early after
/// this round; `live` says which replicates still run (all of them, unless a checkpoint is
/// resumed after some stopped). The tables are closed however the loop ends (completed,
/// failed or interrupted), so every round written is in them; what they kept in memory is
/// returned.
#[expect(clippy::too_many_arguments, reason = "a run's worlds, scenario, options, tables, start round, live replicates and two hooks")]
pub(super) fn drive_from(
    worlds: &mut [Simulation],
    scenario: &Scenario,
    options: &RunOptions,
    tables: Tables,
    start: u64,
    live: Vec<bool>,
    observe: impl FnMut(usize, &[MetricRow]) -> bool,
    after_round: impl FnMut(u64, &mut [Simulation], &mut Tables) -> Result<(), RunFailure>,
) -> (u64, Result<(), RunFailure>, Kept) {
    RoundLoop { scenario, options, record: &scenario.output, start, live }.run(worlds, tables, observe, after_round)
}

/// The round loop shared by [`drive`] and [`drive_from`]: what it runs and records.
struct RoundLoop<'a> {
    scenario: &'a Scenario,
    options: &'a RunOptions,
    /// Which rounds and rows reach the tables.
    record: &'a OutputSpec,
    start: u64,
    /// Replicates still running.
    live: Vec<bool>,
}

impl RoundLoop<'_> {
    fn run<W: Rounds>(
        mut self,
        worlds: &mut [W],
        mut tables: Tables,
        mut observe: impl FnMut(usize, &[MetricRow]) -> bool,
        mut after_round: impl FnMut(u64, &mut [W], &mut Tables) -> Result<(), RunFailure>,
    ) -> (u64, Result<(), RunFailure>, Kept) {
        let (scenario, rounds) = (self.scenario, self.scenario.rounds);
        let progress = self.options.progress.as_deref();
        // Training rounds 1..start are done already when a checkpoint is resumed.
        if let Some(p) = progress {
            p.start(&scenario.name, rounds, self.start.saturating_sub(1));
        }
        let mut completed = self.start.saturating_sub(1);
        let mut result = Ok(());
        for round in self.start..=rounds {
            if !self.live.contains(&true) {
                break;
            }
            let live = &self.live;
            let outcomes: Vec<Result<(), RunError>> = worlds
                .par_iter_mut()
                .zip(live.par_iter())
                .map(|(w, &on)| {
                    if !on {
                        Ok(())
                    } else if round == 0 {
                        w.measure()
                    } else {
                        w.step()
                    }
                })
                .collect();
            if let Some(e) = outcomes.into_iter().find_map(Result::err) {
                // A round stopped part way by the interrupt flag is not written: the run ends
                // after the last whole round, as a stop between rounds does.
                result = Err(match e {
                    RunError::Interrupted { .. } => RunFailure::Interrupted { round: completed },
                    e => e.into(),
                });
                break;
            }
            // Every live replicate's rows are observed (summary, early stop, phases); a round is
            // recorded if the output section records it, and a replicate's last round always.
            let recorded = self.record.records_round(round, rounds);
            let running: Vec<usize> = (0..worlds.len()).filter(|&r| self.live[r]).collect();
            let stopping: Vec<bool> = running.iter().map(|&r| observe(r, worlds[r].rows())).collect();
            let writes: Vec<(u64, Cow<'_, [MetricRow]>)> = running
                .iter()
                .zip(&stopping)
                .filter(|&(_, &stops)| recorded || stops)
                .map(|(&r, _)| (r as u64, self.record.select(worlds[r].rows())))
                .collect();
            if let Some(kept) = &mut tables.kept {
                kept.write_round(writes.iter().map(|(r, rows)| (*r, &**rows)));
            }
            if let Some((writer, table)) = &mut tables.metrics
                && let Err(e) = writer.write_round(writes.iter().map(|(r, rows)| (*r, &**rows)))
            {
                result = Err(io_error(table)(e));
                break;
            }
            if recorded
                && let Some((agg, path)) = &mut tables.aggregate
                && let Err(e) = agg.write_round(
                    running.iter().map(|&r| self.record.select(worlds[r].rows())).collect::<Vec<_>>().iter().map(|rows| &**rows),
                )
            {
                result = Err(io_error(path)(e));
                break;
            }
            if let Some((labels, path)) = &mut tables.phases {
                for (&r, &stops) in running.iter().zip(&stopping) {
                    labels.observe(r as u64, worlds[r].rows(), recorded || stops);
                }
                if let Err(e) = labels.end_round() {
                    result = Err(io_error(path)(e));
                    break;
                }
            }
            for (&r, &stops) in running.iter().zip(&stopping) {
                if stops {
                    self.live[r] = false;
                    tracing::info!(replicate = r, round, "replicate stopped early");
                }
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
            if round < rounds && self.options.interrupt.as_ref().is_some_and(|flag| flag.load(std::sync::atomic::Ordering::Relaxed)) {
                result = Err(RunFailure::Interrupted { round });
                break;
            }
        }
        // A failure to close the tables loses rows: it is the run's failure if it completed or
        // was interrupted (both promise every round on disk), else it is logged beside the
        // failure that ended the loop.
        let (closed, kept) = tables.close();
        if let Err(e) = closed {
            match result {
                Ok(()) | Err(RunFailure::Interrupted { .. }) => result = Err(e),
                Err(_) => tracing::error!("closing the tables after the run failed: {e}"),
            }
        }
        if let Some(p) = progress {
            p.finish();
        }
        (completed, result, kept)
    }
}
