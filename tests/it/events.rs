//! User events (`/v1/event/*`, `cairn event`, `cairn watch -type=event`) between two real
//! agents: a `-dev` server and a client agent that joins it by gossip.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{TestAgent, distinct_free_ports, eventually};

/// How long an event may take to reach the other agent by gossip.
const GOSSIP_SPREAD_TIMEOUT_MS: u64 = 10_000;
/// Fast failure detection for both agents (the defaults are seconds).
const GOSSIP_CONFIG: &str = r#"{"gossip_lan": {"probe_interval": "200ms", "probe_timeout": "100ms"}}"#;

/// A client agent (no `-server`) that joins `server` over gossip; killed on drop.
struct ClientAgent {
    child: Child,
    dir: tempfile::TempDir,
    http_port: u16,
}

impl ClientAgent {
    async fn start(server: &TestAgent, config_file: &Path) -> ClientAgent {
        let ports = distinct_free_ports(4);
        let dir = tempfile::tempdir().expect("temp dir");
        let log = std::fs::File::create(dir.path().join("agent.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args([
                "agent".to_string(),
                "-node=client-node".to_string(),
                "-bind=127.0.0.1".to_string(),
                format!("-data-dir={}", dir.path().join("data").display()),
                format!("-config-file={}", config_file.display()),
                format!("-http-port={}", ports[0]),
                format!("-dns-port={}", ports[1]),
                format!("-server-port={}", ports[2]),
                format!("-serf-lan-port={}", ports[3]),
                format!("-retry-join=127.0.0.1:{}", server.serf_port),
            ])
            .stdout(Stdio::from(log.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the client agent");
        ClientAgent { child, dir, http_port: ports[0] }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }
}

impl Drop for ClientAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Both agents' HTTP base URLs, for checks that run against each.
struct Pair {
    server: TestAgent,
    client: ClientAgent,
    http: reqwest::Client,
}

impl Pair {
    async fn list(&self, base: &str, query: &str) -> (u64, Vec<Value>) {
        let response = self.http.get(format!("{base}/v1/event/list{query}")).send().await.expect("GET /v1/event/list");
        assert_eq!(response.status(), 200, "list {query}");
        let index = response.headers()["x-consul-index"].to_str().expect("ascii").parse().expect("a number");
        (index, response.json().await.expect("a JSON list"))
    }

    async fn fire(&self, base: &str, name_and_query: &str, payload: &'static str) -> reqwest::Response {
        self.http.put(format!("{base}/v1/event/fire/{name_and_query}")).body(payload).send().await.expect("PUT fire")
    }

    async fn fire_ok(&self, base: &str, name_and_query: &str, payload: &'static str) -> Value {
        let response = self.fire(base, name_and_query, payload).await;
        assert_eq!(response.status(), 200, "fire {name_and_query}");
        response.json().await.expect("the event as JSON")
    }

    /// Waits until the event with `id` is listed at `base`.
    async fn eventually_listed(&self, base: &str, id: &str) -> bool {
        eventually(GOSSIP_SPREAD_TIMEOUT_MS, async || self.list(base, "").await.1.iter().any(|e| e["ID"] == id)).await
    }

    async fn listed_now(&self, base: &str, id: &str) -> bool {
        self.list(base, "").await.1.iter().any(|e| e["ID"] == id)
    }
}

async fn start_pair() -> Pair {
    let config_dir = tempfile::tempdir().expect("config dir");
    let config_file = config_dir.path().join("gossip.json");
    std::fs::write(&config_file, GOSSIP_CONFIG).expect("write the config file");
    let server = TestAgent::start_with(&[&format!("-config-file={}", config_file.display())]).await;
    let client = ClientAgent::start(&server, &config_file).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client");
    let pair = Pair { server, client, http };
    let joined = eventually(20_000, async || {
        let members = pair.http.get(pair.client.url("/v1/agent/members")).send().await;
        let Ok(members) = members else { return false };
        let members: Value = members.json().await.unwrap_or(Value::Null);
        members.as_array().is_some_and(|m| m.len() == 2 && m.iter().all(|m| m["Status"] == 1))
    })
    .await;
    assert!(joined, "the client joined the server; client log:\n{}", pair.client.log());
    drop(config_dir);
    pair
}

#[tokio::test]
async fn events_spread_filter_block_and_refuse_bad_input() {
    tracing::info!("phase: a server and a client agent join by gossip");
    let pair = start_pair().await;
    let (server, client) = (pair.server.url(""), pair.client.url(""));

    tracing::info!("phase: an event fired at the client is listed at both agents");
    let fired = pair.fire_ok(&client, "deploy", "v1").await;
    assert_eq!(fired["Name"], "deploy");
    assert_eq!(fired["Payload"], "djE=", "base64 of v1");
    assert_eq!(fired["Version"], 1);
    assert_eq!(fired["NodeFilter"], "");
    let id = fired["ID"].as_str().expect("an ID").to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert!(pair.listed_now(&client, &id).await, "the firing agent lists its event at once");
    assert!(pair.eventually_listed(&server, &id).await, "the server received it; server log:\n{}", pair.server.log());
    let (_, at_server) = pair.list(&server, "").await;
    let event = at_server.iter().find(|e| e["ID"] == id.as_str()).expect("listed");
    assert_eq!(event["Payload"], "djE=");
    assert!(event["LTime"].as_u64().is_some());

    tracing::info!("phase: ?name= keeps one name; an empty result has index 1");
    let (index, none) = pair.list(&server, "?name=other").await;
    assert_eq!((index, none.len()), (1, 0));
    let (_, named) = pair.list(&server, "?name=deploy").await;
    assert!(!named.is_empty() && named.iter().all(|e| e["Name"] == "deploy"));

    tracing::info!("phase: a blocking list returns when the next event arrives");
    let (index, _) = pair.list(&server, "").await;
    let started = Instant::now();
    let blocking_query = format!("?index={index}&wait=20s");
    let blocked = pair.list(&server, &blocking_query);
    let fire_later = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        pair.fire_ok(&client, "restart", "").await
    };
    let ((new_index, events), second) = tokio::join!(blocked, fire_later);
    assert!(started.elapsed() < Duration::from_secs(15), "woken by the event, not the wait");
    assert_ne!(new_index, index);
    assert_eq!(events.last().map(|e| e["ID"].clone()), Some(second["ID"].clone()), "oldest first: the new one last");
    assert_eq!(events.last().map(|e| e["Payload"].clone()), Some(Value::Null), "no payload is null");

    tracing::info!("phase: a node filter that does not match keeps the event out of that node's list");
    let for_client = pair.fire_ok(&server, "only-client?node=%5Eclient-node%24", "").await;
    let for_client_id = for_client["ID"].as_str().expect("an ID");
    assert_eq!(for_client["NodeFilter"], "^client-node$");
    assert!(pair.eventually_listed(&client, for_client_id).await);
    assert!(!pair.listed_now(&server, for_client_id).await, "the server does not match ^client-node$");

    tracing::info!("phase: service and tag filters match this agent's local services");
    let registered = pair.http.put(pair.client.url("/v1/agent/service/register")).body(r#"{"Name":"web","Tags":["primary"],"Port":80}"#).send().await.unwrap();
    assert_eq!(registered.status(), 200);
    let for_web = pair.fire_ok(&server, "web-only?service=web&tag=prim", "").await;
    let for_web_id = for_web["ID"].as_str().expect("an ID");
    assert!(pair.eventually_listed(&client, for_web_id).await);
    assert!(!pair.listed_now(&server, for_web_id).await, "the server has no web service");
    let for_nobody = pair.fire_ok(&client, "nobody?service=web&tag=secondary", "").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pair.listed_now(&client, for_nobody["ID"].as_str().unwrap()).await);

    tracing::info!("phase: an event just under Serf's limit still crosses gossip");
    let near_limit: &'static str = Box::leak("y".repeat(450).into_boxed_str());
    let big = pair.fire_ok(&client, "big-ok", near_limit).await;
    assert!(pair.eventually_listed(&server, big["ID"].as_str().unwrap()).await, "a 450-byte payload reached the server");

    tracing::info!("phase: bad input gets a clear 4xx");
    let oversized: &'static str = Box::leak("x".repeat(600).into_boxed_str());
    let response = pair.fire(&client, "big", oversized).await;
    assert_eq!(response.status(), 413);
    let text = response.text().await.unwrap();
    assert!(text.contains("exceeds configured limit of 512 bytes"), "{text}");
    let response = pair.fire(&client, "bad?node=%5B", "").await;
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.starts_with("Invalid node filter: error parsing regexp"), "{text}");
    let response = pair.fire(&client, "bad?tag=x", "").await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.text().await.unwrap(), "Cannot provide tag filter without service filter");
    let response = pair.fire(&client, "", "").await;
    assert_eq!(response.status(), 400);
    assert_eq!(response.text().await.unwrap(), "Missing name");
    let response = pair.fire(&client, "elsewhere?dc=dc9", "").await;
    assert_eq!(response.status(), 500);
    assert_eq!(response.text().await.unwrap(), "No path to datacenter");
    let response = pair.http.get(format!("{server}/v1/event/list?index=abc")).send().await.unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn cli_event_prints_the_id_and_watch_sees_new_events() {
    let agent = TestAgent::start().await;

    tracing::info!("phase: cairn event fires and prints the ID");
    let (code, stdout, stderr) = agent.cli(&["event", "-name=cli-deploy", "-node=.*", "payload-1"]);
    assert_eq!(code, 0, "stderr: {stderr}");
    let id = stdout.trim().strip_prefix("Event ID: ").unwrap_or_else(|| panic!("unexpected output {stdout:?}")).to_string();
    assert_eq!(id.len(), 36);
    let events = agent.get_json("/v1/event/list?name=cli-deploy").await;
    assert_eq!(events[0]["ID"], id.as_str());
    assert_eq!(events[0]["Payload"], "cGF5bG9hZC0x", "base64 of payload-1");

    tracing::info!("phase: bad usage exits non-zero");
    let (code, _, stderr) = agent.cli(&["event"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("Event name must be specified"), "{stderr}");
    let (code, _, stderr) = agent.cli(&["event", "-name=x", "one", "two"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("Too many command line arguments"), "{stderr}");
    let (code, _, stderr) = agent.cli(&["event", "-name=x", "-node=["]);
    assert_ne!(code, 0);
    assert!(stderr.contains("Failed to compile node filter regexp"), "{stderr}");
    let (code, _, stderr) = agent.cli(&["event", "-name=x", "-tag=v1"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("Cannot provide tag filter without service filter"), "{stderr}");

    tracing::info!("phase: cairn watch -type=event prints the existing events, then only new ones");
    let (mut child, lines) = crate::util::spawn_watch(&agent, &["-type=event", "-name=cli-deploy"]);
    let next = |what: &str| lines.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("no output for {what}"));
    let first: Value = serde_json::from_str(&next("the existing events")).expect("JSON");
    assert_eq!(first.as_array().map(Vec::len), Some(1));
    let (code, stdout, _) = agent.cli(&["event", "-name=cli-deploy", "payload-2"]);
    assert_eq!(code, 0);
    let second_id = stdout.trim().trim_start_matches("Event ID: ").to_string();
    let second: Value = serde_json::from_str(&next("the new event")).expect("JSON");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(second.as_array().map(Vec::len), Some(1), "only the new event: {second}");
    assert_eq!(second[0]["ID"], second_id.as_str());
}
