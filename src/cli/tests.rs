//! Unit tests for the CLI: pure helpers (flag normalisation, address
//! resolution, key encoding, table formatting) and the client verbs driven
//! end to end through [`run_with`] against a tiny fake agent: a hand-rolled
//! HTTP/1.1 responder on 127.0.0.1:0 that returns canned Consul JSON and
//! records what it was sent.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use super::catalog::{Node, format_nodes, format_services};
use super::client::{encode, normalize_base, resolve_base};
use super::kv::{KvPair, format_detailed, kv_path};
use super::members::{Member, format_members, sort_members};
use super::services::{api_keys, parse_definition, pascal};
use super::{normalize_go_flags, run_with};

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    move |k| map.get(k).cloned()
}

/// Run the CLI with explicit args and environment; return (code, stdout, stderr).
fn cli_args(args: &[&str], env: &[(&str, &str)]) -> (ExitCode, String, String) {
    let argv: Vec<String> = std::iter::once("cairn")
        .chain(args.iter().copied())
        .map(str::to_owned)
        .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_with(&argv, &env_of(env), &mut out, &mut err);
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// [`cli_args`] for a whitespace-separated command line.
fn cli(line: &str, env: &[(&str, &str)]) -> (ExitCode, String, String) {
    cli_args(&line.split_whitespace().collect::<Vec<_>>(), env)
}

/// One CLI run and what it must produce: (command line, exit code, stdout, stderr).
type Case<'a> = (&'a str, ExitCode, &'a str, &'a str);

/// Run each case in order against `env`, asserting code, stdout and stderr.
#[track_caller]
fn run_cases(env: &[(&str, &str)], cases: &[Case<'_>]) {
    for &(line, code, out, err) in cases {
        let got = cli(line, env);
        assert_eq!(
            (got.0, got.1.as_str(), got.2.as_str()),
            (code, out, err),
            "{line}"
        );
    }
}

const OK: ExitCode = ExitCode::SUCCESS;
const FAIL: ExitCode = ExitCode::FAILURE;

#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A fake agent answering every request with `handler(req)`.
struct Fake {
    addr: String,
    seen: Arc<Mutex<Vec<Req>>>,
}

impl Fake {
    fn start(handler: fn(&Req) -> (u16, String)) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = format!("127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            // Connections are served one at a time: the CLI is sequential.
            for mut stream in listener.incoming().flatten() {
                let Some(req) = read_request(&mut stream) else {
                    continue;
                };
                let (code, body) = handler(&req);
                log.lock().expect("lock").push(req);
                let resp = format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(resp.as_bytes());
            }
        });
        Fake { addr, seen }
    }

    fn requests(&self) -> Vec<Req> {
        self.seen.lock().expect("lock").clone()
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Req> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Req {
        method,
        target,
        headers,
        body: buf[head_end..head_end + len].to_vec(),
    })
}

// ---------- pure helpers ----------

#[test]
fn normalises_go_style_flags() {
    #[rustfmt::skip]
    let cases = [
        ("-http-addr=x:1 -recurse foo", "--http-addr=x:1 --recurse -- foo"),
        ("-token abc key", "--token=abc -- key"),
        ("--http-addr -weird", "--http-addr=-weird"),
        ("-recurse=false -detailed=true -keys=1", "--detailed --keys"),
        ("-recurse=maybe", "--recurse=maybe"),
        ("-h", "-h"),
        ("-help", "--help"),
        // Go stops flag parsing at the first positional: data may start with '-'.
        ("key -value", "-- key -value"),
        ("key -", "-- key -"),
        ("-5", "-- -5"),
        ("-cas -- -x", "--cas -- -x"),
        ("-separator", "--separator"),
        ("-tag a -tag=b", "--tag=a --tag=b"),
    ];
    for (input, expected) in cases {
        let args: Vec<String> = input.split(' ').map(str::to_owned).collect();
        let is_boolean = |flag: &str| ["recurse", "cas", "detailed", "keys", "h", "help"].contains(&flag);
        assert_eq!(normalize_go_flags(&args, &is_boolean).join(" "), expected, "{input}");
    }
}

#[test]
fn resolves_http_addr_with_env_precedence() {
    #[rustfmt::skip]
    let cases = [
        (None, "", "", "http://127.0.0.1:8500"),
        (None, "cairn:1", "consul:2", "http://cairn:1"),
        (Some("https://flag:3/"), "cairn:1", "consul:2", "https://flag:3"),
        (None, "", "http://consul:2", "http://consul:2"),
        (Some("[::1]:8500"), "", "", "http://[::1]:8500"),
    ];
    for (flag, cairn, consul, expected) in cases {
        let env = env_of(&[("CAIRN_HTTP_ADDR", cairn), ("CONSUL_HTTP_ADDR", consul)]);
        assert_eq!(resolve_base(flag, &env).expect("valid"), expected);
    }
    assert!(normalize_base("unix:///tmp/sock").is_err());
    assert!(normalize_base("http://").is_err());
}

