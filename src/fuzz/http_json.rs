//! Fuzzes the HTTP API's request bodies: Consul's loose JSON (`http::decode::Fields`, case-
//! and underscore-folded names) and the decoder of each main family: agent service and check
//! registrations (`decode::service_definition`, `check_decode`), `/v1/catalog/register`,
//! `/v1/txn`, `/v1/session/create`, `/v1/coordinate/update`, config entries, and the ACL
//! tokens, policies, roles, auth methods and binding rules. The attack: any HTTP client (with
//! ACLs off, anyone who reaches port 8500) posts bodies built to crash the handler, or, worse,
//! to produce a command that every server then fails to apply.
//!
//! An input is a family byte, then the body. What the server does next runs too: the decoded
//! write becomes its `Command` and is applied to a populated catalog with the catalog's
//! promises checked (`command::apply_and_check`); an agent registration goes into the local
//! state, through its on-disk encoding, and through anti-entropy, whose commands must bring
//! the catalog in line (a second diff finds nothing to do); ACL objects are rendered back as
//! the read endpoints would.

use serde_json::json;

use crate::agent::anti_entropy::diff_scoped;
use crate::agent::local::{LocalCheck, LocalService, LocalState};
use crate::catalog::acl::AclOp;
use crate::catalog::command::Registration;
use crate::catalog::coordinates::CoordinateUpdate;
use crate::catalog::{Catalog, Command, Outcome};
use crate::fuzz::command::apply_and_check;
use crate::fuzz::{FUZZ_ALLOC_BYTES_MAX_DEFAULT, Target, Verdict, fuzz, samples};
use crate::http::decode::{Fields, check_definition, service_definition};
use crate::http::error::ApiError;

/// Largest body generated, in bytes.
const BODY_INPUT_BYTES_MAX: usize = 32 * 1024;
/// When the fuzzed ACL writes happen (Unix milliseconds).
const NOW_MS: u64 = 1_750_000_000_000;

/// The families, by their input byte.
const FAMILIES: [&str; 12] = [
    "agent service", "agent check", "catalog register", "txn", "session", "coordinate", "config entry", "acl token", "acl policy", "acl role",
    "acl auth method", "acl binding rule",
];

fn body(family: &str, value: serde_json::Value) -> Vec<u8> {
    let position = FAMILIES.iter().position(|name| *name == family).expect("a family") as u8;
    [vec![position], value.to_string().into_bytes()].concat()
}

