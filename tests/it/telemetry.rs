//! Telemetry on real agents: `/v1/agent/metrics` from a 3-server cluster in Consul's JSON and
//! in Prometheus' text (which `promtool check metrics` accepts), showing Raft commit times and
//! parked blocking queries; `cairn monitor` streaming log lines made after it started; and an
//! agent given ACL tokens and a gossip key that never writes them to its log file, its stdout
//! or the monitor stream, however detailed the level.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster_util::TestCluster;
use crate::util::{TestAgent, eventually, spawn_cli};

/// How long metrics may take to show a change: the JSON shows the last finished 10-second
/// interval, so up to two intervals.
const METRICS_WAIT_MS: u64 = 30_000;
/// Blocking queries the cluster test parks on the leader.
const PARKED_QUERIES: usize = 5;

/// Consul's metric names as Prometheus shows them, by whether Prometheus' lint may call them
/// camelCase or a counter without `_total`: those are Consul's choices, kept for dashboards.
fn consul_prometheus_names() -> Vec<String> {
    let consul = cairn::telemetry::names::DEFINITIONS.iter().filter(|definition| definition.consul);
    consul.map(|definition| format!("consul_{}", definition.name.replace('.', "_"))).collect()
}

/// Runs `promtool check metrics` on `text`; panics on a parse error or on a lint problem other
/// than the two Consul's own names cause.
fn promtool_accepts(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (Debian's `prometheus` package; .ci/setup installs it)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("feed promtool");
    let output = child.wait_with_output().expect("promtool finishes");
    let report = String::from_utf8_lossy(&output.stderr).into_owned() + &String::from_utf8_lossy(&output.stdout);
    let code = output.status.code();
    assert!(code == Some(0) || code == Some(3), "promtool could not parse the metrics ({code:?}): {report}\n{text}");
    let consul_names = consul_prometheus_names();
    for problem in report.lines().filter(|line| !line.trim().is_empty()) {
        let (metric, text) = problem.split_once(' ').unwrap_or((problem, ""));
        let consuls_choice = text.contains("'snake_case' not 'camelCase'") || text.contains("should have \"_total\" suffix");
        assert!(consuls_choice && consul_names.iter().any(|name| name == metric), "promtool: {problem}\n{text}");
    }
}

/// The value of the first sample line of `metric` (with any labels) in a Prometheus text.
fn prometheus_value(text: &str, metric: &str) -> Option<f64> {
    text.lines().filter(|line| !line.starts_with('#')).find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        let bare = name.split('{').next()?;
        (bare == metric).then(|| value.parse().ok()).flatten()
    })
}

