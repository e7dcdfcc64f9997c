//! Metrics of docs/model.md section 7, as plain functions of model parameters, and the tidy rows they
//! are reported in.
//!
//! - [`text`]: diversity of a text model (Gini-Simpson, entropy, support, spread, ...).
//! - [`gaussian`]: per-text image metrics (trace, `tr Sigma^(1/2)`, log-determinant,
//!   effective rank, squared Frechet distance).
//! - [`coupling`]: how the two models co-move (p-weighted trace, Matthew index).
//! - [`names`]: every metric name the engine writes or reads, defined once.
//! - [`MetricRow`]: one measured value, and [`format_value`], the one way values are written.

pub mod coupling;
pub mod gaussian;
pub mod names;
mod row;
pub mod text;

pub use row::{MetricRow, format_value};
