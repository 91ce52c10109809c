//! Unit tests of the pure catalog: apply semantics, persistence round trips and the pinned
//! wire encoding of commands.

use std::collections::BTreeMap;

use crate::catalog::codec::{decode_command, encode_command};
use crate::catalog::command::{CheckRegistration, Command, Registration, ServiceRegistration, SessionRequest};
use crate::catalog::model::{CheckDefinition, HealthStatus, SessionBehavior};
use crate::catalog::txn::{TxnCatalogVerb, TxnCheckOp, TxnKvOp, TxnKvVerb, TxnNodeOp, TxnOp, TxnServiceOp};
use crate::catalog::{Catalog, ChangeSet, Outcome, apply};

pub(crate) fn registration(node: &str, service: Option<(&str, &str)>, checks: Vec<CheckRegistration>) -> Command {
    Command::Register(Registration {
        node_id: String::new(),
        node: node.into(),
        address: "10.0.0.1".into(),
        datacenter: "dc1".into(),
        tagged_addresses: BTreeMap::new(),
        node_meta: BTreeMap::new(),
        skip_node_update: false,
        service: service.map(|(id, name)| ServiceRegistration {
            id: id.into(),
            name: name.into(),
            tags: vec!["v1".into()],
            port: 8080,
            ..Default::default()
        }),
        checks,
    })
}

/// A session on `node` with no checks, no lock-delay and the release behaviour.
pub(crate) fn release_session(id: &str, node: &str) -> Command {
    Command::SessionCreate(SessionRequest {
        id: id.into(),
        name: String::new(),
        node: node.into(),
        node_checks: vec![],
        service_checks: vec![],
        lock_delay_ms: 0,
        behavior: SessionBehavior::Release,
        ttl_s: 0,
    })
}

pub(crate) fn check(id: &str, service_id: &str, status: HealthStatus) -> CheckRegistration {
    CheckRegistration {
        check_id: id.into(),
        name: id.into(),
        status,
        notes: String::new(),
        output: String::new(),
        service_id: service_id.into(),
        definition: CheckDefinition::default(),
    }
}

pub(super) fn run(catalog: &mut Catalog, index: u64, command: Command) -> Outcome {
    apply(catalog, index, &command, &mut ChangeSet::new())
}

#[test]
fn register_then_query_health() {
    let mut catalog = Catalog::new();
    let outcome = run(&mut catalog, 5, registration("n1", Some(("web1", "web")), vec![check("c1", "web1", HealthStatus::Critical)]));
    assert_eq!(outcome, Outcome::Done);
    let instances = catalog.health_instances("web");
    assert_eq!(instances.len(), 1);
    assert_eq!(instances[0].aggregate_status(), HealthStatus::Critical);
    assert_eq!(catalog.service_names().get("web"), Some(&vec!["v1".to_string()]));
    assert_eq!(catalog.indexes().services, 5);

    run(&mut catalog, 6, Command::UpdateCheck { node: "n1".into(), check_id: "c1".into(), status: HealthStatus::Passing, output: "ok".into() });
    assert_eq!(catalog.health_instances("web")[0].aggregate_status(), HealthStatus::Passing);
}

#[test]
fn check_bound_to_unknown_service_is_rejected_and_changes_nothing() {
    let mut catalog = Catalog::new();
    let before = catalog.clone();
    let outcome = run(&mut catalog, 1, registration("n1", None, vec![check("c1", "nope", HealthStatus::Passing)]));
    assert!(matches!(outcome, Outcome::Rejected(_)));
    assert_eq!(catalog, before);
}

#[test]
fn idempotent_register_keeps_modify_index() {
    let mut catalog = Catalog::new();
    run(&mut catalog, 3, registration("n1", Some(("a", "a")), vec![]));
    let mut changes = ChangeSet::new();
    apply(&mut catalog, 4, &registration("n1", Some(("a", "a")), vec![]), &mut changes);
    assert!(changes.is_empty());
    assert_eq!(catalog.service("n1", "a").map(|s| s.modify_index), Some(3));
}

