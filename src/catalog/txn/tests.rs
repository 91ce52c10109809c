//! Unit tests of transactions: Node, Service and Check verbs, error collection, and rollback
//! of every row a failed transaction touched, in memory and in the persisted rows.

use std::collections::BTreeMap;

use crate::catalog::command::{CheckRegistration, Command, Registration, ServiceRegistration, SessionRequest};
use crate::catalog::model::{HealthStatus, SessionBehavior};
use crate::catalog::txn::{TxnCatalogVerb, TxnCheckOp, TxnError, TxnKvOp, TxnKvVerb, TxnNodeOp, TxnOp, TxnOpResult, TxnServiceOp};
use crate::catalog::{Catalog, ChangeSet, Outcome, apply};

/// Stands in for the state machine's RocksDB rows.
type Disk = BTreeMap<Vec<u8>, Vec<u8>>;

fn disk_of(catalog: &Catalog) -> Disk {
    catalog.all_rows().iter().filter_map(|row| catalog.encode_row(row)).collect()
}

/// Applies `command` and writes the touched rows the way `raft::state_machine` does.
fn apply_and_persist(catalog: &mut Catalog, disk: &mut Disk, index: u64, command: Command) -> Outcome {
    let mut changes = ChangeSet::new();
    let outcome = apply(catalog, index, &command, &mut changes);
    for row in changes.rows() {
        match catalog.encode_row(row) {
            Some((key, value)) => disk.insert(key, value),
            None => disk.remove(&Catalog::row_key_bytes(row)),
        };
    }
    outcome
}

fn reload(disk: &Disk) -> Catalog {
    let mut catalog = Catalog::new();
    for (key, value) in disk {
        catalog.load_row(key, value).expect("persisted row decodes");
    }
    catalog
}

fn node(verb: TxnCatalogVerb, name: &str, index: u64) -> TxnOp {
    TxnOp::Node(TxnNodeOp {
        verb,
        node_id: String::new(),
        node: name.into(),
        address: "10.0.0.9".into(),
        datacenter: "dc1".into(),
        tagged_addresses: BTreeMap::new(),
        meta: BTreeMap::from([("rack".to_string(), "r1".to_string())]),
        index,
    })
}

fn service(verb: TxnCatalogVerb, node: &str, id: &str, index: u64) -> TxnOp {
    let service = ServiceRegistration {
        id: id.into(),
        name: "web".into(),
        tags: vec!["v2".into()],
        port: 80,
        ..Default::default()
    };
    TxnOp::Service(TxnServiceOp { verb, node: node.into(), service, index })
}

fn check_registration(id: &str, service_id: &str, status: HealthStatus) -> CheckRegistration {
    crate::catalog::tests::check(id, service_id, status)
}

fn check(verb: TxnCatalogVerb, node: &str, id: &str, service_id: &str, status: HealthStatus, index: u64) -> TxnOp {
    TxnOp::Check(TxnCheckOp { verb, node: node.into(), check: check_registration(id, service_id, status), index })
}

fn kv(verb: TxnKvVerb, key: &str, value: &str, index: u64) -> TxnOp {
    TxnOp::Kv(TxnKvOp { verb, key: key.into(), value: value.as_bytes().to_vec(), flags: 0, index, session: String::new() })
}

/// A catalog with node `old` (service `db1`, checks `c-node` and `c-db`), a session on `old`
/// bound to `c-node` that holds the lock on `locked`, and a plain key `plain`.
fn seeded(disk: &mut Disk) -> Catalog {
    let mut catalog = Catalog::new();
    let register = Command::Register(Registration {
        node_id: String::new(),
        node: "old".into(),
        address: "10.0.0.1".into(),
        datacenter: "dc1".into(),
        tagged_addresses: BTreeMap::new(),
        node_meta: BTreeMap::new(),
        skip_node_update: false,
        service: match service(TxnCatalogVerb::Set, "old", "db1", 0) {
            TxnOp::Service(op) => Some(op.service),
            _ => None,
        },
        checks: vec![check_registration("c-node", "", HealthStatus::Passing), check_registration("c-db", "db1", HealthStatus::Passing)],
    });
    apply_and_persist(&mut catalog, disk, 1, register);
    let session = SessionRequest {
        id: "s1".into(),
        name: String::new(),
        node: "old".into(),
        node_checks: vec!["c-node".into()],
        service_checks: vec![],
        lock_delay_ms: 0,
        behavior: SessionBehavior::Release,
        ttl_s: 0,
    };
    assert_eq!(apply_and_persist(&mut catalog, disk, 2, Command::SessionCreate(session)), Outcome::Done);
    let lock = Command::KvLock { key: "locked".into(), value: b"x".to_vec(), flags: 0, session: "s1".into(), now_ms: 0 };
    assert_eq!(apply_and_persist(&mut catalog, disk, 3, lock), Outcome::Bool(true));
    let plain = Command::KvSet { key: "plain".into(), value: b"p".to_vec(), flags: 0, cas_index: None };
    apply_and_persist(&mut catalog, disk, 4, plain);
    catalog
}

