//! `cairn-bench --client-agents`: 3 servers and 3 client agents on loopback, measured side by
//! side in one run (issue 10's benchmarks):
//!
//! - **registration throughput**: `PUT /v1/agent/service/register` (a service with one TTL
//!   check, its port changed on every request so every registration is a real catalog change)
//!   spread over the 3 client agents, against `PUT /v1/kv` at the same concurrency through the
//!   same client agents. Target: registrations ≥ 0.8× KV puts. The two workloads alternate in
//!   `rounds` rounds (KV first in odd rounds, registrations first in even ones), so a drift of
//!   the machine or of the stores over the run weighs on both alike; each round's ratio is
//!   printed, and the row is all rounds together.
//! - **DNS on a client agent**: `web.service.consul` A queries answered by a client agent (from
//!   its local view, warmed first) against the same queries on a server. Target ≥ 0.9×.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_server::proto::op::{Message, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RecordType};

use crate::cluster::Cluster;
use crate::{Stats, drive};

/// Servers and client agents in the run.
const SERVERS: usize = 3;
const CLIENT_AGENTS: usize = 3;
/// Service IDs each worker cycles through (bounded so 256 workers stay well under an
/// agent's `LOCAL_SERVICES_MAX` of 4,096).
const SERVICE_IDS_PER_WORKER: usize = 16;
/// Concurrent DNS askers per target.
const DNS_WORKERS: usize = 16;
/// One DNS query may take at most this long before it counts as an error.
const DNS_TIMEOUT_MS: u64 = 1_000;
/// How long the cluster may take to form and the clients to see a leader.
const FORMATION_TIMEOUT_S: u64 = 60;

/// Runs the workloads at every concurrency in `clients`, `duration` each.
pub(crate) async fn run(clients: &[usize], duration: Duration, rounds: usize) -> Result<(), String> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(1024).build().map_err(|e| e.to_string())?;
    let mut cluster = Cluster::start_with(SERVERS, "")?;
    cluster.leader(&http, Duration::from_secs(FORMATION_TIMEOUT_S)).await.ok_or("no leader")?;
    let mut agents = Vec::new();
    for _ in 0..CLIENT_AGENTS {
        agents.push(cluster.add_client()?);
    }
    let targets: Arc<Vec<String>> = Arc::new(agents.iter().map(|&i| cluster.http_of(i)).collect());
    for target in targets.iter() {
        wait_writable(&http, target).await?;
    }
    println!("3 servers, 3 client agents; every request goes to a client agent");
    println!("{:<26} {:>8} {:>10} {:>9} {:>9} {:>7}", "workload", "workers", "ops/s", "p50 ms", "p99 ms", "errors");
    let mut json = Vec::new();
    for &c in clients {
        let (mut kv, mut reg) = (Stats::default(), Stats::default());
        for round in 0..rounds {
            let (k, r) = if round % 2 == 0 {
                let k = kv_puts(&http, &targets, c, duration).await;
                (k, registrations(&http, &targets, c, duration).await)
            } else {
                let r = registrations(&http, &targets, c, duration).await;
                (kv_puts(&http, &targets, c, duration).await, r)
            };
            println!("  round {}: {:.0} KV puts/s, {:.0} registrations/s: {:.2}x", round + 1, k.throughput(), r.throughput(), r.throughput() / k.throughput().max(1.0));
            (kv, reg) = (kv.merge(k), reg.merge(r));
        }
        json.push(row("kv put via clients", c, &kv));
        json.push(row("service register", c, &reg));
        println!("  registrations / KV puts at {c} workers: {:.2}x (target >= 0.8x)", reg.throughput() / kv.throughput().max(1.0));
    }

    // DNS: one service with three passing instances, registered at the first client agent.
    for n in 0..3 {
        let body = format!(r#"{{"ID":"web-{n}","Name":"web","Port":{},"Address":"127.0.0.{}"}}"#, 8080 + n, 10 + n);
        let url = format!("http://{}/v1/agent/service/register", targets[0]);
        http.put(url).body(body).send().await.map_err(|e| e.to_string())?;
    }
    let client_dns = cluster.dns_of(agents[CLIENT_AGENTS - 1]);
    let server_dns = cluster.dns_of(0);
    for dns in [client_dns, server_dns] {
        wait_dns(dns).await?;
    }
    let on_client = dns_load(client_dns, duration).await;
    let on_server = dns_load(server_dns, duration).await;
    json.push(row("dns A on a client agent", DNS_WORKERS, &on_client));
    json.push(row("dns A on a server", DNS_WORKERS, &on_server));
    println!("  client DNS / server DNS: {:.2}x (target >= 0.9x)", on_client.throughput() / on_server.throughput().max(1.0));
    println!("RESULT {{\"client_agents\":[{}]}}", json.join(","));
    Ok(())
}

