//! Unit tests of the KV rules in `catalog::kv`: tombstones and prefix indexes, lock-delay,
//! history, transactions rolling all of them back, and the indexes that find a session's locks
//! and a node's sessions.

use std::collections::BTreeMap;

use crate::catalog::command::{Command, SessionRequest};
use crate::catalog::model::{HealthStatus, SessionBehavior};
use crate::catalog::tests::{check, registration, run};
use crate::catalog::txn::{TxnCatalogVerb, TxnKvOp, TxnKvVerb, TxnNodeOp, TxnOp};
use crate::catalog::{Catalog, ChangeSet, Outcome, apply};

fn set(key: &str, value: &str) -> Command {
    Command::KvSet { key: key.into(), value: value.as_bytes().to_vec(), flags: 0, cas_index: None }
}

/// A session on n1 bound to no check.
fn session(id: &str, lock_delay_ms: u64, behavior: SessionBehavior) -> Command {
    session_on(id, "n1", &[], lock_delay_ms, behavior)
}

fn session_on(id: &str, node: &str, node_checks: &[&str], lock_delay_ms: u64, behavior: SessionBehavior) -> Command {
    Command::SessionCreate(SessionRequest {
        id: id.into(),
        name: String::new(),
        node: node.into(),
        node_checks: node_checks.iter().map(|c| c.to_string()).collect(),
        service_checks: vec![],
        lock_delay_ms,
        behavior,
        ttl_s: 0,
    })
}

fn lock(session: &str, now_ms: u64) -> Command {
    Command::KvLock { key: "lock".into(), value: vec![], flags: 0, session: session.into(), now_ms }
}

#[test]
fn prefix_index_counts_tombstones_so_it_never_goes_backwards() {
    let mut catalog = Catalog::new();
    run(&mut catalog, 1, set("app/a", "1"));
    run(&mut catalog, 2, set("app/b", "2"));
    run(&mut catalog, 3, set("other", "x"));
    assert_eq!(catalog.kv_prefix_index("app/"), 2);
    run(&mut catalog, 4, Command::KvDelete { key: "app/b".into(), cas_index: None });
    assert_eq!(catalog.kv_prefix_index("app/"), 4, "the delete's tombstone keeps the index moving");
    assert_eq!(catalog.kv_key_index("app/b"), 4);
    run(&mut catalog, 5, set("other", "y"));
    assert_eq!(catalog.kv_prefix_index("app/"), 4, "writes elsewhere do not move this prefix");
    assert_eq!(catalog.kv_prefix_index("empty/"), 5, "a never-used prefix reports the table index");

    run(&mut catalog, 6, Command::KvDeleteTree { prefix: "app/".into() });
    assert_eq!(catalog.kv_prefix_index("app/"), 6);
    run(&mut catalog, 7, Command::KvReapTombstones { up_to_index: 5 });
    assert_eq!(catalog.kv_tombstones(), 1, "only tombstones at or below the index are reaped");
    run(&mut catalog, 8, Command::KvReapTombstones { up_to_index: 8 });
    assert_eq!(catalog.kv_tombstones(), 0);
    assert!(catalog.kv_history("app/a").is_empty(), "history of a reaped, deleted key goes too");
}

#[test]
fn lock_delay_blocks_reacquisition_until_it_runs_out() {
    let mut catalog = Catalog::new();
    run(&mut catalog, 1, registration("n1", None, vec![]));
    run(&mut catalog, 2, session("s1", 15_000, SessionBehavior::Release));
    run(&mut catalog, 3, session("s2", 0, SessionBehavior::Release));
    assert_eq!(run(&mut catalog, 4, lock("s1", 1_000)), Outcome::Bool(true));
    // s1 is invalidated at t=2000 (e.g. its TTL ran out): the lock is released...
    run(&mut catalog, 5, Command::SessionDestroy { session: "s1".into(), now_ms: 2_000 });
    assert_eq!(catalog.kv_get("lock").and_then(|e| e.session.clone()), None);
    // ...but nobody may take it for 15 s.
    assert_eq!(run(&mut catalog, 6, lock("s2", 2_001)), Outcome::Bool(false));
    assert_eq!(run(&mut catalog, 7, lock("s2", 16_999)), Outcome::Bool(false));
    assert_eq!(run(&mut catalog, 8, lock("s2", 17_000)), Outcome::Bool(true));
}

#[test]
fn lock_delay_follows_invalidation_by_a_timestamped_command() {
    let mut catalog = Catalog::new();
    run(&mut catalog, 1, registration("n1", None, vec![]));
    run(&mut catalog, 2, session("s1", 5_000, SessionBehavior::Release));
    assert_eq!(run(&mut catalog, 3, lock("s1", 0)), Outcome::Bool(true));
    run(&mut catalog, 4, registration("n2", None, vec![]));
    run(&mut catalog, 5, Command::DeregisterNode { node: "n1".into() }.stamped(10_000));
    run(&mut catalog, 6, registration("n1", None, vec![]));
    run(&mut catalog, 7, session("s2", 0, SessionBehavior::Release));
    assert_eq!(run(&mut catalog, 8, lock("s2", 14_999)), Outcome::Bool(false));
    assert_eq!(run(&mut catalog, 9, lock("s2", 15_000)), Outcome::Bool(true));
    let nested = Command::At { now_ms: 1, command: Box::new(Command::DeregisterNode { node: "n".into() }.stamped(1)) };
    assert!(matches!(run(&mut catalog, 10, nested), Outcome::Rejected(_)));
}