#[test]
fn mixed_transaction_commits_and_returns_consul_shaped_rows() {
    let mut disk = Disk::new();
    let mut catalog = seeded(&mut disk);
    let ops = vec![
        kv(TxnKvVerb::Set, "app/config", "v", 0),
        node(TxnCatalogVerb::Set, "n1", 0),
        service(TxnCatalogVerb::Set, "n1", "web1", 0),
        check(TxnCatalogVerb::Set, "n1", "web-alive", "web1", HealthStatus::Passing, 0),
        node(TxnCatalogVerb::Get, "n1", 0),
        check(TxnCatalogVerb::DeleteCas, "old", "c-db", "", HealthStatus::Passing, 1),
    ];
    let Outcome::TxnOps(Ok(results)) = apply_and_persist(&mut catalog, &mut disk, 10, Command::TxnOps { ops }) else {
        panic!("transaction failed")
    };
    assert_eq!(results.len(), 5, "delete-cas adds no row");
    assert!(matches!(&results[0], TxnOpResult::Kv(row) if row.entry.key == "app/config" && !row.include_value));
    assert!(matches!(&results[1], TxnOpResult::Node(n) if n.name == "n1" && n.create_index == 10));
    assert!(matches!(&results[2], TxnOpResult::Service(s) if s.id == "web1" && s.modify_index == 10));
    assert!(matches!(&results[3], TxnOpResult::Check(c) if c.service_name == "web" && c.service_tags == ["v2"]));
    assert!(matches!(&results[4], TxnOpResult::Node(n) if n.meta["rack"] == "r1"));
    assert_eq!(catalog.health_instances("web").len(), 2);
    assert!(catalog.checks().all(|c| c.check_id != "c-db"));
    assert_eq!(reload(&disk), catalog);
}

#[test]
fn failed_transaction_restores_every_row_in_memory_and_on_disk() {
    let mut disk = Disk::new();
    let mut catalog = seeded(&mut disk);
    let before = catalog.clone();
    let ops = vec![
        kv(TxnKvVerb::Set, "plain", "changed", 0),
        node(TxnCatalogVerb::Set, "n1", 0),
        service(TxnCatalogVerb::Set, "n1", "web1", 0),
        check(TxnCatalogVerb::Set, "n1", "web-alive", "web1", HealthStatus::Critical, 0),
        // A service update rewrites the denormalized fields of its checks.
        service(TxnCatalogVerb::Set, "old", "db1", 0),
        // A critical node check ends session s1, which releases `locked`.
        check(TxnCatalogVerb::Set, "old", "c-node", "", HealthStatus::Critical, 0),
        node(TxnCatalogVerb::Delete, "old", 0),
        kv(TxnKvVerb::Cas, "plain", "stale", 999),
    ];
    let outcome = apply_and_persist(&mut catalog, &mut disk, 10, Command::TxnOps { ops });
    assert_eq!(outcome, Outcome::TxnOps(Err(vec![TxnError { op_index: 7, what: "failed to set key \"plain\", index is stale".into() }])));
    assert_eq!(catalog, before, "the in-memory catalog is back to where it was");
    assert_eq!(catalog.indexes(), before.indexes());
    assert_eq!(reload(&disk), before, "the persisted rows equal the in-memory catalog");
    assert_eq!(disk, disk_of(&before), "byte for byte, with no row left over");
}

