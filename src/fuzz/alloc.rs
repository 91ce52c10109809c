//! A counting global allocator for the test binary, so that the fuzzer can tell an input that
//! makes a decoder allocate without bound (a length prefix of a terabyte believed) from one
//! that is merely refused.
//!
//! Counting is per thread and only while a thread has asked for it ([`Tracking::start`]): the
//! fuzzer's own thread counts the bytes live and their peak around each input; every other
//! test thread pays one thread-local read per allocation. The thread-locals are `const`
//! `Cell`s with no destructor, so reading them inside the allocator never allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

#[global_allocator]
static COUNTING: Counting = Counting;

thread_local! {
    /// Whether this thread counts its allocations.
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    /// Bytes allocated minus bytes freed on this thread since tracking started.
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    /// The highest `LIVE_BYTES` since the last [`Tracking::reset_peak`].
    static PEAK_BYTES: Cell<isize> = const { Cell::new(0) };
    /// The largest single request since the last [`Tracking::reset_peak`].
    static LARGEST_BYTES: Cell<usize> = const { Cell::new(0) };
}

fn allocated(size: usize) {
    if TRACKING.with(Cell::get) {
        let live = LIVE_BYTES.with(|live| {
            live.set(live.get().saturating_add(size as isize));
            live.get()
        });
        PEAK_BYTES.with(|peak| peak.set(peak.get().max(live)));
        LARGEST_BYTES.with(|largest| largest.set(largest.get().max(size)));
    }
}

fn freed(size: usize) {
    if TRACKING.with(Cell::get) {
        LIVE_BYTES.with(|live| live.set(live.get().saturating_sub(size as isize)));
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counting only touches this thread's `const` thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        allocated(layout.size());
        // SAFETY: forwarded as received (the caller upholds `GlobalAlloc::alloc`'s contract).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        allocated(layout.size());
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        freed(layout.size());
        // SAFETY: `ptr` came from `System` through this allocator with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        freed(layout.size());
        allocated(new_size);
        // SAFETY: as `dealloc`, and `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocation counting on the current thread, from `start` until dropped.
pub(super) struct Tracking {
    /// `LIVE_BYTES` when the current input began.
    baseline: isize,
}

impl Tracking {
    pub(super) fn start() -> Tracking {
        TRACKING.with(|tracking| tracking.set(true));
        let mut tracking = Tracking { baseline: 0 };
        tracking.reset_peak();
        tracking
    }

    /// Starts measuring a new input from what is live now.
    pub(super) fn reset_peak(&mut self) {
        self.baseline = LIVE_BYTES.with(Cell::get);
        PEAK_BYTES.with(|peak| peak.set(self.baseline));
        LARGEST_BYTES.with(|largest| largest.set(0));
    }

    /// The most bytes live at once above the baseline since `reset_peak`, and the largest
    /// single allocation request.
    pub(super) fn peak(&self) -> (usize, usize) {
        let peak = PEAK_BYTES.with(Cell::get).saturating_sub(self.baseline).max(0) as usize;
        (peak, LARGEST_BYTES.with(Cell::get))
    }
}

impl Drop for Tracking {
    fn drop(&mut self) {
        TRACKING.with(|tracking| tracking.set(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_allocation_is_seen_and_freed_memory_is_not_counted_twice() {
        let mut tracking = Tracking::start();
        let big = vec![0u8; 8 << 20];
        drop(big);
        let (peak, largest) = tracking.peak();
        assert!(peak >= 8 << 20 && largest >= 8 << 20, "peak {peak}, largest {largest}");
        tracking.reset_peak();
        let small = vec![0u8; 1024];
        drop(small);
        let (peak, largest) = tracking.peak();
        assert!(peak < 1 << 20 && largest < 1 << 20, "peak {peak}, largest {largest}");
    }
}