fn find<'a>(list: &'a Value, name_ends: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|entry| entry["Name"].as_str().is_some_and(|name| name.ends_with(name_ends)))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_reports_commit_times_and_parked_queries_in_consul_json_and_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("telemetry.json");
    std::fs::write(&config, json!({"telemetry": {"prometheus_retention_time": "60s"}}).to_string()).unwrap();
    let flag = format!("-config-file={}", config.display());
    let cluster = TestCluster::start_with_args(3, |_| vec![flag.clone()]).await;
    let leader = &cluster.servers[cluster.wait_for_leader(Duration::from_secs(30)).await];
    let client = &cluster.client;

    tracing::info!("phase: a few writes through the leader");
    for i in 0..10 {
        let response = client.put(format!("{}/v1/kv/telemetry/k{i}", leader.http())).body("v").send().await.unwrap();
        assert!(response.status().is_success());
    }
    tracing::info!("phase: park {PARKED_QUERIES} blocking queries on the leader");
    let index = client.get(format!("{}/v1/kv/telemetry/parked", leader.http())).send().await.unwrap().headers()["x-consul-index"].to_str().unwrap().to_string();
    let parked: Vec<_> = (0..PARKED_QUERIES)
        .map(|i| tokio::spawn(client.get(format!("{}/v1/kv/telemetry/parked{i}?index={index}&wait=120s", leader.http())).send()))
        .collect();

    tracing::info!("phase: Consul's JSON shows commitTime samples and the parked queries");
    let metrics_url = format!("{}/v1/agent/metrics", leader.http());
    let (mut committed, mut blocking) = (false, false);
    let shown = eventually(METRICS_WAIT_MS, async || {
        let Ok(response) = client.get(&metrics_url).send().await else { return false };
        let Ok(summary) = response.json::<Value>().await else { return false };
        assert!(summary["Timestamp"].as_str().is_some_and(|t| t.ends_with(" +0000 UTC")), "{summary}");
        assert!(summary["Points"].as_array().is_some_and(Vec::is_empty), "{summary}");
        if let Some(commit) = find(&summary["Samples"], "consul.raft.commitTime") {
            for field in ["Count", "Rate", "Sum", "Min", "Max", "Mean", "Stddev"] {
                assert!(commit[field].is_number(), "{field}: {commit}");
            }
            assert!(commit["Labels"].is_object(), "{commit}");
            committed |= commit["Count"].as_u64().unwrap_or(0) > 0 && commit["Max"].as_f64().unwrap_or(-1.0) >= 0.0;
        }
        if let Some(gauge) = find(&summary["Gauges"], ".rpc.queries_blocking") {
            blocking |= gauge["Value"].as_f64().unwrap_or(0.0) >= PARKED_QUERIES as f64;
        }
        committed && blocking
    })
    .await;
    assert!(shown, "commitTime seen: {committed}, parked queries seen: {blocking}");

    tracing::info!("phase: Prometheus' text says the same, and promtool accepts it");
    let text = client.get(format!("{metrics_url}?format=prometheus")).send().await.unwrap().text().await.unwrap();
    assert!(prometheus_value(&text, "consul_raft_commitTime_count").is_some_and(|count| count >= 10.0), "{text}");
    let gauge = text.lines().filter(|line| !line.starts_with('#')).find(|line| line.split(' ').next().is_some_and(|name| name.ends_with("_rpc_queries_blocking")));
    let parked_now: f64 = gauge.and_then(|line| line.rsplit_once(' ')).and_then(|(_, value)| value.parse().ok()).unwrap_or(0.0);
    assert!(parked_now >= PARKED_QUERIES as f64, "{text}");
    promtool_accepts(&text);
    let openmetrics = client.get(&metrics_url).header("accept", "application/openmetrics-text; version=1.0.0").send().await.unwrap();
    assert!(openmetrics.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    for server in &cluster.servers {
        let text = client.get(format!("{}/v1/agent/metrics?format=prometheus", server.http())).send().await.unwrap().text().await.unwrap();
        promtool_accepts(&text);
    }
    for query in parked {
        query.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cairn_monitor_shows_log_lines_made_after_it_started() {
    let agent = TestAgent::start().await;
    let (mut text_monitor, text_lines) = spawn_cli(&agent, &["monitor", "-log-level=debug"]);
    let (mut json_monitor, json_lines) = spawn_cli(&agent, &["monitor", "-log-level", "info", "-log-json"]);

    tracing::info!("phase: trigger an info and a debug line until the monitors have shown them");
    let (mut in_text, mut debug_in_text, mut in_json) = (false, false, false);
    let seen = eventually(20_000, async || {
        assert!(agent.put("/v1/agent/reload", "").await.status().is_success());
        assert!(agent.put("/v1/event/fire/telemetry-test", "").await.status().is_success());
        tokio::time::sleep(Duration::from_millis(200)).await;
        for line in text_lines.try_iter() {
            in_text |= line.contains("INFO") && line.contains("reload requested over HTTP");
            debug_in_text |= line.contains("DEBUG") && line.contains("new event");
        }
        in_json |= json_lines.try_iter().filter_map(|line| serde_json::from_str::<Value>(&line).ok()).any(|line| {
            line["@message"] == "reload requested over HTTP" && line["@level"] == "info" && line["@timestamp"].is_string() && line["@module"].is_string()
        });
        in_text && debug_in_text && in_json
    })
    .await;
    text_monitor.kill().unwrap();
    json_monitor.kill().unwrap();
    let _ = (text_monitor.wait(), json_monitor.wait());
    assert!(seen, "text monitor saw the info line: {in_text}, the debug line: {debug_in_text}; JSON monitor: {in_json}\n{}", agent.log());
    // The monitor's level is its own: the agent logs at info, and its own output has no debug.
    assert!(agent.log().contains("reload requested over HTTP") && !agent.log().contains("new event"), "{}", agent.log());

    tracing::info!("phase: a bad level is Consul's 400; Prometheus is off without a retention time");
    let bad = agent.get("/v1/agent/monitor?loglevel=loud").await;
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.text().await.unwrap(), "Unknown log level: loud");
    // Consul answers 200 with no body and says why in a header (its handler's 415 is lost).
    let prometheus = agent.get("/v1/agent/metrics?format=prometheus").await;
    assert_eq!(prometheus.status(), 200);
    assert_eq!(prometheus.headers()["x-consul-reason"], "Prometheus is not enabled since its retention time is not positive");
    assert_eq!(prometheus.text().await.unwrap(), "");
    let (code, _, stderr) = agent.cli(&["monitor", "-log-level=loud"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("Unknown log level: loud"), "{stderr}");
}

const MANAGEMENT: &str = "6f3c1e2a-8d4b-4c1e-9f7a-2b5d8e1c4a90";
/// The log line of the secrets test's last action.
const MARKER: &str = "reload requested over HTTP";
/// The most of the trace-level stream the secrets test keeps.
const STREAMED_BYTES_MAX: usize = 256 * 1024 * 1024;
const AGENT_TOKEN: &str = "0b9e7d6c-5a4f-4e3d-8c2b-1a0f9e8d7c6b";

/// A new random gossip key (AES-256), as `cairn keygen` prints it.
fn gossip_key() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// Everything written under `dir` (the log file and its archives).
fn files_under(dir: &std::path::Path) -> Vec<(String, String)> {
    let entries = std::fs::read_dir(dir).expect("log dir");
    entries.map(|entry| entry.unwrap().path()).map(|path| (path.display().to_string(), std::fs::read_to_string(&path).unwrap_or_default())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_gossip_keys_never_reach_the_log() {
    let (key, new_key) = (gossip_key(), gossip_key());
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let config = dir.path().join("secrets.json");
    let settings = json!({
        "acl": {"enabled": true, "default_policy": "deny", "tokens": {"initial_management": MANAGEMENT, "agent": AGENT_TOKEN}},
        "encrypt": key,
        "log_level": "trace",
        "log_json": true,
        "log_file": format!("{}/", logs.display()),
        "log_rotate_bytes": 1_000,
        "log_rotate_max_files": 3,
    });
    std::fs::write(&config, settings.to_string()).unwrap();
    let agent = TestAgent::start_with_token(&[&format!("-config-file={}", config.display())], Some(MANAGEMENT)).await;

    tracing::info!("phase: watch the log at trace level, then use every secret");
    let monitor = agent.client.get(agent.url("/v1/agent/monitor?loglevel=trace")).header("X-Consul-Token", MANAGEMENT).send().await.unwrap();
    assert_eq!(monitor.status(), 200);
    // Read until asked to stop and the last action (the reload) has reached the stream.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let streamed = tokio::spawn(async move {
        let (mut monitor, mut stopped, mut text, mut stopping) = (monitor, stopped, Vec::new(), false);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !(stopping && String::from_utf8_lossy(&text).contains(MARKER)) && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = &mut stopped, if !stopping => stopping = true,
                chunk = monitor.chunk() => match chunk {
                    Ok(Some(chunk)) if text.len() < STREAMED_BYTES_MAX => text.extend_from_slice(&chunk),
                    Ok(Some(_)) => {}
                    _ => break,
                },
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    });
    let call = |method: reqwest::Method, path: &str, token: &str, body: Value| {
        agent.client.request(method, agent.url(path)).header("X-Consul-Token", token.to_string()).body(body.to_string()).send()
    };
    let created = call(reqwest::Method::PUT, "/v1/acl/token", MANAGEMENT, json!({"Description": "t", "Policies": [{"Name": "global-management"}]})).await.unwrap();
    assert_eq!(created.status(), 200);
    let secret = created.json::<Value>().await.unwrap()["SecretID"].as_str().unwrap().to_string();
    assert_eq!(call(reqwest::Method::PUT, "/v1/kv/secret-test", &secret, json!("v")).await.unwrap().status(), 200);
    let by_query = agent.client.get(agent.url(&format!("/v1/kv/secret-test?token={secret}"))).send().await.unwrap();
    assert_eq!(by_query.status(), 200);
    let refused = agent.client.get(agent.url("/v1/kv/secret-test")).header("X-Consul-Token", "11111111-2222-3333-4444-555555555555").send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(call(reqwest::Method::PUT, "/v1/agent/token/default", MANAGEMENT, json!({"Token": secret})).await.unwrap().status(), 200);
    let service = json!({"Name": "web", "Port": 80, "Check": {"TTL": "30s"}});
    assert_eq!(call(reqwest::Method::PUT, "/v1/agent/service/register", &secret, service).await.unwrap().status(), 200);
    assert_eq!(call(reqwest::Method::POST, "/v1/operator/keyring", MANAGEMENT, json!({"Key": new_key})).await.unwrap().status(), 200);
    assert_eq!(call(reqwest::Method::PUT, "/v1/operator/keyring", MANAGEMENT, json!({"Key": new_key})).await.unwrap().status(), 200);
    assert_eq!(call(reqwest::Method::DELETE, "/v1/operator/keyring", MANAGEMENT, json!({"Key": key})).await.unwrap().status(), 200);
    assert_eq!(call(reqwest::Method::GET, "/v1/operator/keyring", MANAGEMENT, json!({})).await.unwrap().status(), 200);
    assert_eq!(call(reqwest::Method::PUT, "/v1/agent/reload", MANAGEMENT, json!({})).await.unwrap().status(), 200);
    let _ = stop.send(());
    let streamed = streamed.await.unwrap();

    tracing::info!("phase: the file (and its archives), stdout and the stream hold none of them");
    let files = files_under(&logs);
    assert!(files.len() >= 2 && files.len() <= 4, "the active file and 1-3 archives: {:?}", files.iter().map(|f| &f.0).collect::<Vec<_>>());
    assert!(files.iter().any(|(_, text)| text.contains("\"@message\":\"cairn agent running\"")), "JSON lines in the file");
    assert!(streamed.contains(MARKER), "the stream saw the agent's work:\n{streamed}");
    let mut outputs = files;
    outputs.push(("stdout".into(), agent.log()));
    outputs.push(("monitor".into(), streamed));
    for secret in [MANAGEMENT, AGENT_TOKEN, secret.as_str(), key.as_str(), new_key.as_str()] {
        for (name, text) in &outputs {
            assert!(!text.contains(secret), "{name} holds the secret {secret}");
        }
    }
}
