//! `cairn-bench --client-agents`: 3 servers and 3 client agents on loopback, measured side by
//! side in one run (issue 10's benchmarks):
//!
//! - **registration throughput**: `PUT /v1/agent/service/register` (a service with one TTL
//!   check, its port changed on every request so every registration is a real catalog change)
//!   spread over the 3 client agents, against `PUT /v1/kv` at the same concurrency through the
//!   same client agents. Target: registrations ≥ 0.8× KV puts. The two workloads alternate in
//!   `rounds` rounds (KV first in odd rounds, registrations first in even ones), so a drift of
//!   the machine or of the stores over the run weighs on both alike; each round's ratio is
//!   printed, and the row is all rounds together. Beside throughput, each workload's CPU
//!   time per 1,000 operations is read from `/proc/<pid>/stat` for the servers and the client
//!   agents: on this CPU-bound machine the throughput ratio follows the CPU one, and the CPU
//!   figure does not move with what else the machine runs. Each round also prints the share
//!   of the machine's CPU time the hypervisor gave elsewhere ("steal") during each workload.
//! - **DNS on a client agent**: `web.service.consul` A queries answered by a client agent (from
//!   its local view, warmed first) against the same queries on a server, alternated in
//!   `rounds` rounds as above. Target ≥ 0.9×.

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
/// With `only` (`registrations` or `kv`), runs that workload alone (for a profiler) and stops.
pub(crate) async fn run(clients: &[usize], duration: Duration, rounds: usize, only: Option<&str>) -> Result<(), String> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(1024).build().map_err(|e| e.to_string())?;
    let mut cluster = Cluster::start_with(SERVERS, "")?;
    cluster.leader(&http, Duration::from_secs(FORMATION_TIMEOUT_S)).await.ok_or("no leader")?;
    let mut agents = Vec::new();
    for _ in 0..CLIENT_AGENTS {
        agents.push(cluster.add_client()?);
    }
    let targets: Arc<Vec<String>> = Arc::new(agents.iter().map(|&i| cluster.http_of(i)).collect());
    let server_pids: Vec<u32> = (0..SERVERS).filter_map(|i| cluster.pid_of(i)).collect();
    let client_pids: Vec<u32> = agents.iter().filter_map(|&i| cluster.pid_of(i)).collect();
    for target in targets.iter() {
        wait_writable(&http, target).await?;
    }
    println!("3 servers, 3 client agents; every request goes to a client agent");
    println!("{:<26} {:>8} {:>10} {:>9} {:>9} {:>7}", "workload", "workers", "ops/s", "p50 ms", "p99 ms", "errors");
    let mut json = Vec::new();
    if let Some(workload) = only {
        for &c in clients {
            let before = CpuTicks::read(&server_pids, &client_pids);
            let stats = match workload {
                "registrations" => registrations(&http, &targets, c, duration).await,
                "kv" => kv_puts(&http, &targets, c, duration).await,
                other => return Err(format!("--only {other}: use registrations or kv")),
            };
            let (servers, clients) = CpuTicks::read(&server_pids, &client_pids).since(&before).ms_per_thousand(stats.operations());
            row(workload, c, &stats);
            println!("  CPU ms per 1,000 operations: servers {servers:.0}, clients {clients:.0}");
        }
        return Ok(());
    }
    for &c in clients {
        let (mut kv, mut reg) = (Stats::default(), Stats::default());
        let (mut kv_cpu, mut reg_cpu) = (CpuTicks::default(), CpuTicks::default());
        for round in 0..rounds {
            let kv_first = round % 2 == 0;
            let mut phases = Vec::new();
            for registering in [!kv_first, kv_first] {
                let (before, steal_before) = (CpuTicks::read(&server_pids, &client_pids), MachineTicks::read());
                let stats = if registering {
                    registrations(&http, &targets, c, duration).await
                } else {
                    kv_puts(&http, &targets, c, duration).await
                };
                let spent = CpuTicks::read(&server_pids, &client_pids).since(&before);
                phases.push((registering, stats, spent, MachineTicks::read().steal_percent_since(&steal_before)));
            }
            phases.sort_by_key(|(registering, ..)| *registering);
            let mut phases = phases.into_iter();
            let (Some((_, k, k_cpu, k_steal)), Some((_, r, r_cpu, r_steal))) = (phases.next(), phases.next()) else { unreachable!("two phases") };
            println!(
                "  round {}: {:.0} KV puts/s (steal {k_steal:.0}%), {:.0} registrations/s (steal {r_steal:.0}%): {:.2}x",
                round + 1,
                k.throughput(),
                r.throughput(),
                r.throughput() / k.throughput().max(1.0)
            );
            (kv_cpu, reg_cpu) = (kv_cpu.plus(&k_cpu), reg_cpu.plus(&r_cpu));
            (kv, reg) = (kv.merge(k), reg.merge(r));
        }
        json.push(row("kv put via clients", c, &kv));
        json.push(row("service register", c, &reg));
        println!("  registrations / KV puts at {c} workers: {:.2}x (target >= 0.8x)", reg.throughput() / kv.throughput().max(1.0));
        let (kv_servers, kv_clients) = kv_cpu.ms_per_thousand(kv.operations());
        let (reg_servers, reg_clients) = reg_cpu.ms_per_thousand(reg.operations());
        println!(
            "  CPU ms per 1,000 ops (servers + clients): KV puts {kv_servers:.0} + {kv_clients:.0}, registrations {reg_servers:.0} + {reg_clients:.0}: {:.2}x",
            (kv_servers + kv_clients) / (reg_servers + reg_clients).max(1.0)
        );
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
    // Alternated like the registration rounds: client first in odd rounds, server first in
    // even ones, so that a slow stretch of the machine weighs on both.
    let (mut on_client, mut on_server) = (Stats::default(), Stats::default());
    for round in 0..rounds {
        let (mut client, mut server) = (None, None);
        for on_client_now in [round % 2 == 0, round % 2 != 0] {
            let stats = dns_load(if on_client_now { client_dns } else { server_dns }, duration).await;
            *(if on_client_now { &mut client } else { &mut server }) = Some(stats);
        }
        let (Some(client), Some(server)) = (client, server) else { unreachable!("two phases") };
        println!("  dns round {}: {:.0} on the client/s, {:.0} on the server/s: {:.2}x", round + 1, client.throughput(), server.throughput(), client.throughput() / server.throughput().max(1.0));
        (on_client, on_server) = (on_client.merge(client), on_server.merge(server));
    }
    json.push(row("dns A on a client agent", DNS_WORKERS, &on_client));
    json.push(row("dns A on a server", DNS_WORKERS, &on_server));
    println!("  client DNS / server DNS: {:.2}x (target >= 0.9x)", on_client.throughput() / on_server.throughput().max(1.0));
    println!("RESULT {{\"client_agents\":[{}]}}", json.join(","));
    Ok(())
}

