//! Real values the seeds are built from: one of every `Command` variant the agent proposes,
//! and the catalog they leave behind (the state fuzzed commands are applied to, and the rows
//! fuzzed snapshots are made of). The golden bytes (`src/golden`) are built from them too: a
//! changed sample fails the golden tests, so add samples rather than change them.

use std::collections::BTreeMap;

use crate::catalog::acl::{AclAuthMethod, AclBindingRule, AclLink, AclOp, AclPolicy, AclRole, AclToken, NodeIdentity, ServiceIdentity, TemplatedPolicyRef};
use crate::catalog::command::{CheckRegistration, Registration, ServiceRegistration, SessionRequest};
use crate::catalog::coordinates::{CoordinateUpdate, NodeCoordinate};
use crate::catalog::model::{CheckDefinition, HealthStatus, ServiceAddress, SessionBehavior, Weights};
use crate::catalog::txn::{TxnCatalogVerb, TxnCheckOp, TxnKvOp, TxnKvVerb, TxnNodeOp, TxnOp, TxnServiceOp};
use crate::catalog::{Catalog, ChangeSet, Command, apply};

pub(crate) const SESSION_ID: &str = "adf4238a-882b-9ddc-4a9d-5b6758e4159e";
const POLICY_ID: &str = "8f4d5e5c-2f6a-4b1e-9c3d-1a2b3c4d5e6f";
const ROLE_ID: &str = "5e52a099-4c90-c067-5478-980f06be9af5";
const TOKEN_ACCESSOR: &str = "6a1253d2-1785-24fd-91c2-f8e78c745511";
const TOKEN_SECRET: &str = "45a3bd52-07c7-47a4-52fd-0745e0cfe967";

pub(crate) fn service(id: &str, name: &str) -> ServiceRegistration {
    ServiceRegistration {
        id: id.into(),
        name: name.into(),
        tags: vec!["prod".into(), "v1".into()],
        address: "10.0.0.5".into(),
        tagged_addresses: BTreeMap::from([("lan".into(), ServiceAddress { address: "10.0.0.5".into(), port: 8080 })]),
        meta: BTreeMap::from([("version".into(), "1.2".into())]),
        port: 8080,
        kind: String::new(),
        enable_tag_override: false,
        weights: Weights { passing: 10, warning: 1 },
        opaque_json: BTreeMap::from([("Proxy".into(), "{\"Mode\":\"\"}".into())]),
    }
}

pub(crate) fn check(id: &str, service_id: &str, status: HealthStatus) -> CheckRegistration {
    CheckRegistration {
        check_id: id.into(),
        name: format!("check {id}"),
        status,
        notes: "notes".into(),
        output: "HTTP GET http://10.0.0.5:8080/health: 200 OK".into(),
        service_id: service_id.into(),
        definition: CheckDefinition {
            check_type: "http".into(),
            http: "http://10.0.0.5:8080/health".into(),
            tcp: String::new(),
            interval: "10s".into(),
            timeout: "1s".into(),
            deregister_critical_service_after: "90m".into(),
        },
    }
}

pub(crate) fn registration(node: &str, service_id: &str) -> Registration {
    Registration {
        node_id: "b3a9e1b2-0a44-4c2c-8e2e-1f3c5d7e9a0b".into(),
        node: node.into(),
        address: "10.0.0.5".into(),
        datacenter: "dc1".into(),
        tagged_addresses: BTreeMap::from([("wan".into(), "192.0.2.5".into())]),
        node_meta: BTreeMap::from([("rack".into(), "r1".into())]),
        skip_node_update: false,
        service: Some(service(service_id, "web")),
        checks: vec![check("web-http", service_id, HealthStatus::Passing), check("serfHealth", "", HealthStatus::Passing)],
    }
}

fn token() -> AclToken {
    AclToken {
        accessor_id: TOKEN_ACCESSOR.into(),
        secret_id: TOKEN_SECRET.into(),
        description: "web token".into(),
        policies: vec![AclLink { id: POLICY_ID.into(), name: "web-write".into() }],
        roles: vec![AclLink { id: ROLE_ID.into(), name: "web-role".into() }],
        service_identities: vec![ServiceIdentity { service_name: "web".into(), datacenters: vec!["dc1".into()] }],
        node_identities: vec![NodeIdentity { node_name: "node-1".into(), datacenter: "dc1".into() }],
        templated_policies: vec![TemplatedPolicyRef { template_name: "builtin/service".into(), name: Some("web".into()), datacenters: Vec::new() }],
        local: false,
        auth_method: String::new(),
        expiration_time_ms: Some(1_900_000_000_000),
        create_time_ms: 1_700_000_000_000,
        create_index: 0,
        modify_index: 0,
    }
}

