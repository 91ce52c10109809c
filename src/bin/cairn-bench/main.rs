//! `cairn-bench`: measures a running (or self-started) dev agent over its real HTTP and DNS
//! interfaces, as a Consul client would use them.
//!
//! ```text
//! cairn-bench [--start-agent] [--http 127.0.0.1:8500] [--dns 127.0.0.1:8600]
//!             [--clients 1,64] [--duration-s 10] [--value-bytes 256] [--dns-iterations 50]
//! ```
//! `--watchers N [--watch-keys K]` (with `--start-agent`) instead parks N blocking queries on
//! the agent and measures wake-ups and memory (`watchers.rs`).
//!
//! `--vs-etcd [--puts-only] [--out DIR]` (a build with `--features etcd`) instead runs a 3-server cairn
//! cluster and a 3-member etcd cluster side by side (`versus.rs`); `--out` also writes the
//! JSON and SVG plots there.
//!
//! `--gossip-sim [--members 1000,5000] [--trials 10] [--sim-minutes 10] [--loss 0.05]` instead
//! runs a simulated LAN gossip pool in one process, against memberlist's defaults
//! (`gossip_sim.rs`).
//!
//! `--client-agents [--clients 64] [--rounds 3] [--only registrations|kv]` instead starts 3 servers and 3 client agents
//! and measures service registration against KV puts through the clients (interleaved in
//! `--rounds` rounds of `--duration-s` each), and DNS on a client against a server
//! (`client_agents.rs`).
//!
//! `--soak [--duration-s 600] [--seed N] [--workers 4] [--out DIR]` instead starts 3 servers
//! under a base load and fuzzed requests at their HTTP, DNS and server ports, and reports
//! findings and RSS over the run (`soak.rs`; exit status 1 on a finding or RSS growth).
//!
//! `--dns-vs-nsd [--duration-s 15] [--rounds 2] [--out DIR]` instead runs dnsperf against one
//! cairn server and against NSD serving the same records as a static zone (`dns_vs_nsd.rs`).
//!
//! `--dns-scale [--services 5000] [--instances 10] [--samples 100]` instead measures how long
//! a registration takes to show in DNS, and RSS, with an empty and a large catalog
//! (`dns_scale.rs`).
//!
//! `--seed-ui-catalog [--http ADDR] [--services 5000] [--instances 20000] [--nodes 500]` instead
//! registers the dashboard's large catalog into a running agent as fast as it can and prints
//! one JSON line; `--ui-summary` times the pure dashboard summaries of that catalog in this
//! process (`ui_catalog.rs`).
//!
//! `--session-ends [--keys 1000000] [--samples 200] [--held 1]` instead times how long the pure catalog
//! apply takes to end a session (destroyed, or its check critical) in a large KV store
//! (`session_ends.rs`).
//!
//! `--cluster N` instead starts N servers on loopback and measures write throughput, failover
//! time and snapshot catch-up (`cluster.rs`; `--snapshot-mb` sets the state machine size).
//!
//! With `--start-agent` it starts `cairn agent -dev` (the binary next to this one) on free
//! loopback ports with a fresh data dir, so the run needs nothing else. It reports, per client
//! count, KV PUT and GET throughput and latency percentiles, then the time from a service
//! registration's 200 OK until the service answers in DNS. Results go to stdout as a table and
//! as one JSON line (`RESULT {...}`) for scripts.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod client_agents;
mod cluster;
mod dns_scale;
mod dns_vs_nsd;
mod gossip_sim;
mod session_ends;
mod soak;
mod ui_catalog;
#[cfg(feature = "etcd")]
mod versus;
mod watchers;

use hickory_server::proto::op::{Message, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RecordType};

/// Keys each client cycles through, so GETs hit existing keys and PUTs overwrite.
const KEYS_PER_CLIENT: usize = 100;
/// Each HTTP request may take at most this long before the run is declared broken.
const REQUEST_TIMEOUT_S: u64 = 30;
/// How long to wait for a registration to show in DNS before giving up on that sample.
const DNS_VISIBILITY_TIMEOUT_MS: u64 = 10_000;

