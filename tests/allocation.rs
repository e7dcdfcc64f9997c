//! A steady-state training round performs no heap allocation in coevo's own code: every
//! buffer (batches, log-likelihood matrix, factorisations, sufficient statistics) is reused.
//!
//! Checked with a counting global allocator: after warm-up rounds have sized the buffers,
//! further rounds must not call `alloc` or `realloc`, with one accounted exception:
//! nalgebra hands products whose dimensions all exceed 5 to `matrixmultiply`, which allocates
//! its packing buffer on every call; the text phase makes one such call per block of 256
//! samples when `d > 5`. At the paper's `d = 2` a round allocates nothing. The Measure phase is switched off
//! here (it builds result rows and is outside the training arithmetic); it is checked
//! separately to allocate a bounded amount per round, independent of the batch size N.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use coevo::bench::scaled_scenario;
use coevo::world::Simulation;

struct Counting;

// Per thread: the test harness's own threads (output capture, the runner) allocate at times
// of their choosing, and a process-wide count picked them up. A world runs on the calling
// thread (single-threaded schedule), so its allocations are exactly this thread's.
thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: during thread teardown the slot may be gone; such allocations are not ours.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(sim: &mut Simulation, rounds: usize) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..rounds {
        sim.step().expect("round runs");
    }
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn steady_state_rounds_do_not_allocate() {
    for (k, d, n) in [(5, 2, 1000), (20, 8, 2000), (8, 70, 500)] {
        let mut sim = Simulation::new(&scaled_scenario(k, d, n, 7), 0).unwrap();
        sim.set_measuring(false);
        // Warm-up: buffers grow to the largest batch seen. Binomial batch sizes per text vary
        // from round to round, but the pooled buffers are sized by the total, which is fixed.
        allocations_during(&mut sim, 5);
        let steady = allocations_during(&mut sim, 50);
        let gemm_calls_per_round = if d > 5 { n.div_ceil(256) } else { 0 };
        assert_eq!(steady, 50 * gemm_calls_per_round, "K={k} d={d} N={n}: {steady} allocations in 50 steady-state rounds");
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