#[test]
fn kv_cas_rules() {
    let mut catalog = Catalog::new();
    let set = |cas| Command::KvSet { key: "k".into(), value: b"v".to_vec(), flags: 0, cas_index: cas };
    assert_eq!(run(&mut catalog, 1, set(Some(50))), Outcome::Bool(false));
    assert_eq!(run(&mut catalog, 2, set(Some(0))), Outcome::Bool(true));
    assert_eq!(run(&mut catalog, 3, set(Some(0))), Outcome::Bool(false));
    assert_eq!(run(&mut catalog, 4, set(Some(1))), Outcome::Bool(false));
    assert_eq!(run(&mut catalog, 5, set(Some(2))), Outcome::Bool(true));
    assert_eq!(catalog.kv_get("k").map(|e| (e.create_index, e.modify_index)), Some((2, 5)));
    assert_eq!(run(&mut catalog, 6, Command::KvDelete { key: "k".into(), cas_index: Some(4) }), Outcome::Bool(false));
    assert_eq!(run(&mut catalog, 7, Command::KvDelete { key: "k".into(), cas_index: Some(5) }), Outcome::Bool(true));
    assert!(catalog.kv_get("k").is_none());
    assert_eq!(catalog.indexes().kv, 7, "a delete moves the table index forward");
}

#[test]
fn locks_and_session_destroy_release() {
    let mut catalog = Catalog::new();
    run(&mut catalog, 1, registration("n1", None, vec![]));
    let session = |id: &str| release_session(id, "n1");
    assert_eq!(run(&mut catalog, 2, session("s1")), Outcome::Done);
    assert_eq!(run(&mut catalog, 3, session("s2")), Outcome::Done);
    let lock = |s: &str| Command::KvLock { key: "l".into(), value: vec![], flags: 0, session: s.into(), now_ms: 0 };
    assert_eq!(run(&mut catalog, 4, lock("s1")), Outcome::Bool(true));
    assert_eq!(run(&mut catalog, 5, lock("s2")), Outcome::Bool(false));
    assert!(matches!(run(&mut catalog, 6, lock("nope")), Outcome::Rejected(_)));
    assert_eq!(catalog.kv_get("l").map(|e| e.lock_index), Some(1));
    run(&mut catalog, 7, Command::SessionDestroy { session: "s1".into(), now_ms: 0 });
    assert_eq!(catalog.kv_get("l").and_then(|e| e.session.clone()), None);
    assert_eq!(run(&mut catalog, 8, lock("s2")), Outcome::Bool(true));
    assert_eq!(catalog.kv_get("l").map(|e| e.lock_index), Some(2));
}

#[test]
fn kv_keys_with_separator() {
    let mut catalog = Catalog::new();
    for (i, key) in ["bar", "base/foo", "base/base/foo"].iter().enumerate() {
        run(&mut catalog, i as u64 + 1, Command::KvSet { key: (*key).into(), value: vec![], flags: 0, cas_index: None });
    }
    assert_eq!(catalog.kv_keys("base/", Some("/")), vec!["base/base/", "base/foo"]);
    assert_eq!(catalog.kv_keys("", None), vec!["bar", "base/base/foo", "base/foo"]);
}

#[test]
fn rows_round_trip_through_persistence() {
    let mut catalog = Catalog::new();
    run(&mut catalog, 1, registration("n1", Some(("web1", "web")), vec![check("c1", "web1", HealthStatus::Warning)]));
    run(&mut catalog, 2, Command::KvSet { key: "a/b".into(), value: vec![0, 255], flags: 9, cas_index: None });
    let mut reloaded = Catalog::new();
    for row in catalog.all_rows() {
        let (key, value) = catalog.encode_row(&row).expect("row exists");
        reloaded.load_row(&key, &value).expect("row decodes");
    }
    assert_eq!(reloaded, catalog);
    assert_eq!(reloaded.digest(), catalog.digest());
}

