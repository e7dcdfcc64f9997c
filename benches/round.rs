//! Criterion benchmarks of a training round (docs/model.md section 3) at three scales, of the
//! arithmetic floor at the same scales, and of replicate throughput.
//!
//! `cargo bench --bench round` reports absolute times; the ratios the README quotes (round
//! over floor, coevo over numpy, parallel efficiency) are printed by `benches/compare.sh`,
//! which measures every side in one run on the same machine.

use std::time::Duration;

use coevo::bench::{ArithmeticFloor, scaled_scenario, time_worlds};
use coevo::world::Simulation;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// (name, K, d, N): the paper's scale (Gao & Li, section 8), a mid scale and a large one.
const SCALES: [(&str, u64, u64, u64); 3] = [("paper", 5, 2, 1000), ("mid", 50, 8, 10_000), ("large", 256, 32, 100_000)];

fn rounds(c: &mut Criterion) {
    let mut group = c.benchmark_group("round");
    for (name, k, d, n) in SCALES {
        if name == "large" {
            group.sample_size(10).measurement_time(Duration::from_secs(60));
        }
        let mut sim = Simulation::new(&scaled_scenario(k, d, n, 1), 0).unwrap();
        sim.set_measuring(false);
        sim.step().unwrap();
        group.bench_function(BenchmarkId::from_parameter(name), |b| b.iter(|| sim.step().unwrap().len()));
    }
    group.finish();
}

fn floor(c: &mut Criterion) {
    let mut group = c.benchmark_group("floor");
    for (name, k, d, n) in SCALES {
        if name == "large" {
            group.sample_size(10).measurement_time(Duration::from_secs(60));
        }
        let mut floor = ArithmeticFloor::new(k as usize, d as usize, n as usize, 1);
        group.bench_function(BenchmarkId::from_parameter(name), |b| b.iter(|| floor.run_once()));
    }
    group.finish();
}

/// The paper-scale round's `2 N d = 4000` standard normal variates alone (ChaCha8, rand_distr's
/// ziggurat): a lower bound on the round time of any implementation with this generator.
fn normals(c: &mut Criterion) {
    use rand_distr::{Distribution, StandardNormal};
    let mut rng = coevo::rng::entity_stream(1, 0, "normals");
    let mut buf = vec![0.0f64; 4000];
    c.bench_function("normals_only/paper", |b| {
        b.iter(|| {
            for x in buf.iter_mut() {
                *x = StandardNormal.sample(&mut rng);
            }
            buf[0]
        })
    });
}

fn replicates(c: &mut Criterion) {
    // 64 worlds at paper scale, 20 rounds each, on 1 thread and on every core.
    let cores = std::thread::available_parallelism().map_or(1, |p| p.get() as u64);
    let mut group = c.benchmark_group("replicates_64x20_paper");
    group.sample_size(10);
    for threads in [1, cores] {
        group.bench_function(BenchmarkId::new("threads", threads), |b| {
            b.iter(|| time_worlds(5, 2, 1000, 20, 1, 64, threads).unwrap().seconds)
        });
        if cores == 1 {
            break;
        }
    }
    group.finish();
}

criterion_group!(benches, rounds, floor, normals, replicates);
criterion_main!(benches);
