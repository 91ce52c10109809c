//! `cairn-bench --cluster N`: a cluster of N real servers on loopback, measured for write
//! throughput, failover time (leader `kill -9` → first acknowledged write) with a check that
//! no acknowledged write was lost, and the time a new server takes to catch up through a
//! snapshot of a large state machine.

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Stats, run_load};

/// Raft settings for the run: defaults, except a small compaction window so the snapshot
/// measurement really goes through a snapshot.
const CLUSTER_CONFIG: &str = "raft_snapshot_threshold = 64\nraft_trailing_logs = 16\nautopilot.server_stabilization_time = \"1s\"\n";
/// Size of each value written to build the large state machine.
const BULK_VALUE_BYTES: usize = 256 * 1024;

struct Server {
    ip: IpAddr,
    http: u16,
    server: u16,
    serf: u16,
    dns: u16,
    /// A client agent (no `-server`), joined through the first server's gossip address.
    client: bool,
    child: Option<Child>,
}

impl Server {
    fn http(&self) -> String {
        format!("{}:{}", self.ip, self.http)
    }
    fn server_addr(&self) -> String {
        format!("{}:{}", self.ip, self.server)
    }
    fn dns(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.ip, self.dns)
    }
}

fn port_on(ip: IpAddr) -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind((ip, 0)).expect("bind an ephemeral port");
        let port = tcp.local_addr().expect("local addr").port();
        if std::net::UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
}

