//! What the plugin boundary costs: the paper's co-evolution round (docs/model.md section 3) with the
//! built-in Gaussian image model, and with the same model loaded as a plugin
//! (`plugins/gaussian`, built in release mode by this benchmark), in the same run.
//!
//! `cargo bench --bench plugin_overhead` reports criterion's times per round, then rounds per
//! second of both models measured in alternating blocks (so that both see the same machine
//! load) and the ratio. The plugin side pays for: copying counts to `u64`, one FFI call per
//! sample / log-likelihood / fit / metrics call with the host's output checks (canary fill,
//! guard elements, finiteness scans), the log-likelihood matrix returned as a fresh vector and
//! added into the host's, and the random numbers fetched one `u64` callback at a time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use coevo::{Scenario, Simulation};
use criterion::{BenchmarkId, Criterion};

/// (name, K, d, N): the paper's scale (Gao & Li, section 8) and a mid scale.
const SCALES: [(&str, u64, u64, u64); 2] = [("paper", 5, 2, 1000), ("mid", 50, 8, 10_000)];

/// Builds the Gaussian plugin in release mode and returns its library.
fn plugin_library() -> PathBuf {
    coevo_plugin_api::host::cargo_build_plugin(Path::new(env!("CARGO_MANIFEST_DIR")), "coevo-plugin-gaussian", &["--release"])
        .unwrap_or_else(|e| panic!("building plugins/gaussian failed: {e}"))
}

/// The paper's scenario at scale (K, d, N) with the image model built in or from `plugin`.
fn scenario(k: u64, d: u64, n: u64, plugin: Option<&Path>) -> Scenario {
    let image = match plugin {
        None => format!(r#"ImageModel(name: "painter", conditioned_on: "captioner", dim: {d}, covariance: Isotropic(0.1), batch: {n})"#),
        Some(lib) => format!(
            r#"PluginModel(name: "painter", library: "{}", model: "gaussian_image", conditioned_on: "captioner",
                           params: (dim: {d}, variance: 0.1), batch: {n})"#,
            lib.display()
        ),
    };
    let source = format!(
        r#"Scenario(name: "overhead", seed: 1, rounds: 1, entities: [
            TextModel(name: "captioner", initial: Uniform({k}), batch: {n}),
            {image},
        ])"#
    );
    let file = Path::new("plugin_overhead.ron");
    let mut s = Scenario::parse(&source, file).unwrap_or_else(|e| panic!("{e}"));
    coevo::plugin::check_scenario(&mut s, file).unwrap_or_else(|p| panic!("{p:?}"));
    s
}

fn simulation(k: u64, d: u64, n: u64, plugin: Option<&Path>, measuring: bool) -> Simulation {
    let mut sim = Simulation::new(&scenario(k, d, n, plugin), 0).unwrap();
    sim.set_measuring(measuring);
    sim.step().unwrap();
    sim
}

fn criterion_groups(c: &mut Criterion, lib: &Path) {
    let mut group = c.benchmark_group("plugin_overhead");
    for (name, k, d, n) in SCALES {
        for (side, plugin) in [("builtin", None), ("plugin", Some(lib))] {
            let mut sim = simulation(k, d, n, plugin, false);
            group.bench_function(BenchmarkId::new(side, name), |b| b.iter(|| sim.step().unwrap().len()));
        }
    }
    group.finish();
}

/// Seconds per round of `sim` over `rounds` rounds.
fn time(sim: &mut Simulation, rounds: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..rounds {
        sim.step().unwrap();
    }
    start.elapsed().as_secs_f64() / rounds as f64
}

/// Rounds per second of both sides, timed in alternating blocks; the median block of each.
fn ratio_report(lib: &Path, quick: bool) {
    println!("\nplugin overhead: rounds per second, built-in Gaussian image model vs the same model as a plugin");
    for (name, k, d, n) in SCALES {
        for measuring in [false, true] {
            let mut builtin = simulation(k, d, n, None, measuring);
            let mut plugin = simulation(k, d, n, Some(lib), measuring);
            // About 0.5 s per block at each scale on one core.
            let rounds = if quick { 1 } else { (500_000 / n as u32).max(2) };
            let blocks = if quick { 1 } else { 7 };
            let (mut b, mut p) = (Vec::new(), Vec::new());
            for _ in 0..blocks {
                b.push(time(&mut builtin, rounds));
                p.push(time(&mut plugin, rounds));
            }
            b.sort_by(f64::total_cmp);
            p.sort_by(f64::total_cmp);
            let (b, p) = (b[blocks / 2], p[blocks / 2]);
            println!(
                "  {name:<5} K={k:<3} d={d:<2} N={n:<6} {:<9} built-in {:>8.1} rounds/s   plugin {:>8.1} rounds/s   plugin time / built-in time = {:.3}",
                if measuring { "measured" } else { "training" },
                1.0 / b,
                1.0 / p,
                p / b
            );
        }
    }
}

fn main() {
    let lib = plugin_library();
    // `cargo test --benches` runs benchmarks once with `--test`: keep that a smoke run.
    let quick = std::env::args().any(|a| a == "--test");
    let mut c = Criterion::default().warm_up_time(Duration::from_secs(1)).configure_from_args();
    criterion_groups(&mut c, &lib);
    c.final_summary();
    ratio_report(&lib, quick);
}