#[test]
fn every_key_of_an_ended_session_gets_its_lock_delay_and_old_ones_are_reaped() {
    let mut catalog = Catalog::new();
    run(&mut catalog, 1, registration("n1", None, vec![]));
    run(&mut catalog, 2, session("s0", 1_000, SessionBehavior::Release));
    assert_eq!(run(&mut catalog, 3, lock("s0", 0)), Outcome::Bool(true));
    run(&mut catalog, 4, Command::SessionDestroy { session: "s0".into(), now_ms: 100 });
    assert_eq!(catalog.lock_delays.keys().collect::<Vec<_>>(), ["lock"], "until 1,100");
    run(&mut catalog, 5, session("idle", 1_000, SessionBehavior::Release));
    run(&mut catalog, 6, Command::SessionDestroy { session: "idle".into(), now_ms: 5_000 });
    assert_eq!(catalog.lock_delays.len(), 1, "a session that held nothing changes no lock-delay");
    run(&mut catalog, 7, session("s1", 2_000, SessionBehavior::Release));
    for (index, key) in [(8, "a"), (9, "b"), (10, "c")] {
        let lock = Command::KvLock { key: key.into(), value: vec![], flags: 0, session: "s1".into(), now_ms: 5_000 };
        assert_eq!(run(&mut catalog, index, lock), Outcome::Bool(true));
    }
    let mut changes = ChangeSet::new();
    apply(&mut catalog, 11, &Command::SessionDestroy { session: "s1".into(), now_ms: 6_000 }, &mut changes);
    let delays: Vec<(&str, u64)> = catalog.lock_delays.iter().map(|(k, until)| (k.as_str(), *until)).collect();
    assert_eq!(delays, [("a", 8_000), ("b", 8_000), ("c", 8_000)], "the expired one on `lock` is gone");
    let touched: Vec<String> = changes.rows().filter_map(|row| match row {
        crate::catalog::RowKey::LockDelay(key) => Some(key.clone()),
        _ => None,
    }).collect();
    assert_eq!(touched.len(), 4, "the three new lock-delays and the reaped one are persisted: {touched:?}");
}

#[test]
fn behavior_delete_removes_held_keys_and_leaves_tombstones() {
    let mut catalog = Catalog::new();
    run(&mut catalog, 1, registration("n1", None, vec![]));
    run(&mut catalog, 2, session("s1", 0, SessionBehavior::Delete));
    assert_eq!(run(&mut catalog, 3, lock("s1", 0)), Outcome::Bool(true));
    run(&mut catalog, 4, Command::SessionDestroy { session: "s1".into(), now_ms: 0 });
    assert!(catalog.kv_get("lock").is_none());
    assert_eq!(catalog.kv_key_index("lock"), 4);
}

#[test]
fn history_keeps_the_last_n_versions_newest_first() {
    let mut catalog = Catalog::new();
    run(&mut catalog, 1, Command::SetKvHistoryVersions { versions: 3 });
    for (index, value) in (2..=6).zip(["a", "b", "c", "d", "e"]) {
        run(&mut catalog, index, set("k", value));
    }
    let versions: Vec<(u64, &[u8])> = catalog.kv_history("k").iter().map(|e| (e.modify_index, e.value.as_slice())).collect();
    assert_eq!(versions, vec![(6, &b"e"[..]), (5, b"d"), (4, b"c")]);
    run(&mut catalog, 7, Command::KvDelete { key: "k".into(), cas_index: None });
    let versions: Vec<u64> = catalog.kv_history("k").iter().map(|e| e.modify_index).collect();
    assert_eq!(versions, vec![6, 5], "a deleted key keeps its archive until its tombstone is reaped");
    assert!(matches!(run(&mut catalog, 8, Command::SetKvHistoryVersions { versions: 1_000 }), Outcome::Rejected(_)));
    run(&mut catalog, 9, Command::SetKvHistoryVersions { versions: 0 });
    run(&mut catalog, 10, set("k", "f"));
    run(&mut catalog, 11, set("k", "g"));
    assert_eq!(catalog.kv_history("k").len(), 1, "0 keeps only the live version");
}

