//! The process's own counters: jemalloc's heap (the process allocator, `src/main.rs`) and the
//! async runtime's tasks. `/v1/agent/self`'s `runtime` stats and the `runtime.*` gauges both
//! read them here.

/// What jemalloc holds: bytes the program allocated, bytes in pages in use, bytes resident,
/// and bytes kept mapped but given back to the system (`retained`).
#[derive(Clone, Copy, Debug)]
pub struct Heap {
    pub allocated_bytes: u64,
    pub active_bytes: u64,
    pub resident_bytes: u64,
    pub retained_bytes: u64,
}

/// jemalloc's counters, refreshed; `None` when jemalloc cannot say.
pub fn heap() -> Option<Heap> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    Some(Heap {
        allocated_bytes: stats::allocated::read().ok()? as u64,
        active_bytes: stats::active::read().ok()? as u64,
        resident_bytes: stats::resident::read().ok()? as u64,
        retained_bytes: stats::retained::read().ok()? as u64,
    })
}

/// Tasks alive in the current tokio runtime (what Consul's `num_goroutines` counts for Go);
/// `None` outside a runtime.
pub fn tasks_alive() -> Option<usize> {
    tokio::runtime::Handle::try_current().ok().map(|runtime| runtime.metrics().num_alive_tasks())
}
