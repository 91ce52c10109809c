//! Tests of `cairn acl ...`: Consul's pretty blocks for a token, policy and role built from
//! sample agent JSON, the pure helpers (Go times and durations, JSON re-indenting), and the
//! requests each verb sends to a fake agent (the `Fake` of `cli/tests.rs`), with Consul's
//! messages for refusals and bad flags.

use serde_json::{Value, json};

use super::{Case, FAIL, Fake, OK, Req, cli, run_cases};
use crate::cli::acl_format::{Policy, Role, Token, go_time, indent_json, pretty_policy, pretty_policy_list, pretty_role, pretty_token};
use crate::cli::acl_token::go_duration_ns;

const ACCESSOR: &str = "6a1253d2-1785-24fd-91c2-f8e78c745511";
const SECRET: &str = "45a3bd52-07c7-47a4-52fd-0745e0cfe967";

fn token_json() -> Value {
    json!({
        "AccessorID": ACCESSOR, "SecretID": SECRET, "Description": "web token", "Local": false,
        "Policies": [{"ID": "2ab1a7c0-8ac7-4d28-bf55-5c2c6a4e52a1", "Name": "web-read"}],
        "Roles": [{"ID": "7f1b0d2e-55e0-4a3c-9c1e-3c3a9bd0b0a4", "Name": "ops"}],
        "ServiceIdentities": [{"ServiceName": "web", "Datacenters": ["dc1", "dc2"]}, {"ServiceName": "db"}],
        "NodeIdentities": [{"NodeName": "n1", "Datacenter": "dc1"}],
        "TemplatedPolicies": [{"TemplateName": "builtin/service", "TemplateVariables": {"Name": "api"}}],
        "CreateTime": "2024-03-01T09:30:05.250Z", "ExpirationTime": "2024-03-01T10:30:05.25Z",
        "Hash": "YWJjZGVmZ2g=", "CreateIndex": 12, "ModifyIndex": 15
    })
}

#[test]
fn pretty_token_is_consuls_block() {
    let token: Token = serde_json::from_value(token_json()).expect("token");
    let expected = format!(
        "AccessorID:       {ACCESSOR}
SecretID:         {SECRET}
Description:      web token
Local:            false
Create Time:      2024-03-01 09:30:05.25 +0000 UTC
Expiration Time:  2024-03-01 10:30:05.25 +0000 UTC
Hash:             6162636465666768
Create Index:     12
Modify Index:     15
Policies:
   2ab1a7c0-8ac7-4d28-bf55-5c2c6a4e52a1 - web-read
Roles:
   7f1b0d2e-55e0-4a3c-9c1e-3c3a9bd0b0a4 - ops
Service Identities:
   web (Datacenters: dc1, dc2)
   db (Datacenters: all)
Node Identities:
   n1 (Datacenter: dc1)
Templated Policies:
   builtin/service
      Name: api
      Datacenters: all
"
    );
    assert_eq!(pretty_token(&token, true), expected);
    // Without -meta the hash and indexes go; a minimal token prints the fixed lines only.
    let minimal: Token = serde_json::from_value(json!({"AccessorID": "a", "SecretID": "s", "CreateTime": "2024-03-01T09:30:05Z"})).expect("token");
    let minimal_text = "AccessorID:       a\nSecretID:         s\nDescription:      \nLocal:            false\nCreate Time:      2024-03-01 09:30:05 +0000 UTC\n";
    assert_eq!(pretty_token(&minimal, false), minimal_text);
}

#[test]
fn pretty_policy_and_role_are_consuls_blocks() {
    let policy: Policy = serde_json::from_value(json!({
        "ID": "p1", "Name": "web-read", "Description": "reads web", "Datacenters": ["dc1", "dc2"],
        "Rules": "service \"web\" { policy = \"read\" }", "Hash": "AQI=", "CreateIndex": 3, "ModifyIndex": 4
    }))
    .expect("policy");
    let full = "ID:           p1\nName:         web-read\nDescription:  reads web\nDatacenters:  dc1, dc2\nHash:         0102\nCreate Index: 3\nModify Index: 4\nRules:\nservice \"web\" { policy = \"read\" }";
    assert_eq!(pretty_policy(&policy, true), full);
    let listed = "web-read:\n   ID:           p1\n   Description:  reads web\n   Datacenters:  dc1, dc2\n";
    assert_eq!(pretty_policy_list(&[policy], false), listed);

    let role: Role = serde_json::from_value(json!({
        "ID": "r1", "Name": "ops", "Description": "", "Policies": [{"ID": "p1", "Name": "web-read"}],
        "ServiceIdentities": [{"ServiceName": "web"}], "NodeIdentities": [{"NodeName": "n1", "Datacenter": "dc1"}]
    }))
    .expect("role");
    let block = "ID:           r1\nName:         ops\nDescription:  \nPolicies:\n   p1 - web-read\nService Identities:\n   web (Datacenters: all)\nNode Identities:\n   n1 (Datacenter: dc1)\n";
    assert_eq!(pretty_role(&role, false, false), block);
    let entry = "ops:\n   ID:           r1\n   Description:  \n   Policies:\n      p1 - web-read\n   Service Identities:\n      web (Datacenters: all)\n   Node Identities:\n      n1 (Datacenter: dc1)\n";
    assert_eq!(pretty_role(&role, false, true), entry);
}

