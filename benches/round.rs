//! Criterion benchmarks of a training round (docs/model.md section 3) at three scales, of the
//! arithmetic floor at the same scales, of the text phase's posterior at the large scale (the
//! whole-matrix path against the blocked one, on one and two threads), of the posterior's `exp`
//! against libm's, of the log-densities' matrix product against `matrixmultiply`, and of
//! replicate throughput.
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

/// The text phase's caption posterior at the large scale, on the world's state after one round
/// (estimated covariances): the `N x K` matrix path (`add_log_likelihood`, then
/// `accumulate_caption_posterior`) against the blocked, screened path of
/// `coevo::models::posterior` on one thread and on two (parallelism inside one world).
fn posterior(c: &mut Criterion) {
    use coevo::models::posterior::{PosteriorBuffers, Scorer, accumulate_posterior};
    use coevo::models::text::accumulate_caption_posterior;
    use coevo::world::{ConditionalAgent, ImageBatch, TextAgent};
    let (k, d, n) = (256, 32, 100_000);
    let mut sim = Simulation::new(&scaled_scenario(k, d, n, 1), 0).unwrap();
    sim.set_measuring(false);
    sim.step().unwrap();
    let world = sim.world_mut();
    let p = world.query::<&TextAgent>().iter(world).next().unwrap().model.p.clone();
    let mut query = world.query::<(&mut ConditionalAgent, &ImageBatch)>();
    let (mut agent, batch) = query.iter_mut(world).next().unwrap();
    let samples = batch.samples.clone();
    let model = &mut agent.model;
    assert!(model.prepare_log_density());
    let mut group = c.benchmark_group("posterior_large");
    group.sample_size(10).measurement_time(Duration::from_secs(60));
    let (mut dense, mut scratch) = (vec![0.0; n as usize * k as usize], Vec::new());
    group.bench_function("matrix", |b| {
        b.iter(|| {
            dense.fill(0.0);
            model.add_log_likelihood(&samples, &mut dense).unwrap();
            let mut soft = vec![0.0; k as usize];
            accumulate_caption_posterior(&p, &dense, &mut soft, &mut scratch);
            soft[0]
        })
    });
    let scorers = [Scorer { model: model.log_density().unwrap(), samples: &samples }];
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut buffers = PosteriorBuffers::default();
        group.bench_function(BenchmarkId::new("blocked_threads", threads), |b| {
            b.iter(|| {
                let mut soft = vec![0.0; k as usize];
                pool.install(|| accumulate_posterior(&p, n as usize, &scorers, &mut buffers, &mut soft));
                soft[0]
            })
        });
    }
    group.finish();
}

/// The posterior's `exp` (`coevo::models::exp`) against the platform's libm on the same 4096
/// arguments of the posterior's range `[-745.2, 0]`, in values per second: libm's scalar call,
/// the crate's scalar form in the same loop, and its slice form (vectorised).
fn exp(c: &mut Criterion) {
    use coevo::models::exp::{exp, exp_in_place};
    // A fixed spread of arguments (a Weyl sequence), no generator needed.
    let args: Vec<f64> = (0..4096u32).map(|i| -745.2 * ((i as f64 * 0.618_033_988_749_895) % 1.0)).collect();
    let mut out = vec![0.0; args.len()];
    let mut group = c.benchmark_group("exp_4096");
    group.throughput(criterion::Throughput::Elements(args.len() as u64));
    group.bench_function("libm", |b| {
        b.iter(|| {
            for (o, x) in out.iter_mut().zip(&args) {
                *o = std::hint::black_box(*x).exp();
            }
            out[7]
        })
    });
    group.bench_function("coevo_scalar", |b| {
        b.iter(|| {
            for (o, x) in out.iter_mut().zip(&args) {
                *o = exp(std::hint::black_box(*x));
            }
            out[7]
        })
    });
    group.bench_function("coevo_slice", |b| {
        b.iter(|| {
            out.copy_from_slice(std::hint::black_box(&args));
            exp_in_place(&mut out);
            out[7]
        })
    });
    group.finish();
}

/// The blocked log-densities' matrix product (`coevo::linalg::gemm::product`, each entry one
/// fixed chain of fused multiply-adds, the same bits on every machine) against `matrixmultiply`
/// (its run-time chosen kernel, the product coevo used before) on the shapes of one block: the
/// `Full` quadratic form at the large scale (256 live texts x 560 features x 256 samples) and a
/// tile of the platform's `Diagonal` form (128 texts x 256 coordinates x 256 samples), in GFLOP/s.
fn product(c: &mut Criterion) {
    let mut group = c.benchmark_group("product");
    for (name, m, k, n) in [("large_full", 256usize, 560usize, 256usize), ("platform_tile", 128, 256, 256)] {
        let a: Vec<f64> = (0..m * k).map(|i| ((i * 7919) % 1000) as f64 / 1000.0 - 0.5).collect();
        let b: Vec<f64> = (0..k * n).map(|i| ((i * 104_729) % 1000) as f64 / 1000.0 - 0.5).collect();
        let mut out = vec![0.0; m * n];
        group.throughput(criterion::Throughput::Elements((2 * m * k * n) as u64));
        group.bench_function(BenchmarkId::new("coevo", name), |bench| {
            bench.iter(|| {
                coevo::linalg::gemm::product(m, k, n, &a, k, &b, k, &mut out);
                out[7]
            })
        });
        group.bench_function(BenchmarkId::new("matrixmultiply", name), |bench| {
            bench.iter(|| {
                // SAFETY: `a` is m x k by rows, `b` k x n by columns, `out` m x n column-major,
                // all exactly the sizes the strides reach.
                unsafe {
                    matrixmultiply::dgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        1,
                        k as isize,
                        0.0,
                        out.as_mut_ptr(),
                        1,
                        m as isize,
                    );
                }
                out[7]
            })
        });
    }
    group.finish();
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

criterion_group!(benches, rounds, floor, normals, posterior, exp, product, replicates);
criterion_main!(benches);
