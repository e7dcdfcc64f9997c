//! Metrics of SPEC section 7, as plain functions of model parameters.
//!
//! - [`text`]: diversity of a text model (Gini-Simpson, entropy, support, spread, ...).
//! - [`gaussian`]: per-text image metrics (trace, `tr Sigma^(1/2)`, log-determinant,
//!   effective rank, squared Frechet distance).
//! - [`coupling`]: how the two models co-move (p-weighted trace, Matthew index).

pub mod coupling;
pub mod gaussian;
pub mod text;