/// CPU time (user + system, in clock ticks) of the servers and of the client agents.
#[derive(Clone, Copy, Debug, Default)]
struct CpuTicks {
    servers: u64,
    clients: u64,
}

impl CpuTicks {
    fn read(servers: &[u32], clients: &[u32]) -> CpuTicks {
        CpuTicks { servers: servers.iter().map(|&pid| process_ticks(pid)).sum(), clients: clients.iter().map(|&pid| process_ticks(pid)).sum() }
    }

    fn since(&self, before: &CpuTicks) -> CpuTicks {
        CpuTicks { servers: self.servers.saturating_sub(before.servers), clients: self.clients.saturating_sub(before.clients) }
    }

    fn plus(&self, other: &CpuTicks) -> CpuTicks {
        CpuTicks { servers: self.servers + other.servers, clients: self.clients + other.clients }
    }

    /// (servers, clients) CPU milliseconds per 1,000 operations.
    fn ms_per_thousand(&self, operations: usize) -> (f64, f64) {
        // SAFETY: sysconf only reads a constant of the running system.
        let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let per = |ticks: u64| ticks as f64 * 1000.0 / ticks_per_s * 1000.0 / operations.max(1) as f64;
        (per(self.servers), per(self.clients))
    }
}

/// The machine's CPU time from `/proc/stat`: all of it, and the part the hypervisor gave to
/// other guests ("steal"). On a shared VM steal moves from second to second and weighs on
/// whichever workload runs then; each round prints it so that a reader can tell a slow round
/// of the machine from a slow workload.
#[derive(Clone, Copy, Debug, Default)]
struct MachineTicks {
    total: u64,
    steal: u64,
}

impl MachineTicks {
    fn read() -> MachineTicks {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        // "cpu  user nice system idle iowait irq softirq steal ...": the first eight count.
        let fields: Vec<u64> = stat.lines().next().unwrap_or_default().split_whitespace().skip(1).take(8).filter_map(|f| f.parse().ok()).collect();
        MachineTicks { total: fields.iter().sum(), steal: fields.get(7).copied().unwrap_or(0) }
    }

    fn steal_percent_since(&self, before: &MachineTicks) -> f64 {
        let total = self.total.saturating_sub(before.total).max(1) as f64;
        self.steal.saturating_sub(before.steal) as f64 * 100.0 / total
    }
}

/// utime + stime of a process from `/proc/<pid>/stat` (0 when it cannot be read).
fn process_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0 };
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else { return 0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the whole line, utime 14 and stime 15.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(14) + field(15)
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