fn row(name: &str, workers: usize, stats: &Stats) -> String {
    println!(
        "{name:<26} {workers:>8} {:>10.0} {:>9.2} {:>9.2} {:>7}",
        stats.throughput(),
        stats.percentile_ms(50.0),
        stats.percentile_ms(99.0),
        stats.errors
    );
    format!(
        r#"{{"name":"{name}","workers":{workers},"ops_per_s":{:.1},"p50_ms":{:.3},"p99_ms":{:.3},"errors":{}}}"#,
        stats.throughput(),
        stats.percentile_ms(50.0),
        stats.percentile_ms(99.0),
        stats.errors
    )
}

/// Waits until a KV write through the client agent at `http` succeeds.
async fn wait_writable(client: &reqwest::Client, http: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(FORMATION_TIMEOUT_S);
    while Instant::now() < deadline {
        let put = client.put(format!("http://{http}/v1/kv/bench-ready")).body("1").send().await;
        if put.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("client agent {http} never reached the servers"))
}

async fn kv_puts(client: &reqwest::Client, targets: &Arc<Vec<String>>, workers: usize, duration: Duration) -> Stats {
    let (client, targets) = (client.clone(), targets.clone());
    let value = Arc::new(vec![b'v'; 256]);
    drive(workers, duration, move |w, n| {
        let url = format!("http://{}/v1/kv/bench/{w}/{}", targets[w % targets.len()], n % SERVICE_IDS_PER_WORKER);
        let request = client.put(url).body(value.as_ref().clone());
        async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await
}

async fn registrations(client: &reqwest::Client, targets: &Arc<Vec<String>>, workers: usize, duration: Duration) -> Stats {
    let (client, targets) = (client.clone(), targets.clone());
    drive(workers, duration, move |w, n| {
        let url = format!("http://{}/v1/agent/service/register", targets[w % targets.len()]);
        let id = format!("bench-{w}-{}", n % SERVICE_IDS_PER_WORKER);
        let body = format!(r#"{{"ID":"{id}","Name":"bench","Port":{},"Check":{{"CheckID":"{id}-ttl","TTL":"1h"}}}}"#, 1 + n % 60_000);
        let request = client.put(url).body(body);
        async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await
}

fn a_query(id: u16) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii("web.service.consul.").expect("literal name"), RecordType::A));
    message.to_vec().expect("a query encodes")
}

/// One query; true when a NOERROR answer with records came back for it.
async fn ask(socket: &tokio::net::UdpSocket, id: u16, buffer: &mut [u8]) -> bool {
    if socket.send(&a_query(id)).await.is_err() {
        return false;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(DNS_TIMEOUT_MS);
    loop {
        let Ok(Ok(len)) = tokio::time::timeout_at(deadline, socket.recv(buffer)).await else { return false };
        let Ok(reply) = Message::from_vec(&buffer[..len]) else { return false };
        // A late answer to an earlier, timed-out query: keep waiting for ours.
        if reply.metadata.id == id {
            return reply.metadata.response_code == ResponseCode::NoError && !reply.answers.is_empty();
        }
    }
}

async fn wait_dns(dns: SocketAddr) -> Result<(), String> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    socket.connect(dns).await.map_err(|e| e.to_string())?;
    let mut buffer = vec![0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(FORMATION_TIMEOUT_S);
    while Instant::now() < deadline {
        if ask(&socket, rand::random(), &mut buffer).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("{dns} never answered web.service.consul"))
}

async fn dns_load(dns: SocketAddr, duration: Duration) -> Stats {
    let sockets: Vec<Arc<tokio::net::UdpSocket>> = {
        let mut sockets = Vec::new();
        for _ in 0..DNS_WORKERS {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind a UDP socket");
            socket.connect(dns).await.expect("connect a UDP socket");
            sockets.push(Arc::new(socket));
        }
        sockets
    };
    drive(DNS_WORKERS, duration, move |w, n| {
        let socket = sockets[w].clone();
        async move {
            let mut buffer = vec![0u8; 4096];
            ask(&socket, n as u16, &mut buffer).await
        }
    })
    .await
}
