//! Experiments at scale: replicate aggregation, parameter sweeps, shards and their merge.
//!
//! - [`aggregate`]: `aggregate.csv`, per round, model, text and metric: mean, standard error
//!   and 5/50/95% quantiles over replicates, computed round by round as the replicates advance.
//! - [`sweep`]: the `sweep` section of a scenario and how a grid point becomes a scenario.
//! - [`grid`]: running a sweep's points (all or one shard), resuming, merging shards.
//! - [`tidy`]: reading back the tidy tables a run writes.

pub mod aggregate;
pub mod grid;
pub mod sweep;
pub mod tidy;

pub use sweep::{Sweep, SweepParameter, SweepValue};
