//! Client agents (issue 10): 3 servers and 3 client agents as real processes on loopback
//! addresses. Clients are started with one `-retry-join` address (server 0's gossip port) and
//! no `-server`; everything else they learn through gossip.
//! Covers issue 10's process-level list: members, catalog and DNS across agents, a failing
//! check, events, SIGTERM and kill -9 of clients and servers, and leader failover.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hickory_server::proto::rr::{RData, RecordType};
use serde_json::{Value, json};

use crate::cluster_util::TestCluster;
use crate::util::{dns_query, eventually};

const CLIENTS: usize = 3;

async fn get_json(cluster: &TestCluster, i: usize, path: &str) -> Option<Value> {
    let url = format!("{}{path}", cluster.servers[i].http());
    let response = cluster.client.get(url).timeout(Duration::from_secs(5)).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}

/// `(name, status, role)` of every member agent `i` lists.
async fn members(cluster: &TestCluster, i: usize) -> Vec<(String, u64, String)> {
    let list = get_json(cluster, i, "/v1/agent/members").await.unwrap_or(json!([]));
    list.as_array()
        .map(|members| {
            members
                .iter()
                .map(|m| (m["Name"].as_str().unwrap_or("").to_string(), m["Status"].as_u64().unwrap_or(0), m["Tags"]["role"].as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The `serfHealth` status of `node` as agent `i` reports it (through its servers).
async fn serf_health(cluster: &TestCluster, i: usize, node: &str) -> Option<String> {
    let checks = get_json(cluster, i, &format!("/v1/health/node/{node}")).await?;
    checks.as_array()?.iter().find(|c| c["CheckID"] == "serfHealth").map(|c| c["Status"].as_str().unwrap_or("").to_string())
}

/// A tiny HTTP endpoint for an HTTP check: answers 200 while `healthy`, else 500.
async fn health_endpoint(healthy: Arc<AtomicBool>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let healthy = healthy.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = stream.read(&mut buf).await;
                let status = if healthy.load(Ordering::SeqCst) { "200 OK" } else { "500 Internal Server Error" };
                let _ = stream.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").as_bytes()).await;
            });
        }
    });
    port
}

async fn start() -> (TestCluster, Vec<usize>) {
    let mut cluster = TestCluster::start(3).await;
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let clients: Vec<usize> = (0..CLIENTS).map(|_| cluster.add_client(&[])).collect();
    (cluster, clients)
}

