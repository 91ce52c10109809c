//! KV housekeeping on the leader: tombstone GC and the replicated history setting.
//!
//! **Tombstone GC.** Every `TOMBSTONE_GC_GRANULARITY_MS` the leader notes the applied index.
//! Once a note is older than `kv_tombstone_ttl`, it proposes `KvReapTombstones` up to that
//! index, so a tombstone lives between one TTL and one TTL plus one granularity (Consul's
//! scheme). A new leader starts its notes afresh, which only delays reaping.
//!
//! **History setting.** `kv_history_versions` changes how `apply` archives KV versions, so it
//! is replicated: the leader proposes its configured value whenever the catalog's differs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agent::Agent;
use crate::catalog::Command;
use crate::raft::RaftServer;

/// How often the leader notes the applied index for tombstone GC (Consul: 30 s).
const TOMBSTONE_GC_GRANULARITY_MS: u64 = 30_000;
/// How often the loop wakes to check leadership and the history setting.
const HOUSEKEEPING_TICK_MS: u64 = 1_000;
/// Most index notes kept; older ones are reaped or dropped.
const TOMBSTONE_NOTES_MAX: usize = 1024;

pub(super) async fn kv_housekeeping_loop(agent: Arc<Agent>, raft: Arc<RaftServer>) {
    let ttl = Duration::from_millis(agent.config().kv_tombstone_ttl_ms);
    let granularity = Duration::from_millis(TOMBSTONE_GC_GRANULARITY_MS).min(ttl);
    let mut notes: VecDeque<(Instant, u64)> = VecDeque::new();
    let mut next_note = Instant::now();
    let mut shutdown = agent.shutdown_requested();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(HOUSEKEEPING_TICK_MS).min(granularity)) => {}
            _ = shutdown.changed() => return,
        }
        let status = raft.status();
        if status.leader.as_ref().map(|(id, _)| *id) != Some(raft.node_id()) {
            notes.clear();
            continue;
        }
        sync_history_setting(&agent).await;
        if Instant::now() < next_note {
            continue;
        }
        next_note = Instant::now() + granularity;
        // Tombstones carry catalog indexes, which batched writes move ahead of the Raft index.
        notes.push_back((Instant::now(), agent.view().read(|catalog| catalog.last_index())));
        if notes.len() > TOMBSTONE_NOTES_MAX {
            notes.pop_front();
        }
        let mut reap_to = None;
        while let Some(&(at, index)) = notes.front() {
            if at.elapsed() < ttl {
                break;
            }
            reap_to = Some(index);
            notes.pop_front();
        }
        let Some(up_to_index) = reap_to else { continue };
        if agent.view().read(|catalog| catalog.kv_tombstones()) == 0 {
            continue;
        }
        if let Err(error) = agent.write(Command::KvReapTombstones { up_to_index }).await {
            tracing::debug!(%error, "tombstone reap failed; will retry");
        }
    }
}

async fn sync_history_setting(agent: &Agent) {
    let wanted = agent.config().kv_history_versions;
    let current = agent.view().read(|catalog| catalog.settings().kv_history_versions);
    if current != wanted {
        if let Err(error) = agent.write(Command::SetKvHistoryVersions { versions: wanted }).await {
            tracing::debug!(%error, "setting kv_history_versions failed; will retry");
        }
    }
}
