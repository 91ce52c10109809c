//! Valid HTTP API requests across the main endpoint families, which `http_fuzz` then mutates:
//! KV, catalog register/deregister and reads, agent service and check registration and TTL
//! updates, health, txn, sessions, events, coordinates, ACL objects, status and operator
//! reads, each with the query parameters (`index`, `wait`, `recurse`, `separator`, `filter`,
//! ...) and headers its endpoint takes.
//!
//! Every name, ID and key comes from a small pool (`fuzz-` prefixed, some of them hostile),
//! so whatever the fuzzer manages to create stays bounded, and never touches the rows the
//! base load and the probes use.

use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use super::mutate::{boundary_number, hostile_string};

/// Keys whose string values name a row (kept within the pools, see `mutate::mutate_json`).
pub(crate) const IDENTITY_KEYS: &[&str] = &["Node", "ID", "Name", "Service", "ServiceID", "CheckID", "Key", "AccessorID", "SecretID", "AuthMethod"];

const NODES: &[&str] = &["fuzz-n0", "fuzz-n1", "fuzz-n2", "fuzz-n3", "fuzz-ü", "fuzz.dot.node", "FUZZ-UPPER", "fuzz_under"];
const SERVICES: &[&str] = &["fuzz-s0", "fuzz-s1", "fuzz-s2", "fuzz-s3", "fuzz-🦀", "fuzz.dot", "fuzz_under", "FUZZ-S"];
const CHECKS: &[&str] = &["fuzz-c0", "fuzz-c1", "fuzz-c2", "service:fuzz-s0", "fuzz c3", "fuzz/c4"];
const KEYS: &[&str] = &["k0", "k1", "k2", "dir/", "dir/a", "dir/sub/b", "", "%00", "..%2f..", "a//b", "ü", "a%20b", "%ff", "dir/%2e%2e/x"];
const TAGS: &[&str] = &["primary", "v1", "", "ü", "a=b", "fuzz"];
const FILTERS: &[&str] = &[
    "Service == fuzz-s0",
    "ServiceTags contains \"v1\"",
    "Node.Meta.env == prod and not (ServicePort < 10)",
    "Key matches \"^fuzz\"",
    "Checks.Status == passing or Service.Meta.a != b",
    "Name in Tags",
    "\"x\" in Meta",
    "Port > 1 and Port < 65536",
    "Datacenter is not empty",
    "ServiceWeights.Passing == 1",
];
const CONTENT_TYPES: &[&str] = &["application/json", "text/plain", "application/octet-stream", "multipart/form-data; boundary=x", "ü"];

/// One request before mutation; `path` is percent-encoded already.
#[derive(Clone, Debug)]
pub(crate) struct HttpSeed {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Body,
}

#[derive(Clone, Debug)]
pub(crate) enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>),
}

/// IDs the fuzzer has seen the cluster hand out (sessions, ACL objects), so that requests
/// naming one reach more than the not-found path. Filled by the cleanup pass.
#[derive(Clone, Debug, Default)]
pub(crate) struct Known {
    pub(crate) sessions: Vec<String>,
    pub(crate) tokens: Vec<String>,
    pub(crate) policies: Vec<String>,
    pub(crate) roles: Vec<String>,
}

fn pick<'a>(rng: &mut impl Rng, pool: &[&'a str]) -> &'a str {
    pool.choose(rng).copied().expect("non-empty pool")
}

