//! A steady-state training round performs no heap allocation in coevo's own code: every
//! buffer (batches, log-likelihood matrix, factorisations, sufficient statistics) is reused.
//!
//! Checked with a counting global allocator: after warm-up rounds have sized the buffers,
//! further rounds must not call `alloc` or `realloc`. That includes the matrix products of the
//! blocked log-densities (`Full` covariances above `d = 8`, and the structured families), whose
//! packing buffer is kept per thread (`coevo::linalg::gemm`). The Measure phase is switched off
//! here (it builds result rows and is outside the training arithmetic); it is checked
//! separately to allocate a bounded amount per round, independent of the batch size N.

use coevo::bench::{scaled_scenario, structured_scenario};
use coevo::models::Structure;
use coevo::world::Simulation;

// The counting global allocator lives in `common::alloc` (a binary has one global allocator,
// and `stabilisers.rs` counts live bytes with the same one).
use crate::common::alloc::allocations;

fn allocations_during(sim: &mut Simulation, rounds: usize) -> u64 {
    let before = allocations();
    for _ in 0..rounds {
        sim.step().expect("round runs");
    }
    allocations() - before
}

#[test]
fn steady_state_rounds_do_not_allocate() {
    // Run inside a rayon pool of two threads, as replicate worlds run (`d = 70` is large
    // enough for a round to split its draws and factorisations over the pool): a thread outside
    // the pool hands work to it through rayon's injector queue, which allocates a block every
    // 63 jobs; inside it, work goes to the thread's own deque.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    for (k, d, n) in [(5, 2, 1000), (20, 8, 2000), (8, 70, 500)] {
        let steady = pool.install(|| {
            let mut sim = Simulation::new(&scaled_scenario(k, d, n, 7), 0).unwrap();
            sim.set_measuring(false);
            // Warm-up: buffers grow to the largest batch seen. Binomial batch sizes per text
            // vary from round to round, but the pooled buffers are sized by the total, which is
            // fixed.
            allocations_during(&mut sim, 5);
            allocations_during(&mut sim, 50)
        });
        assert_eq!(steady, 0, "K={k} d={d} N={n}: {steady} allocations in 50 steady-state rounds");
    }

    // The structured families at K = 20, d = 8 (one tile, one chunk), N = 2000 (8 blocks).
    for structure in [Structure::Diagonal, Structure::Isotropic] {
        let (k, d, n) = (20, 8, 2000);
        let mut sim = Simulation::new(&structured_scenario(k, d, n, 7, structure), 0).unwrap();
        sim.set_measuring(false);
        allocations_during(&mut sim, 5);
        let steady = allocations_during(&mut sim, 50);
        assert_eq!(steady, 0, "{}: {steady} allocations in 50 steady-state rounds", structure.name());
    }

    // With measurement on, allocations per round do not grow with N: they come from the
    // metric computations (O(K) small matrices), not from the batch.
    let per_round = |n: u64| {
        let mut sim = Simulation::new(&scaled_scenario(5, 2, n, 7), 0).unwrap();
        allocations_during(&mut sim, 5);
        allocations_during(&mut sim, 20) / 20
    };
    let (small, large) = (per_round(1000), per_round(20000));
    assert_eq!(small, large, "measurement allocations depend on N: {small} vs {large} per round");
}