pub(crate) struct Cluster {
    servers: Vec<Server>,
    dir: std::path::PathBuf,
    cairn: std::path::PathBuf,
    expect: usize,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for server in &mut self.servers {
            if let Some(mut child) = server.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::env::var_os("CAIRN_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Cluster {
    fn start(size: usize) -> Result<Cluster, String> {
        Cluster::start_with(size, CLUSTER_CONFIG)
    }

    /// Starts `size` servers with `config` as their config file.
    pub(crate) fn start_with(size: usize, config: &str) -> Result<Cluster, String> {
        let cairn = std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("cairn");
        let dir = std::env::temp_dir().join(format!("cairn-bench-cluster-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("bench.toml"), config).map_err(|e| e.to_string())?;
        let mut cluster = Cluster { servers: Vec::new(), dir, cairn, expect: size };
        // Every server must know every other one's address before any starts.
        for _ in 0..size {
            cluster.declare();
        }
        for i in 0..size {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    fn declare(&mut self) -> usize {
        let b: [u8; 3] = rand::random();
        let ip = IpAddr::V4(Ipv4Addr::new(127, b[0].max(1), b[1], b[2].clamp(2, 254)));
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 4 {
            let port = port_on(ip);
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        self.servers.push(Server { ip, http: ports[0], server: ports[1], serf: ports[2], dns: ports[3], client: false, child: None });
        self.servers.len() - 1
    }

    fn add(&mut self) -> Result<usize, String> {
        let i = self.declare();
        self.spawn(i)?;
        Ok(i)
    }

    /// Starts a client agent that joins through the first server; returns its index.
    pub(crate) fn add_client(&mut self) -> Result<usize, String> {
        let i = self.declare();
        self.servers[i].client = true;
        self.spawn(i)?;
        Ok(i)
    }

    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let s = &self.servers[i];
        let mut args = vec!["agent".to_string()];
        if !s.client {
            args.extend(["-server".to_string(), format!("-bootstrap-expect={}", self.expect)]);
        }
        args.extend([
            format!("-node=b{}", i + 1),
            format!("-data-dir={}", self.dir.join(format!("b{}", i + 1)).display()),
            format!("-bind={}", s.ip),
            format!("-client={}", s.ip),
            format!("-http-port={}", s.http),
            format!("-server-port={}", s.server),
            format!("-dns-port={}", s.dns),
            format!("-serf-lan-port={}", s.serf),
            format!("-config-file={}", self.dir.join("bench.toml").display()),
            "-log-level=info".into(),
            "-retry-interval=1s".into(),
        ]);
        for (j, other) in self.servers.iter().enumerate() {
            if j != i && !other.client && (!s.client || j == 0) {
                args.push(format!("-retry-join={}:{}", other.ip, other.serf));
            }
        }
        let log = std::fs::File::create(self.dir.join(format!("b{}.log", i + 1))).map_err(|e| e.to_string())?;
        let child = Command::new(&self.cairn).args(args).stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?)).stderr(Stdio::from(log)).spawn().map_err(|e| e.to_string())?;
        self.servers[i].child = Some(child);
        Ok(())
    }

    pub(crate) fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.servers.iter().filter_map(|s| s.child.as_ref().map(Child::id)).collect()
    }

    /// The process id of server `i`, while it runs.
    pub(crate) fn pid_of(&self, i: usize) -> Option<u32> {
        self.servers[i].child.as_ref().map(Child::id)
    }

    /// How server `i` ended, if it did (it is then no longer counted as running).
    pub(crate) fn exited(&mut self, i: usize) -> Option<String> {
        let child = self.servers[i].child.as_mut()?;
        let status = child.try_wait().ok()??;
        self.servers[i].child = None;
        Some(status.to_string())
    }

    /// Server `i`'s log file (its stdout and stderr).
    pub(crate) fn log_of(&self, i: usize) -> std::path::PathBuf {
        self.dir.join(format!("b{}.log", i + 1))
    }

    /// Server `i`'s server port (Raft and RPC).
    pub(crate) fn server_addr_of(&self, i: usize) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.servers[i].ip, self.servers[i].server)
    }

    pub(crate) fn http_of(&self, i: usize) -> String {
        self.servers[i].http()
    }

    pub(crate) fn dns_of(&self, i: usize) -> std::net::SocketAddr {
        self.servers[i].dns()
    }

    pub(crate) async fn leader(&self, client: &reqwest::Client, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for (i, s) in self.servers.iter().enumerate() {
                if s.child.is_none() {
                    continue;
                }
                let Ok(r) = client.get(format!("http://{}/v1/status/leader", s.http())).timeout(Duration::from_secs(1)).send().await else { continue };
                let Ok(leader) = r.json::<String>().await else { continue };
                if let Some(pos) = self.servers.iter().position(|x| x.child.is_some() && x.server_addr() == leader)
                    && pos == i
                {
                    return Some(pos);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    async fn digest(&self, client: &reqwest::Client, i: usize) -> Option<(u64, String)> {
        let me: serde_json::Value = client.get(format!("http://{}/v1/agent/self?fsm-digest", self.servers[i].http())).send().await.ok()?.json().await.ok()?;
        let raft = &me["Stats"]["raft"];
        Some((raft["fsm_applied_index"].as_str()?.parse().ok()?, raft["fsm_digest"].as_str()?.to_string()))
    }
}

fn row(name: &str, stats: &Stats) -> String {
    println!(
        "{:<14} {:>12.0} ops/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
        name,
        stats.throughput(),
        stats.percentile_ms(50.0),
        stats.percentile_ms(99.0),
        stats.errors
    );
    format!(r#"{{"name":"{name}","ops_per_s":{:.1},"p50_ms":{:.3},"p99_ms":{:.3},"errors":{}}}"#, stats.throughput(), stats.percentile_ms(50.0), stats.percentile_ms(99.0), stats.errors)
}

pub(crate) async fn run(size: usize, clients: &[usize], duration: Duration, value_bytes: usize, snapshot_mb: usize) -> Result<(), String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(1024).build().map_err(|e| e.to_string())?;
    let mut cluster = Cluster::start(size)?;
    let leader = cluster.leader(&client, Duration::from_secs(30)).await.ok_or("no leader")?;
    println!("cluster of {size} servers, leader b{}", leader + 1);
    let mut json = Vec::new();
    let value = Arc::new(vec![b'v'; value_bytes]);
    for &c in clients {
        let stats = run_load(&client, &cluster.servers[leader].http(), c, duration, value.clone(), true).await;
        json.push(row(&format!("put x{c}"), &stats));
    }

    // Failover under load: 16 writers spread over every server.
    // (key, when the write was sent, when it was acknowledged)
    let acked = Arc::new(Mutex::new(Vec::<(String, Instant, Instant)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let targets: Vec<String> = cluster.servers.iter().map(|s| s.http()).collect();
    let mut writers = Vec::new();
    for w in 0..16usize {
        let (client, acked, stop, targets) = (client.clone(), acked.clone(), stop.clone(), targets.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("failover/w{w}-{n}");
                let target = &targets[(w + n) % targets.len()];
                let sent = Instant::now();
                let ok = client.put(format!("http://{target}/v1/kv/{key}")).body(key.clone()).timeout(Duration::from_secs(10)).send().await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    acked.lock().expect("ack list").push((key, sent, Instant::now()));
                }
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = Instant::now();
    cluster.kill9(leader);
    let new_leader = cluster.leader(&client, Duration::from_secs(30)).await.ok_or("no leader after the kill")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().expect("ack list").clone();
    // Failover time: from the kill to the first acknowledgement of a write sent after it.
    let first_after = acked.iter().filter(|(_, sent, _)| *sent > killed_at).map(|(_, _, t)| t.duration_since(killed_at)).min();
    let failover_ms = first_after.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    let mut lost = 0usize;
    for (key, _, _) in &acked {
        let url = format!("http://{}/v1/kv/{key}?consistent", cluster.servers[new_leader].http());
        if !client.get(url).send().await.is_ok_and(|r| r.status() == 200) {
            lost += 1;
        }
    }
    println!("failover: first acknowledged write {failover_ms:.0} ms after kill -9 of the leader; {} acknowledged writes, {lost} lost", acked.len());
    json.push(format!(r#"{{"name":"failover","ms":{failover_ms:.1},"acknowledged":{},"lost":{lost}}}"#, acked.len()));
    cluster.spawn(leader)?;

    // Snapshot install: grow the state machine, then time a fresh server's catch-up.
    let bulk = Arc::new(vec![b's'; BULK_VALUE_BYTES]);
    let count = snapshot_mb * 1024 * 1024 / BULK_VALUE_BYTES;
    let http = cluster.servers[new_leader].http();
    let mut tasks = Vec::new();
    for w in 0..8usize {
        let (client, bulk, http) = (client.clone(), bulk.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            for n in (w..count).step_by(8) {
                let _ = client.put(format!("http://{http}/v1/kv/bulk/{n:06}")).body(bulk.as_ref().clone()).send().await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let (target_index, target_digest) = cluster.digest(&client, new_leader).await.ok_or("leader digest")?;
    let started = Instant::now();
    let newcomer = cluster.add()?;
    let mut install_ms = f64::NAN;
    while started.elapsed() < Duration::from_secs(300) {
        if let Some((index, digest)) = cluster.digest(&client, newcomer).await
            && index >= target_index
            && (index > target_index || digest == target_digest)
        {
            install_ms = started.elapsed().as_secs_f64() * 1000.0;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("snapshot catch-up: a new server holds the {snapshot_mb} MB state machine {install_ms:.0} ms after it starts (process start included)");
    json.push(format!(r#"{{"name":"snapshot_install","mb":{snapshot_mb},"ms":{install_ms:.1}}}"#));
    println!("RESULT {{\"cluster\":[{}]}}", json.join(","));
    Ok(())
}