/// The checks-by-service index (`check_table`) behind `service_checks` and
/// `service_name_checks` follows every write, and equals the one rebuilt from the rows.
#[test]
fn a_services_checks_are_found_through_the_index_after_every_kind_of_write() {
    let mut catalog = Catalog::new();
    let ids = |checks: Vec<&crate::catalog::model::Check>| checks.iter().map(|c| format!("{}/{}", c.node, c.check_id)).collect::<Vec<_>>();
    let passing = HealthStatus::Passing;
    run(&mut catalog, 1, registration("n2", Some(("web1", "web")), vec![check("b", "web1", passing), check("a", "web1", passing)]));
    run(&mut catalog, 2, registration("n1", Some(("web1", "web")), vec![check("z", "web1", passing)]));
    run(&mut catalog, 3, registration("n1", Some(("db1", "db")), vec![check("d", "db1", passing), check("mem", "", passing)]));
    assert_eq!(ids(catalog.service_name_checks("web")), ["n1/z", "n2/a", "n2/b"], "by node, then check ID");
    assert_eq!(ids(catalog.service_checks("n1", "db1").collect()), ["n1/d"], "not the node check");
    // A check re-registered under another service moves; a renamed service takes its checks.
    run(&mut catalog, 4, registration("n2", Some(("db1", "db")), vec![check("b", "db1", passing)]));
    run(&mut catalog, 5, registration("n1", Some(("web1", "api")), vec![]));
    assert_eq!(ids(catalog.service_name_checks("web")), ["n2/a"]);
    assert_eq!(ids(catalog.service_name_checks("api")), ["n1/z"]);
    assert_eq!(ids(catalog.service_name_checks("db")), ["n1/d", "n2/b"]);
    // Deregistering a service takes its checks, a node all of its own.
    run(&mut catalog, 6, Command::DeregisterService { node: "n2".into(), service_id: "db1".into() });
    assert!(catalog.check("n2", "b").is_none() && catalog.check("n2", "a").is_some());
    run(&mut catalog, 7, Command::DeregisterNode { node: "n1".into() });
    assert_eq!(ids(catalog.service_name_checks("db")), Vec::<String>::new());
    assert_eq!(ids(catalog.checks().collect()), ["n2/a"]);
    let mut reloaded = Catalog::new();
    for row in catalog.all_rows() {
        let (key, value) = catalog.encode_row(&row).expect("row exists");
        reloaded.load_row(&key, &value).expect("row decodes");
    }
    assert_eq!(reloaded, catalog, "the maintained index equals the rebuilt one");
}

/// The encoding of each command is a compatibility promise: these bytes must never change.
#[test]
fn command_encoding_is_pinned() {
    let cases: Vec<(Command, &str)> = vec![
        (Command::DeregisterNode { node: "n".into() }, "0101016e"),
        (Command::DeregisterService { node: "n".into(), service_id: "s".into() }, "0102016e0173"),
        (Command::DeregisterCheck { node: "n".into(), check_id: "c".into() }, "0103016e0163"),
        (Command::KvSet { key: "k".into(), value: vec![7], flags: 2, cas_index: Some(3) }, "0105016b01070201 03".trim()),
        (Command::KvDelete { key: "k".into(), cas_index: None }, "0106016b00"),
        (Command::KvDeleteTree { prefix: "p".into() }, "01070170"),
        (Command::SessionDestroy { session: "s".into(), now_ms: 1 }, "010b017301"),
        (Command::At { now_ms: 1, command: Box::new(Command::DeregisterNode { node: "n".into() }) }, "01100101016e"),
        (Command::KvReapTombstones { up_to_index: 5 }, "011105"),
        (Command::SetKvHistoryVersions { versions: 3 }, "011203"),
        // Batch (tag 20) of one KvDeleteTree (tag 7) of "p".
        (Command::Batch(vec![Command::KvDeleteTree { prefix: "p".into() }]), "0114 01 07 0170"),
        // Txn (tag 15): one KV `set` of k = [7].
        (Command::Txn { ops: vec![kv_op()] }, "010f 01 00 016b 0107 00 00 00"),
        // TxnOps (tag 19): TxnOp::Kv (0) wraps the same bytes.
        (Command::TxnOps { ops: vec![TxnOp::Kv(kv_op())] }, "0113 01 00 00 016b 0107 00 00 00"),
        // TxnOp::Node (1), delete-cas (4) of node "n" at index 5; empty ID, address, datacenter, maps.
        (Command::TxnOps { ops: vec![TxnOp::Node(node_op())] }, "0113 01 01 04 00 016e 00 00 00 00 05"),
        // TxnOp::Service (2), delete (3) on node "n" of service "s" (weights 1/1), index 0.
        (Command::TxnOps { ops: vec![TxnOp::Service(service_op())] }, "0113 01 02 03 016e 0173 0173 00 00 00 00 00 00 00 01 01 00 00"),
        // TxnOp::Check (3), cas (1) on node "n" of passing check "c", empty definition, index 2.
        (Command::TxnOps { ops: vec![TxnOp::Check(check_op())] }, "0113 01 03 01 016e 0163 0163 00 00 00 00 00 00 00 00 00 00 02"),
        // Format 2 (it is new in format 2), SetAutopilotConfig (tag 25): cleanup on, threshold 1 ns, 2 trailing logs, quorum 3,
        // stabilization 4 ns; cas on index 5.
        (
            Command::SetAutopilotConfig {
                settings: crate::catalog::model::AutopilotSettings {
                    cleanup_dead_servers: true,
                    last_contact_threshold_ns: 1,
                    max_trailing_logs: 2,
                    min_quorum: 3,
                    server_stabilization_time_ns: 4,
                },
                cas_index: Some(5),
            },
            "0219 01 01 02 03 04 01 05",
        ),
    ];
    for (command, hex) in cases {
        let hex: String = hex.split_whitespace().collect();
        let bytes = encode_command(&command);
        let got: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, hex, "encoding of {command:?} changed");
        assert_eq!(decode_command(&bytes).expect("decodes"), command);
    }
    assert!(decode_command(&[3, 0]).is_err(), "formats newer than this build's are refused");
    assert!(decode_command(&[0, 0]).is_err(), "format 0 never existed");
    assert!(decode_command(&[]).is_err());
}

