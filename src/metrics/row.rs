//! The measured value as the engine hands it on: one tidy row per round, model, text and
//! metric, and the one way a value is written as text.

use std::sync::Arc;

/// One measured value: tidy, one row per round, model, text (for per-text metrics) and metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// Round (0 = the initial state).
    pub round: u64,
    /// Model entity name.
    pub model: Arc<str>,
    /// Text index (0-based) for per-text metrics.
    pub text: Option<u32>,
    /// Metric name.
    pub metric: Arc<str>,
    /// Value.
    pub value: f64,
}

/// Formats a value as the shortest decimal that reads back to the same `f64` (exponent
/// notation for very large or small magnitudes; `NaN`, `inf`, `-inf` as such). Every table
/// coevo writes uses it, so a value read back is bit for bit the value computed.
pub fn format_value(v: f64) -> String {
    format!("{v:?}")
}
