//! What the plugin boundary costs: the paper's co-evolution round (docs/model.md section 3) with the
//! built-in Gaussian image model, with the same model loaded as a plugin (`plugins/gaussian`,
//! built in release mode by this benchmark) in the coevo process (`--trusted-plugins`), and
//! with it in a plugin host process (the default, `coevo plugin-host`), in the same run.
//!
//! `cargo bench --bench plugin_overhead` reports criterion's times per round, then rounds per
//! second of the three measured in alternating blocks (so that all see the same machine load)
//! and two ratios: in-process plugin over built-in (the C ABI), out-of-process over in-process
//! (the process boundary). The in-process plugin pays for: copying counts to `u64`, one FFI
//! call per sample / log-likelihood / fit / metrics call with the host's output checks (canary
//! fill, guard elements, finiteness scans), the log-likelihood matrix returned as a fresh
//! vector and added into the host's, and the random numbers fetched one `u64` callback at a
//! time. Out of process adds, per call, a round trip over a Unix socket with every batch,
//! sample matrix and log-likelihood matrix copied through it, and the stream state sent along.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use coevo::plugin::{ChildLimits, Isolation};
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

/// Where a side's plugin model runs (the built-in side has none).
const SIDES: [(&str, Isolation); 3] = [
    ("builtin", Isolation::InProcess),
    ("plugin", Isolation::InProcess),
    ("plugin_child", Isolation::Child(ChildLimits { timeout: None, memory_bytes: None })),
];

fn simulation(k: u64, d: u64, n: u64, plugin: Option<&Path>, isolation: Isolation, measuring: bool) -> Simulation {
    let scenario = scenario(k, d, n, plugin);
    coevo::plugin::set_isolation(isolation);
    let mut sim = Simulation::new(&scenario, 0).unwrap();
    sim.set_measuring(measuring);
    sim.step().unwrap();
    sim
}

fn criterion_groups(c: &mut Criterion, lib: &Path) {
    let mut group = c.benchmark_group("plugin_overhead");
    for (name, k, d, n) in SCALES {
        for (side, isolation) in SIDES {
            let plugin = (side != "builtin").then_some(lib);
            let mut sim = simulation(k, d, n, plugin, isolation, false);
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

/// Rounds per second of the three sides, timed in alternating blocks; the median block of each.
fn ratio_report(lib: &Path, quick: bool) {
    println!(
        "\nplugin overhead: rounds per second, built-in Gaussian image model vs the same model as a plugin in process and out of process"
    );
    for (name, k, d, n) in SCALES {
        for measuring in [false, true] {
            let mut sims: Vec<Simulation> = SIDES
                .iter()
                .map(|&(side, isolation)| simulation(k, d, n, (side != "builtin").then_some(lib), isolation, measuring))
                .collect();
            // About 0.5 s per block at each scale on one core.
            let rounds = if quick { 1 } else { (500_000 / n as u32).max(2) };
            let blocks = if quick { 1 } else { 7 };
            let mut times = vec![Vec::new(); sims.len()];
            for _ in 0..blocks {
                for (sim, t) in sims.iter_mut().zip(&mut times) {
                    t.push(time(sim, rounds));
                }
            }
            let [b, p, c] = [0, 1, 2].map(|i| {
                times[i].sort_by(f64::total_cmp);
                times[i][blocks / 2]
            });
            println!(
                "  {name:<5} K={k:<3} d={d:<2} N={n:<6} {:<9} built-in {:>8.1}   plugin in process {:>8.1}   out of process {:>8.1} rounds/s   in-process / built-in = {:.3}   out-of-process / in-process = {:.3}",
                if measuring { "measured" } else { "training" },
                1.0 / b,
                1.0 / p,
                1.0 / c,
                p / b,
                c / p
            );
        }
    }
}

fn main() {
    let lib = plugin_library();
    // Plugin hosts are this build's coevo; the library's folder is a plugin folder.
    coevo::plugin::set_host_program(PathBuf::from(env!("CARGO_BIN_EXE_coevo")));
    coevo::plugin::set_plugin_dirs(vec![lib.parent().expect("a library lives in a folder").to_path_buf()]);
    // `cargo test --benches` runs benchmarks once with `--test`: keep that a smoke run.
    let quick = std::env::args().any(|a| a == "--test");
    let mut c = Criterion::default().warm_up_time(Duration::from_secs(1)).configure_from_args();
    criterion_groups(&mut c, &lib);
    c.final_summary();
    ratio_report(&lib, quick);
}
