//! Synthetic workloads for benchmarks and the numpy comparison (`coevo bench-round`).

use std::time::Instant;

use serde::Serialize;

use crate::models::Structure;
use crate::scenario::Scenario;
use crate::world::{RunError, Simulation};

/// The paper's co-evolution scenario at an arbitrary scale: `K` texts uniform, `d`-dimensional
/// images with unit-circle means and `0.1 I` covariances, `N` pairs per batch.
pub fn scaled_scenario(k: u64, d: u64, n: u64, seed: u64) -> Scenario {
    structured_scenario(k, d, n, seed, Structure::Full)
}

/// [`scaled_scenario`] with image covariances of the family `structure` (docs/model.md section
/// 14): `Diagonal` at `K = 1024, d = 512, N = 10^5` is the platform scale of
/// `scenarios/platform.ron`.
pub fn structured_scenario(k: u64, d: u64, n: u64, seed: u64, structure: Structure) -> Scenario {
    // Written as a scenario file would be, so that every default the schema gains applies here too.
    let source = format!(
        r#"Scenario(
            name: "bench-K{k}-d{d}-N{n}",
            seed: {seed},
            rounds: 1,
            entities: [
                TextModel(name: "captioner", initial: Uniform({k}), batch: {n}),
                ImageModel(name: "painter", conditioned_on: "captioner", dim: {d}, covariance: Isotropic(0.1), batch: {n},
                           structure: {structure}),
            ],
        )"#,
        structure = structure.name()
    );
    Scenario::parse(&source, std::path::Path::new("<bench>")).expect("the synthetic scenario is valid")
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
    /// Peak resident memory of the process so far, in KiB (Linux `VmHWM`; absent elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_kib: Option<u64>,
}

/// Peak resident set size of this process in KiB, from `/proc/self/status` (Linux only).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Times `rounds` training rounds after one warm-up round, on the calling thread.
pub fn time_rounds(k: u64, d: u64, n: u64, rounds: u64, seed: u64, measured: bool) -> Result<RoundTiming, RunError> {
    time_structured_rounds(k, d, n, rounds, seed, measured, Structure::Full)
}