#[test]
fn rolled_back_txn_restores_history_and_tombstones() {
    let mut catalog = Catalog::new();
    run(&mut catalog, 1, set("t/a", "1"));
    run(&mut catalog, 2, set("t/b", "2"));
    let before = catalog.clone();
    let op = |verb, key: &str, index| TxnKvOp { verb, key: key.into(), value: b"x".to_vec(), flags: 0, index, session: String::new() };
    let txn = Command::Txn {
        ops: vec![op(TxnKvVerb::Set, "t/a", 0), op(TxnKvVerb::Delete, "t/b", 0), op(TxnKvVerb::Cas, "t/c", 99)],
    };
    let mut changes = ChangeSet::new();
    assert!(matches!(apply(&mut catalog, 3, &txn, &mut changes), Outcome::Txn(Err(_))));
    assert_eq!(catalog, before, "nothing of the failed transaction is left");
    for row in changes.rows() {
        assert_eq!(catalog.encode_row(row), before.encode_row(row), "persisted rows match memory for {row:?}");
    }
}

fn lock_key(key: &str, session: &str) -> Command {
    Command::KvLock { key: key.into(), value: vec![], flags: 0, session: session.into(), now_ms: 0 }
}

fn holders(catalog: &Catalog) -> Vec<String> {
    catalog.kv.values().filter_map(|e| e.session.as_ref().map(|s| format!("{}={s}", e.key))).collect()
}

fn node_sessions(catalog: &Catalog, node: &str) -> Vec<String> {
    catalog.node_sessions(node).map(|s| s.id.clone()).collect()
}

/// The indexes behind ending a session (`kv_table`: the keys a session holds; `session_table`:
/// a node's sessions) follow every way a session ends and every rollback, only the right locks
/// go, and they equal the indexes rebuilt from the rows.
#[test]
fn sessions_end_with_exactly_their_locks_through_the_indexes() {
    let mut catalog = Catalog::new();
    let passing = HealthStatus::Passing;
    for (index, node) in [(1, "n1"), (2, "n2"), (3, "n10")] {
        run(&mut catalog, index, registration(node, None, vec![check("serf", "", passing)]));
    }
    run(&mut catalog, 4, session_on("s1", "n1", &["serf"], 0, SessionBehavior::Release));
    run(&mut catalog, 5, session_on("s2", "n1", &[], 0, SessionBehavior::Release));
    run(&mut catalog, 6, session_on("s3", "n2", &["serf"], 0, SessionBehavior::Delete));
    run(&mut catalog, 7, session_on("s4", "n10", &["serf"], 0, SessionBehavior::Release));
    for (index, (key, session)) in [("a", "s1"), ("b", "s1"), ("c", "s2"), ("d", "s3"), ("e", "s4")].into_iter().enumerate() {
        assert_eq!(run(&mut catalog, 8 + index as u64, lock_key(key, session)), Outcome::Bool(true));
    }
    assert_eq!(node_sessions(&catalog, "n1"), ["s1", "s2"], "not n10's");

    // A rolled-back transaction leaves no lock behind, nor takes one away.
    let txn_lock = TxnKvOp { verb: TxnKvVerb::Lock, key: "f".into(), value: vec![], flags: 0, index: 0, session: "s2".into() };
    let fail = TxnKvOp { verb: TxnKvVerb::CheckIndex, key: "missing".into(), value: vec![], flags: 0, index: 9, session: String::new() };
    let drop_n2 = TxnNodeOp {
        verb: TxnCatalogVerb::Delete,
        node_id: String::new(),
        node: "n2".into(),
        address: String::new(),
        datacenter: String::new(),
        tagged_addresses: BTreeMap::new(),
        meta: BTreeMap::new(),
        index: 0,
    };
    let ops = vec![TxnOp::Kv(txn_lock), TxnOp::Node(drop_n2), TxnOp::Kv(fail)];
    assert!(matches!(run(&mut catalog, 20, Command::TxnOps { ops }), Outcome::TxnOps(Err(_))));
    assert_eq!(holders(&catalog), ["a=s1", "b=s1", "c=s2", "d=s3", "e=s4"]);
    assert_eq!(node_sessions(&catalog, "n2"), ["s3"], "the rollback brought n2's session back");

    run(&mut catalog, 21, registration("n1", None, vec![check("serf", "", HealthStatus::Critical)]));
    assert_eq!(holders(&catalog), ["c=s2", "d=s3", "e=s4"], "a critical check ends only the sessions bound to it");
    assert_eq!(node_sessions(&catalog, "n1"), ["s2"]);
    run(&mut catalog, 22, Command::DeregisterNode { node: "n1".into() });
    assert_eq!(holders(&catalog), ["d=s3", "e=s4"], "a node's deregistration ends its sessions");
    run(&mut catalog, 23, Command::SessionDestroy { session: "s3".into(), now_ms: 0 });
    assert!(catalog.kv_get("d").is_none(), "a delete-behaviour session takes its keys");
    assert_eq!(holders(&catalog), ["e=s4"]);
    assert_eq!(node_sessions(&catalog, "n10"), ["s4"]);

    let mut reloaded = Catalog::new();
    for row in catalog.all_rows() {
        let (key, value) = catalog.encode_row(&row).expect("row exists");
        reloaded.load_row(&key, &value).expect("row decodes");
    }
    assert_eq!(reloaded, catalog, "the maintained indexes equal the rebuilt ones");
    assert_eq!(reloaded.kv.held_by("s4"), ["e"]);
}
