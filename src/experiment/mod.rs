//! Experiments at scale: replicate aggregation, parameter sweeps, shards and their merge.
//!
//! - [`grid`]: running a sweep's points (all or one shard), resuming, merging shards. The
//!   `sweep` section itself, and how a grid point becomes a scenario, is schema:
//!   [`crate::scenario::sweep`].

pub mod grid;