#[tokio::test]
async fn three_servers_and_three_clients_share_members_catalog_health_and_failures() {
    let (mut cluster, clients) = start().await;
    let all = cluster.servers.len();
    // Every agent lists all 6 members alive; servers are tagged role=consul, clients role=node.
    for i in 0..all {
        let converged = eventually(30_000, async || {
            // Tags travel as their own broadcast (`gossip::broadcasts`), so a member can be
            // listed alive a moment before its tags arrive: wait for those too.
            let seen = members(&cluster, i).await;
            seen.len() == all && seen.iter().all(|(_, status, role)| *status == 1 && !role.is_empty())
        })
        .await;
        assert!(converged, "agent {i} sees {:?}", members(&cluster, i).await);
        for (name, _, role) in members(&cluster, i).await {
            assert_eq!(role, if name.starts_with('s') { "consul" } else { "node" }, "{name}");
        }
    }

    // A service registered at client 1 with an HTTP check answers in client 2's catalog and
    // client 3's DNS.
    let healthy = Arc::new(AtomicBool::new(true));
    let port = health_endpoint(healthy.clone()).await;
    let registration = json!({"Name": "web", "Port": 8080, "Check": {"HTTP": format!("http://127.0.0.1:{port}/"), "Interval": "500ms"}});
    let url = format!("{}/v1/agent/service/register", cluster.servers[clients[0]].http());
    let response = cluster.client.put(url).body(registration.to_string()).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
    let in_catalog = eventually(15_000, async || {
        get_json(&cluster, clients[1], "/v1/catalog/service/web").await.and_then(|v| v.as_array().map(|a| a.len() == 1 && a[0]["Node"] == "c1")).unwrap_or(false)
    })
    .await;
    assert!(in_catalog, "client 2's catalog lists web on c1");
    let srv_count = async |i: usize| dns_query(cluster.servers[i].dns_addr(), "web.service.consul.", RecordType::SRV).await.answers.len();
    assert!(eventually(15_000, async || srv_count(clients[2]).await == 1).await, "client 3's DNS answers web");
    // PTR and NS on a client agent come through the servers: client 1's address names its node,
    // and the name servers are the three servers' `consul` instances.
    let std::net::IpAddr::V4(client_ip) = cluster.servers[clients[0]].ip else { panic!("IPv4 loopback") };
    let [a, b, c, d] = client_ip.octets();
    let reverse = format!("{d}.{c}.{b}.{a}.in-addr.arpa.");
    let reply = dns_query(cluster.servers[clients[2]].dns_addr(), &reverse, RecordType::PTR).await;
    let ptr: Vec<String> = reply.answers.iter().filter_map(|r| match &r.data { RData::PTR(ptr) => Some(ptr.0.to_ascii()), _ => None }).collect();
    assert_eq!(ptr, ["c1.node.dc1.consul."], "{reply:?}");
    let reply = dns_query(cluster.servers[clients[2]].dns_addr(), "web.service.consul.", RecordType::NS).await;
    assert_eq!(reply.answers.len(), 3, "{reply:?}");

    // The check fails: critical everywhere, and gone from every agent's DNS.
    healthy.store(false, Ordering::SeqCst);
    for i in 0..all {
        let critical = eventually(15_000, async || {
            let entries = get_json(&cluster, i, "/v1/health/service/web?passing").await;
            entries.and_then(|v| v.as_array().map(Vec::is_empty)).unwrap_or(false)
        })
        .await;
        assert!(critical, "agent {i}: web is out of ?passing");
        assert!(eventually(15_000, async || srv_count(i).await == 0).await, "agent {i}: web is gone from DNS");
    }
    healthy.store(true, Ordering::SeqCst);
    assert!(eventually(15_000, async || srv_count(clients[2]).await == 1).await, "web is back in DNS when its check passes");

    // An event fired at one client is listed at every agent.
    let url = format!("{}/v1/event/fire/deploy", cluster.servers[clients[0]].http());
    let fired: Value = cluster.client.put(url).body("v42").send().await.unwrap().json().await.unwrap();
    for i in 0..all {
        let listed = eventually(15_000, async || {
            let events = get_json(&cluster, i, "/v1/event/list?name=deploy").await;
            events.and_then(|v| v.as_array().map(|a| a.iter().any(|e| e["ID"] == fired["ID"]))).unwrap_or(false)
        })
        .await;
        assert!(listed, "agent {i} lists the event fired at client 1");
    }

    // SIGTERM of a client: it leaves (status left everywhere) and its node is deregistered.
    cluster.signal(clients[2], "TERM");
    let left = eventually(20_000, async || members(&cluster, 0).await.iter().any(|(n, s, _)| n == "c3" && *s == 3)).await;
    assert!(left, "c3 is listed as left: {:?}", members(&cluster, 0).await);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["members", "-status=left", &format!("-http-addr={}", cluster.servers[0].http())])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && table.lines().count() == 2 && table.lines().nth(1).is_some_and(|l| l.starts_with("c3 ")), "{table}");
    let deregistered = eventually(20_000, async || {
        get_json(&cluster, clients[0], "/v1/catalog/nodes").await.and_then(|v| v.as_array().map(|a| a.iter().all(|n| n["Node"] != "c3"))).unwrap_or(false)
    })
    .await;
    assert!(deregistered, "c3's node is deregistered");

    // kill -9 of a server that does not lead: its serfHealth turns critical.
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let victim = (0..3).find(|i| *i != leader).unwrap();
    let victim_name = cluster.servers[victim].name.clone();
    cluster.kill9(victim);
    let critical = eventually(30_000, async || serf_health(&cluster, clients[0], &victim_name).await.as_deref() == Some("critical")).await;
    assert!(critical, "a killed server's serfHealth turns critical");

    // kill -9 of the leader: writes through a client succeed again within the failover time.
    cluster.spawn(victim);
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    cluster.kill9(leader);
    let killed = Instant::now();
    let put = async |key: &str| {
        let url = format!("{}/v1/kv/{key}", cluster.servers[clients[1]].http());
        cluster.client.put(url).body("v").timeout(Duration::from_secs(10)).send().await.map(|r| r.status() == 200).unwrap_or(false)
    };
    assert!(eventually(30_000, async || put("after-failover").await).await, "a write through a client succeeds after the leader dies");
    eprintln!("write through a client after kill -9 of the leader: {:?}", killed.elapsed());
}