/// A known ID, or a made-up one (a UUID, a hostile string, or a pool name).
fn some_id(rng: &mut impl Rng, known: &[String]) -> String {
    match (rng.gen_range(0..4), known.choose(rng)) {
        (0..=1, Some(id)) => id.clone(),
        (2, _) => format!("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", rng.r#gen::<u32>(), rng.r#gen::<u16>(), rng.r#gen::<u16>(), rng.r#gen::<u16>(), rng.r#gen::<u64>() >> 16),
        _ => encode_segment(&hostile_string(rng).chars().take(64).collect::<String>()),
    }
}

/// Percent-encodes what a request line cannot carry as is (keeps `/` and `%`).
pub(crate) fn encode_segment(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b'%' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

fn read_params(rng: &mut impl Rng, query: &mut Vec<(String, String)>) {
    if rng.gen_bool(0.15) {
        query.push(("index".into(), if rng.gen_bool(0.7) { rng.gen_range(1..100_000u64).to_string() } else { boundary_number(rng) }));
        query.push(("wait".into(), pick(rng, &["1s", "100ms", "2s", "0s", "-1s", "10m", "1h", "abc", "5"]).into()));
    }
    for flag in ["stale", "consistent", "cached", "pretty"] {
        if rng.gen_ratio(1, 12) {
            query.push((flag.into(), String::new()));
        }
    }
    if rng.gen_ratio(1, 4) {
        query.push(("filter".into(), pick(rng, FILTERS).into()));
    }
    if rng.gen_ratio(1, 10) {
        query.push(("dc".into(), pick(rng, &["dc1", "dc2", "", "DC1"]).into()));
    }
    if rng.gen_ratio(1, 12) {
        query.push(("near".into(), pick(rng, &["_agent", "b1", "fuzz-n0", ""]).into()));
    }
    if rng.gen_ratio(1, 12) {
        query.push(("node-meta".into(), pick(rng, &["env:prod", "x", ":", "a:b:c"]).into()));
    }
}

fn service_body(rng: &mut impl Rng) -> Value {
    let name = pick(rng, SERVICES);
    json!({
        "ID": format!("{name}-{}", rng.gen_range(0..3)),
        "Name": name,
        "Tags": [pick(rng, TAGS), pick(rng, TAGS)],
        "Address": pick(rng, &["127.0.0.1", "", "::1", "example.com", "300.1.1.1"]),
        "Port": rng.gen_range(0..70_000),
        "Meta": { "env": "prod", "version": "1" },
        "EnableTagOverride": rng.gen_bool(0.5),
        "Weights": { "Passing": rng.gen_range(0..20), "Warning": 1 },
        "TaggedAddresses": { "lan": { "Address": "127.0.0.1", "Port": 80 } },
    })
}

fn check_body(rng: &mut impl Rng) -> Value {
    let mut check = json!({
        "ID": pick(rng, CHECKS),
        "Name": "fuzz check",
        "Notes": "notes",
        "Status": pick(rng, &["passing", "warning", "critical", "maintenance", ""]),
        "TTL": pick(rng, &["30s", "10m", "1ns", "0s", "1h"]),
    });
    if rng.gen_bool(0.3) {
        check["ServiceID"] = json!(format!("{}-0", pick(rng, SERVICES)));
    }
    if rng.gen_bool(0.2) {
        check["DeregisterCriticalServiceAfter"] = json!(pick(rng, &["1m", "90m", "0s", "-1s"]));
    }
    check
}

fn txn_op(rng: &mut impl Rng) -> Value {
    let key = format!("fuzz/{}", pick(rng, KEYS));
    match rng.gen_range(0..4) {
        0 => json!({"KV": {"Verb": pick(rng, &["set", "cas", "get", "get-tree", "delete", "delete-tree", "check-index", "check-not-exists", "lock", "unlock", "bogus"]),
                            "Key": key, "Value": "dmFsdWU=", "Flags": rng.gen_range(0..5), "Index": rng.gen_range(0..1000)}}),
        1 => json!({"Node": {"Verb": pick(rng, &["set", "get", "delete", "cas", "delete-cas"]), "Node": {"Node": pick(rng, NODES), "Address": "127.0.0.9"}}}),
        2 => json!({"Service": {"Verb": pick(rng, &["set", "get", "delete"]), "Node": pick(rng, NODES), "Service": {"ID": pick(rng, SERVICES), "Service": pick(rng, SERVICES), "Port": 80}}}),
        _ => json!({"Check": {"Verb": pick(rng, &["set", "get", "delete"]), "Check": {"Node": pick(rng, NODES), "CheckID": pick(rng, CHECKS), "Name": "c", "Status": "passing"}}}),
    }
}

fn acl_seed(rng: &mut impl Rng, known: &Known, seed: &mut HttpSeed) {
    let (method, path, body) = match rng.gen_range(0..14) {
        0 => ("PUT", "/v1/acl/token".to_string(), json!({"Description": "fuzz", "Policies": [{"Name": "fuzz-p0"}], "ServiceIdentities": [{"ServiceName": pick(rng, SERVICES)}], "NodeIdentities": [{"NodeName": pick(rng, NODES), "Datacenter": "dc1"}], "ExpirationTTL": pick(rng, &["1h", "1s", "0s", "-1h"]), "Local": false})),
        1 => ("PUT", format!("/v1/acl/token/{}", some_id(rng, &known.tokens)), json!({"Description": "fuzz updated", "Policies": []})),
        2 => ("DELETE", format!("/v1/acl/token/{}", some_id(rng, &known.tokens)), Value::Null),
        3 => ("PUT", format!("/v1/acl/token/{}/clone", some_id(rng, &known.tokens)), json!({"Description": "clone"})),
        4 => ("PUT", "/v1/acl/policy".to_string(), json!({"Name": format!("fuzz-p{}", rng.gen_range(0..4)), "Rules": pick(rng, &[
            "key_prefix \"fuzz/\" { policy = \"write\" }", "service_prefix \"\" { policy = \"read\" }", "node \"b1\" { policy = \"deny\" }",
            "{\"key_prefix\": {\"\": {\"policy\": \"read\"}}}", "key_prefix \"a\" { policy = \"write\" } key_prefix \"a\" { policy = \"read\" }",
            "operator = \"read\"", "acl = \"write\"", "key {", "[[[[[[[[[[[[[[[[", ""]), "Datacenters": ["dc1"]})),
        5 => ("PUT", format!("/v1/acl/policy/{}", some_id(rng, &known.policies)), json!({"Name": "fuzz-p9", "Rules": ""})),
        6 => ("DELETE", format!("/v1/acl/policy/{}", some_id(rng, &known.policies)), Value::Null),
        7 => ("PUT", "/v1/acl/role".to_string(), json!({"Name": format!("fuzz-r{}", rng.gen_range(0..4)), "Policies": [{"Name": "fuzz-p0"}], "ServiceIdentities": [{"ServiceName": "fuzz-s0"}]})),
        8 => ("PUT", "/v1/acl/auth-method".to_string(), json!({"Name": "fuzz-m0", "Type": pick(rng, &["jwt", "kubernetes", "oidc", "bogus"]), "Config": {"JWTValidationPubKeys": ["x"], "BoundAudiences": ["a"]}, "MaxTokenTTL": "1h"})),
        9 => ("PUT", "/v1/acl/binding-rule".to_string(), json!({"AuthMethod": "fuzz-m0", "Selector": pick(rng, FILTERS), "BindType": pick(rng, &["service", "node", "role", "policy", "x"]), "BindName": "fuzz-${value.x}"})),
        11 => ("PUT", format!("/v1/acl/role/{}", some_id(rng, &known.roles)), json!({"Name": "fuzz-r9", "Policies": [{"Name": "fuzz-p1"}]})),
        12 => ("DELETE", format!("/v1/acl/role/{}", some_id(rng, &known.roles)), Value::Null),
        10 => ("POST", "/v1/acl/login".to_string(), json!({"AuthMethod": "fuzz-m0", "BearerToken": pick(rng, &["x", "a.b.c", "eyJhbGciOiJub25lIn0.e30."])})),
        _ => {
            let list = pick(rng, &["/v1/acl/tokens", "/v1/acl/policies", "/v1/acl/roles", "/v1/acl/auth-methods", "/v1/acl/binding-rules", "/v1/acl/templated-policies", "/v1/acl/policy/name/fuzz-p0", "/v1/acl/templated-policy/name/builtin/service"]);
            ("GET", list.to_string(), Value::Null)
        }
    };
    seed.method = method.into();
    seed.path = path;
    if !body.is_null() {
        seed.body = Body::Json(body);
    }
}

/// A valid request of a family picked at random.
pub(crate) fn seed(rng: &mut impl Rng, known: &Known) -> HttpSeed {
    let mut seed = HttpSeed { method: "GET".into(), path: String::new(), query: Vec::new(), headers: Vec::new(), body: Body::None };
    match rng.gen_range(0..22) {
        0..=4 => kv_seed(rng, known, &mut seed),
        5..=8 => catalog_seed(rng, &mut seed),
        9..=12 | 21 => agent_seed(rng, &mut seed),
        13 => health_seed(rng, &mut seed),
        14..=18 => other_seed(rng, known, &mut seed),
        _ => acl_seed(rng, known, &mut seed),
    }
    if rng.gen_ratio(1, 3) {
        seed.headers.push(("Content-Type".into(), pick(rng, CONTENT_TYPES).into()));
    }
    seed
}

fn kv_seed(rng: &mut impl Rng, known: &Known, seed: &mut HttpSeed) {
    seed.path = format!("/v1/kv/fuzz/{}", pick(rng, KEYS));
    match rng.gen_range(0..5) {
        0..=1 => {
            seed.method = "PUT".into();
            let size = if rng.gen_ratio(1, 30) { rng.gen_range(64 * 1024..600 * 1024) } else { rng.gen_range(0..512) };
            seed.body = Body::Raw(vec![b'v'; size]);
            for (name, value) in [("flags", boundary_number(rng)), ("cas", rng.gen_range(0..50).to_string()), ("acquire", some_id(rng, &known.sessions)), ("release", some_id(rng, &known.sessions))] {
                if rng.gen_ratio(1, 6) {
                    seed.query.push((name.into(), value));
                }
            }
        }
        2..=3 => {
            for (name, value) in [("recurse", ""), ("keys", ""), ("raw", ""), ("separator", "/")] {
                if rng.gen_ratio(1, 3) {
                    seed.query.push((name.into(), value.into()));
                }
            }
            read_params(rng, &mut seed.query);
        }
        _ => {
            seed.method = "DELETE".into();
            if rng.gen_bool(0.3) {
                seed.query.push(("recurse".into(), String::new()));
            }
            if rng.gen_bool(0.2) {
                seed.query.push(("cas".into(), boundary_number(rng)));
            }
        }
    }
}

fn catalog_seed(rng: &mut impl Rng, seed: &mut HttpSeed) {
    match rng.gen_range(0..4) {
        0 => {
            seed.method = "PUT".into();
            seed.path = "/v1/catalog/register".into();
            let mut body = json!({"Node": pick(rng, NODES), "Address": "127.0.0.9", "Datacenter": "dc1", "NodeMeta": {"env": "prod"},
                                  "TaggedAddresses": {"wan": "127.0.0.9"}, "Service": service_body(rng), "SkipNodeUpdate": rng.gen_bool(0.2)});
            if rng.gen_bool(0.5) {
                body["Check"] = json!({"CheckID": pick(rng, CHECKS), "Name": "c", "Status": pick(rng, &["passing", "critical", "warning", "bogus"]), "ServiceID": body["Service"]["ID"].clone()});
            }
            seed.body = Body::Json(body);
        }
        1 => {
            seed.method = "PUT".into();
            seed.path = "/v1/catalog/deregister".into();
            let mut body = json!({"Node": pick(rng, NODES), "Datacenter": "dc1"});
            match rng.gen_range(0..3) {
                0 => body["ServiceID"] = json!(format!("{}-0", pick(rng, SERVICES))),
                1 => body["CheckID"] = json!(pick(rng, CHECKS)),
                _ => {}
            }
            seed.body = Body::Json(body);
        }
        _ => {
            let name = encode_segment(pick(rng, SERVICES));
            let node = encode_segment(pick(rng, NODES));
            seed.path = match rng.gen_range(0..7) {
                0 => "/v1/catalog/nodes".into(),
                1 => "/v1/catalog/services".into(),
                2 => "/v1/catalog/datacenters".into(),
                3 => format!("/v1/catalog/service/{name}"),
                4 => format!("/v1/catalog/connect/{name}"),
                5 => format!("/v1/catalog/node/{node}"),
                _ => format!("/v1/catalog/node-services/{node}"),
            };
            if rng.gen_bool(0.3) {
                seed.query.push(("tag".into(), pick(rng, TAGS).into()));
            }
            read_params(rng, &mut seed.query);
        }
    }
}

fn agent_seed(rng: &mut impl Rng, seed: &mut HttpSeed) {
    seed.method = "PUT".into();
    match rng.gen_range(0..5) {
        0 => {
            seed.path = "/v1/agent/service/register".into();
            let mut body = service_body(rng);
            if rng.gen_bool(0.5) {
                body["Check"] = check_body(rng);
            }
            if rng.gen_bool(0.2) {
                body["Checks"] = json!([check_body(rng), check_body(rng)]);
            }
            if rng.gen_bool(0.1) {
                body["Connect"] = json!({"SidecarService": {"Port": rng.gen_range(0..30_000)}});
            }
            seed.body = Body::Json(body);
            if rng.gen_bool(0.2) {
                seed.query.push(("replace-existing-checks".into(), pick(rng, &["true", "1", "", "x"]).into()));
            }
        }
        1 => {
            seed.path = "/v1/agent/check/register".into();
            seed.body = Body::Json(check_body(rng));
        }
        2 => {
            let verb = pick(rng, &["pass", "warn", "fail", "update", "deregister"]);
            seed.path = format!("/v1/agent/check/{verb}/{}", encode_segment(pick(rng, CHECKS)));
            if verb == "update" {
                seed.body = Body::Json(json!({"Status": pick(rng, &["passing", "warning", "critical", "bogus"]), "Output": "out"}));
            } else if rng.gen_bool(0.5) {
                seed.query.push(("note".into(), "noted".into()));
            }
        }
        3 => {
            let service = encode_segment(&format!("{}-{}", pick(rng, SERVICES), rng.gen_range(0..3)));
            if rng.gen_bool(0.5) {
                seed.path = format!("/v1/agent/service/deregister/{service}");
            } else {
                seed.path = format!("/v1/agent/service/maintenance/{service}");
                seed.query.push(("enable".into(), pick(rng, &["true", "false", "x"]).into()));
                seed.query.push(("reason".into(), "fuzz".into()));
            }
        }
        _ => {
            seed.method = "GET".into();
            seed.path = format!("/v1/agent/service/{}", encode_segment(&format!("{}-0", pick(rng, SERVICES))));
            if rng.gen_bool(0.5) {
                seed.query.push(("hash".into(), pick(rng, &["", "abc", "0000000000000000"]).into()));
            }
        }
    }
}

fn health_seed(rng: &mut impl Rng, seed: &mut HttpSeed) {
    let name = encode_segment(pick(rng, SERVICES));
    seed.path = match rng.gen_range(0..5) {
        0 => format!("/v1/health/service/{name}"),
        1 => format!("/v1/health/checks/{name}"),
        2 => format!("/v1/health/node/{}", encode_segment(pick(rng, NODES))),
        3 => format!("/v1/health/state/{}", pick(rng, &["any", "passing", "warning", "critical", "bogus"])),
        _ => format!("/v1/agent/health/service/name/{name}"),
    };
    if rng.gen_bool(0.3) {
        seed.query.push(("passing".into(), String::new()));
    }
    if rng.gen_bool(0.2) {
        seed.query.push(("tag".into(), pick(rng, TAGS).into()));
    }
    read_params(rng, &mut seed.query);
}

/// Transactions, sessions, events, coordinates, and the read-only status endpoints.
fn other_seed(rng: &mut impl Rng, known: &Known, seed: &mut HttpSeed) {
    seed.method = "PUT".into();
    match rng.gen_range(0..6) {
        0 => {
            seed.path = "/v1/txn".into();
            seed.body = Body::Json(Value::Array((0..rng.gen_range(1..8)).map(|_| txn_op(rng)).collect()));
        }
        1 => session_seed(rng, known, seed),
        2 => {
            seed.path = format!("/v1/event/fire/fuzz-{}", encode_segment(pick(rng, &["e0", "e1", "ü", ""])));
            seed.body = Body::Raw(vec![b'p'; rng.gen_range(0..1024)]);
            for name in ["node", "service", "tag"] {
                if rng.gen_ratio(1, 4) {
                    seed.query.push((name.into(), pick(rng, &["b1", "fuzz-s0", "v1", "[", ".*"]).into()));
                }
            }
        }
        3 => {
            seed.path = "/v1/coordinate/update".into();
            seed.body = Body::Json(json!({"Node": pick(rng, &["b1", "fuzz-n0", "fuzz-n1"]), "Segment": "", "Coord":
                {"Vec": [0.1, -0.2, 0.0, 1e-9, 0.5, 0.0, 0.0, 0.0], "Error": 1.5, "Adjustment": 0.01, "Height": 1e-5}}));
        }
        _ => {
            seed.method = "GET".into();
            seed.path = pick(rng, &["/v1/coordinate/nodes", "/v1/coordinate/datacenters", "/v1/coordinate/node/b1", "/v1/event/list", "/v1/status/leader",
                                    "/v1/status/peers", "/v1/agent/self", "/v1/agent/members", "/v1/agent/services", "/v1/agent/checks",
                                    "/v1/operator/raft/configuration", "/v1/operator/autopilot/health", "/v1/agent/metrics", "/v1/agent/version", "/ui/", "/v1/agent/host"]).into();
            read_params(rng, &mut seed.query);
        }
    }
}

fn session_seed(rng: &mut impl Rng, known: &Known, seed: &mut HttpSeed) {
    match rng.gen_range(0..4) {
        0 => {
            seed.path = "/v1/session/create".into();
            seed.body = Body::Json(json!({"Name": "fuzz", "Node": pick(rng, &["b1", "b2", "fuzz-n0", ""]), "TTL": pick(rng, &["10s", "86400s", "1s", "0s", "bogus"]),
                                          "LockDelay": pick(rng, &["15s", "0s", "1h"]), "Behavior": pick(rng, &["release", "delete", "x"]), "NodeChecks": ["serfHealth"]}));
        }
        1 => seed.path = format!("/v1/session/destroy/{}", some_id(rng, &known.sessions)),
        2 => seed.path = format!("/v1/session/renew/{}", some_id(rng, &known.sessions)),
        _ => {
            seed.method = "GET".into();
            seed.path = match rng.gen_range(0..3) {
                0 => "/v1/session/list".into(),
                1 => "/v1/session/node/b1".into(),
                _ => format!("/v1/session/info/{}", some_id(rng, &known.sessions)),
            };
            read_params(rng, &mut seed.query);
        }
    }
}