struct Options {
    start_agent: bool,
    http: String,
    dns: SocketAddr,
    clients: Vec<usize>,
    duration: Duration,
    value_bytes: usize,
    dns_iterations: usize,
    rounds: usize,
    cluster: usize,
    snapshot_mb: usize,
    watchers: usize,
    watch_keys: usize,
    vs_etcd: bool,
    client_agents: bool,
    puts_only: bool,
    /// `--client-agents --only registrations|kv`: one workload alone, for a profiler.
    only: Option<String>,
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    out: Option<std::path::PathBuf>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        start_agent: false,
        http: "127.0.0.1:8500".into(),
        dns: "127.0.0.1:8600".parse().expect("literal address"),
        clients: vec![1, 64],
        duration: Duration::from_secs(10),
        value_bytes: 256,
        dns_iterations: 50,
        rounds: 3,
        cluster: 0,
        snapshot_mb: 100,
        watchers: 0,
        watch_keys: 100,
        vs_etcd: false,
        client_agents: false,
        puts_only: false,
        only: None,
        out: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    crate::walk_flags(&args, |flag, value| {
        match flag {
            "start-agent" => options.start_agent = true,
            "vs-etcd" => options.vs_etcd = true,
            "client-agents" => options.client_agents = true,
            "puts-only" => options.puts_only = true,
            "only" => options.only = Some(value()?),
            "out" => options.out = Some(value()?.into()),
            "cluster" => options.cluster = value()?.parse().map_err(|e| format!("--cluster: {e}"))?,
            "watchers" => options.watchers = value()?.parse().map_err(|e| format!("--watchers: {e}"))?,
            "watch-keys" => options.watch_keys = value()?.parse().map_err(|e| format!("--watch-keys: {e}"))?,
            "snapshot-mb" => options.snapshot_mb = value()?.parse().map_err(|e| format!("--snapshot-mb: {e}"))?,
            "http" => options.http = value()?,
            "dns" => options.dns = value()?.parse().map_err(|e| format!("--dns: {e}"))?,
            "clients" => {
                options.clients = value()?.split(',').map(|c| c.trim().parse().map_err(|e| format!("--clients: {e}"))).collect::<Result<_, _>>()?
            }
            "duration-s" => options.duration = Duration::from_secs(value()?.parse().map_err(|e| format!("--duration-s: {e}"))?),
            "value-bytes" => options.value_bytes = value()?.parse().map_err(|e| format!("--value-bytes: {e}"))?,
            "rounds" => options.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "dns-iterations" => options.dns_iterations = value()?.parse().map_err(|e| format!("--dns-iterations: {e}"))?,
            "h" | "help" => return Err("usage: see the //! doc at the top of src/bin/cairn-bench.rs".into()),
            other => return Err(format!("unknown flag --{other}")),
        }
        Ok(())
    })?;
    Ok(options)
}

/// The exit status of a mode that ended with `result`; its error goes to stderr.
pub(crate) fn exit_status(result: Result<(), String>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cairn-bench: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Walks Go-style `--flag value` / `--flag=value` arguments: `on_flag` gets each flag's name
/// (without dashes) and a closure that takes its value (the text after `=`, else the next
/// argument). Shared by every mode's parser.
pub(crate) fn walk_flags(
    args: &[String],
    mut on_flag: impl FnMut(&str, &mut dyn FnMut() -> Result<String, String>) -> Result<(), String>,
) -> Result<(), String> {
    let mut position = 0;
    while position < args.len() {
        let (flag, inline) = match args[position].split_once('=') {
            Some((flag, value)) => (flag.trim_start_matches('-').to_string(), Some(value.to_string())),
            None => (args[position].trim_start_matches('-').to_string(), None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(value) = inline.clone() {
                return Ok(value);
            }
            position += 1;
            args.get(position).cloned().ok_or_else(|| format!("--{flag} needs a value"))
        };
        on_flag(&flag, &mut value)?;
        position += 1;
    }
    Ok(())
}

/// Lifts the soft open-files limit to the hard one: `--watchers` holds one socket per watcher.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn free_port() -> u16 {
    loop {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = tcp.local_addr().expect("local addr").port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A dev agent started for the run; killed when dropped.
struct OwnAgent {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for OwnAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_agent(options: &mut Options) -> Result<OwnAgent, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let cairn = exe.with_file_name("cairn");
    let dir = std::env::temp_dir().join(format!("cairn-bench-{:016x}", rand::random::<u64>()));
    let (http, dns, server) = (free_port(), free_port(), free_port());
    let child = Command::new(&cairn)
        .args(["agent", "-dev", "-node=bench", "-log-level=warn"])
        .arg(format!("-data-dir={}", dir.join("data").display()))
        .arg(format!("-http-port={http}"))
        .arg(format!("-dns-port={dns}"))
        .arg(format!("-server-port={server}"))
        .arg(format!("-serf-lan-port={}", free_port()))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cairn.display()))?;
    options.http = format!("127.0.0.1:{http}");
    options.dns = SocketAddr::from(([127, 0, 0, 1], dns));
    Ok(OwnAgent { child, dir })
}

async fn wait_ready(client: &reqwest::Client, http: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("http://{http}/v1/status/leader")).send().await
            && r.text().await.is_ok_and(|t| t.len() > 2)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("agent at {http} did not become ready"))
}

