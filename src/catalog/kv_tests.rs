//! Unit tests of the KV rules in `catalog::kv`: tombstones and prefix indexes, lock-delay,
//! history, and transactions rolling all of them back.

use crate::catalog::command::{Command, SessionRequest};
use crate::catalog::model::SessionBehavior;
use crate::catalog::tests::{registration, run};
use crate::catalog::txn::{TxnKvOp, TxnKvVerb};
use crate::catalog::{Catalog, ChangeSet, Outcome, apply};

fn set(key: &str, value: &str) -> Command {
    Command::KvSet { key: key.into(), value: value.as_bytes().to_vec(), flags: 0, cas_index: None }
}

fn session(id: &str, lock_delay_ms: u64, behavior: SessionBehavior) -> Command {
    Command::SessionCreate(SessionRequest {
        id: id.into(),
        name: String::new(),
        node: "n1".into(),
        node_checks: vec![],
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
