//! Gossip key rotation on real agents: three servers and a client agent with an `encrypt` key
//! rotate it twice (through the HTTP API, then through `cairn keyring`) while every member stays
//! alive and writes keep working; a server restarted with its original `encrypt` rejoins (the
//! keyring file wins); an agent that knows only a removed key cannot join; a plaintext keyring
//! request on the gossip TCP port is refused. A dev agent keeps its ring in memory only, an
//! agent without encryption refuses keyring operations, and ACLs need `keyring:read` to list
//! and `keyring:write` to change.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::cluster_util::TestCluster;
use crate::util::{TestAgent, eventually};

/// A new random gossip key (AES-256), as `cairn keygen` prints it.
fn new_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// `cairn keyring ARGS` against the agent at `http`: (exit code, stdout, stderr).
fn keyring_cli(http: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("keyring")
        .args(args)
        .env("CONSUL_HTTP_ADDR", http)
        .env_remove("CAIRN_HTTP_ADDR")
        .output()
        .expect("run the cli");
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    (output.status.code().unwrap_or(-1), text(output.stdout), text(output.stderr))
}

/// The names and statuses of the members `http` lists.
async fn members(client: &reqwest::Client, http: &str) -> Vec<(String, u64)> {
    let Ok(response) = client.get(format!("{http}/v1/agent/members")).timeout(Duration::from_secs(2)).send().await else { return Vec::new() };
    let members: Value = response.json().await.unwrap_or_default();
    let members = members.as_array().cloned().unwrap_or_default();
    members.iter().map(|m| (m["Name"].as_str().unwrap_or_default().to_owned(), m["Status"].as_u64().unwrap_or(0))).collect()
}

/// Whether `http` lists each of `names` alive.
async fn all_alive(client: &reqwest::Client, http: &str, names: &[&str]) -> bool {
    let seen = members(client, http).await;
    names.iter().all(|name| seen.iter().any(|(member, status)| member == name && *status == 1))
}

/// `GET /v1/operator/keyring` on `http`: the LAN entry.
async fn list(client: &reqwest::Client, http: &str) -> Value {
    let response = client.get(format!("{http}/v1/operator/keyring")).send().await.expect("list");
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
    let pools: Value = response.json().await.expect("json");
    assert_eq!(pools.as_array().map(Vec::len), Some(1), "{pools}");
    pools[0].clone()
}

/// A keyring write through HTTP: its status and body.
async fn write(client: &reqwest::Client, http: &str, method: reqwest::Method, key: &str) -> (u16, String) {
    let response = client.request(method, format!("{http}/v1/operator/keyring")).json(&json!({"Key": key})).send().await.expect("keyring write");
    (response.status().as_u16(), response.text().await.unwrap_or_default())
}

