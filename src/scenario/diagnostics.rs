//! The `diagnostics` section of a scenario: how the drift phases of the generational Markov
//! chain are labelled (the labelling itself is in `crate::diagnostics`).

use serde::{Deserialize, Serialize};

use super::Problem;

/// The `diagnostics` section of a scenario: how phases are labelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnosticsSpec {
    /// A drift curve is flat when its window mean changed by less than this fraction of its
    /// peak over the last window (default 0.05).
    #[serde(default = "default_threshold")]
    pub flat_threshold: f64,
    /// Window `w` in rounds (default 10).
    #[serde(default = "default_window")]
    pub window: u64,
    /// Standard errors of sampling noise a change of window means may have and still count
    /// as flat (default 2; 0 compares the plain relative change with the threshold).
    #[serde(default = "default_noise_z")]
    pub noise_z: f64,
}

fn default_threshold() -> f64 {
    0.05
}
fn default_window() -> u64 {
    10
}
fn default_noise_z() -> f64 {
    2.0
}

impl Default for DiagnosticsSpec {
    fn default() -> Self {
        DiagnosticsSpec { flat_threshold: default_threshold(), window: default_window(), noise_z: default_noise_z() }
    }
}

/// Longest drift window, in rounds (the chains hold two values per round of it per model).
pub const MAX_WINDOW: u64 = 1_000_000;

/// Problems of a scenario's diagnostics section, for [`super::validate`].
pub fn check(spec: &DiagnosticsSpec) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut fail = |message: String| problems.push(Problem { entity: None, kind: "", key: "diagnostics".into(), message });
    if !(spec.flat_threshold > 0.0 && spec.flat_threshold < 1.0) {
        fail(format!("flat_threshold must lie strictly between 0 and 1 (a fraction of the drift's peak), got {}", spec.flat_threshold));
    }
    if !(spec.noise_z.is_finite() && spec.noise_z >= 0.0) {
        fail(format!("noise_z must be a finite number >= 0 (standard errors of noise allowed), got {}", spec.noise_z));
    }
    // The chains keep the last `window` values of every model's drift, allocated up front.
    if !(1..=MAX_WINDOW).contains(&spec.window) {
        fail(format!("window must be between 1 and {MAX_WINDOW} rounds, got {}", spec.window));
    }
    problems
}