#[derive(Default)]
pub(crate) struct Stats {
    operations: usize,
    pub(crate) errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Stats {
    pub(crate) fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * (self.latencies_us.len() - 1) as f64).round() as usize;
        self.latencies_us[rank] as f64 / 1000.0
    }

    /// Both runs' operations, errors, time and latencies together (for interleaved rounds).
    pub(crate) fn merge(mut self, other: Stats) -> Stats {
        self.operations += other.operations;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.latencies_us.extend(other.latencies_us);
        self.latencies_us.sort_unstable();
        self
    }

    pub(crate) fn operations(&self) -> usize {
        self.operations
    }

    pub(crate) fn throughput(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `op(worker, n)` in `clients` concurrent loops for `duration`; `op` returns success.
/// Every workload of every mode goes through here.
pub(crate) async fn drive<F, Fut>(clients: usize, duration: Duration, op: F) -> Stats
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let (op, stop) = (op.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut errors, mut n) = (Vec::new(), 0usize, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let begun = Instant::now();
                if op(worker, n).await {
                    latencies.push(begun.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
                n += 1;
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let (mut latencies_us, mut errors) = (Vec::new(), 0);
    for task in tasks {
        if let Ok((latencies, failed)) = task.await {
            latencies_us.extend(latencies);
            errors += failed;
        }
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    Stats { operations: latencies_us.len(), errors, elapsed, latencies_us }
}

/// KV PUT or GET load on the agent at `http`, each client over keys of its own.
pub(crate) async fn run_load(client: &reqwest::Client, http: &str, clients: usize, duration: Duration, value: Arc<Vec<u8>>, write: bool) -> Stats {
    let (client, base) = (client.clone(), format!("http://{http}/v1/kv/bench"));
    drive(clients, duration, move |c, n| {
        let url = format!("{base}/{c}/{}", n % KEYS_PER_CLIENT);
        let request = if write { client.put(url).body(value.as_ref().clone()) } else { client.get(url) };
        async move {
            match request.send().await {
                Ok(r) => r.status().is_success() && (write || r.bytes().await.is_ok()),
                Err(_) => false,
            }
        }
    })
    .await
}

/// A process's resident set size, from `/proc`.
pub(crate) fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmRSS in /proc status".to_string())
}

pub(crate) async fn dns_answers(dns: SocketAddr, name: &str) -> bool {
    dns_answers_from(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), dns, name).await
}

/// An SRV question for `name`, asked from `source`, gets a NOERROR answer with records.
pub(crate) async fn dns_answers_from(source: std::net::IpAddr, dns: SocketAddr, name: &str) -> bool {
    let mut message = Message::query();
    message.metadata.id = rand::random();
    let Ok(qname) = Name::from_ascii(name) else { return false };
    message.add_query(Query::query(qname, RecordType::SRV));
    let Ok(bytes) = message.to_vec() else { return false };
    let Ok(socket) = tokio::net::UdpSocket::bind(SocketAddr::new(source, 0)).await else { return false };
    if socket.send_to(&bytes, dns).await.is_err() {
        return false;
    }
    let mut buffer = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buffer)).await {
        Ok(Ok((len, _))) => Message::from_vec(&buffer[..len])
            .is_ok_and(|reply| reply.metadata.response_code == ResponseCode::NoError && !reply.answers.is_empty()),
        _ => false,
    }
}

