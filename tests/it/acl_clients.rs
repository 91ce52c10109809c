//! ACLs on a client agent (`agent::acl_client`): it has no ACL tables, so it resolves each
//! token through a server and keeps the answer for `acl.token_ttl`. A default-deny client
//! refuses its own endpoints and DNS without a token, honours a token's policy, answers DNS
//! with its `dns` token, and stops honouring a deleted token once the TTL has passed.

use std::time::Duration;

use hickory_server::proto::rr::RecordType;
use reqwest::Method;
use serde_json::{Value, json};

use crate::cluster_util::TestCluster;
use crate::util::{dns_query, eventually};

const MANAGEMENT: &str = "9b2f7e1c-54a3-4c3e-8d0e-2a7c51f0b6d4";
/// The client's `acl.token_ttl`: short, so a deleted token is refused within the test.
const TOKEN_TTL_MS: u64 = 1_000;

async fn call(cluster: &TestCluster, i: usize, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> reqwest::Response {
    let mut request = cluster.client.request(method, format!("{}{path}", cluster.servers[i].http()));
    if let Some(token) = token {
        request = request.header("X-Consul-Token", token);
    }
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    request.send().await.expect("request")
}

/// A token whose only policy has `rules`, created at agent `i`; returns (secret, accessor).
async fn token_with_rules(cluster: &TestCluster, i: usize, name: &str, rules: &str) -> (String, String) {
    let policy = call(cluster, i, Method::PUT, "/v1/acl/policy", Some(MANAGEMENT), Some(json!({"Name": name, "Rules": rules}))).await;
    assert_eq!(policy.status(), 200, "{:?}", policy.text().await);
    let policy: Value = policy.json().await.unwrap();
    let token = call(cluster, i, Method::PUT, "/v1/acl/token", Some(MANAGEMENT), Some(json!({"Policies": [{"ID": policy["ID"]}]}))).await;
    let token: Value = token.json().await.unwrap();
    (token["SecretID"].as_str().unwrap().to_string(), token["AccessorID"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_agent_resolves_tokens_through_the_servers() {
    let dir = tempfile::tempdir().unwrap();
    let server_config = dir.path().join("server-acl.json");
    let acl = json!({"acl": {"enabled": true, "default_policy": "deny", "tokens": {"initial_management": MANAGEMENT}}});
    std::fs::write(&server_config, acl.to_string()).unwrap();
    let client_config = dir.path().join("client-acl.json");
    let acl = json!({"acl": {"enabled": true, "default_policy": "deny", "token_ttl": format!("{TOKEN_TTL_MS}ms")}});
    std::fs::write(&client_config, acl.to_string()).unwrap();
    let server_flag = format!("-config-file={}", server_config.display());
    let mut cluster = TestCluster::start_with_args(1, |_| vec![server_flag.clone()]).await;
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.add_client(&[&format!("-config-file={}", client_config.display())]);
    let self_url = format!("{}/v1/agent/self", cluster.servers[client].http());
    let joined = eventually(30_000, async || {
        let answer = cluster.client.get(&self_url).header("X-Consul-Token", MANAGEMENT).send().await;
        answer.is_ok_and(|a| a.status() == 200)
    })
    .await;
    assert!(joined, "the client resolves the management token through the server; log:\n{}", cluster.servers[client].log());

    // The client's own endpoints: refused without a token, and with a token lacking the right.
    assert_eq!(call(&cluster, client, Method::GET, "/v1/agent/self", None, None).await.status(), 403);
    let (kv_token, kv_accessor) = token_with_rules(&cluster, 0, "app-rw", r#"key_prefix "app/" { policy = "write" }"#).await;
    assert_eq!(call(&cluster, client, Method::GET, "/v1/agent/self", Some(&kv_token), None).await.status(), 403);
    let unknown = call(&cluster, client, Method::GET, "/v1/agent/self", Some("00000000-aaaa-bbbb-cccc-000000000000"), None).await;
    assert_eq!(unknown.status(), 403);
    assert!(unknown.text().await.unwrap().contains("ACL not found"));
    // What the token allows, through the client.
    assert_eq!(call(&cluster, client, Method::PUT, "/v1/kv/app/x", Some(&kv_token), Some(json!("v"))).await.status(), 200);
    assert_eq!(call(&cluster, client, Method::PUT, "/v1/kv/other", Some(&kv_token), Some(json!("v"))).await.status(), 403);

    // A service registered at the client; DNS there shows it only with a `dns` token.
    let web = json!({"Name": "web", "Port": 80});
    assert_eq!(call(&cluster, client, Method::PUT, "/v1/agent/service/register", Some(MANAGEMENT), Some(web)).await.status(), 200);
    let dns = cluster.servers[client].dns_addr();
    let synced = eventually(20_000, async || {
        let nodes: Value = call(&cluster, 0, Method::GET, "/v1/catalog/service/web", Some(MANAGEMENT), None).await.json().await.unwrap_or(json!([]));
        nodes.as_array().is_some_and(|n| !n.is_empty())
    })
    .await;
    assert!(synced, "the client synced its service to the server");
    assert!(dns_query(dns, "web.service.consul.", RecordType::A).await.answers.is_empty(), "no dns token: nothing shown");
    let (dns_token, _) = token_with_rules(&cluster, 0, "dns", "service_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }").await;
    let set = call(&cluster, client, Method::PUT, "/v1/agent/token/dns", Some(MANAGEMENT), Some(json!({"Token": dns_token}))).await;
    assert_eq!(set.status(), 200);
    let answered = eventually(10_000, async || !dns_query(dns, "web.service.consul.", RecordType::A).await.answers.is_empty()).await;
    assert!(answered, "with the dns token the client's DNS answers");

    // A deleted token: requests the client relays are refused by the server at once; what the
    // client answers itself (its agent endpoints) follows once its cached answer is older than
    // the TTL. `svc` may read services, so the client's own service list shows `web`.
    let (svc_token, svc_accessor) = token_with_rules(&cluster, 0, "svc", "service_prefix \"\" { policy = \"read\" }").await;
    let services = call(&cluster, client, Method::GET, "/v1/agent/services", Some(&svc_token), None).await;
    assert_eq!(services.status(), 200);
    assert!(services.json::<Value>().await.unwrap().get("web").is_some(), "the token may read the client's services");
    assert_eq!(call(&cluster, client, Method::GET, "/v1/kv/app/x", Some(&kv_token), None).await.status(), 200);
    for accessor in [&kv_accessor, &svc_accessor] {
        assert_eq!(call(&cluster, 0, Method::DELETE, &format!("/v1/acl/token/{accessor}"), Some(MANAGEMENT), None).await.status(), 200);
    }
    let deleted = std::time::Instant::now();
    assert_eq!(call(&cluster, client, Method::GET, "/v1/kv/app/x", Some(&kv_token), None).await.status(), 403, "the server refuses a relayed read");
    let refused = eventually(TOKEN_TTL_MS + 5_000, async || {
        call(&cluster, client, Method::GET, "/v1/agent/services", Some(&svc_token), None).await.status() == 403
    })
    .await;
    assert!(refused, "the deleted token is refused by the client agent");
    let answer = call(&cluster, client, Method::GET, "/v1/agent/services", Some(&svc_token), None).await;
    assert!(answer.text().await.unwrap().contains("ACL not found"));
    println!("client agent refused the deleted token {} ms after the delete (token_ttl {TOKEN_TTL_MS} ms)", deleted.elapsed().as_millis());
}