#[test]
fn go_times_durations_and_json_indenting() {
    assert_eq!(go_time("2020-05-22T18:52:31Z"), "2020-05-22 18:52:31 +0000 UTC");
    assert_eq!(go_time("2020-05-22T18:52:31.000000100Z"), "2020-05-22 18:52:31.0000001 +0000 UTC");
    assert_eq!(go_time("2020-05-22T18:52:31+02:00"), "2020-05-22 18:52:31 +0200 +0200");
    assert_eq!(go_time("not a time"), "not a time");
    for (text, ns) in [("0", Some(0)), ("1h30m", Some(5_400_000_000_000)), ("1.5s", Some(1_500_000_000)), ("-2ms", Some(-2_000_000))] {
        assert_eq!(go_duration_ns(text), ns, "{text}");
    }
    for bad in ["", "5", "1d", "h", "1h x"] {
        assert_eq!(go_duration_ns(bad), None, "{bad}");
    }
    let raw = r#"{"B":[],"A":{"C":"x,: {\"[","D":[1, 2]},"E":{}}"#;
    let expected = "{\n    \"B\": [],\n    \"A\": {\n        \"C\": \"x,: {\\\"[\",\n        \"D\": [\n            1,\n            2\n        ]\n    },\n    \"E\": {}\n}";
    assert_eq!(indent_json(raw), expected);
}

/// A fake agent with Consul's ACL endpoints. A request carrying the token `denied` is refused
/// with 403; writes answer with what they were sent (so the printed result shows the body).
fn acl_agent(req: &Req) -> (u16, String) {
    if req.headers.iter().any(|(k, v)| k == "x-consul-token" && v == "denied") {
        return (403, format!("Permission denied: token with AccessorID '{ACCESSOR}' lacks permission 'acl:write'"));
    }
    let body = String::from_utf8_lossy(&req.body).into_owned();
    let token = token_json().to_string();
    let path = req.target.split('?').next().unwrap_or_default();
    match (req.method.as_str(), path) {
        ("PUT", "/v1/acl/token" | "/v1/acl/bootstrap") => (200, token),
        ("PUT", p) if p.ends_with("/clone") => (200, token),
        ("PUT", _) => (200, body),
        ("DELETE", _) => (200, "true".to_owned()),
        ("GET", "/v1/acl/tokens") => (200, format!("[{token}]")),
        ("GET", "/v1/acl/policy/name/missing" | "/v1/acl/role/name/missing") => (404, "ACL not found".to_owned()),
        ("GET", p) if p.starts_with("/v1/acl/token/") => (200, token),
        ("GET", p) if p.starts_with("/v1/acl/policy/") => (200, json!({"ID": "p1", "Name": "web-read", "Description": "d", "Rules": "r"}).to_string()),
        ("GET", p) if p.starts_with("/v1/acl/role/") => (200, json!({"ID": "r1", "Name": "ops", "Description": "d", "Policies": [{"ID": "p1", "Name": "web-read"}], "ServiceIdentities": [{"ServiceName": "web"}]}).to_string()),
        _ => (404, "unknown route".to_owned()),
    }
}

fn body(req: &Req) -> Value {
    serde_json::from_slice(&req.body).expect("JSON body")
}

fn sent(fake: &Fake) -> Vec<(String, String)> {
    fake.requests().iter().map(|r| (r.method.clone(), r.target.clone())).collect()
}

