//! Every metric cairn records: its name, kind and help text, in one table.
//!
//! Names are written without the `metrics_prefix` (`consul` by default), which the recorder
//! adds, so `raft.commitTime` is shown as `consul.raft.commitTime` (`consul_raft_commitTime`
//! in Prometheus). Where Consul has a metric for the same thing, its name is used unchanged —
//! dashboards and alerts written for Consul then work — even where Prometheus' naming lint
//! would prefer another spelling (`commitTime` is camelCase, Consul's counters have no
//! `_total`); [`Definition::consul`] marks those. cairn's own metrics live under `cairn.` and
//! follow the Prometheus conventions (snake_case, counters end in `_total`, no unit
//! abbreviations).
//!
//! Timers are recorded in milliseconds, as go-metrics' `MeasureSince` does.

/// How a metric is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// A histogram of durations in milliseconds (a go-metrics timer).
    Timer,
    /// A histogram of plain values (sizes, counts).
    Sample,
}

/// One metric cairn records.
#[derive(Clone, Copy, Debug)]
pub struct Definition {
    /// Without the prefix, e.g. `raft.commitTime`.
    pub name: &'static str,
    pub kind: Kind,
    /// The Prometheus `# HELP` text.
    pub help: &'static str,
    /// Consul records a metric of this name: the name is Consul's, kept as Consul spells it.
    pub consul: bool,
}

pub const RAFT_COMMIT_TIME: &str = "raft.commitTime";
pub const RAFT_APPLY: &str = "raft.apply";
pub const RAFT_FSM_APPLY: &str = "raft.fsm.apply";
pub const RAFT_LEADER_LAST_CONTACT: &str = "raft.leader.lastContact";
pub const RAFT_STATE_LEADER: &str = "raft.state.leader";
pub const RAFT_STATE_CANDIDATE: &str = "raft.state.candidate";
pub const RAFT_STATE_FOLLOWER: &str = "raft.state.follower";
pub const RAFT_LAST_INDEX: &str = "raft.last_index";
pub const RAFT_APPLIED_INDEX: &str = "raft.applied_index";
pub const RPC_REQUEST: &str = "rpc.request";
pub const RPC_QUERIES_BLOCKING: &str = "rpc.queries_blocking";
pub const API_HTTP: &str = "api.http";
pub const KVS_APPLY: &str = "kvs.apply";
pub const TXN_APPLY: &str = "txn.apply";
pub const CATALOG_REGISTER: &str = "catalog.register";
pub const CATALOG_DEREGISTER: &str = "catalog.deregister";
pub const SESSION_APPLY: &str = "session.apply";
pub const DNS_DOMAIN_QUERY: &str = "dns.domain_query";
pub const SERF_MEMBER_JOIN: &str = "serf.member.join";
pub const SERF_MEMBER_UPDATE: &str = "serf.member.update";
pub const SERF_MEMBER_FAILED: &str = "serf.member.failed";
pub const SERF_MEMBER_LEFT: &str = "serf.member.left";
pub const SESSION_TTL_ACTIVE: &str = "session_ttl.active";
pub const RUNTIME_ALLOC_BYTES: &str = "runtime.alloc_bytes";
pub const RUNTIME_SYS_BYTES: &str = "runtime.sys_bytes";
pub const RUNTIME_NUM_GOROUTINES: &str = "runtime.num_goroutines";
pub const WATCH_SLOTS_WOKEN: &str = "cairn.watch.slots_woken_total";
pub const WATCH_TOPICS: &str = "cairn.watch.topics";
pub const RAFT_WRITE_BATCH_COMMANDS: &str = "cairn.raft.write_batch_commands";
pub const RAFT_LOG_FSYNC: &str = "cairn.raft.log_fsync";
pub const RAFT_LOG_APPENDS_PER_FSYNC: &str = "cairn.raft.log_appends_per_fsync";
pub const ROCKSDB_MEMTABLES_BYTES: &str = "cairn.rocksdb.memtables_bytes";
pub const ROCKSDB_TABLE_READERS_BYTES: &str = "cairn.rocksdb.table_readers_bytes";
pub const ROCKSDB_BLOCK_CACHE_BYTES: &str = "cairn.rocksdb.block_cache_bytes";
pub const ROCKSDB_SST_FILES_BYTES: &str = "cairn.rocksdb.sst_files_bytes";

/// The first part of Consul's pre-1.9 per-route HTTP timers, `http.<METHOD>.<path parts>`
/// (recorded with `telemetry.disable_compat_1.9 = false`).
pub const HTTP_COMPAT_PREFIX: &str = "http.";

const fn consul(name: &'static str, kind: Kind, help: &'static str) -> Definition {
    Definition { name, kind, help, consul: true }
}

const fn cairn(name: &'static str, kind: Kind, help: &'static str) -> Definition {
    Definition { name, kind, help, consul: false }
}