#[test]
fn encodes_keys_per_segment() {
    assert_eq!(kv_path("a b/c?d#e/%"), "/v1/kv/a%20b/c%3Fd%23e/%25");
    assert_eq!(kv_path("ünï/x"), "/v1/kv/%C3%BCn%C3%AF/x");
    assert_eq!(encode("a/b&c=d", false), "a%2Fb%26c%3Dd");
}

#[test]
fn formats_kv_detailed_like_consul() {
    let pair: KvPair =
        serde_json::from_str(r#"{"Key":"foo","Flags":42,"CreateIndex":5,"ModifyIndex":7}"#)
            .expect("pair");
    let expected = "CreateIndex      5\nFlags            42\nKey              foo\nLockIndex        0\n\
                    ModifyIndex      7\nSession          -\nValue            bar";
    assert_eq!(format_detailed(&pair, b"bar", false), expected);
    assert!(format_detailed(&pair, b"bar", true).ends_with("Value            YmFy"));
}

const MEMBERS: &str = r#"[
    {"Name":"web-1","Addr":"10.0.0.2","Port":8301,"Status":4,"Tags":{"role":"node","dc":"dc1","vsn":"2"}},
    {"Name":"srv-1","Addr":"10.0.0.1","Port":8301,"Status":1,
     "Tags":{"role":"consul","dc":"dc1","build":"0.1.0:abc","vsn":"2"}},
    {"Name":"v6","Addr":"::1","Port":8301,"Status":3}
]"#;

#[test]
fn formats_members_table() {
    let mut ms: Vec<Member> = serde_json::from_str(MEMBERS).expect("members");
    sort_members(&mut ms);
    let expected = "\
Node   Address        Status  Type    Build  Protocol  DC   Partition  Segment
srv-1  10.0.0.1:8301  alive   server  0.1.0  2         dc1  default    <all>
v6     [::1]:8301     left    client                        default    <default>
web-1  10.0.0.2:8301  failed  client         2         dc1  default    <default>";
    assert_eq!(format_members(&ms, false), expected);
    let detailed = "Node   Address        Status  Tags\n\
                    srv-1  10.0.0.1:8301  alive   build=0.1.0:abc,dc=dc1,role=consul,vsn=2";
    assert_eq!(format_members(&ms[..1], true), detailed);
}

#[test]
fn formats_nodes_table() {
    let nodes: Vec<Node> = serde_json::from_str(
        r#"[{"ID":"0e1d0a8c-1111-2222-3333-444455556666","Node":"node-one","Address":"127.0.0.1",
             "Datacenter":"dc1","TaggedAddresses":{"lan":"127.0.0.1"},"Meta":{"b":"2","a":"1"}}]"#,
    )
    .expect("nodes");
    let short = "Node      ID        Address    DC\nnode-one  0e1d0a8c  127.0.0.1  dc1";
    assert_eq!(format_nodes(&nodes, false), short);
    let long = "Node      ID                                    Address    DC   TaggedAddresses  Meta\n\
                node-one  0e1d0a8c-1111-2222-3333-444455556666  127.0.0.1  dc1  lan=127.0.0.1    a=1, b=2";
    assert_eq!(format_nodes(&nodes, true), long);
}

