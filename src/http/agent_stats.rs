//! The `Stats` object of `/v1/agent/self`: Consul's sections (`agent`, `build`, `consul`,
//! `raft`, `runtime`, `serf_lan`), each a map of strings as Consul sends them, plus cairn's own memory sections:
//! `catalog` (entries per table), `store` (RocksDB's memory) and jemalloc's counters in
//! `runtime` (`telemetry::runtime`). The soak (`cairn-bench --soak`) samples these beside RSS, so that a growing RSS
//! can be told apart from growing state.

use serde_json::{Value, json};

use crate::http::AppState;

/// The `Stats` object.
/// `with_digest` (`?fsm-digest`, cairn's own) adds `raft.fsm_digest`, a CRC of every catalog
/// row: tests compare replicas with it. It encodes the whole catalog under the view's read lock
/// (half a second with 20,000 instances, writes waiting behind it), so it is computed only when
/// asked for, never for the dashboard or a monitoring poll.
pub(super) fn stats(state: &AppState, with_digest: bool) -> Value {
    let agent = &state.agent;
    let config = agent.config();
    let raft = agent.raft_status();
    let leader_addr = raft.as_ref().and_then(|s| s.leader.as_ref().map(|(_, node)| node.raft_addr.clone())).unwrap_or_default();
    let store = agent.store_memory();
    let catalog: serde_json::Map<String, Value> =
        agent.view().read(|catalog| catalog.sizes()).into_iter().map(|(name, count)| (name.to_string(), Value::String(count.to_string()))).collect();
    let mut runtime = json!({"arch": std::env::consts::ARCH, "os": std::env::consts::OS, "version": "cairn"});
    if let Some(heap) = crate::telemetry::runtime::heap() {
        runtime["heap_allocated_bytes"] = Value::String(heap.allocated_bytes.to_string());
        runtime["heap_active_bytes"] = Value::String(heap.active_bytes.to_string());
        runtime["heap_resident_bytes"] = Value::String(heap.resident_bytes.to_string());
        runtime["heap_retained_bytes"] = Value::String(heap.retained_bytes.to_string());
    }
    let members = agent.members();
    let count = |status: crate::gossip::MemberStatus| members.iter().filter(|m| m.status == status).count().to_string();
    json!({
        "build": {"version": env!("CARGO_PKG_VERSION"), "revision": "", "prerelease": "", "version_metadata": ""},
        "serf_lan": {
            "members": members.len().to_string(),
            "failed": count(crate::gossip::MemberStatus::Failed),
            "left": count(crate::gossip::MemberStatus::Left),
        },
        "agent": {"checks": agent.local_checks().len().to_string(), "services": agent.local_services().len().to_string()},
        "consul": {
            "server": config.server.to_string(),
            "bootstrap": config.bootstrap.to_string(),
            "known_datacenters": "1",
            "leader": raft.as_ref().is_some_and(|s| s.state == "leader").to_string(),
            "leader_addr": leader_addr,
        },
        "raft": raft.as_ref().map(|s| json!({
            // hashicorp/raft's spelling: Leader, Follower, Candidate.
            "state": capitalized(s.state),
            "term": s.term.to_string(),
            "last_log_index": s.last_log_index.to_string(),
            "applied_index": s.applied_index.to_string(),
            "num_peers": s.voters.len().saturating_sub(1).to_string(),
            "fsm_applied_index": agent.view().applied_index().to_string(),
        })).map(|mut raft| {
            if with_digest {
                raft["fsm_digest"] = json!(format!("{:08x}", agent.view().read(|catalog| catalog.digest())));
            }
            raft
        }).unwrap_or(json!({})),
        "runtime": runtime,
        "catalog": catalog,
        "store": {
            "memtables_bytes": store.memtables_bytes.to_string(),
            "table_readers_bytes": store.table_readers_bytes.to_string(),
            "block_cache_bytes": store.block_cache_bytes.to_string(),
        },
    })
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