/// Registration 200 OK → first SRV answer, per sample, in milliseconds.
async fn dns_visibility(client: &reqwest::Client, options: &Options) -> Vec<f64> {
    let mut samples = Vec::new();
    for i in 0..options.dns_iterations {
        let name = format!("bench-dns-{i}");
        let body = format!(r#"{{"Name":"{name}","Port":{}}}"#, 10_000 + i);
        let url = format!("http://{}/v1/agent/service/register", options.http);
        let Ok(response) = client.put(&url).body(body).send().await else { continue };
        if !response.status().is_success() {
            continue;
        }
        let acknowledged = Instant::now();
        let deadline = acknowledged + Duration::from_millis(DNS_VISIBILITY_TIMEOUT_MS);
        while Instant::now() < deadline {
            if dns_answers(options.dns, &format!("{name}.service.consul.")).await {
                samples.push(acknowledged.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
        let _ = client.put(format!("http://{}/v1/agent/service/deregister/{name}", options.http)).send().await;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    samples
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    raise_open_files_limit();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--gossip-sim") {
        // CPU-bound and synchronous: a simulated pool needs no runtime or agent.
        return match gossip_sim::GossipSimArgs::parse(&args).and_then(|a| gossip_sim::run(&a)) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("cairn-bench: {message}");
                std::process::ExitCode::from(2)
            }
        };
    }
    if args.iter().any(|a| a == "--soak") {
        return soak::main(&args).await;
    }
    if args.iter().any(|a| a == "--dns-vs-nsd") {
        return dns_vs_nsd::main(&args).await;
    }
    if args.iter().any(|a| a == "--dns-scale") {
        return dns_scale::main(&args).await;
    }
    if args.iter().any(|a| a == "--seed-ui-catalog") {
        return ui_catalog::seed_main(&args).await;
    }
    if args.iter().any(|a| a == "--ui-summary") {
        return ui_catalog::summary_main(&args);
    }
    if args.iter().any(|a| a == "--session-ends") {
        return session_ends::main(&args);
    }
    let mut options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("cairn-bench: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    if options.vs_etcd {
        #[cfg(feature = "etcd")]
        return match versus::run(&options.clients, options.duration, options.value_bytes, options.puts_only, options.out.as_deref()).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("cairn-bench: {message}");
                std::process::ExitCode::FAILURE
            }
        };
        #[cfg(not(feature = "etcd"))]
        {
            eprintln!("cairn-bench: --vs-etcd needs a build with `--features etcd` (and protoc)");
            return std::process::ExitCode::from(2);
        }
    }
    if options.client_agents {
        return match client_agents::run(&options.clients, options.duration, options.rounds.max(1), options.only.as_deref()).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("cairn-bench: {message}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if options.cluster > 0 {
        return match cluster::run(options.cluster, &options.clients, options.duration, options.value_bytes, options.snapshot_mb).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("cairn-bench: {message}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let _agent = if options.start_agent {
        match start_agent(&mut options) {
            Ok(agent) => Some(agent),
            Err(message) => {
                eprintln!("cairn-bench: {message}");
                return std::process::ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(REQUEST_TIMEOUT_S))
        .pool_max_idle_per_host(1024)
        .build()
        .expect("http client");
    if let Err(message) = wait_ready(&client, &options.http).await {
        eprintln!("cairn-bench: {message}");
        return std::process::ExitCode::FAILURE;
    }
    if options.watchers > 0 {
        let Some(agent) = &_agent else {
            eprintln!("cairn-bench: --watchers needs --start-agent (it reads the agent's RSS)");
            return std::process::ExitCode::from(2);
        };
        return match watchers::run(&client, &options.http, agent.child.id(), options.watchers, options.watch_keys).await {
            Ok(report) => {
                report.lines.iter().for_each(|line| println!("{line}"));
                println!("RESULT {}", report.json);
                std::process::ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("cairn-bench: {message}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let value = Arc::new(vec![b'v'; options.value_bytes]);
    let mut json_rows = Vec::new();
    println!("{:<6} {:>8} {:>12} {:>9} {:>9} {:>9} {:>7}", "op", "clients", "ops/s", "p50 ms", "p99 ms", "max ms", "errors");
    for &clients in &options.clients {
        for write in [true, false] {
            let stats = run_load(&client, &options.http, clients, options.duration, value.clone(), write).await;
            let op = if write { "put" } else { "get" };
            println!(
                "{:<6} {:>8} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>7}",
                op,
                clients,
                stats.throughput(),
                stats.percentile_ms(50.0),
                stats.percentile_ms(99.0),
                stats.percentile_ms(100.0),
                stats.errors
            );
            json_rows.push(format!(
                r#"{{"op":"{op}","clients":{clients},"ops_per_s":{:.1},"p50_ms":{:.3},"p99_ms":{:.3},"errors":{}}}"#,
                stats.throughput(),
                stats.percentile_ms(50.0),
                stats.percentile_ms(99.0),
                stats.errors
            ));
        }
    }
    let samples = dns_visibility(&client, &options).await;
    let pick = |p: f64| if samples.is_empty() { 0.0 } else { samples[((p / 100.0) * (samples.len() - 1) as f64).round() as usize] };
    println!(
        "registration -> DNS visible: n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        samples.len(),
        pick(50.0),
        pick(99.0),
        pick(100.0)
    );
    println!(
        "RESULT {{\"kv\":[{}],\"dns_visibility_ms\":{{\"n\":{},\"p50\":{:.3},\"p99\":{:.3},\"max\":{:.3}}}}}",
        json_rows.join(","),
        samples.len(),
        pick(50.0),
        pick(99.0),
        pick(100.0)
    );
    std::process::ExitCode::SUCCESS
}
