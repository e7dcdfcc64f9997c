//! The test binary's global allocator: the system allocator, counting per thread the calls
//! that allocate and the bytes live. `tests/allocation.rs` checks that a steady-state round
//! makes no allocation; `tests/stabilisers.rs` that accumulated data keeps memory constant.
//!
//! Counts are per thread: the test harness's own threads (output capture, the runner) and
//! tests running concurrently allocate at times of their choosing, while a world runs on the
//! calling thread (single-threaded schedule), so its allocations are exactly that thread's.
//! The counters are thread-locals with constant initialisers and no destructor, so counting
//! never allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

/// Calls of `alloc`, `alloc_zeroed` and `realloc` made on this thread so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Bytes allocated and not yet freed on this thread (frees of memory another thread
/// allocated count here too, so only differences between two moments mean something).
pub fn live_bytes() -> isize {
    LIVE_BYTES.with(Cell::get)
}

fn count_call() {
    // `try_with`: during thread teardown the slot may be gone; such allocations are not ours.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn count_bytes(delta: isize) {
    let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + delta));
}

// SAFETY: every call is forwarded to the system allocator with its arguments unchanged, so
// `System` upholds the `GlobalAlloc` contract; the counters only read sizes and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_call();
        // SAFETY: the caller guarantees `layout` has a non-zero size, as `System.alloc` requires.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count_bytes(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_call();
        // SAFETY: as for `alloc`: the caller guarantees a non-zero size.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count_bytes(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` came from this allocator with `layout`, and this
        // allocator hands out only `System`'s blocks, so `System` may free it.
        unsafe { System.dealloc(ptr, layout) };
        count_bytes(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_call();
        // SAFETY: the caller guarantees `ptr` is a block of this allocator (so of `System`) with
        // `layout`, and that `new_size` is non-zero and does not overflow when rounded up.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count_bytes(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;