/// Watches the pool while keys rotate: every 100 ms, every server must list every member alive
/// and a KV write through server 1 must succeed. Returns what went wrong, if anything.
fn watch_pool(cluster: &TestCluster, names: Vec<String>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<String>> {
    let https: Vec<String> = cluster.servers.iter().filter(|s| s.is_server).map(|s| s.http()).collect();
    let client = cluster.client.clone();
    tokio::spawn(async move {
        let mut problems = Vec::new();
        let mut round = 0u64;
        while !stop.load(Ordering::SeqCst) {
            for http in &https {
                let seen = members(&client, http).await;
                for name in &names {
                    if !seen.iter().any(|(member, status)| member == name && *status == 1) {
                        problems.push(format!("{http} does not list {name} alive: {seen:?}"));
                    }
                }
            }
            round += 1;
            let written = client.put(format!("{}/v1/kv/rotation/{round}", https[0])).body("v").send().await;
            if !written.is_ok_and(|response| response.status() == 200) {
                problems.push(format!("write {round} failed"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        problems
    })
}

#[tokio::test]
async fn the_gossip_key_rotates_with_no_downtime_and_survives_a_restart() {
    let first = new_key();
    let encrypt = format!("-encrypt={first}");
    let mut cluster = TestCluster::start_with_args(3, |_| vec![encrypt.clone()]).await;
    cluster.add_client(&[encrypt.as_str()]);
    let names = ["s1", "s2", "s3", "c1"];
    let (s1, s2, client) = (cluster.servers[0].http(), cluster.servers[1].http(), cluster.client.clone());
    let servers: Vec<String> = (0..3).map(|i| cluster.servers[i].http()).collect();
    let everyone_sees_everyone = async || {
        for http in &servers {
            if !all_alive(&client, http, &names).await {
                return false;
            }
        }
        true
    };
    assert!(eventually(30_000, everyone_sees_everyone).await, "the pool formed");
    // A client agent relays keyring requests to a server, as every non-agent endpoint.
    assert_eq!(list(&client, &cluster.servers[3].http()).await["NumNodes"], 4);
    let entry = list(&client, &s1).await;
    assert_eq!(entry["Keys"], json!({ first.clone(): 4 }), "{entry}");
    assert_eq!((entry["NumNodes"].as_u64(), entry["Datacenter"].as_str(), entry["WAN"].as_bool()), (Some(4), Some("dc1"), Some(false)));

    tracing::info!("rotate first → second through the HTTP API, watching members and writes");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_pool(&cluster, names.iter().map(|n| n.to_string()).collect(), Arc::clone(&stop));
    let second = new_key();
    assert_eq!(write(&client, &s1, reqwest::Method::POST, &second).await, (200, String::new()));
    assert_eq!(list(&client, &s2).await["Keys"], json!({ first.clone(): 4, second.clone(): 4 }));
    assert_eq!(write(&client, &s2, reqwest::Method::PUT, &second).await, (200, String::new()));
    assert_eq!(list(&client, &s1).await["PrimaryKeys"], json!({ second.clone(): 4 }));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(write(&client, &s1, reqwest::Method::DELETE, &first).await, (200, String::new()));
    assert_eq!(list(&client, &s1).await["Keys"], json!({ second.clone(): 4 }));
    let (status, body) = write(&client, &s1, reqwest::Method::DELETE, &second).await;
    assert!(status == 500 && body.contains("Removing the primary key is not allowed"), "{status} {body}");
    let (status, body) = write(&client, &s1, reqwest::Method::POST, "not a key").await;
    assert!(status == 400 && body.contains("base64"), "{status} {body}");

    tracing::info!("rotate second → third through `cairn keyring`");
    let third = new_key();
    let (code, _, stderr) = keyring_cli(&s2, &[&format!("-install={third}")]);
    assert!(code == 0 && stderr.contains("==> Installing new gossip encryption key..."), "{code} {stderr}");
    let (code, _, stderr) = keyring_cli(&s1, &["-use", &third]);
    assert!(code == 0 && stderr.contains("==> Changing primary gossip encryption key..."), "{code} {stderr}");
    let (code, stdout, stderr) = keyring_cli(&s1, &["-list-primary"]);
    assert_eq!((code, stdout.as_str()), (0, format!("\ndc1 (LAN):\n  {third} [4/4]\n").as_str()), "{stderr}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, _, stderr) = keyring_cli(&s1, &[&format!("-remove={second}")]);
    assert!(code == 0 && stderr.contains("==> Removing gossip encryption key..."), "{code} {stderr}");
    let (code, stdout, _) = keyring_cli(&s1, &["-list", "-local-only"]);
    assert_eq!((code, stdout.as_str()), (0, format!("\ndc1 (LAN):\n  {third} [4/4]\n").as_str()));
    let (code, _, stderr) = keyring_cli(&s1, &[&format!("-use={first}")]);
    assert!(code == 1 && stderr.contains("error: ") && stderr.contains("Requested key is not in the keyring"), "{code} {stderr}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let problems = watcher.await.expect("the watcher ran");
    assert!(problems.is_empty(), "downtime during the rotation: {problems:?}");

    tracing::info!("s3 restarts with its original encrypt: the keyring file wins and it rejoins");
    let me: Value = client.get(format!("{}/v1/agent/self", cluster.servers[2].http())).send().await.expect("self").json().await.expect("json");
    let data_dir = std::path::PathBuf::from(me["DebugConfig"]["DataDir"].as_str().expect("a data dir"));
    let saved = std::fs::read_to_string(data_dir.join("serf/local.keyring")).expect("the keyring file");
    assert_eq!(saved, format!(r#"["{third}"]"#));
    cluster.kill9(2);
    cluster.spawn(2);
    let s3 = cluster.servers[2].http();
    assert!(eventually(30_000, async || all_alive(&client, &s1, &names).await && all_alive(&client, &s3, &names).await).await, "s3 rejoined");
    assert!(cluster.servers[2].log().contains("keyring doesn't include key provided with -encrypt"), "s3 warned");
    assert_eq!(list(&client, &s3).await["Keys"], json!({ third.clone(): 4 }));

    tracing::info!("an agent that knows only the first key cannot join");
    let stale = cluster.add_client(&[encrypt.as_str()]);
    let stale_http = cluster.servers[stale].http();
    assert!(eventually(20_000, async || !members(&client, &stale_http).await.is_empty()).await, "the stale agent answers");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(members(&client, &stale_http).await.len(), 1, "the stale agent knows only itself");
    assert!(!members(&client, &s1).await.iter().any(|(name, _)| name == "c2"), "nobody lists the stale agent");

    tracing::info!("a plaintext keyring request on the gossip TCP port gets no answer and changes nothing");
    let body = [&[1u8, 32][..], &[7u8; 32][..]].concat();
    let envelope = [&[1u8, 8][..], &body].concat();
    let mut stream = tokio::net::TcpStream::connect(cluster.servers[0].serf_addr()).await.expect("connect");
    stream.write_all(&(envelope.len() as u32).to_be_bytes()).await.expect("write");
    stream.write_all(&envelope).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut answer)).await.expect("closed in time");
    assert!(read.is_ok() && answer.is_empty(), "{answer:?}");
    assert_eq!(list(&client, &s1).await["Keys"], json!({ third: 4 }));
}

#[tokio::test]
async fn a_dev_agent_keeps_its_ring_in_memory_and_an_unencrypted_one_refuses() {
    let (first, second) = (new_key(), new_key());
    let agent = TestAgent::start_with(&[&format!("-encrypt={first}")]).await;
    let (code, _, stderr) = agent.cli(&["keyring", &format!("-install={second}")]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = agent.cli(&["keyring", "-list"]);
    assert_eq!(code, 0);
    assert!(stdout.contains(&format!("  {first} [1/1]")) && stdout.contains(&format!("  {second} [1/1]")), "{stdout}");
    assert!(!agent.data_dir().join("serf/local.keyring").exists(), "dev mode writes no keyring file");
    let (code, _, stderr) = agent.cli(&["keyring", "-list", "-install", &second]);
    assert_eq!((code, stderr.trim()), (1, "Only a single action is allowed"));
    let (code, _, stderr) = agent.cli(&["keyring", "-list", "-relay-factor=6"]);
    assert_eq!((code, stderr.trim()), (1, "Error parsing relay factor: Relay factor must be in range: [0, 5]"));
    let response = agent.get("/v1/operator/keyring?relay-factor=9").await;
    assert_eq!(response.status(), 400);

    let plain = TestAgent::start().await;
    let response = plain.get("/v1/operator/keyring").await;
    assert_eq!(response.status(), 500);
    let body = response.text().await.expect("a body");
    assert!(body.contains("dc1 (LAN) error: 1/1 nodes reported failure") && body.contains("Keyring is empty (encryption not enabled)"), "{body}");
    let (code, _, stderr) = plain.cli(&["keyring", &format!("-install={first}")]);
    assert!(code == 1 && stderr.contains("No keyring to modify (encryption not enabled)"), "{stderr}");
}

#[tokio::test]
async fn keyring_operations_need_keyring_acls() {
    const MANAGEMENT: &str = "0b7f3a52-1c9e-4d55-8f0e-6a2b9c4d1e77";
    let dir = tempfile::tempdir().expect("a temp dir");
    let file = dir.path().join("acl.json");
    let config = json!({"acl": {"enabled": true, "default_policy": "deny", "tokens": {"initial_management": MANAGEMENT}}});
    std::fs::write(&file, config.to_string()).expect("write the ACL config");
    let (first, second) = (new_key(), new_key());
    let args = [format!("-config-file={}", file.display()), format!("-encrypt={first}")];
    let agent = TestAgent::start_with_token(&[&args[0], &args[1]], Some(MANAGEMENT)).await;
    let as_token = |method: reqwest::Method, token: Option<&str>| {
        let request = agent.client.request(method, agent.url("/v1/operator/keyring")).json(&json!({"Key": second}));
        match token {
            Some(token) => request.header("X-Consul-Token", token),
            None => request,
        }
    };
    let policy: Value = agent
        .client
        .put(agent.url("/v1/acl/policy"))
        .header("X-Consul-Token", MANAGEMENT)
        .json(&json!({"Name": "keyring-read", "Rules": "keyring = \"read\""}))
        .send()
        .await
        .expect("policy")
        .json()
        .await
        .expect("json");
    let token: Value = agent
        .client
        .put(agent.url("/v1/acl/token"))
        .header("X-Consul-Token", MANAGEMENT)
        .json(&json!({"Policies": [{"ID": policy["ID"]}]}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let reader = token["SecretID"].as_str().expect("a secret").to_owned();

    let anonymous = as_token(reqwest::Method::GET, None).send().await.expect("list");
    assert_eq!(anonymous.status(), 403);
    assert_eq!(as_token(reqwest::Method::GET, Some(&reader)).send().await.expect("list").status(), 200);
    let refused = as_token(reqwest::Method::POST, Some(&reader)).send().await.expect("install");
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.expect("a body").contains("keyring:write"));
    assert_eq!(as_token(reqwest::Method::POST, Some(MANAGEMENT)).send().await.expect("install").status(), 200);
}