/// Every metric with a fixed name.
pub const DEFINITIONS: &[Definition] = &[
    consul(RAFT_COMMIT_TIME, Kind::Timer, "Time (ms) from proposing an entry on the leader until it is committed and applied there."),
    consul(RAFT_APPLY, Kind::Counter, "Raft entries proposed on the leader."),
    consul(RAFT_FSM_APPLY, Kind::Timer, "Time (ms) to apply committed entries to the state machine."),
    consul(RAFT_LEADER_LAST_CONTACT, Kind::Timer, "Time (ms) since the leader last heard from a quorum of servers, sampled on the leader."),
    consul(RAFT_STATE_LEADER, Kind::Counter, "Times this server became the Raft leader."),
    consul(RAFT_STATE_CANDIDATE, Kind::Counter, "Times this server started a Raft election."),
    consul(RAFT_STATE_FOLLOWER, Kind::Counter, "Times this server became a Raft follower."),
    consul(RAFT_LAST_INDEX, Kind::Gauge, "The index of the last entry in this server's Raft log."),
    consul(RAFT_APPLIED_INDEX, Kind::Gauge, "The index of the last entry this server applied."),
    consul(RPC_REQUEST, Kind::Counter, "Requests served on the server port (writes, reads and relayed API requests from other agents)."),
    consul(RPC_QUERIES_BLOCKING, Kind::Gauge, "Blocking queries waiting on this agent."),
    consul(API_HTTP, Kind::Timer, "Time (ms) to serve an HTTP API request, by method and route."),
    consul(KVS_APPLY, Kind::Timer, "Time (ms) to commit a KV write on a server (forwarding to the leader included)."),
    consul(TXN_APPLY, Kind::Timer, "Time (ms) to commit a transaction on a server."),
    consul(CATALOG_REGISTER, Kind::Timer, "Time (ms) to commit a catalog registration on a server."),
    consul(CATALOG_DEREGISTER, Kind::Timer, "Time (ms) to commit a catalog deregistration on a server."),
    consul(SESSION_APPLY, Kind::Timer, "Time (ms) to commit a session create or destroy on a server."),
    consul(DNS_DOMAIN_QUERY, Kind::Timer, "Time (ms) to answer a DNS query."),
    consul(SERF_MEMBER_JOIN, Kind::Counter, "LAN members that joined."),
    consul(SERF_MEMBER_UPDATE, Kind::Counter, "LAN members whose tags changed."),
    consul(SERF_MEMBER_FAILED, Kind::Counter, "LAN members found failed."),
    consul(SERF_MEMBER_LEFT, Kind::Counter, "LAN members that left."),
    consul(SESSION_TTL_ACTIVE, Kind::Gauge, "Sessions with a TTL the leader is timing."),
    consul(RUNTIME_ALLOC_BYTES, Kind::Gauge, "Bytes allocated by the process (jemalloc's allocated)."),
    consul(RUNTIME_SYS_BYTES, Kind::Gauge, "Bytes the allocator holds in physical memory (jemalloc's resident)."),
    consul(RUNTIME_NUM_GOROUTINES, Kind::Gauge, "Tasks alive in the agent's async runtime."),
    cairn(WATCH_SLOTS_WOKEN, Kind::Counter, "Watched topics woken by applied changes (each wakes every blocking query parked on it)."),
    cairn(WATCH_TOPICS, Kind::Gauge, "Distinct topics blocking queries are parked on."),
    cairn(RAFT_WRITE_BATCH_COMMANDS, Kind::Sample, "Writes carried by one Raft entry proposed on the leader."),
    cairn(RAFT_LOG_FSYNC, Kind::Timer, "Time (ms) of one fsync of the Raft log."),
    cairn(RAFT_LOG_APPENDS_PER_FSYNC, Kind::Sample, "Log appends made durable by one fsync (group commit)."),
    cairn(ROCKSDB_MEMTABLES_BYTES, Kind::Gauge, "Bytes in RocksDB's memtables."),
    cairn(ROCKSDB_TABLE_READERS_BYTES, Kind::Gauge, "Bytes RocksDB's table readers (indexes, filters) hold."),
    cairn(ROCKSDB_BLOCK_CACHE_BYTES, Kind::Gauge, "Bytes in RocksDB's block cache."),
    cairn(ROCKSDB_SST_FILES_BYTES, Kind::Gauge, "Bytes of RocksDB's table files on disk."),
];

/// The definition of `name` (without the prefix), if it has a fixed name.
pub fn definition(name: &str) -> Option<&'static Definition> {
    DEFINITIONS.iter().find(|definition| definition.name == name)
}

/// The help text for `name`: its definition's, or for the per-route HTTP timers a shared one.
pub(super) fn help(name: &str) -> &'static str {
    match definition(name) {
        Some(definition) => definition.help,
        None if name.starts_with(HTTP_COMPAT_PREFIX) => "Time (ms) to serve an HTTP API request on this route (Consul's pre-1.9 name).",
        None => "A cairn metric.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_cairn_names_follow_prometheus_conventions() {
        for (position, definition) in DEFINITIONS.iter().enumerate() {
            assert!(DEFINITIONS[..position].iter().all(|other| other.name != definition.name), "{} twice", definition.name);
            if definition.consul {
                continue;
            }
            assert!(definition.name.starts_with("cairn."), "{}", definition.name);
            assert!(!definition.name.chars().any(|c| c.is_ascii_uppercase()), "{} is not snake_case", definition.name);
            assert_eq!(definition.kind == Kind::Counter, definition.name.ends_with("_total"), "{}", definition.name);
        }
    }
}
