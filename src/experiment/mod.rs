//! Experiments at scale: replicate aggregation, parameter sweeps, shards and their merge.
//!
//! - [`grid`]: running a sweep's points (all or one shard), resuming, merging shards. The
//!   `sweep` section itself, and how a grid point becomes a scenario, is schema:
//!   [`crate::scenario::sweep`], and which points a design stands for,
//!   [`crate::scenario::design`].
//! - [`search`]: bisection for the parameter value where an outcome crosses a level
//!   (`coevo search`).
//! - [`sensitivity`]: Sobol indices of a `Sobol(n)` sweep's outcomes (`coevo analyse`).

pub mod grid;
pub mod search;
pub mod sensitivity;