/// kill -9 of a client, ten times: every other agent's catalog shows its `serfHealth`
/// critical and its services out of `?passing`. Prints the detection times (p50, p99).
#[tokio::test]
async fn a_killed_client_is_detected_everywhere() {
    let (mut cluster, clients) = start().await;
    let victim = clients[0];
    let mut detection_ms = Vec::new();
    for trial in 0..10 {
        let alive = eventually(30_000, async || serf_health(&cluster, clients[1], "c1").await.as_deref() == Some("passing")).await;
        assert!(alive, "trial {trial}: c1 passing before the kill");
        let url = format!("{}/v1/agent/service/register", cluster.servers[victim].http());
        let response = cluster.client.put(url).body(json!({"Name": "api", "Port": 9000}).to_string()).send().await.unwrap();
        assert_eq!(response.status(), 200);
        cluster.kill9(victim);
        let killed = Instant::now();
        let everywhere = eventually(60_000, async || {
            for i in [0, 1, 2, clients[1], clients[2]] {
                if serf_health(&cluster, i, "c1").await.as_deref() != Some("critical") {
                    return false;
                }
                let passing = get_json(&cluster, i, "/v1/health/service/api?passing").await;
                if !passing.and_then(|v| v.as_array().map(|a| a.iter().all(|e| e["Node"]["Node"] != "c1"))).unwrap_or(false) {
                    return false;
                }
            }
            true
        })
        .await;
        assert!(everywhere, "trial {trial}: c1 critical on every agent");
        detection_ms.push(killed.elapsed().as_millis() as u64);
        cluster.spawn(victim);
    }
    detection_ms.sort_unstable();
    let p50 = detection_ms[detection_ms.len() / 2];
    let p99 = detection_ms[detection_ms.len() - 1];
    eprintln!("kill -9 of a client -> serfHealth critical on every agent, 10 trials: p50 {p50} ms, p99 {p99} ms ({detection_ms:?})");
}

/// An agent with another gossip key never appears in anyone's members.
#[tokio::test]
async fn an_agent_with_another_gossip_key_never_joins() {
    let (mut cluster, _) = start().await;
    let stranger = cluster.add_client(&["-encrypt=pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="]);
    // Give it time to try: the honest clients converge, the stranger stays out everywhere.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let name = cluster.servers[stranger].name.clone();
    for i in 0..cluster.servers.len() - 1 {
        let seen = members(&cluster, i).await;
        assert!(!seen.iter().any(|(n, _, _)| *n == name), "agent {i} lists the stranger: {seen:?}");
    }
    let own = members(&cluster, stranger).await;
    assert!(own.iter().all(|(n, _, _)| *n == name), "the stranger sees only itself: {own:?}");
}

/// A client that knows no live server keeps accepting local registrations (200) and answers
/// catalog reads with Consul's `No known Consul servers`; once a server is back, anti-entropy
/// syncs what it registered meanwhile.
#[tokio::test]
async fn a_client_without_servers_keeps_registrations_and_syncs_them_later() {
    let mut cluster = TestCluster::start(1).await;
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.add_client(&[]);
    assert!(eventually(30_000, async || members(&cluster, client).await.iter().filter(|(_, s, _)| *s == 1).count() == 2).await, "joined");
    cluster.kill9(0);
    assert!(eventually(30_000, async || members(&cluster, client).await.iter().any(|(n, s, _)| n == "s1" && *s == 4)).await, "server failed");
    let url = format!("{}/v1/agent/service/register", cluster.servers[client].http());
    let response = cluster.client.put(url).body(json!({"Name": "offline", "Port": 1}).to_string()).send().await.unwrap();
    assert_eq!(response.status(), 200, "a local registration is kept without servers");
    let response = cluster.client.get(format!("{}/v1/catalog/services", cluster.servers[client].http())).send().await.unwrap();
    assert_eq!(response.status(), 500);
    assert!(response.text().await.unwrap().contains("No known Consul servers"));
    cluster.spawn(0);
    let synced = eventually(60_000, async || {
        get_json(&cluster, 0, "/v1/catalog/service/offline").await.and_then(|v| v.as_array().map(|a| a.len() == 1)).unwrap_or(false)
    })
    .await;
    assert!(synced, "the registration reaches the catalog once the server is back");
}