#[test]
fn formats_services_with_tags() {
    let s: BTreeMap<String, Vec<String>> =
        serde_json::from_str(r#"{"web":["v2","v1"],"consul":[]}"#).expect("services");
    assert_eq!(format_services(&s, false), "consul\nweb");
    assert_eq!(format_services(&s, true), "consul\nweb         v1,v2");
}

#[test]
fn translates_service_definition_keys() {
    assert_eq!(pascal("check_id"), "CheckID");
    assert_eq!(pascal("grpc_use_tls"), "GRPCUseTLS");
    assert_eq!(
        pascal("deregister_critical_service_after"),
        "DeregisterCriticalServiceAfter"
    );
    assert_eq!(pascal("Name"), "Name");
    let document = |value: serde_json::Value| value.as_object().cloned().expect("an object");
    let def = document(serde_json::json!({"services": [{"name": "web", "port": 80, "meta": {"my_key": "v"},
                   "check": {"http": "http://x/", "interval": "10s"}}]}));
    let svcs = parse_definition(def).expect("parse");
    let expected = serde_json::json!({"Name": "web", "Port": 80, "Meta": {"my_key": "v"},
                                      "Check": {"HTTP": "http://x/", "Interval": "10s"}});
    assert_eq!(serde_json::Value::Object(svcs[0].clone()), expected);
    let many = parse_definition(document(serde_json::json!({"services": [{"id": "a"}, {"ID": "b"}]}))).expect("parse");
    assert_eq!(many.len(), 2);
    assert!(parse_definition(document(serde_json::json!({"node_name": "x"}))).is_err());
    assert_eq!(
        api_keys(serde_json::json!([{"ttl": "5s"}])),
        serde_json::json!([{"TTL": "5s"}])
    );
}

#[test]
fn version_help_and_usage_errors() {
    let version = format!(
        "Cairn v{}\nProtocol 2 spoken by default",
        env!("CARGO_PKG_VERSION")
    );
    let (code, out, _) = cli("version", &[]);
    assert!(code == OK && out.starts_with(&version), "{out}");
    let (code, out, err) = cli("--help", &[]);
    assert!(code == OK && out.is_empty() && err.contains("members") && err.contains("catalog"));
    let bad = [
        "frobnicate",
        "",
        "kv",
        "kv nope",
        "kv get",
        "kv get -bogus",
        "catalog nodes x",
    ];
    for bad in bad {
        let (code, out, err) = cli(bad, &[]);
        assert!(code == FAIL && out.is_empty() && !err.is_empty(), "{bad:?}");
    }
    let (code, _, err) = cli("kv get -h", &[]);
    assert!(code == OK && err.contains("--recurse"), "{err}");
    let too_many = "Too many arguments (expected 1, got 2)\n";
    run_cases(&[], &[("kv get a b", FAIL, "", too_many)]);
}

// ---------- verbs against a fake agent ----------

const PAIR: &str =
    r#"[{"Key":"foo","Value":"YmFy","Flags":3,"CreateIndex":10,"ModifyIndex":12,"LockIndex":0}]"#;
const PAIRS: &str = r#"[{"Key":"app/a","Value":"MQ=="},{"Key":"app/b","Value":null}]"#;

fn kv_agent(req: &Req) -> (u16, String) {
    match (req.method.as_str(), req.target.as_str()) {
        ("GET", "/v1/kv/foo") => (200, PAIR.into()),
        ("GET", t) if t.starts_with("/v1/kv/app?recurse") => (200, PAIRS.into()),
        ("GET", "/v1/kv/app?keys&separator=%2F") => (200, r#"["app/a","app/sub/"]"#.into()),
        ("GET", "/v1/kv/boom") => (500, "rpc error: boom\n".into()),
        ("PUT", t) if t.contains("cas=") => (200, "false".into()),
        ("PUT", _) | ("DELETE", _) => (200, "true".into()),
        _ => (404, String::new()),
    }
}

#[test]
fn kv_get_found_missing_and_variants() {
    let fake = Fake::start(kv_agent);
    let env = [("CONSUL_HTTP_ADDR", fake.addr.as_str())];
    let detailed = "CreateIndex      10\nFlags            3\nKey              foo\nLockIndex        0\n\
                    ModifyIndex      12\nSession          -\nValue            bar\n";
    #[rustfmt::skip]
    let cases: &[Case<'_>] = &[
        ("kv get foo", OK, "bar\n", ""),
        ("kv get missing", FAIL, "", "Error! No key exists at: missing\n"),
        ("kv get -detailed /foo", OK, detailed, ""),
        ("kv get -recurse -stale app", OK, "app/a:1\napp/b:\n", ""),
        ("kv get -keys app", OK, "app/a\napp/sub/\n", ""),
        ("kv get boom", FAIL, "", "Error! Unexpected response code: 500 (rpc error: boom)\n"),
    ];
    run_cases(&env, cases);
    // The flag beats the environment (which points nowhere here).
    let line = format!("kv get -http-addr={} foo", fake.addr);
    let got = cli(&line, &[("CAIRN_HTTP_ADDR", "127.0.0.1:1")]);
    assert_eq!((got.0, got.1.as_str()), (OK, "bar\n"), "{}", got.2);
    let targets: Vec<String> = fake.requests().into_iter().map(|r| r.target).collect();
    assert!(
        targets.iter().any(|t| t == "/v1/kv/app?recurse&stale"),
        "{targets:?}"
    );
}

#[test]
#[rustfmt::skip]
fn kv_put_and_delete() {
    let fake = Fake::start(kv_agent);
    let env = [("CAIRN_HTTP_ADDR", fake.addr.as_str()), ("CONSUL_HTTP_TOKEN", "s3cret")];
    let args = ["kv", "put", "-flags=7", "-datacenter", "dc 2", "a/b c", "-hello"];
    let got = cli_args(&args, &env);
    assert_eq!((got.0, got.2.as_str()), (OK, "Success! Data written to: a/b c\n"));
    let req = fake.requests().pop().expect("request");
    assert_eq!((req.method.as_str(), req.target.as_str()), ("PUT", "/v1/kv/a/b%20c?flags=7&dc=dc%202"));
    assert_eq!(req.body, b"-hello");
    assert!(req.headers.contains(&("x-consul-token".into(), "s3cret".into())), "{:?}", req.headers);

    let file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(file.path(), "aGk=\n").expect("write");
    let line = format!("kv put -base64 k @{}", file.path().display());
    run_cases(&env, &[
        (&line, OK, "", "Success! Data written to: k\n"),
        ("kv put -cas -modify-index=4 k v", FAIL, "", "Error! Did not write to k: CAS failed\n"),
        ("kv put -cas k v", FAIL, "", "Must specify -modify-index with -cas!\n"),
        ("kv delete -recurse app", OK, "", "Success! Deleted keys with prefix: app\n"),
        ("kv delete -cas -modify-index 9 k", OK, "", "Success! Deleted key: k\n"),
    ]);
    let reqs = fake.requests();
    let sent: Vec<(&str, &str)> = reqs.iter().map(|r| (r.method.as_str(), r.target.as_str())).collect();
    let expected = [
        ("PUT", "/v1/kv/k"), ("PUT", "/v1/kv/k?cas=4"), ("DELETE", "/v1/kv/app?recurse"), ("DELETE", "/v1/kv/k?cas=9"),
    ];
    assert_eq!(sent[1..], expected);
    assert_eq!(reqs[1].body, b"hi");
}

fn catalog_agent(req: &Req) -> (u16, String) {
    let body = match req.target.as_str() {
        "/v1/catalog/services" => r#"{"web":["v2","v1"],"consul":[],"db":null}"#,
        "/v1/catalog/nodes" => {
            r#"[{"ID":"abcd-1","Node":"n1","Address":"10.0.0.1","Datacenter":"dc1"}]"#
        }
        "/v1/catalog/datacenters" => r#"["dc1","dc2"]"#,
        "/v1/agent/members" => MEMBERS,
        "/v1/agent/service/register" | "/v1/agent/service/deregister/web%201" => "",
        _ => return (404, String::new()),
    };
    (200, body.into())
}

#[test]
fn catalog_and_members_verbs() {
    let fake = Fake::start(catalog_agent);
    let members = "\
Node   Address        Status  Type    Build  Protocol  DC   Partition  Segment
srv-1  10.0.0.1:8301  alive   server  0.1.0  2         dc1  default    <all>
v6     [::1]:8301     left    client                        default    <default>
web-1  10.0.0.2:8301  failed  client         2         dc1  default    <default>
";
    #[rustfmt::skip]
    let cases: &[Case<'_>] = &[
        ("catalog services", OK, "consul\ndb\nweb\n", ""),
        ("catalog services --tags", OK, "consul\ndb\nweb         v1,v2\n", ""),
        ("catalog nodes", OK, "Node  ID    Address   DC\nn1    abcd  10.0.0.1  dc1\n", ""),
        ("catalog datacenters", OK, "dc1\ndc2\n", ""),
        ("members", OK, members, ""),
    ];
    run_cases(&[("CONSUL_HTTP_ADDR", fake.addr.as_str())], cases);
}

#[test]
#[rustfmt::skip]
fn services_register_and_deregister() {
    let fake = Fake::start(catalog_agent);
    let env = [("CAIRN_HTTP_ADDR", fake.addr.as_str())];
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(file.path(), r#"{"service": {"id": "web 1", "name": "web"}}"#).expect("write");
    let dereg = format!("services deregister {}", file.path().display());
    run_cases(&env, &[
        ("services register -name=web -port 80 -tag a -tag=b -meta k=v", OK, "", "Registered service: web\n"),
        (&dereg, OK, "", "Deregistered service: web 1\n"),
        ("services deregister", FAIL, "", "Service deregistration requires at least one argument or -id.\n"),
    ]);
    let body: serde_json::Value = serde_json::from_slice(&fake.requests()[0].body).expect("json body");
    let expected = serde_json::json!({"Name": "web", "Port": 80, "Tags": ["a", "b"], "Meta": {"k": "v"}});
    assert_eq!(body, expected);
}

#[test]
fn agent_down_is_a_clean_error() {
    // Bind then drop a listener to get a port that nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("http://127.0.0.1:{port}");
    for line in ["kv get foo", "members", "catalog services"] {
        let (code, out, err) = cli(line, &[("CAIRN_HTTP_ADDR", &addr)]);
        assert!(code == FAIL && out.is_empty(), "{line}");
        assert!(
            err.starts_with(&format!("Error! Failed to connect to agent at {addr}: ")),
            "{err}"
        );
    }
}

#[path = "acl_tests.rs"]
mod acl_tests;
