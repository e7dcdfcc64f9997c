//! Experiments at scale: replicate aggregation, parameter sweeps, shards and their merge,
//! claim workers.
//!
//! - [`grid`]: running a sweep's points (all, a shard, one point, or as a claim worker),
//!   recording how each ended, resuming, merging shards. The `sweep` section itself, and how
//!   a point becomes a scenario, is schema: [`crate::scenario::sweep`], and which points a
//!   design stands for, [`crate::scenario::design`];
//! - [`claims`]: the claim files and leases that let identical workers share a folder.
//! - [`search`]: bisection for the parameter value where an outcome crosses a level
//!   (`coevo search`).
//! - [`sensitivity`]: Sobol indices of a `Sobol(n)` sweep's outcomes (`coevo analyse`).

pub mod claims;
pub mod grid;
pub mod search;
pub mod sensitivity;
