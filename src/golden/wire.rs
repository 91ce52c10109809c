//! Golden cases of what servers store and send beside the catalog: Raft log entries and
//! metadata, the snapshot file, every message of the server port, the agent's local state
//! and its node ID.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agent::local::{self, CheckOptions, CheckRunner, LocalCheck, LocalService};
use crate::agent::remote_view::{ViewRequest, ViewRows};
use crate::agent::role::Written;
use crate::catalog::command::{Command, CheckRegistration};
use crate::catalog::model::HealthStatus;
use crate::catalog::{Outcome, codec};
use crate::fuzz::samples;
use crate::golden::{Case, assert_every_variant, case, check, tag_of};
use crate::raft::cluster::{JoinRequest, ServerInfo};
use crate::raft::snapshot::{self, SnapshotHeader};
use crate::raft::{NodeId, ServerNode, TypeConfig, log_store, state_machine};

const HEADER: &str = "Golden bytes of cairn's Raft log, snapshots, server-port messages and local state (src/golden).
A compatibility promise: never edit or delete a line; see docs/formats.md.";

/// A case compared through `Debug` (openraft's types are not all `PartialEq`).
fn debug_case<T: Debug + 'static, E: Debug>(name: &str, value: T, encode: impl Fn(&T) -> Vec<u8>, decode: impl Fn(&[u8]) -> Result<T, E> + 'static) -> Case {
    let shown = format!("{value:?}");
    case(name, shown, move |_| encode(&value), move |bytes| decode(bytes).map(|v| format!("{v:?}")))
}

/// A server-port body (`rpc::encode_as` with format `format`).
fn rpc_case<T: Serialize + DeserializeOwned + Debug + 'static>(name: &str, format: u8, value: T) -> Case {
    debug_case(name, value, move |v| crate::rpc::encode_as(format, v), |b| crate::rpc::decode::<T>(b))
}