/// Concurrent registrations at a client share anti-entropy runs (`agent::sync`), yet each is
/// in the servers' catalog, with the port it registered, when its 200 OK arrives.
#[tokio::test]
async fn concurrent_registrations_at_a_client_are_each_in_the_catalog_when_acknowledged() {
    const WRITERS: u16 = 24;
    const ROUNDS: u16 = 4;
    let mut cluster = TestCluster::start(1).await;
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.add_client(&[]);
    let (agent, server) = (cluster.servers[client].http(), cluster.servers[0].http());
    let reachable = eventually(30_000, async || {
        let url = format!("{agent}/v1/catalog/nodes");
        cluster.client.get(url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(reachable, "the client reaches the server");
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (http, agent, server) = (cluster.client.clone(), agent.clone(), server.clone());
        writers.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                let port = 1_000 * (w + 1) + round;
                let body = json!({"ID": format!("burst-{w}"), "Name": "burst", "Port": port, "Check": {"CheckID": format!("burst-{w}-ttl"), "TTL": "1h"}});
                let response = http.put(format!("{agent}/v1/agent/service/register")).body(body.to_string()).send().await.unwrap();
                assert_eq!(response.status(), 200);
                let url = format!("{server}/v1/health/service/burst?consistent");
                let rows: Value = http.get(url).send().await.unwrap().json().await.unwrap();
                let row = rows.as_array().unwrap().iter().find(|r| r["Service"]["ID"] == format!("burst-{w}")).cloned();
                let row = row.unwrap_or_else(|| panic!("burst-{w} round {round}: not in the catalog when acknowledged"));
                assert_eq!(row["Service"]["Port"], port, "burst-{w} round {round}: an older registration in the catalog");
                assert!(row["Checks"].as_array().unwrap().iter().any(|c| c["CheckID"] == format!("burst-{w}-ttl")), "burst-{w}: its check is missing");
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
}

/// A client answers non-blocking `?stale` / `?cached` service reads from its own view of the
/// service (`agent::remote_view`): kept fresh by blocking reads, and still answering while
/// every server is stopped, when a default read relayed to a server cannot.
#[tokio::test]
async fn stale_service_reads_at_a_client_come_from_its_view() {
    let mut cluster = TestCluster::start(1).await;
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.add_client(&[]);
    let agent = cluster.servers[client].http();
    let body = json!({"Name": "api", "Port": 9000, "Check": {"CheckID": "api-ttl", "TTL": "1h", "Status": "passing"}});
    let registered = eventually(30_000, async || {
        let response = cluster.client.put(format!("{agent}/v1/agent/service/register")).body(body.to_string()).send().await;
        let in_catalog = get_json(&cluster, 0, "/v1/catalog/service/api").await.and_then(|v| v.as_array().map(|a| a.len() == 1)).unwrap_or(false);
        response.is_ok_and(|r| r.status() == 200) && in_catalog
    })
    .await;
    assert!(registered, "api is registered through the client");

    // `?cached`: the first read fetches the view (MISS), the next one is served from it (HIT).
    let get = async |path: &str| cluster.client.get(format!("{agent}{path}")).timeout(Duration::from_secs(3)).send().await;
    let first = get("/v1/health/service/api?cached").await.unwrap();
    assert_eq!((first.status().as_u16(), first.headers()["x-cache"].to_str().unwrap()), (200, "MISS"));
    let second = get("/v1/health/service/api?cached").await.unwrap();
    assert_eq!(second.headers()["x-cache"], "HIT");
    assert!(second.headers().contains_key("age") && second.headers().contains_key("x-consul-index"));
    let entries: Value = second.json().await.unwrap();
    assert_eq!(entries[0]["Service"]["Port"], 9000, "{entries}");

    // A change reaches the view: the TTL check fails, and `?stale` reads show it critical.
    let failed = cluster.client.put(format!("{agent}/v1/agent/check/fail/api-ttl")).send().await.unwrap();
    assert_eq!(failed.status(), 200);
    let critical = eventually(10_000, async || {
        let Ok(response) = get("/v1/health/service/api?stale").await else { return false };
        let entries: Value = response.json().await.unwrap_or_default();
        entries[0]["Checks"].as_array().is_some_and(|checks| checks.iter().any(|c| c["CheckID"] == "api-ttl" && c["Status"] == "critical"))
    })
    .await;
    assert!(critical, "the client's view follows the check to critical");

    // Every server stopped: the view still answers; a default read (relayed) does not.
    cluster.signal(0, "STOP");
    let stale = get("/v1/catalog/service/api?stale").await.unwrap();
    assert_eq!(stale.status(), 200, "a ?stale read is answered from the client's view");
    let rows: Value = stale.json().await.unwrap();
    assert_eq!((rows.as_array().map(Vec::len), &rows[0]["ServicePort"]), (Some(1), &json!(9000)), "{rows}");
    let relayed = get("/v1/catalog/service/api").await;
    assert!(relayed.is_err() || relayed.is_ok_and(|r| r.status() != 200), "a default read is not answered without the server");
    cluster.signal(0, "CONT");
}

/// A client agent shares encoded service answers too (`dns::answer_cache`, keyed on its
/// service cache's generation): many queries at a client, then a deregistration and a
/// registration at a server show in the client's very next answers once its cache has them.
#[tokio::test]
async fn a_client_agents_shared_dns_answers_follow_changes() {
    let mut cluster = TestCluster::start(1).await;
    cluster.wait_for_leader(Duration::from_secs(30)).await;
    let client = cluster.add_client(&[]);
    let register = async |node: &str, address: &str| {
        let body = json!({"Node": node, "Address": address, "Service": {"Service": "api", "Port": 80}});
        let response = cluster.client.put(format!("{}/v1/catalog/register", cluster.servers[0].http())).body(body.to_string()).send().await.unwrap();
        assert_eq!(response.status(), 200);
    };
    register("a1", "10.8.0.1").await;
    register("a2", "10.8.0.2").await;
    // Until the client knows a server, its DNS has nothing to ask: wait for its HTTP relay.
    let relayed = eventually(30_000, async || {
        let url = format!("{}/v1/catalog/service/api", cluster.servers[client].http());
        let response = cluster.client.get(url).send().await;
        match response {
            Ok(response) if response.status() == 200 => response.json::<Value>().await.is_ok_and(|v| v.as_array().is_some_and(|a| a.len() == 2)),
            _ => false,
        }
    })
    .await;
    assert!(relayed, "the client reaches a server");
    let addresses = async || {
        let reply = dns_query(cluster.servers[client].dns_addr(), "api.service.consul.", RecordType::A).await;
        let mut seen: Vec<String> = reply.answers.iter().filter_map(|r| match &r.data { RData::A(a) => Some(a.0.to_string()), _ => None }).collect();
        seen.sort();
        seen
    };
    assert!(eventually(15_000, async || addresses().await == ["10.8.0.1", "10.8.0.2"]).await, "the client answers api");
    for _ in 0..40 {
        assert_eq!(addresses().await, ["10.8.0.1", "10.8.0.2"], "shared answers stay whole");
    }
    let response = cluster.client.put(format!("{}/v1/catalog/deregister", cluster.servers[0].http())).body(json!({"Node": "a2"}).to_string()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(eventually(5_000, async || addresses().await == ["10.8.0.1"]).await, "a deregistration reaches the client's answers");
    register("a3", "10.8.0.3").await;
    assert!(eventually(5_000, async || addresses().await == ["10.8.0.1", "10.8.0.3"]).await, "so does a registration");
    for _ in 0..20 {
        assert_eq!(addresses().await, ["10.8.0.1", "10.8.0.3"], "and nothing older comes back");
    }
}