/// [`time_rounds`] with image covariances of the family `structure` ([`structured_scenario`]).
pub fn time_structured_rounds(
    k: u64,
    d: u64,
    n: u64,
    rounds: u64,
    seed: u64,
    measured: bool,
    structure: Structure,
) -> Result<RoundTiming, RunError> {
    let scenario = structured_scenario(k, d, n, seed, structure);
    let mut sim = Simulation::new(&scenario, 0).expect("the synthetic scenario is valid");
    sim.set_measuring(measured);
    sim.step()?;
    let start = Instant::now();
    for _ in 0..rounds {
        sim.step()?;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(RoundTiming { k, d, n, rounds, measured, seconds, rounds_per_second: rounds as f64 / seconds, peak_rss_kib: peak_rss_kib() })
}

/// One window of [`time_curve`]: how fast rounds ran while collapse removed texts.
#[derive(Debug, Clone, Serialize)]
pub struct CurveWindow {
    /// First round of the window (the warm-up round is round 1).
    pub first_round: u64,
    /// Rounds in the window.
    pub rounds: u64,
    /// Wall-clock seconds of the window's rounds.
    pub seconds: f64,
    /// `rounds / seconds`.
    pub rounds_per_second: f64,
    /// Mean number of live texts (`p_i > 0`) at the start of the window's rounds: the texts
    /// the posterior scores.
    pub live_texts: f64,
}

/// The per-round cost along a long run (the later-rounds curve of `benches/compare.sh`): after
/// one warm-up round, `rounds` rounds timed in windows of `window`, each with its mean live
/// support. Collapse kills texts (`p_i = 0`), which the posterior no longer scores.
pub fn time_curve(k: u64, d: u64, n: u64, rounds: u64, window: u64, seed: u64, structure: Structure) -> Result<Vec<CurveWindow>, RunError> {
    use crate::world::components::TextAgent;
    let scenario = structured_scenario(k, d, n, seed, structure);
    let mut sim = Simulation::new(&scenario, 0).expect("the synthetic scenario is valid");
    sim.set_measuring(false);
    sim.step()?;
    let mut live_texts = {
        let mut texts = sim.world_mut().query::<&TextAgent>();
        move |sim: &mut Simulation| texts.iter(sim.world()).map(|t| t.model.p.iter().filter(|&&p| p > 0.0).count()).sum::<usize>()
    };
    let mut out = Vec::new();
    let mut first = 2;
    while first < rounds + 2 {
        let len = window.min(rounds + 2 - first);
        let (mut live, mut seconds) = (0usize, 0.0);
        for _ in 0..len {
            // Counting the live texts is outside the timed part.
            live += live_texts(&mut sim);
            let start = Instant::now();
            sim.step()?;
            seconds += start.elapsed().as_secs_f64();
        }
        out.push(CurveWindow {
            first_round: first,
            rounds: len,
            seconds,
            rounds_per_second: len as f64 / seconds,
            live_texts: live as f64 / len as f64,
        });
        first += len;
    }
    Ok(out)
}

/// The arithmetic a round at scale `(K, d, N)` cannot avoid, in a tight loop: drawing the
/// `2 N d` standard normal variates of its two batches, and the `N K` Gaussian log-densities
/// of the text phase as dense matrix products (`(K d x d)` whitening matrices times `d x B`
/// blocks of samples, then squared norms). No posterior, no refit, no bookkeeping: the ratio
/// of a round's time to this floor is the overhead of everything else.
pub struct ArithmeticFloor {
    k: usize,
    d: usize,
    n: usize,
    rng: crate::rng::Stream,
    normals: Vec<f64>,
    whiten: nalgebra::DMatrix<f64>,
    block: nalgebra::DMatrix<f64>,
    log_density: Vec<f64>,
}

const FLOOR_BLOCK: usize = 256;

impl ArithmeticFloor {
    /// Buffers for scale `(K, d, N)`.
    pub fn new(k: usize, d: usize, n: usize, seed: u64) -> Self {
        ArithmeticFloor {
            k,
            d,
            n,
            rng: crate::rng::entity_stream(seed, 0, "floor"),
            normals: vec![0.0; 2 * n * d],
            whiten: nalgebra::DMatrix::from_fn(k * d, d, |r, c| if r % d == c { 1.0 } else { 0.01 }),
            block: nalgebra::DMatrix::zeros(k * d, FLOOR_BLOCK),
            log_density: vec![0.0; n * k],
        }
    }

    /// One round's unavoidable arithmetic. Returns a checksum so the work cannot be optimised away.
    pub fn run_once(&mut self) -> f64 {
        crate::rng::standard_normals(&mut self.rng, &mut self.normals);
        let (k, d) = (self.k, self.d);
        for start in (0..self.n).step_by(FLOOR_BLOCK) {
            let b = FLOOR_BLOCK.min(self.n - start);
            let y = nalgebra::DMatrixView::from_slice(&self.normals[start * d..(start + b) * d], d, b);
            let mut block = self.block.columns_mut(0, b);
            block.gemm(1.0, &self.whiten, &y, 0.0);
            for j in 0..b {
                let col = block.column(j);
                for i in 0..k {
                    self.log_density[(start + j) * k + i] = -0.5 * col.rows(i * d, d).norm_squared();
                }
            }
        }
        self.log_density[0] + self.log_density[self.n * k - 1]
    }
}

/// Times `rounds` iterations of the [`ArithmeticFloor`] at scale `(K, d, N)`.
pub fn time_floor(k: u64, d: u64, n: u64, rounds: u64, seed: u64) -> RoundTiming {
    let mut floor = ArithmeticFloor::new(k as usize, d as usize, n as usize, seed);
    std::hint::black_box(floor.run_once());
    let start = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(floor.run_once());
    }
    let seconds = start.elapsed().as_secs_f64();
    RoundTiming { k, d, n, rounds, measured: false, seconds, rounds_per_second: rounds as f64 / seconds, peak_rss_kib: peak_rss_kib() }
}

/// Throughput of many independent worlds run in parallel (the replicate workload).
#[derive(Debug, Clone, Serialize)]
pub struct WorldsTiming {
    /// Worlds run.
    pub worlds: u64,
    /// Worker threads.
    pub threads: u64,
    /// Rounds per world.
    pub rounds: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// `worlds * rounds / seconds`.
    pub world_rounds_per_second: f64,
}

/// Times `worlds` independent paper-style worlds at scale `(K, d, N)` advancing `rounds`
/// rounds each on a pool of `threads` workers (each world on its single-threaded schedule).
pub fn time_worlds(k: u64, d: u64, n: u64, rounds: u64, seed: u64, worlds: u64, threads: u64) -> Result<WorldsTiming, RunError> {
    use rayon::prelude::*;
    let scenario = scaled_scenario(k, d, n, seed);
    let mut sims: Vec<Simulation> = (0..worlds).map(|r| Simulation::new(&scenario, r).expect("the synthetic scenario is valid")).collect();
    for s in &mut sims {
        s.set_measuring(false);
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads as usize).build().expect("thread pool");
    let start = Instant::now();
    pool.install(|| {
        sims.par_iter_mut().try_for_each(|s| {
            for _ in 0..rounds {
                s.step()?;
            }
            Ok::<(), RunError>(())
        })
    })?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(WorldsTiming { worlds, threads, rounds, seconds, world_rounds_per_second: (worlds * rounds) as f64 / seconds })
}