fn server(n: u64) -> ServerNode {
    ServerNode { name: format!("server-{n}"), raft_addr: format!("10.0.0.{n}:8300"), http_addr: format!("10.0.0.{n}:8500") }
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn membership() -> Membership<NodeId, ServerNode> {
    let nodes: BTreeMap<NodeId, ServerNode> = (1..=3).map(|n| (n, server(n))).collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

fn entries() -> Vec<Entry<TypeConfig>> {
    let kv = Command::KvSet { key: "app/config".into(), value: b"{}".to_vec(), flags: 7, cas_index: None };
    vec![
        Entry { log_id: log_id(2, 10), payload: EntryPayload::Blank },
        Entry { log_id: log_id(2, 11), payload: EntryPayload::Normal(kv) },
        Entry { log_id: log_id(2, 12), payload: EntryPayload::Membership(membership()) },
        Entry { log_id: log_id(2, 13), payload: EntryPayload::Normal(crate::golden::catalog::exact_session()) },
    ]
}

#[test]
fn the_raft_log_and_state_machine_metadata_are_pinned() {
    let mut cases = Vec::new();
    for (i, entry) in entries().into_iter().enumerate() {
        let name = format!("log.entry.{i}.format{}", log_store::entry_format(&entry));
        cases.push(debug_case(&name, entry, log_store::encode_entry, log_store::decode::<Entry<TypeConfig>>));
    }
    cases.push(debug_case("log.vote", Vote::new_committed(3, 2), log_store::encode, log_store::decode::<Vote<NodeId>>));
    cases.push(debug_case("log.committed", Some(log_id(3, 40)), log_store::encode, log_store::decode::<Option<LogId<NodeId>>>));
    cases.push(debug_case("state.last_applied", Some(log_id(3, 41)), state_machine::encode, state_machine::decode::<Option<LogId<NodeId>>>));
    let stored = StoredMembership::new(Some(log_id(2, 12)), membership());
    cases.push(debug_case("state.membership", stored.clone(), state_machine::encode, state_machine::decode::<StoredMembership<NodeId, ServerNode>>));
    let header = SnapshotHeader { last_log_id: Some(log_id(3, 41)), membership: stored, snapshot_id: "3-41-1".into(), row_count: 2 };
    let rows = vec![(b"k\0\0\0\x01a".to_vec(), vec![1, 2, 3]), (b"i".to_vec(), vec![1, 0])];
    cases.push(debug_case("snapshot.file", (header, rows), |(h, r)| snapshot::encode(h, r), snapshot::decode));
    check("raft", HEADER, cases);
}

#[test]
fn every_server_port_message_is_pinned() {
    let vote = Vote::new_committed(3, 1);
    let entries = entries();
    let format = entries.iter().map(log_store::entry_format).max().unwrap_or(1);
    let append = AppendEntriesRequest::<TypeConfig> { vote, prev_log_id: Some(log_id(2, 9)), entries, leader_commit: Some(log_id(2, 9)) };
    let mut cases = vec![rpc_case("append.request", format, append)];
    let responses: Vec<AppendEntriesResponse<NodeId>> = vec![
        AppendEntriesResponse::Success,
        AppendEntriesResponse::PartialSuccess(Some(log_id(2, 11))),
        AppendEntriesResponse::Conflict,
        AppendEntriesResponse::HigherVote(Vote::new(4, 2)),
    ];
    assert_every_variant::<AppendEntriesResponse<NodeId>>("AppendEntriesResponse", &responses.iter().map(tag_of).collect());
    for response in responses {
        let name = format!("append.response.{}", format!("{response:?}").split(['(', ' ']).next().unwrap_or_default());
        cases.push(rpc_case(&name, 1, Ok::<_, openraft::error::RaftError<NodeId>>(response)));
    }
    let stopped: Result<AppendEntriesResponse<NodeId>, openraft::error::RaftError<NodeId>> = Err(openraft::error::RaftError::Fatal(openraft::error::Fatal::Stopped));
    cases.push(rpc_case("append.response.stopped", 1, stopped));
    cases.push(rpc_case("vote.request", 1, VoteRequest::new(Vote::new(4, 2), Some(log_id(3, 41)))));
    let granted: Result<VoteResponse<NodeId>, openraft::error::RaftError<NodeId>> = Ok(VoteResponse::new(Vote::new(4, 2), Some(log_id(3, 41)), true));
    cases.push(rpc_case("vote.response", 1, granted));
    let meta = SnapshotMeta { last_log_id: Some(log_id(3, 41)), last_membership: StoredMembership::new(Some(log_id(2, 12)), membership()), snapshot_id: "3-41-1".into() };
    cases.push(rpc_case("snapshot.request", 1, InstallSnapshotRequest::<TypeConfig> { vote, meta, offset: 0, data: vec![1, 2, 3], done: true }));
    let installed: Result<InstallSnapshotResponse<NodeId>, openraft::error::RaftError<NodeId, openraft::error::InstallSnapshotError>> =
        Ok(InstallSnapshotResponse { vote });
    cases.push(rpc_case("snapshot.response", 1, installed));
    cases.push(rpc_case("join.info", 1, ServerInfo { node_id: 2, node: server(2), datacenter: "dc1".into(), initialized: true, leader: Some((1, server(1))) }));
    cases.push(rpc_case("join.request", 1, JoinRequest { node_id: 4, node: server(4), datacenter: "dc1".into() }));
    cases.push(rpc_case("join.answer", 1, Err::<(), String>("No cluster leader".into())));
    let command = crate::golden::catalog::exact_session();
    cases.push(rpc_case("write.request.format2", command.format_needed(), command));
    let written: Result<Written, String> = Ok((42, Outcome::Bool(true)));
    cases.push(rpc_case("write.answer", 1, written));
    let reads = vec![
        ViewRequest::Node { node: "node-1".into() },
        ViewRequest::Service { name: "web".into(), min_index: 300, wait_ms: 2_000 },
        ViewRequest::AclToken { secret: "s".into() },
        ViewRequest::Address { ip: "10.0.0.5".parse().expect("an ip") },
        ViewRequest::PreparedQuery { name_or_id: "web-near".into(), near_node: "node-1".into() },
    ];
    assert_every_variant::<ViewRequest>("ViewRequest", &reads.iter().map(tag_of).collect());
    for read in reads {
        let name = format!("read.request.{}", format!("{read:?}").split([' ', '{']).next().unwrap_or_default());
        cases.push(rpc_case(&name, 1, read));
    }
    let (catalog, _) = crate::golden::catalog::samples_catalog();
    cases.push(rpc_case("read.answer", 1, ViewRows { index: 7, rows: samples::rows(&catalog).into_iter().take(2).collect() }));
    check("server-port", HEADER, cases);
}

fn check_registration(runner: &str) -> CheckRegistration {
    let service_id = if runner == "none" { "" } else { "web-1" };
    let mut check = samples::check(&format!("check-{runner}"), service_id, HealthStatus::Critical);
    check.definition.check_type = runner.into();
    check
}

fn runners() -> Vec<CheckRunner> {
    let tls = |name: &str| (true, false, name.to_string());
    let (use_tls, skip, sni) = tls("web.internal");
    vec![
        CheckRunner::Ttl { ttl_ms: 30_000 },
        CheckRunner::Http {
            url: "https://10.0.0.5:8443/health".into(),
            method: "GET".into(),
            headers: vec![("X-Probe".into(), "1".into())],
            body: None,
            tls_skip_verify: skip,
            tls_server_name: sni.clone(),
            interval_ms: 10_000,
            timeout_ms: 1_000,
        },
        CheckRunner::Tcp { address: "10.0.0.5:8080".into(), interval_ms: 10_000, timeout_ms: 1_000 },
        CheckRunner::Script { args: vec!["/bin/check".into(), "-v".into()], interval_ms: 30_000, timeout_ms: 5_000 },
        CheckRunner::Grpc { target: "10.0.0.5:9090/web".into(), use_tls, tls_skip_verify: skip, tls_server_name: sni.clone(), interval_ms: 10_000, timeout_ms: 1_000 },
        CheckRunner::H2Ping { address: "10.0.0.5:8443".into(), use_tls, tls_skip_verify: skip, tls_server_name: sni, interval_ms: 10_000, timeout_ms: 1_000 },
        CheckRunner::Udp { address: "10.0.0.5:53".into(), interval_ms: 10_000, timeout_ms: 1_000 },
        CheckRunner::Alias { service_id: "db-1".into(), node: "node-2".into() },
    ]
}

#[test]
fn the_local_state_and_node_id_are_pinned() {
    let service = LocalService { registration: samples::service("web-1", "web") };
    let mut cases = vec![case("local.service", service, local::encode, local::decode::<LocalService>)];
    let runners = runners();
    assert_every_variant::<CheckRunner>("CheckRunner", &runners.iter().map(tag_of).collect());
    let options = CheckOptions { success_before_passing: 2, failures_before_warning: 1, failures_before_critical: 3, deregister_critical_service_after_ms: 90_000, output_max_size: 4096 };
    let maintenance = LocalCheck { registration: check_registration("none"), runner: None, options: CheckOptions::default() };
    cases.push(case("local.check.maintenance", maintenance, local::encode, local::decode::<LocalCheck>));
    for runner in runners {
        let kind = format!("{runner:?}").split([' ', '{']).next().unwrap_or_default().to_lowercase();
        let check = LocalCheck { registration: check_registration(&kind), runner: Some(runner), options: options.clone() };
        cases.push(case(format!("local.check.{kind}"), check, local::encode, local::decode::<LocalCheck>));
    }
    let node_id = "b3a9e1b2-0a44-4c2c-8e2e-1f3c5d7e9a0b".to_string();
    cases.push(case("node_id", node_id.clone(), |id| crate::agent::encode_node_id(id), crate::agent::decode_node_id));
    // The first release wrote the bare text; it is still read.
    assert_eq!(crate::agent::decode_node_id(node_id.as_bytes()), Ok(node_id));
    check("local", HEADER, cases);
}

/// `rpc` cannot see `catalog`, so it keeps its own copy of the newest format byte.
#[test]
fn the_server_port_reads_the_newest_catalog_format() {
    assert_eq!(crate::rpc::RPC_FORMAT_NEWEST, codec::FORMAT_NEWEST);
}