#[test]
fn token_create_sends_consuls_body_with_the_token_file() {
    let fake = Fake::start(acl_agent);
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(file.path(), "  file-token\n").expect("write");
    let env = [("CAIRN_HTTP_ADDR", fake.addr.as_str()), ("CONSUL_HTTP_TOKEN_FILE", file.path().to_str().expect("utf-8"))];
    let line = "acl token create -description d -policy-name web-read -policy-id p1 -role-name ops -service-identity web:dc1,dc2 -node-identity n1:dc1 -templated-policy builtin/dns -local -expires-ttl 1h -token ignored";
    let (code, out, err) = cli(line, &env);
    assert!(code == OK && err.is_empty(), "{err}");
    assert!(out.starts_with(&format!("AccessorID:       {ACCESSOR}\n")) && out.ends_with("Datacenters: all\n\n"), "{out}");
    let req = &fake.requests()[0];
    assert_eq!((req.method.as_str(), req.target.as_str()), ("PUT", "/v1/acl/token"));
    assert!(req.headers.contains(&("x-consul-token".to_owned(), "file-token".to_owned())), "{:?}", req.headers);
    let expected = json!({
        "Description": "d", "Local": true, "ExpirationTTL": "1h",
        "Policies": [{"Name": "web-read"}, {"ID": "p1"}], "Roles": [{"Name": "ops"}],
        "ServiceIdentities": [{"ServiceName": "web", "Datacenters": ["dc1", "dc2"]}],
        "NodeIdentities": [{"NodeName": "n1", "Datacenter": "dc1"}],
        "TemplatedPolicies": [{"TemplateName": "builtin/dns"}],
    });
    assert_eq!(body(req), expected);
    // JSON output is the agent's answer, re-indented.
    let (code, out, _) = cli("acl token create -policy-name x -format=json", &env);
    assert!(code == OK && out.starts_with(&format!("{{\n    \"AccessorID\": \"{ACCESSOR}\",\n")), "{out}");
}

#[test]
fn token_update_merges_read_delete_list_clone() {
    let fake = Fake::start(acl_agent);
    let env = [("CAIRN_HTTP_ADDR", fake.addr.as_str())];
    let line = format!("acl token update -accessor-id {ACCESSOR} -append-policy-name extra -append-service-identity web:dc3 -description new");
    let (code, out, err) = cli(&line, &env);
    assert!(code == OK && err.is_empty() && out.contains("Description:      new\n"), "{err}{out}");
    let put = &fake.requests()[1];
    let updated = body(put);
    assert_eq!(put.target, format!("/v1/acl/token/{ACCESSOR}"));
    assert_eq!(updated["Policies"], json!([{"ID": "2ab1a7c0-8ac7-4d28-bf55-5c2c6a4e52a1", "Name": "web-read"}, {"Name": "extra"}]));
    assert_eq!(updated["ServiceIdentities"], json!([{"ServiceName": "web", "Datacenters": ["dc3"]}, {"ServiceName": "db"}]));
    // Without -append-node-identity the node identities are replaced (by none), as in Consul.
    assert_eq!(updated["NodeIdentities"], json!([]));
    assert_eq!(updated["Roles"], token_json()["Roles"]);

    let cases: [Case<'_>; 4] = [
        ("acl token read -self", OK, "", ""),
        ("acl token delete -accessor-id abc", OK, "", "Token \"abc\" deleted successfully\n"),
        ("acl token read", FAIL, "", "Must specify the -accessor-id parameter\n"),
        ("acl token update -policy-id a -append-policy-id b -accessor-id x", FAIL, "", "Cannot combine the use of policy-id/policy-name flags with append- variants. To set or overwrite existing policies, use -policy-id or -policy-name. To append to existing policies, use -append-policy-id or -append-policy-name.\n"),
    ];
    let before = fake.requests().len();
    for (line, code, _, err) in cases {
        let got = cli(line, &env);
        assert_eq!((got.0, got.2.as_str()), (code, err), "{line}");
    }
    let (code, out, _) = cli("acl token list", &env);
    assert!(code == OK && out.contains("Policies:\n   2ab1a7c0"), "{out}");
    let (code, _, _) = cli("acl token clone -accessor-id abc -description copy", &env);
    assert_eq!(code, OK);
    let seen = sent(&fake)[before..].to_vec();
    let expected = [("GET", "/v1/acl/token/self"), ("DELETE", "/v1/acl/token/abc"), ("GET", "/v1/acl/tokens"), ("PUT", "/v1/acl/token/abc/clone")];
    assert_eq!(seen, expected.map(|(m, t)| (m.to_owned(), t.to_owned())));
    assert_eq!(body(fake.requests().last().expect("clone")), json!({"Description": "copy"}));
}

