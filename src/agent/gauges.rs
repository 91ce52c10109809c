//! The gauges the agent sets every second (go-metrics' runtime loop runs at the same pace):
//! blocking queries parked, watched topics, the allocator's heap and the async runtime's
//! tasks (Consul's `runtime.*`), RocksDB's sizes, and on servers the Raft indexes and, on the
//! leader, the sessions whose TTL it times. Consul's in-memory sink shows a gauge only for an
//! interval in which it was set, so each is set on every tick, changed or not.

use std::sync::Arc;
use std::time::Duration;

use crate::agent::Agent;
use crate::telemetry::{self, names};

/// How often the gauges are set.
const GAUGES_INTERVAL_MS: u64 = 1_000;

/// Sets the gauges until shutdown.
pub(super) async fn gauges_loop(agent: Arc<Agent>) {
    let mut shutdown = agent.shutdown_requested();
    let mut ticker = tokio::time::interval(Duration::from_millis(GAUGES_INTERVAL_MS));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        set_gauges(&agent);
    }
}

fn gauge(name: &'static str, value: u64) {
    metrics::gauge!(name).set(value as f64);
}

fn set_gauges(agent: &Agent) {
    gauge(names::RPC_QUERIES_BLOCKING, telemetry::BLOCKING_QUERIES.current().max(0) as u64);
    gauge(names::WATCH_TOPICS, agent.view().watches().topics_watched() as u64);
    if let Some(heap) = telemetry::runtime::heap() {
        gauge(names::RUNTIME_ALLOC_BYTES, heap.allocated_bytes);
        gauge(names::RUNTIME_SYS_BYTES, heap.resident_bytes);
    }
    if let Some(tasks) = telemetry::runtime::tasks_alive() {
        gauge(names::RUNTIME_NUM_GOROUTINES, tasks as u64);
    }
    let store = agent.store_memory();
    gauge(names::ROCKSDB_MEMTABLES_BYTES, store.memtables_bytes);
    gauge(names::ROCKSDB_TABLE_READERS_BYTES, store.table_readers_bytes);
    gauge(names::ROCKSDB_BLOCK_CACHE_BYTES, store.block_cache_bytes);
    gauge(names::ROCKSDB_SST_FILES_BYTES, agent.store.sst_files_bytes());
    let Some(raft) = agent.raft() else { return };
    let leader_view = raft.leader_view();
    let status = raft.status();
    gauge(names::RAFT_LAST_INDEX, status.last_log_index);
    gauge(names::RAFT_APPLIED_INDEX, status.applied_index);
    if leader_view.leads() {
        let timed = agent.session_deadlines.lock().expect("session deadlines lock poisoned").len();
        gauge(names::SESSION_TTL_ACTIVE, timed as u64);
    }
}