fn seeds() -> Vec<Vec<u8>> {
    let policy_link = json!([{"ID": "8f4d5e5c-2f6a-4b1e-9c3d-1a2b3c4d5e6f"}, {"Name": "web-write"}]);
    vec![
        body("agent service", json!({
            "ID": "api-1", "Name": "api", "Tags": ["v1"], "Address": "10.0.0.7", "Port": 9090, "Meta": {"team": "a"},
            "TaggedAddresses": {"lan": {"Address": "10.0.0.7", "Port": 9090}}, "Weights": {"Passing": 3, "Warning": 1},
            "Check": {"TTL": "30s", "DeregisterCriticalServiceAfter": "90m"},
            "Checks": [{"Name": "http", "HTTP": "http://10.0.0.7:9090/health", "Interval": "10s", "Timeout": "1s", "Header": {"X-A": ["b"]}, "Method": "POST"},
                       {"TCP": "10.0.0.7:9090", "Interval": "5s"}],
            "Connect": {"SidecarService": {}}, "EnableTagOverride": true,
        })),
        body("agent service", json!({"name": "db", "port": 5432, "check": {"args": ["/bin/true"], "interval": "10s"}, "enable_tag_override": false})),
        body("agent check", json!({"ID": "mem", "Name": "Memory", "TTL": "15s", "Notes": "n", "Status": "passing"})),
        body("agent check", json!({"Name": "grpc", "GRPC": "10.0.0.7:9090/health", "GRPCUseTLS": true, "Interval": "10s", "SuccessBeforePassing": 2, "FailuresBeforeCritical": 3, "OutputMaxSize": 1024})),
        body("agent check", json!({"Name": "alias", "AliasService": "web-1", "AliasNode": "node-1"})),
        body("catalog register", json!({
            "Datacenter": "dc1", "ID": "40e4a748-2192-161a-0510-9bf59fe950b5", "Node": "node-5", "Address": "192.168.10.10",
            "TaggedAddresses": {"lan": "192.168.10.10", "wan": "10.0.10.10"}, "NodeMeta": {"somekey": "somevalue"},
            "Service": {"ID": "redis1", "Service": "redis", "Tags": ["primary", "v1"], "Address": "127.0.0.1", "Meta": {"redis_version": "4.0"}, "Port": 8000},
            "Check": {"Node": "node-5", "CheckID": "service:redis1", "Name": "Redis health check", "Status": "passing", "ServiceID": "redis1",
                      "Definition": {"TCP": "localhost:8888", "Interval": "5s", "Timeout": "1s", "DeregisterCriticalServiceAfter": "30s"}},
            "SkipNodeUpdate": false,
        })),
        body("txn", json!([
            {"KV": {"Verb": "set", "Key": "app/x", "Value": "aGVsbG8=", "Flags": 3}},
            {"KV": {"Verb": "cas", "Key": "app/config", "Value": "", "Index": 13}},
            {"KV": {"Verb": "lock", "Key": "app/lock", "Session": samples::SESSION_ID}},
            {"KV": {"Verb": "get-tree", "Key": "app/"}},
            {"Node": {"Verb": "set", "Node": {"Node": "node-6", "Address": "10.1.1.1", "Meta": {"a": "b"}}}},
            {"Service": {"Verb": "cas", "Node": "node-1", "Service": {"ID": "web-1", "Service": "web", "Port": 81, "ModifyIndex": 4}}},
            {"Check": {"Verb": "delete-cas", "Check": {"Node": "node-1", "CheckID": "web-http", "ModifyIndex": 3}}},
        ])),
        body("session", json!({"Name": "lock", "Node": "node-1", "LockDelay": "15s", "Behavior": "delete", "TTL": "30s", "NodeChecks": ["serfHealth"], "ServiceChecks": [{"ID": "web-http"}]})),
        body("session", json!({"LockDelay": 15, "Checks": []})),
        body("coordinate", json!({"Node": "node-1", "Segment": "", "Coord": {"Vec": [0.1, -0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.001, "Height": 0.00001}})),
        body("config entry", json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http", "MeshGateway": {"Mode": "local"}, "ModifyIndex": 9})),
        body("config entry", json!({"kind": "proxy-defaults", "name": "global", "Config": {"local_connect_timeout_ms": 1000}})),
        body("acl token", json!({
            "Description": "agent token", "Policies": policy_link, "Roles": [{"Name": "web-role"}],
            "ServiceIdentities": [{"ServiceName": "web", "Datacenters": ["dc1"]}], "NodeIdentities": [{"NodeName": "node-1", "Datacenter": "dc1"}],
            "TemplatedPolicies": [{"TemplateName": "builtin/service", "TemplateVariables": {"Name": "api"}}], "ExpirationTTL": "1h", "Local": false,
        })),
        body("acl token", json!({"AccessorID": "6a1253d2-1785-24fd-91c2-f8e78c745599", "SecretID": "45a3bd52-07c7-47a4-52fd-0745e0cfe999", "ExpirationTime": "2030-01-01T00:00:00Z"})),
        body("acl policy", json!({"Name": "kv-read", "Description": "read", "Rules": "key_prefix \"\" { policy = \"read\" }", "Datacenters": ["dc1"]})),
        body("acl role", json!({"Name": "ops", "Policies": policy_link, "NodeIdentities": [{"NodeName": "n2", "Datacenter": "dc1"}]})),
        body("acl auth method", json!({"Name": "minikube", "Type": "kubernetes", "DisplayName": "k8s", "MaxTokenTTL": "2h", "TokenLocality": "global", "Config": {"Host": "https://192.0.2.42:8443"}})),
        body("acl binding rule", json!({"AuthMethod": "k8s", "BindType": "service", "BindName": "${serviceaccount.name}", "Selector": "serviceaccount.namespace==default"})),
    ]
}

fn dictionary() -> Vec<Vec<u8>> {
    let keys = [
        "Name", "ID", "Tags", "Address", "Port", "Meta", "Check", "Checks", "TTL", "HTTP", "TCP", "UDP", "GRPC", "H2PING", "Args", "Interval", "Timeout",
        "Weights", "Passing", "Warning", "TaggedAddresses", "Connect", "SidecarService", "Proxy", "Node", "Datacenter", "Service", "Status",
        "ServiceID", "CheckID", "Definition", "KV", "Verb", "Key", "Value", "Flags", "Index", "ModifyIndex", "Session", "LockDelay", "Behavior",
        "NodeChecks", "ServiceChecks", "Coord", "Vec", "Error", "Height", "Kind", "Rules", "Policies", "Roles", "ServiceIdentities",
        "NodeIdentities", "TemplatedPolicies", "TemplateVariables", "ExpirationTTL", "ExpirationTime", "Local", "AccessorID", "SecretID",
        "BindType", "BindName", "Selector", "AuthMethod", "Type", "Config", "MaxTokenTTL", "DeregisterCriticalServiceAfter", "AliasService",
        "Header", "SuccessBeforePassing", "FailuresBeforeCritical", "OutputMaxSize", "SkipNodeUpdate",
    ];
    let tokens = ["\"", "{", "}", "[", "]", ":", ",", "null", "true", "-1", "1e999", "0.5", "\"\\u0000\"", "\"\\ud800\"", "\"\"", "\"99999h\"", "\"-1s\"", "\"1ns\""];
    keys.iter().map(|key| format!("\"{key}\":").into_bytes()).chain(tokens.iter().map(|token| token.as_bytes().to_vec())).collect()
}

/// Where a decoded body goes next.
enum Decoded {
    /// A catalog write.
    Write(Command),
    /// An agent registration: the local state it leaves.
    Local(LocalState),
}

fn decode(family: &str, body: &[u8], base: &Catalog) -> Result<Decoded, ApiError> {
    let fields = || Fields::parse(body);
    let acl = |op| Ok(Decoded::Write(Command::Acl(op)));
    match family {
        "agent service" => {
            let (registration, checks) = service_definition(&fields()?)?;
            Ok(Decoded::Local(local_state(Some(registration), checks)))
        }
        "agent check" => Ok(Decoded::Local(local_state(None, vec![check_definition(&fields()?, None, String::new())?]))),
        "catalog register" => Ok(Decoded::Write(Command::Register(crate::http::catalog::decode_registration(&fields()?, "dc1")?))),
        "txn" => Ok(Decoded::Write(Command::TxnOps { ops: crate::http::txn::decode_ops(body, "dc1")? })),
        "session" => Ok(Decoded::Write(crate::http::session::decode_session(body, "0f1e2d3c-0000-4000-8000-000000000001".into(), "node-1", std::time::Duration::from_secs(10))?.into_command())),
        "coordinate" => {
            let update: CoordinateUpdate = crate::http::coordinate::decode_update(&fields()?)?;
            Ok(Decoded::Write(Command::CoordinateBatchUpdate(vec![update])))
        }
        "config entry" => {
            let (kind, name, body_json) = crate::http::config::decode_entry(body)?;
            Ok(Decoded::Write(Command::ConfigSet { kind, name, body_json, cas_index: None }))
        }
        "acl token" => acl(AclOp::TokenSet { token: crate::http::acl::decode_token_with(&fields()?, base.acl(), NOW_MS, None)?, create: true }),
        "acl policy" => acl(AclOp::PolicySet { policy: crate::http::acl_objects::decode_policy(&fields()?, None)? }),
        "acl role" => acl(AclOp::RoleSet { role: crate::http::acl_objects::decode_role(&fields()?, None, base.acl())? }),
        "acl auth method" => acl(AclOp::AuthMethodSet { method: crate::http::acl_objects::decode_auth_method(&fields()?, None)? }),
        _ => acl(AclOp::BindingRuleSet { rule: crate::http::acl_objects::decode_binding_rule(&fields()?, None)? }),
    }
}

fn local_state(service: Option<crate::catalog::command::ServiceRegistration>, checks: Vec<LocalCheck>) -> LocalState {
    let mut local = LocalState::default();
    if let Some(registration) = service {
        local.services.insert(registration.id.clone(), LocalService { registration });
    }
    for check in checks {
        local.checks.insert(check.registration.check_id.clone(), check);
    }
    local
}

/// The agent keeps its registrations on disk: they must come back as they went.
fn persist_round_trip(local: &LocalState) {
    use crate::agent::local::{decode, encode};
    for service in local.services.values() {
        assert_eq!(decode::<LocalService>(&encode(service)).as_ref(), Ok(service), "a local service does not survive a restart");
    }
    for check in local.checks.values() {
        assert_eq!(decode::<LocalCheck>(&encode(check)).as_ref(), Ok(check), "a local check does not survive a restart");
    }
}

/// Anti-entropy for node-1 with `local`: its commands applied in turn; when none is
/// refused, the catalog must then match (a second diff has nothing to do), or the agent
/// would resync forever.
fn anti_entropy(base: &Catalog, index: u64, local: &LocalState) {
    let node = Registration { service: None, checks: Vec::new(), ..samples::registration("node-1", "unused") };
    let mut catalog = base.clone();
    let mut all_applied = true;
    for (offset, command) in diff_scoped(local, base, &node, None).into_iter().enumerate() {
        let (after, outcome) = apply_and_check(&catalog, index + offset as u64, &command.stamped(NOW_MS));
        all_applied &= !matches!(outcome, Outcome::Rejected(_));
        catalog = after;
    }
    if all_applied {
        let again = diff_scoped(local, &catalog, &node, None);
        assert!(again.is_empty(), "anti-entropy does not converge: after applying its commands it still wants {again:?}");
    }
}

/// What the read endpoints render after an ACL write.
fn render_acl(catalog: &Catalog) {
    use crate::http::acl_json::{auth_method_json, binding_rule_json, policy_json, role_json, token_json};
    let acl = catalog.acl();
    acl.tokens().for_each(|token| drop(token_json(acl, token)));
    acl.policies().for_each(|policy| drop(policy_json(policy, true)));
    acl.roles().for_each(|role| drop(role_json(acl, role)));
    acl.auth_methods().for_each(|method| drop(auth_method_json(method)));
    acl.binding_rules().for_each(|rule| drop(binding_rule_json(rule)));
    for kind in ["service-defaults", "proxy-defaults"] {
        catalog.config_entries_of(kind).into_iter().for_each(|entry| drop(crate::http::config::entry_json(entry)));
    }
}

/// Request bodies of every family, decoded and then written.
#[test]
fn bodies() {
    let target = Target { name: "http_json::bodies", seeds: seeds(), dictionary: dictionary(), input_bytes_max: BODY_INPUT_BYTES_MAX, alloc_bytes_max: FUZZ_ALLOC_BYTES_MAX_DEFAULT };
    fuzz(target, || {
        let (base, index) = samples::catalog();
        move |input: &[u8]| {
            let Some((&family, body)) = input.split_first() else { return Verdict::Refused };
            let family = FAMILIES[usize::from(family) % FAMILIES.len()];
            match decode(family, body, &base) {
                Err(_) => Verdict::Refused,
                Ok(Decoded::Write(command)) => {
                    let (after, _) = apply_and_check(&base, index, &command.stamped(NOW_MS));
                    render_acl(&after);
                    Verdict::Accepted
                }
                Ok(Decoded::Local(local)) => {
                    persist_round_trip(&local);
                    anti_entropy(&base, index, &local);
                    Verdict::Accepted
                }
            }
        }
    });
}
