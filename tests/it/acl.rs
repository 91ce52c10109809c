//! ACLs on a real agent: a default-deny agent refuses every family without a token (HTTP,
//! DNS, the CLI), a `key_prefix "app/"` token reads and writes only under `app/` and list
//! answers say they were filtered, a blocking query stops returning data once its token is
//! deleted, tokens and policies survive a restart (they are Raft state in RocksDB), and shared
//! DNS answers follow the DNS token's policy at once.

use std::time::{Duration, Instant};

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::RecordType;
use serde_json::{Value, json};

use crate::util::{TestAgent, dns_query};

const MANAGEMENT: &str = "4d1a0c6e-3f0b-4b7e-9a53-0c2f3c1f7a11";

async fn deny_agent() -> TestAgent {
    // The file is read again when a test restarts the agent, so its dir lives as long as the
    // test process.
    let dir: &'static tempfile::TempDir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let file = dir.path().join("acl.json");
    let config = json!({"acl": {"enabled": true, "default_policy": "deny", "tokens": {"initial_management": MANAGEMENT}}});
    std::fs::write(&file, config.to_string()).unwrap();
    TestAgent::start_with_token(&[&format!("-config-file={}", file.display())], Some(MANAGEMENT)).await
}

async fn call(agent: &TestAgent, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> reqwest::Response {
    let mut request = agent.client.request(method, agent.url(path));
    if let Some(token) = token {
        request = request.header("X-Consul-Token", token);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    request.send().await.expect("request")
}

/// Creates a policy with `rules` and a token linking it; returns the token's secret.
async fn token_with_rules(agent: &TestAgent, name: &str, rules: &str) -> (String, String) {
    let policy = call(agent, reqwest::Method::PUT, "/v1/acl/policy", Some(MANAGEMENT), Some(json!({"Name": name, "Rules": rules}))).await;
    assert_eq!(policy.status(), 200, "{:?}", policy.text().await);
    let policy: Value = policy.json().await.unwrap();
    let token = call(agent, reqwest::Method::PUT, "/v1/acl/token", Some(MANAGEMENT), Some(json!({"Policies": [{"ID": policy["ID"]}]}))).await;
    assert_eq!(token.status(), 200);
    let token: Value = token.json().await.unwrap();
    (token["SecretID"].as_str().unwrap().to_string(), token["AccessorID"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn a_default_deny_agent_refuses_http_dns_and_cli_without_a_token() {
    let agent = deny_agent().await;
    use reqwest::Method;
    // Positive control: the management token may do everything.
    assert_eq!(call(&agent, Method::PUT, "/v1/kv/app/a", Some(MANAGEMENT), Some(json!("v"))).await.status(), 200);
    assert_eq!(call(&agent, Method::GET, "/v1/agent/self", Some(MANAGEMENT), None).await.status(), 200);
    let services: Value = call(&agent, Method::GET, "/v1/catalog/services", Some(MANAGEMENT), None).await.json().await.unwrap();
    assert!(services.get("consul").is_some(), "{services}");

    // Without a token: writes and single reads are 403, lists come back empty and marked.
    for (method, path) in [
        (Method::GET, "/v1/kv/app/a"),
        (Method::PUT, "/v1/kv/app/b"),
        (Method::GET, "/v1/agent/self"),
        (Method::PUT, "/v1/agent/service/register"),
        (Method::GET, "/v1/operator/raft/configuration"),
        (Method::GET, "/v1/snapshot"),
        (Method::GET, "/v1/acl/tokens"),
        (Method::PUT, "/v1/session/create"),
        (Method::PUT, "/v1/event/fire/deploy"),
    ] {
        let body = (method == Method::PUT).then(|| json!({"Name": "web"}));
        let response = call(&agent, method.clone(), path, None, body).await;
        assert_eq!(response.status(), 403, "{method} {path}");
        assert_eq!(response.headers()["x-consul-default-acl-policy"], "deny");
        assert!(response.text().await.unwrap().starts_with("Permission denied"), "{path}");
    }
    for path in ["/v1/catalog/services", "/v1/catalog/nodes", "/v1/health/service/consul", "/v1/kv/?recurse", "/v1/agent/members"] {
        let response = call(&agent, Method::GET, path, None, None).await;
        assert!(response.status() == 200 || response.status() == 404, "{path}: {}", response.status());
        assert_eq!(response.headers().get("x-consul-results-filtered-by-acls").map(|v| v.to_str().unwrap()), Some("true"), "{path}");
        let text = response.text().await.unwrap();
        assert!(!text.contains("consul\"") && !text.contains("app/a") && !text.contains("test-node"), "{path} leaked: {text}");
    }
    // An unknown secret is refused outright.
    let unknown = call(&agent, Method::GET, "/v1/catalog/services", Some("00000000-0000-4000-8000-000000000000"), None).await;
    assert_eq!(unknown.status(), 403);
    assert_eq!(unknown.text().await.unwrap(), "ACL not found");

    // DNS answers with the agent's token: anonymous, so nothing; then with a DNS token.
    let refused = dns_query(agent.dns_addr(), "consul.service.consul.", RecordType::A).await;
    assert!(refused.answers.is_empty(), "{refused:?}");
    assert_eq!(refused.metadata.response_code, ResponseCode::NXDomain);
    let set = call(&agent, Method::PUT, "/v1/agent/token/dns", Some(MANAGEMENT), Some(json!({"Token": MANAGEMENT}))).await;
    assert_eq!(set.status(), 200);
    let answered = dns_query(agent.dns_addr(), "consul.service.consul.", RecordType::A).await;
    assert!(!answered.answers.is_empty(), "{answered:?}");

    // The CLI: refused without a token (non-zero exit, Consul's message), served with one.
    let (code, _, stderr) = agent.cli(&["kv", "get", "app/a"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("403") || stderr.contains("Permission denied"), "{stderr}");
    let (code, stdout, stderr) = agent.cli(&["kv", "get", &format!("-token={MANAGEMENT}"), "app/a"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "\"v\"");
}

#[tokio::test]
async fn a_key_prefix_token_reads_and_writes_only_under_its_prefix() {
    let agent = deny_agent().await;
    use reqwest::Method;
    for key in ["app/one", "app/two", "other/secret"] {
        assert_eq!(call(&agent, Method::PUT, &format!("/v1/kv/{key}"), Some(MANAGEMENT), Some(json!(key))).await.status(), 200);
    }
    let (secret, _) = token_with_rules(&agent, "app-writer", "key_prefix \"app/\" {\n  policy = \"write\"\n}").await;
    let token = Some(secret.as_str());
    assert_eq!(call(&agent, Method::PUT, "/v1/kv/app/three", token, Some(json!(3))).await.status(), 200);
    assert_eq!(call(&agent, Method::GET, "/v1/kv/app/one", token, None).await.status(), 200);
    assert_eq!(call(&agent, Method::PUT, "/v1/kv/other/x", token, Some(json!(1))).await.status(), 403);
    assert_eq!(call(&agent, Method::GET, "/v1/kv/other/secret", token, None).await.status(), 403);
    assert_eq!(call(&agent, Method::DELETE, "/v1/kv/other/secret", token, None).await.status(), 403);
    assert_eq!(call(&agent, Method::DELETE, "/v1/kv/?recurse", token, None).await.status(), 403, "a recursive delete above the prefix");

    let all = call(&agent, Method::GET, "/v1/kv/?recurse", token, None).await;
    assert_eq!(all.headers()["x-consul-results-filtered-by-acls"], "true");
    let keys: Vec<String> = all.json::<Vec<Value>>().await.unwrap().iter().map(|e| e["Key"].as_str().unwrap().to_string()).collect();
    assert_eq!(keys, ["app/one", "app/three", "app/two"]);
    let listed = call(&agent, Method::GET, "/v1/kv/?keys", token, None).await;
    assert_eq!(listed.headers()["x-consul-results-filtered-by-acls"], "true");
    assert_eq!(listed.json::<Vec<String>>().await.unwrap(), ["app/one", "app/three", "app/two"]);
    // Under its own prefix nothing is left out, so nothing is marked.
    let own = call(&agent, Method::GET, "/v1/kv/app/?recurse", token, None).await;
    assert!(own.headers().get("x-consul-results-filtered-by-acls").is_none());
    assert_eq!(call(&agent, Method::DELETE, "/v1/kv/app/?recurse", token, None).await.status(), 200);
    // The management token still sees what the token could not touch.
    assert_eq!(call(&agent, Method::GET, "/v1/kv/other/secret", Some(MANAGEMENT), None).await.status(), 200);
    assert_eq!(call(&agent, Method::GET, "/v1/kv/app/one", Some(MANAGEMENT), None).await.status(), 404);
    // The token may not manage ACLs.
    assert_eq!(call(&agent, Method::GET, "/v1/acl/tokens", token, None).await.status(), 403);
}

#[tokio::test]
async fn a_blocking_query_stops_returning_data_once_its_token_is_deleted() {
    let agent = deny_agent().await;
    use reqwest::Method;
    assert_eq!(call(&agent, Method::PUT, "/v1/kv/app/watched", Some(MANAGEMENT), Some(json!(1))).await.status(), 200);
    let (secret, accessor) = token_with_rules(&agent, "app-reader", "key_prefix \"app/\" { policy = \"read\" }").await;
    let first = call(&agent, Method::GET, "/v1/kv/app/watched", Some(&secret), None).await;
    assert_eq!(first.status(), 200);
    let index: u64 = first.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();

    let path = format!("/v1/kv/app/watched?index={index}&wait=60s");
    let started = Instant::now();
    let parked = {
        let (client, url, secret) = (agent.client.clone(), agent.url(&path), secret.clone());
        tokio::spawn(async move { client.get(url).header("X-Consul-Token", secret).send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deleted = call(&agent, Method::DELETE, &format!("/v1/acl/token/{accessor}"), Some(MANAGEMENT), None).await;
    assert_eq!(deleted.status(), 200);
    let answer = parked.await.unwrap();
    // Woken by the deletion, long before its 60 s wait ran out, and refused: no data.
    assert!(started.elapsed() < Duration::from_secs(30), "the parked query was not woken: {:?}", started.elapsed());
    assert_eq!(answer.status(), 403);
    assert_eq!(answer.text().await.unwrap(), "ACL not found");
    assert_eq!(call(&agent, Method::GET, "/v1/kv/app/watched", Some(&secret), None).await.status(), 403);
}

#[tokio::test]
async fn tokens_and_policies_survive_a_restart_and_bootstrap_happens_once() {
    let mut agent = deny_agent().await;
    use reqwest::Method;
    let (secret, _) = token_with_rules(&agent, "svc-reader", "service_prefix \"\" { policy = \"read\" }").await;
    // Bad rules are refused with Consul's wording, nothing stored.
    let bad = call(&agent, Method::PUT, "/v1/acl/policy", Some(MANAGEMENT), Some(json!({"Name": "bad", "Rules": "key \"x\" { policy = \"rw\" }"}))).await;
    assert_eq!(bad.status(), 400);
    // The initial management token counts as the bootstrap, as in Consul.
    let again = call(&agent, Method::PUT, "/v1/acl/bootstrap", None, None).await;
    assert_eq!(again.status(), 403);
    assert!(again.text().await.unwrap().contains("ACL bootstrap no longer allowed"));

    agent.restart().await;
    let services = call(&agent, Method::GET, "/v1/catalog/service/consul", Some(&secret), None).await;
    assert_eq!(services.status(), 200);
    // service:read alone does not show the node, so the instance is filtered out.
    assert_eq!(services.headers()["x-consul-results-filtered-by-acls"], "true");
    let names: Vec<Value> = call(&agent, Method::GET, "/v1/acl/policies", Some(MANAGEMENT), None).await.json().await.unwrap();
    assert!(names.iter().any(|p| p["Name"] == "svc-reader"), "{names:?}");
    assert!(names.iter().all(|p| p["Name"] != "bad"));
}

#[tokio::test]
async fn with_acls_disabled_the_acl_endpoints_answer_401() {
    let agent = TestAgent::start().await;
    let response = agent.get("/v1/acl/tokens").await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.text().await.unwrap(), "ACL support disabled");
    assert_eq!(agent.get("/v1/agent/self").await.headers()["x-consul-default-acl-policy"], "allow");
}

/// With ACLs on, DNS answers are shared between queries (`dns::answer_cache`) only while the
/// DNS token, what it may read and the second stay the same: a policy change shows at once.
#[tokio::test]
async fn shared_dns_answers_follow_the_dns_tokens_policy_at_once() {
    let agent = deny_agent().await;
    let register = json!({"Name": "web", "Port": 80});
    assert_eq!(call(&agent, reqwest::Method::PUT, "/v1/agent/service/register", Some(MANAGEMENT), Some(register)).await.status(), 200);
    let (secret, _) = token_with_rules(&agent, "dns", "service_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }").await;
    assert_eq!(call(&agent, reqwest::Method::PUT, "/v1/agent/token/dns", Some(MANAGEMENT), Some(json!({"Token": secret}))).await.status(), 200);
    for _ in 0..20 {
        let answered = dns_query(agent.dns_addr(), "web.service.consul.", RecordType::A).await;
        assert_eq!(answered.answers.len(), 1, "{answered:?}");
    }
    let policy: Value = call(&agent, reqwest::Method::GET, "/v1/acl/policy/name/dns", Some(MANAGEMENT), None).await.json().await.unwrap();
    let narrowed = json!({"Name": "dns", "Rules": "service_prefix \"\" { policy = \"deny\" }\nnode_prefix \"\" { policy = \"read\" }"});
    let id = policy["ID"].as_str().unwrap();
    assert_eq!(call(&agent, reqwest::Method::PUT, &format!("/v1/acl/policy/{id}"), Some(MANAGEMENT), Some(narrowed)).await.status(), 200);
    let refused = dns_query(agent.dns_addr(), "web.service.consul.", RecordType::A).await;
    assert!(refused.answers.is_empty(), "the narrowed policy shows in the next answer: {refused:?}");
    assert_eq!(refused.metadata.response_code, ResponseCode::NXDomain);
}