#[test]
fn every_failure_is_reported_and_nothing_sticks() {
    let mut disk = Disk::new();
    let mut catalog = seeded(&mut disk);
    let before = catalog.clone();
    let ops = vec![
        service(TxnCatalogVerb::Set, "nowhere", "web1", 0),
        node(TxnCatalogVerb::Cas, "old", 0),
        check(TxnCatalogVerb::Set, "old", "c2", "missing", HealthStatus::Passing, 0),
        node(TxnCatalogVerb::DeleteCas, "old", 77),
        service(TxnCatalogVerb::Get, "old", "nope", 0),
        check(TxnCatalogVerb::Get, "old", "nope", "", HealthStatus::Passing, 0),
        node(TxnCatalogVerb::Set, "fine", 0),
        service(TxnCatalogVerb::DeleteCas, "old", "db1", 5),
    ];
    let Outcome::TxnOps(Err(errors)) = apply_and_persist(&mut catalog, &mut disk, 10, Command::TxnOps { ops }) else {
        panic!("transaction should fail")
    };
    let whats: Vec<(usize, &str)> = errors.iter().map(|e| (e.op_index, e.what.as_str())).collect();
    assert_eq!(
        whats,
        vec![
            (0, "Missing node registration"),
            (1, "failed to set node \"old\", index is stale"),
            (2, "Missing service registration"),
            (3, "failed to delete node \"old\", index is stale"),
            (4, "service \"nope\" on node \"old\" doesn't exist"),
            (5, "check \"nope\" on node \"old\" doesn't exist"),
            (7, "failed to delete service \"db1\" on node \"old\", index is stale"),
        ]
    );
    assert_eq!(catalog, before);
    assert_eq!(disk, disk_of(&before));
}

#[test]
fn cas_verbs_follow_consul() {
    let mut disk = Disk::new();
    let mut catalog = seeded(&mut disk);
    let run = |catalog: &mut Catalog, disk: &mut Disk, index, op| apply_and_persist(catalog, disk, index, Command::TxnOps { ops: vec![op] });
    // Index 0 creates only; a matching index updates; a stale one fails.
    assert!(matches!(run(&mut catalog, &mut disk, 10, node(TxnCatalogVerb::Cas, "n1", 0)), Outcome::TxnOps(Ok(_))));
    assert!(matches!(run(&mut catalog, &mut disk, 11, service(TxnCatalogVerb::Cas, "n1", "w", 0)), Outcome::TxnOps(Ok(_))));
    assert!(matches!(run(&mut catalog, &mut disk, 12, service(TxnCatalogVerb::Cas, "n1", "w", 10)), Outcome::TxnOps(Err(_))));
    let Outcome::TxnOps(Ok(rows)) = run(&mut catalog, &mut disk, 13, service(TxnCatalogVerb::Cas, "n1", "w", 11)) else {
        panic!("cas with the current index should succeed")
    };
    assert!(matches!(&rows[0], TxnOpResult::Service(s) if (s.create_index, s.modify_index) == (11, 11)), "unchanged content keeps its index");
    assert!(matches!(run(&mut catalog, &mut disk, 14, check(TxnCatalogVerb::Cas, "old", "c-node", "", HealthStatus::Warning, 1)), Outcome::TxnOps(Ok(_))));
    assert_eq!(catalog.checks().find(|c| c.check_id == "c-node").map(|c| (c.status, c.modify_index)), Some((HealthStatus::Warning, 14)));
    assert!(matches!(run(&mut catalog, &mut disk, 15, check(TxnCatalogVerb::DeleteCas, "old", "c-node", "", HealthStatus::Warning, 14)), Outcome::TxnOps(Ok(_))));
    assert!(catalog.session("s1").is_none(), "deleting a session's check ends the session");
    assert!(matches!(run(&mut catalog, &mut disk, 16, node(TxnCatalogVerb::DeleteCas, "n1", 10)), Outcome::TxnOps(Ok(_))));
    assert!(catalog.node("n1").is_none() && catalog.service("n1", "w").is_none());
    assert_eq!(reload(&disk), catalog);
}

#[test]
fn legacy_kv_txn_still_stops_at_the_first_failure() {
    let mut disk = Disk::new();
    let mut catalog = seeded(&mut disk);
    let before = catalog.clone();
    let op = |verb, key: &str, index| TxnKvOp { verb, key: key.into(), value: b"v".to_vec(), flags: 0, index, session: String::new() };
    let ops = vec![op(TxnKvVerb::Set, "a", 0), op(TxnKvVerb::Cas, "plain", 999), op(TxnKvVerb::Get, "missing", 0)];
    let outcome = apply_and_persist(&mut catalog, &mut disk, 10, Command::Txn { ops });
    let Outcome::Txn(Err(errors)) = outcome else { panic!("legacy txn should fail") };
    assert_eq!(errors.iter().map(|e| e.op_index).collect::<Vec<_>>(), vec![1]);
    assert_eq!(catalog, before);
    assert_eq!(reload(&disk), before);
}
