//! Upgrades (issue 13): this build opens a data dir the previous release wrote, a 3-server
//! cluster of the previous release is upgraded one server at a time under load without losing
//! an acknowledged write, format 2 switches on only once every server reads it, and a server
//! refuses, saying why, a message written in a format newer than it reads.
//!
//! The previous release's binary comes from `.ci/prev-binary` (built once from the commit in
//! `tests/fixtures/previous-release`, cached outside the clone); its data dir from
//! `tests/fixtures/datadir-format1.tar.gz`, written by that binary
//! (`tests/fixtures/make-format1-datadir.sh`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;

use crate::cluster_util::TestCluster;
use crate::util::{TestAgent, eventually};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The previous release's binary, built by `.ci/prev-binary` if it is not cached yet.
fn previous_release() -> PathBuf {
    let output = std::process::Command::new("bash").arg(repo().join(".ci/prev-binary")).output().expect("run .ci/prev-binary");
    assert!(output.status.success(), ".ci/prev-binary failed:\n{}", String::from_utf8_lossy(&output.stderr));
    PathBuf::from(String::from_utf8(output.stdout).expect("a path").trim())
}

async fn session_ttl(client: &reqwest::Client, http: &str, ttl: &str) -> String {
    let created: Value = client.put(format!("{http}/v1/session/create")).body(format!(r#"{{"TTL":"{ttl}"}}"#)).send().await.unwrap().json().await.unwrap();
    let id = created["ID"].as_str().expect("a session ID");
    let info: Value = client.get(format!("{http}/v1/session/info/{id}")).send().await.unwrap().json().await.unwrap();
    info[0]["TTL"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn a_data_dir_written_by_the_previous_release_opens() {
    let fixture = repo().join("tests/fixtures/datadir-format1.tar.gz");
    let (agent, ()) = TestAgent::start_prepared(&[], |data| {
        let parent = data.parent().expect("the data dir has a parent");
        let status = std::process::Command::new("tar").arg("-xzf").arg(&fixture).arg("-C").arg(parent).status().expect("run tar");
        assert!(status.success(), "unpack {}", fixture.display());
    })
    .await;
    let data = agent.data_dir();
    let node_id = std::fs::read_to_string(data.join("fixture-node-id")).unwrap();
    let session = std::fs::read_to_string(data.join("fixture-session-id")).unwrap();
    let me = agent.get_json("/v1/agent/self").await;
    assert_eq!(me["Config"]["NodeID"], node_id.trim(), "the node-id row of the first format is read");
    let config = agent.get_json("/v1/kv/app/config").await;
    assert_eq!(config[0]["Flags"], 42);
    assert_eq!(agent.get("/v1/kv/app/config?raw").await.text().await.unwrap(), r#"{"db":"primary"}"#);
    assert_eq!(agent.get("/v1/kv/app/binary?raw").await.bytes().await.unwrap().as_ref(), b"bin\x01\x02");
    assert_eq!(agent.get("/v1/kv/app/old?raw").await.text().await.unwrap(), "v2");
    // The agent's own registrations (local state rows) and the catalog's.
    let services = agent.get_json("/v1/agent/services").await;
    assert_eq!(services["web-1"]["Meta"]["version"], "1.2");
    assert_eq!(agent.get_json("/v1/agent/checks").await["web-ttl"]["ServiceID"], "web-1");
    assert_eq!(agent.get_json("/v1/catalog/service/db").await[0]["Node"], "external");
    // The session row of format 1 (whole seconds) and the lock it holds.
    let info = agent.get_json(&format!("/v1/session/info/{}", session.trim())).await;
    assert_eq!(info[0]["TTL"], "600s");
    assert_eq!(agent.get_json("/v1/kv/app/leader").await[0]["Session"], session.trim());
    assert_eq!(agent.get_json("/v1/query").await[0]["Name"], "web-prod");
    assert_eq!(agent.get_json("/v1/config/service-defaults/web").await["Protocol"], "http");
    // It writes on, in format 2 where a value needs it.
    assert_eq!(session_ttl(&agent.client, &agent.url(""), "12.5s").await, "12.5s");
    assert_eq!(agent.put("/v1/kv/after-upgrade", "ok").await.status(), 200);
}

/// The writer's pause after each acknowledged write.
const WRITE_PAUSE_MS: u64 = 20;

/// What the writer saw: the keys and nodes acknowledged, failures, the longest wait between
/// two acknowledged writes.
#[derive(Default)]
struct Load {
    keys: BTreeSet<String>,
    nodes: BTreeSet<String>,
    failed: u64,
    last_ack: Option<Instant>,
    longest_gap: Duration,
}

/// Writes KV pairs and node registrations round-robin through every running server until told
/// to stop.
fn start_writer(https: Vec<String>, load: Arc<Mutex<Load>>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let http = &https[n as usize % https.len()];
            let (url, body, name) = if n % 4 == 0 {
                let node = format!("load-node-{n}");
                (format!("{http}/v1/catalog/register"), format!(r#"{{"Node":"{node}","Address":"10.1.0.1"}}"#), node)
            } else {
                (format!("{http}/v1/kv/load/{n}"), n.to_string(), format!("load/{n}"))
            };
            let acked = matches!(client.put(&url).body(body).send().await, Ok(r) if r.status() == 200);
            let mut load = load.lock().await;
            if !acked {
                load.failed += 1;
                drop(load);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let now = Instant::now();
            if let Some(last) = load.last_ack {
                load.longest_gap = load.longest_gap.max(now - last);
            }
            load.last_ack = Some(now);
            if n % 4 == 0 { load.nodes.insert(name) } else { load.keys.insert(name) };
            drop(load);
            // Paced (about 50 writes a second): a steady load, not one that starves the tests
            // running beside this one on a 2-core machine.
            tokio::time::sleep(Duration::from_millis(WRITE_PAUSE_MS)).await;
        }
    })
}

async fn applied_index(cluster: &TestCluster, i: usize) -> u64 {
    let url = format!("{}/v1/agent/self", cluster.servers[i].http());
    let me: Option<Value> = async { cluster.client.get(url).send().await.ok()?.json().await.ok() }.await;
    me.and_then(|me| me["Stats"]["raft"]["fsm_applied_index"].as_str()?.parse().ok()).unwrap_or(0)
}

/// Replaces server `i`'s binary with this build's and waits until it has caught up.
async fn upgrade(cluster: &mut TestCluster, i: usize) {
    cluster.terminate(i);
    cluster.servers[i].binary = PathBuf::from(env!("CARGO_BIN_EXE_cairn"));
    cluster.spawn(i);
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let target = applied_index(cluster, leader).await;
    let caught_up = eventually(30_000, async || applied_index(cluster, i).await >= target).await;
    assert!(caught_up, "{} did not catch up after its upgrade:\n{}", cluster.servers[i].name, cluster.servers[i].log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_under_load_loses_no_acknowledged_write() {
    let previous = previous_release();
    let mut cluster = TestCluster::start_with_binary(3, |_| Vec::new(), &previous).await;
    // A client agent of the previous release with a service of its own, writing too.
    let client = cluster.add_client(&[]);
    let client_http = cluster.servers[client].http();
    let registered = eventually(30_000, async || {
        let body = r#"{"ID":"api-1","Name":"api","Port":9000}"#;
        cluster.client.put(format!("{client_http}/v1/agent/service/register")).body(body).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(registered, "the old client agent registers a service:\n{}", cluster.servers[client].log());
    let https: Vec<String> = cluster.servers.iter().map(|s| s.http()).collect();
    let (load, stop) = (Arc::new(Mutex::new(Load::default())), Arc::new(AtomicBool::new(false)));
    let writer = start_writer(https, load.clone(), stop.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Followers first, the leader last, as docs/upgrade.md says.
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let order: Vec<usize> = (0..3).filter(|i| *i != leader).chain([leader]).collect();
    assert!(!order.contains(&client));
    for (step, &i) in order.iter().enumerate() {
        upgrade(&mut cluster, i).await;
        let http = cluster.servers[i].http();
        if step == 0 {
            // Two servers still read only format 1: an exact TTL is rounded up, as before.
            assert_eq!(session_ttl(&cluster.client, &http, "12.5s").await, "13s", "format 2 was proposed to old servers");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Then the client agent: it leaves on SIGTERM, comes back with its service.
    cluster.terminate(client);
    cluster.servers[client].binary = PathBuf::from(env!("CARGO_BIN_EXE_cairn"));
    cluster.spawn(client);
    let http = cluster.servers[0].http();
    let back = eventually(30_000, async || {
        let Ok(response) = cluster.client.get(format!("{http}/v1/health/service/api")).send().await else { return false };
        let entries: Value = response.json().await.unwrap_or_default();
        entries[0]["Node"]["Node"] == cluster.servers[client].name.as_str()
    })
    .await;
    assert!(back, "the upgraded client agent's service is in the catalog again:\n{}", cluster.servers[client].log());
    // Every server now reads format 2: exact TTLs switch on by themselves.
    let http = cluster.servers[order[0]].http();
    let exact = eventually(30_000, async || session_ttl(&cluster.client, &http, "12.5s").await == "12.5s").await;
    assert!(exact, "format 2 never switched on after every server was upgraded");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let load = load.lock().await;
    eprintln!(
        "rolling upgrade: {} keys and {} nodes acknowledged, {} writes failed, longest gap between acknowledged writes {:?}",
        load.keys.len(),
        load.nodes.len(),
        load.failed,
        load.longest_gap
    );
    assert!(load.keys.len() > 200, "the load wrote too little to prove anything");
    assert!(load.longest_gap < Duration::from_secs(15), "writes stalled for {:?}", load.longest_gap);
    cluster.wait_identical(Duration::from_secs(30)).await;
    for server in &cluster.servers {
        let keys: Vec<String> = cluster.client.get(format!("{}/v1/kv/load/?keys&stale", server.http())).send().await.unwrap().json().await.unwrap();
        let keys: BTreeSet<String> = keys.into_iter().collect();
        let lost: Vec<&String> = load.keys.difference(&keys).collect();
        assert!(lost.is_empty(), "{} lost acknowledged writes: {lost:?}", server.name);
        let nodes: Vec<Value> = cluster.client.get(format!("{}/v1/catalog/nodes?stale", server.http())).send().await.unwrap().json().await.unwrap();
        let nodes: BTreeSet<String> = nodes.iter().filter_map(|n| n["Node"].as_str().map(str::to_string)).collect();
        let lost: Vec<&String> = load.nodes.difference(&nodes).collect();
        assert!(lost.is_empty(), "{} lost acknowledged registrations: {lost:?}", server.name);
    }
}

/// A message in a format newer than this build reads is refused with a reason, and logged;
/// the server serves on.
#[tokio::test]
async fn a_raft_message_from_a_newer_release_is_refused_with_a_clear_log_line() {
    let agent = TestAgent::start().await;
    let addr = format!("127.0.0.1:{}", agent.server_port);
    let append = openraft::raft::AppendEntriesRequest::<cairn::raft::TypeConfig> {
        vote: openraft::Vote::new_committed(1, 99),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    let body = [vec![cairn::catalog::codec::FORMAT_NEWEST + 1], postcard::to_allocvec(&append).unwrap()].concat();
    let response = agent.client.post(format!("http://{addr}/raft/append")).body(body).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.contains("written by a newer release of cairn"), "{text}");
    assert!(agent.log().contains("refused a Raft message that does not decode"), "the refusal is logged");
    assert_eq!(agent.put("/v1/kv/still-serving", "ok").await.status(), 200);
}
