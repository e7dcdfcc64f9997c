//! Synthetic workloads for benchmarks and the numpy comparison (`coevo bench-round`).

use std::time::Instant;

use serde::Serialize;

use crate::scenario::{Covariance, EntitySpec, ImageModelSpec, Means, Scenario, TextInit, TextModelSpec};
use crate::world::{RunError, Simulation};

/// The paper's co-evolution scenario at an arbitrary scale: `K` texts uniform, `d`-dimensional
/// images with unit-circle means and `0.1 I` covariances, `N` pairs per batch.
pub fn scaled_scenario(k: u64, d: u64, n: u64, seed: u64) -> Scenario {
    let text = TextModelSpec {
        name: "captioner".into(),
        initial: TextInit::Uniform(k),
        batch: n,
        steps: 1,
        frozen: false,
        data: Default::default(),
    };
    let image = ImageModelSpec {
        name: "painter".into(),
        conditioned_on: "captioner".into(),
        dim: d,
        means: Means::UnitCircle,
        covariance: Covariance::Isotropic(0.1),
        batch: n,
        steps: 1,
        allocation: Default::default(),
        estimator: Default::default(),
        frozen: false,
        data: Default::default(),
        new_text: None,
    };
    Scenario {
        name: format!("bench-K{k}-d{d}-N{n}"),
        description: String::new(),
        seed,
        rounds: 1,
        replicates: 1,
        entities: vec![EntitySpec::TextModel(text), EntitySpec::ImageModel(image)],
        collapse: Default::default(),
        output: Default::default(),
        stability: None,
    }
}

/// Timing of a run of training rounds, in the JSON shape `benches/compare.sh` reads.
#[derive(Debug, Clone, Serialize)]
pub struct RoundTiming {
    /// Texts.
    #[serde(rename = "K")]
    pub k: u64,
    /// Image dimension.
    pub d: u64,
    /// Batch size.
    #[serde(rename = "N")]
    pub n: u64,
    /// Timed rounds.
    pub rounds: u64,
    /// Whether the Measure phase (all metrics) ran each round.
    pub measured: bool,
    /// Wall-clock seconds of the timed rounds.
    pub seconds: f64,
    /// `rounds / seconds`.
    pub rounds_per_second: f64,
}

/// Times `rounds` training rounds after one warm-up round, on the calling thread.
pub fn time_rounds(k: u64, d: u64, n: u64, rounds: u64, seed: u64, measured: bool) -> Result<RoundTiming, RunError> {
    let scenario = scaled_scenario(k, d, n, seed);
    let mut sim = Simulation::new(&scenario, 0).expect("the synthetic scenario is valid");
    sim.set_measuring(measured);
    sim.step()?;
    let start = Instant::now();
    for _ in 0..rounds {
        sim.step()?;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(RoundTiming { k, d, n, rounds, measured, seconds, rounds_per_second: rounds as f64 / seconds })
}