fn kv_op() -> TxnKvOp {
    TxnKvOp { verb: TxnKvVerb::Set, key: "k".into(), value: vec![7], flags: 0, index: 0, session: String::new() }
}

fn node_op() -> TxnNodeOp {
    TxnNodeOp {
        verb: TxnCatalogVerb::DeleteCas,
        node_id: String::new(),
        node: "n".into(),
        address: String::new(),
        datacenter: String::new(),
        tagged_addresses: BTreeMap::new(),
        meta: BTreeMap::new(),
        index: 5,
    }
}

fn service_op() -> TxnServiceOp {
    let Command::Register(Registration { service: Some(mut service), .. }) = registration("n", Some(("s", "s")), vec![]) else {
        unreachable!("registration() builds a Register with a service")
    };
    service.tags.clear();
    service.port = 0;
    TxnServiceOp { verb: TxnCatalogVerb::Delete, node: "n".into(), service, index: 0 }
}

fn check_op() -> TxnCheckOp {
    TxnCheckOp { verb: TxnCatalogVerb::Cas, node: "n".into(), check: check("c", "", HealthStatus::Passing), index: 2 }
}

/// Regression (issue 10): a `Command::At` nested ~1,230 deep, posted to `/raft/forward`,
/// overflowed the stack while decoding. Depth beyond `COMMAND_NESTING_DEPTH_MAX` is refused
/// as it is decoded, so no depth of hostile bytes can recurse further.
#[test]
fn deeply_nested_commands_are_refused_while_decoding() {
    let leaf = Command::KvDelete { key: "k".into(), cas_index: None };
    let stamped = |c: Command| Command::At { now_ms: 0, command: Box::new(c) };
    // What the agent produces: a batch of stamped commands (2 deep) decodes.
    let batch = Command::Batch(vec![stamped(leaf.clone()), leaf.clone()]);
    assert_eq!(decode_command(&encode_command(&batch)).unwrap(), batch);
    // One level more is refused, and the decoder's depth is released after the error.
    let too_deep = Command::Batch(vec![stamped(stamped(leaf.clone()))]);
    assert!(decode_command(&encode_command(&too_deep)).is_err());
    assert_eq!(decode_command(&encode_command(&stamped(leaf.clone()))).unwrap(), stamped(leaf.clone()));
    // A million levels of hand-made At prefixes: refused, no stack overflow.
    let one_level = encode_command(&stamped(leaf.clone()));
    let leaf_bytes = encode_command(&leaf);
    let prefix = &one_level[1..one_level.len() - (leaf_bytes.len() - 1)];
    let mut hostile = vec![one_level[0]];
    for _ in 0..1_000_000 {
        hostile.extend_from_slice(prefix);
    }
    hostile.extend_from_slice(&leaf_bytes[1..]);
    assert!(decode_command(&hostile).is_err());
}