#[test]
fn policy_and_role_verbs_send_consuls_requests() {
    let fake = Fake::start(acl_agent);
    let env = [("CAIRN_HTTP_ADDR", fake.addr.as_str())];
    let rules = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(rules.path(), "key_prefix \"\" { policy = \"read\" }").expect("write");
    let create = format!("acl policy create -name kv -valid-datacenter dc1 -rules @{}", rules.path().display());
    let (code, out, _) = cli(&create, &env);
    assert!(code == OK && out.ends_with("Rules:\nkey_prefix \"\" { policy = \"read\" }\n"), "{out}");
    assert_eq!(body(&fake.requests()[0]), json!({"Name": "kv", "Description": "", "Datacenters": ["dc1"], "Rules": "key_prefix \"\" { policy = \"read\" }"}));
    let (code, _, err) = cli("acl policy update -name web-read -description better", &env);
    assert!(code == OK, "{err}");
    assert_eq!(body(fake.requests().last().expect("put")), json!({"ID": "p1", "Name": "web-read", "Description": "better", "Datacenters": null, "Rules": "r"}));
    run_cases(&env, &[
        ("acl policy delete -name missing", FAIL, "", "Error determining policy ID: No such policy with name missing\n"),
        ("acl policy read", FAIL, "", "Must specify either the -id or -name parameters\n"),
        ("acl role read -name missing", FAIL, "", "Role not found with name \"missing\"\n"),
        ("acl role create -name ops", FAIL, "", "Cannot create a role without specifying -policy-name, -policy-id, -service-identity, or -node-identity at least once\n"),
        ("acl role delete -id r1", OK, "", "Role \"r1\" deleted successfully\n"),
    ]);
    let (code, _, err) = cli("acl role update -id r1 -policy-name web-read -policy-name new -service-identity web:dc1 -node-identity n2:dc1", &env);
    assert!(code == OK, "{err}");
    let role = body(fake.requests().last().expect("put"));
    assert_eq!(role["Policies"], json!([{"ID": "p1", "Name": "web-read"}, {"Name": "new"}]));
    assert_eq!(role["ServiceIdentities"], json!([{"ServiceName": "web", "Datacenters": ["dc1"]}]));
    assert_eq!(role["NodeIdentities"], json!([{"NodeName": "n2", "Datacenter": "dc1"}]));
    let (code, _, _) = cli("acl role create -name ops -policy-id p1 -service-identity db", &env);
    assert_eq!(code, OK);
    assert_eq!(body(fake.requests().last().expect("put")), json!({"Name": "ops", "Description": "", "Policies": [{"ID": "p1"}], "ServiceIdentities": [{"ServiceName": "db"}]}));
}

#[test]
fn bootstrap_agent_tokens_refusals_and_bad_flags() {
    let fake = Fake::start(acl_agent);
    let env = [("CAIRN_HTTP_ADDR", fake.addr.as_str())];
    let (code, out, _) = cli("acl bootstrap", &env);
    assert!(code == OK && out.starts_with(&format!("AccessorID:       {ACCESSOR}\nSecretID:         {SECRET}\n")), "{out}");
    run_cases(&env, &[
        ("acl set-agent-token recovery s3cret", OK, "", "ACL token \"recovery\" set successfully\n"),
        ("acl set-agent-token agent", FAIL, "", "Error! Missing TOKEN argument\n"),
        ("acl set-agent-token bogus x", FAIL, "", "Unknown token type\n"),
        ("acl token create -policy-name x -format=xml", FAIL, "", "Unknown format: xml\n"),
        ("acl token create", FAIL, "", "Cannot create a token without specifying -policy-name, -policy-id, -role-name, -role-id, -service-identity, -node-identity, or -templated-policy at least once\n"),
        ("acl token create -policy-name x -node-identity n1", FAIL, "", "Malformed -node-identity argument: \"n1\"\n"),
        ("acl token create -policy-name x -token denied", FAIL, "", &format!("Failed to create new token: Unexpected response code: 403 (Permission denied: token with AccessorID '{ACCESSOR}' lacks permission 'acl:write')\n")),
        ("acl policy list -token denied", FAIL, "", &format!("Failed to retrieve the policy list: Unexpected response code: 403 (Permission denied: token with AccessorID '{ACCESSOR}' lacks permission 'acl:write')\n")),
    ]);
    let reqs = fake.requests();
    let agent_token = reqs.iter().find(|r| r.target.starts_with("/v1/agent/token/")).expect("agent token request");
    assert_eq!((agent_token.method.as_str(), agent_token.target.as_str()), ("PUT", "/v1/agent/token/agent_recovery"));
    assert_eq!(body(agent_token), json!({"Token": "s3cret"}));
    // Bad flags and words are usage errors (exit 1); no request is made for them.
    let before = reqs.len();
    for line in ["acl", "acl token", "acl token frob", "acl policy create -bogus", "acl role list -format"] {
        let (code, out, err) = cli(line, &env);
        assert!(code == FAIL && out.is_empty() && !err.is_empty(), "{line}: {err}");
    }
    assert_eq!(fake.requests().len(), before);
    let (code, _, err) = cli("acl token create -h", &env);
    assert!(code == OK && err.contains("--policy-name"), "{err}");
}