fn acl_ops() -> Vec<AclOp> {
    let policy = AclPolicy {
        id: POLICY_ID.into(),
        name: "web-write".into(),
        description: "web".into(),
        rules: "service \"web\" { policy = \"write\" }\nkey_prefix \"app/\" { policy = \"read\" }".into(),
        datacenters: Vec::new(),
        create_index: 0,
        modify_index: 0,
    };
    let role = AclRole {
        id: ROLE_ID.into(),
        name: "web-role".into(),
        description: String::new(),
        policies: vec![AclLink { id: POLICY_ID.into(), name: "web-write".into() }],
        service_identities: Vec::new(),
        node_identities: Vec::new(),
        templated_policies: Vec::new(),
        create_index: 0,
        modify_index: 0,
    };
    let method = AclAuthMethod {
        name: "k8s".into(),
        method_type: "kubernetes".into(),
        display_name: "Kubernetes".into(),
        description: String::new(),
        max_token_ttl_ms: 3_600_000,
        token_locality: "local".into(),
        config_json: "{\"Host\":\"https://k8s\"}".into(),
        create_index: 0,
        modify_index: 0,
    };
    let rule = AclBindingRule {
        id: "0d6e2e6a-1c1a-4c2b-8f3e-5a6b7c8d9e0f".into(),
        description: String::new(),
        auth_method: "k8s".into(),
        selector: "serviceaccount.name==web".into(),
        bind_type: "service".into(),
        bind_name: "web".into(),
        create_index: 0,
        modify_index: 0,
    };
    let mut bootstrap = token();
    bootstrap.accessor_id = "00000000-0000-0000-0000-0000000000aa".into();
    bootstrap.secret_id = "00000000-0000-0000-0000-0000000000bb".into();
    vec![
        AclOp::PolicySet { policy },
        AclOp::RoleSet { role },
        AclOp::TokenSet { token: token(), create: true },
        AclOp::AuthMethodSet { method },
        AclOp::BindingRuleSet { rule },
        AclOp::Bootstrap { token: bootstrap },
    ]
}

fn txn_ops() -> Vec<TxnOp> {
    let kv = |verb, key: &str| TxnKvOp { verb, key: key.into(), value: b"v".to_vec(), flags: 3, index: 0, session: String::new() };
    vec![
        TxnOp::Kv(kv(TxnKvVerb::Set, "app/txn")),
        TxnOp::Kv(kv(TxnKvVerb::Get, "app/config")),
        TxnOp::Kv(TxnKvOp { session: SESSION_ID.into(), ..kv(TxnKvVerb::Lock, "app/txn-lock") }),
        TxnOp::Node(TxnNodeOp {
            verb: TxnCatalogVerb::Set,
            node_id: String::new(),
            node: "node-2".into(),
            address: "10.0.0.6".into(),
            datacenter: "dc1".into(),
            tagged_addresses: BTreeMap::new(),
            meta: BTreeMap::new(),
            index: 0,
        }),
        TxnOp::Service(TxnServiceOp { verb: TxnCatalogVerb::Set, node: "node-2".into(), service: service("api-1", "api"), index: 0 }),
        TxnOp::Check(TxnCheckOp { verb: TxnCatalogVerb::Set, node: "node-2".into(), check: check("api-alive", "api-1", HealthStatus::Warning), index: 0 }),
    ]
}

/// One of every command, in an order that applies cleanly to an empty catalog.
pub(crate) fn commands() -> Vec<Command> {
    let mut commands = vec![
        Command::At { now_ms: 1_700_000_000_000, command: Box::new(Command::Register(registration("node-1", "web-1"))) },
        Command::Register(registration("node-3", "web-3")),
        Command::UpdateCheck { node: "node-1".into(), check_id: "web-http".into(), status: HealthStatus::Warning, output: "slow".into() },
        Command::KvSet { key: "app/config".into(), value: b"{\"a\":1}".to_vec(), flags: 42, cas_index: None },
        Command::KvSet { key: "app/other".into(), value: vec![0, 1, 2, 255], flags: 0, cas_index: Some(0) },
        Command::SessionCreate(SessionRequest {
            id: SESSION_ID.into(),
            name: "lock".into(),
            node: "node-1".into(),
            node_checks: vec!["serfHealth".into()],
            service_checks: vec!["web-http".into()],
            lock_delay_ms: 15_000,
            behavior: SessionBehavior::Release,
            ttl_s: 30,
        }),
        Command::KvLock { key: "app/leader".into(), value: b"node-1".to_vec(), flags: 0, session: SESSION_ID.into(), now_ms: 1_700_000_000_500 },
        Command::KvUnlock { key: "app/leader".into(), value: Vec::new(), flags: 0, session: SESSION_ID.into() },
        Command::ConfigSet { kind: "service-defaults".into(), name: "web".into(), body_json: "{\"Protocol\":\"http\"}".into(), cas_index: None },
        Command::Txn { ops: vec![TxnKvOp { verb: TxnKvVerb::Set, key: "app/old-txn".into(), value: vec![7], flags: 0, index: 0, session: String::new() }] },
        Command::TxnOps { ops: txn_ops() },
        Command::SetKvHistoryVersions { versions: 3 },
        Command::KvSet { key: "app/config".into(), value: b"{\"a\":2}".to_vec(), flags: 42, cas_index: None },
        Command::CoordinateBatchUpdate(vec![CoordinateUpdate {
            node: "node-1".into(),
            segment: String::new(),
            coord: NodeCoordinate { vec: vec![0.001; 8], error: 1.5, adjustment: 0.0, height: 1e-5 },
        }]),
        Command::Batch(vec![
            Command::At { now_ms: 1_700_000_001_000, command: Box::new(Command::DeregisterCheck { node: "node-3".into(), check_id: "web-http".into() }) },
            Command::KvDelete { key: "app/other".into(), cas_index: None },
        ]),
        Command::At { now_ms: 1_700_000_002_000, command: Box::new(Command::DeregisterService { node: "node-3".into(), service_id: "web-3".into() }) },
        Command::KvDeleteTree { prefix: "app/old".into() },
    ];
    commands.extend(acl_ops().into_iter().map(Command::Acl));
    commands.extend([
        Command::ConfigDelete { kind: "service-defaults".into(), name: "nothing".into(), cas_index: Some(1) },
        Command::SessionDestroy { session: "00000000-0000-0000-0000-000000000000".into(), now_ms: 1_700_000_003_000 },
        Command::KvReapTombstones { up_to_index: 5 },
        Command::At { now_ms: 1_700_000_004_000, command: Box::new(Command::DeregisterNode { node: "node-9".into() }) },
    ]);
    // Later samples go here, at the end: the golden bytes (`src/golden`) pin the indexes the
    // samples above are applied at.
    commands.push(Command::SetAutopilotConfig {
        settings: crate::catalog::model::AutopilotSettings {
            cleanup_dead_servers: true,
            last_contact_threshold_ns: 200_000_000,
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time_ns: 10_000_000_000,
        },
        cas_index: Some(0),
    });
    commands
}

/// The catalog `commands()` leave behind, and the Raft index after them.
pub(crate) fn catalog() -> (Catalog, u64) {
    let mut catalog = Catalog::new();
    let mut index = 1;
    for command in commands() {
        let mut changes = ChangeSet::new();
        let outcome = apply(&mut catalog, index, &command, &mut changes);
        assert!(!matches!(outcome, crate::catalog::Outcome::Rejected(_)), "sample {command:?} is rejected: {outcome:?}");
        index += 1;
    }
    // A restore replaces everything with the rows of the catalog so far: the last variant.
    let rows = rows(&catalog);
    let mut changes = ChangeSet::new();
    let outcome = apply(&mut catalog, index, &Command::Restore { rows }, &mut changes);
    assert_eq!(outcome, crate::catalog::Outcome::Done);
    (catalog, index + 1)
}

/// The persisted rows of `catalog`, as the state machine writes them and snapshots hold them.
pub(crate) fn rows(catalog: &Catalog) -> Vec<(Vec<u8>, Vec<u8>)> {
    catalog.all_rows().iter().filter_map(|row| catalog.encode_row(row)).collect()
}
