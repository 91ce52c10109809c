//! `cairn-bench --soak`: a real 3-server cluster on loopback under a realistic base load and,
//! at the same time, fuzzed requests at its HTTP, DNS and server ports, for `--duration-s`
//! (issue 11: "no crash, RSS flat within 10%"). A benchmark, not a test: `.ci/soak` runs it
//! for ten minutes on a release build; `tests/it/soak.rs` runs it briefly on a debug build.
//!
//! ```text
//! cairn-bench --soak [--duration-s 600] [--seed N] [--workers 4] [--out DIR]
//!                    [--rss-growth-max-pct 10 | --no-rss-verdict]
//! ```
//! Every few seconds the monitor samples each agent's RSS (`/proc/<pid>/status`), checks that
//! no agent exited, and probes the cluster: a linearizable KV write and read, and a DNS lookup
//! on every server. Findings (a crash, a panic in a log, a 5xx, a request left unanswered, a
//! stranger admitted on the server port, a failed probe) are printed as they come, each with
//! the request that produced it. RSS is judged after the warm-up (the first 10% of the run):
//! the mean of the last window as long as the warm-up against the mean of the one right after
//! it; growth past `--rss-growth-max-pct` fails the run (`report::RssFigures` says why means). The exit status is
//! non-zero on any finding or on RSS growth; `--out DIR` also writes `DIR/soak.json`.

mod base_load;
mod cleanup;
mod dns_fuzz;
mod http_fuzz;
mod http_seeds;
mod mutate;
mod report;
mod server_fuzz;
mod wire;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use base_load::{BASE_SERVICE, BaseTarget};
use report::{Report, RssSeries, Tally};

/// Servers in the soak's cluster.
const SERVERS: usize = 3;
/// The soak's config: ACLs on (default allow, so the base load needs no token; the fuzzers
/// reach the ACL endpoints with the management token), and blocking queries bounded so that
/// a fuzzed `?index=` parks for seconds, not the default five minutes.
const SOAK_CONFIG: &str = "max_query_time = \"8s\"\ndefault_query_time = \"8s\"\nacl.enabled = true\nacl.default_policy = \"allow\"\nacl.tokens.initial_management = \"5c0a7000-0000-4000-8000-0000000050a7\"\n";
const MANAGEMENT_TOKEN: &str = "5c0a7000-0000-4000-8000-0000000050a7";
/// Addresses the fuzzers send from; no server of the cluster uses them (`cluster.rs` never
/// gives a server a 127.0.x.x address).
const STRANGERS: [IpAddr; 2] = [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))];
/// Longest wait for the cluster to elect a leader, create its ACLs and answer DNS.
const READY_TIMEOUT_S: u64 = 90;
/// Seconds between two cleanup passes.
const CLEANUP_EVERY_S: u64 = 20;
/// ERROR lines of each agent's log printed at the end (all are counted).
const LOG_ERRORS_SHOWN_MAX: usize = 5;
/// Share of the run before RSS is judged, in percent.
const WARM_UP_PCT: u64 = 10;

struct SoakArgs {
    duration: Duration,
    seed: u64,
    workers: usize,
    out: Option<PathBuf>,
    rss_growth_max_pct: Option<f64>,
}

impl SoakArgs {
    /// Reads the flags after the program name; `--soak` itself is accepted and ignored.
    fn parse(args: &[String]) -> Result<SoakArgs, String> {
        let mut parsed = SoakArgs { duration: Duration::from_secs(600), seed: rand::random(), workers: 4, out: None, rss_growth_max_pct: Some(10.0) };
        crate::walk_flags(args, |flag, value| {
            match flag {
                "soak" => {}
                "no-rss-verdict" => parsed.rss_growth_max_pct = None,
                "duration-s" => parsed.duration = Duration::from_secs(value()?.parse().map_err(|e| format!("--duration-s: {e}"))?),
                "seed" => parsed.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
                "workers" => parsed.workers = value()?.parse::<usize>().map_err(|e| format!("--workers: {e}"))?.max(1),
                "out" => parsed.out = Some(value()?.into()),
                "rss-growth-max-pct" => parsed.rss_growth_max_pct = Some(value()?.parse().map_err(|e| format!("--rss-growth-max-pct: {e}"))?),
                other => return Err(format!("unknown flag --{other} for --soak")),
            }
            Ok(())
        })?;
        Ok(parsed)
    }
}

/// `cairn-bench --soak ...`: 0 when the soak passed, 1 when it did not, 2 on bad flags.
pub(crate) async fn main(args: &[String]) -> std::process::ExitCode {
    let soak_args = match SoakArgs::parse(args) {
        Ok(soak_args) => soak_args,
        Err(message) => {
            eprintln!("cairn-bench: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(&soak_args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(message) => {
            eprintln!("cairn-bench: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the soak; `Ok(true)` when it passed (no finding, RSS flat).
async fn run(args: &SoakArgs) -> Result<bool, String> {
    let mut cluster = Cluster::start_with(SERVERS, SOAK_CONFIG)?;
    let base = BaseTarget {
        client: base_load::client(),
        https: (0..SERVERS).map(|i| cluster.http_of(i)).collect(),
        dnss: (0..SERVERS).map(|i| cluster.dns_of(i)).collect(),
    };
    ready(&cluster, &base).await?;
    println!("soak: cluster ready (seed {}); fuzzing for {} s", args.seed, args.duration.as_secs());
    let tally = Arc::new(Tally::new());
    let stop = Arc::new(AtomicBool::new(false));
    let known = Arc::new(Mutex::new(http_seeds::Known::default()));
    let mut tasks = base_load::start(&base, &tally, &stop);
    tasks.extend(start_fuzzers(args, &cluster, &tally, &stop, &known));
    let servers: Vec<String> = (1..=SERVERS).map(|i| format!("b{i}")).collect();
    {
        let (base, tally, stop, known) = (base.clone(), tally.clone(), stop.clone(), known.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                cleanup::pass(&base, MANAGEMENT_TOKEN, &servers, &known, &tally).await;
                tokio::time::sleep(Duration::from_secs(CLEANUP_EVERY_S)).await;
            }
        }));
    }
    let (rss, terms) = monitor(args, &mut cluster, &base, &tally).await;
    stop.store(true, Ordering::Relaxed);
    for task in &tasks {
        task.abort();
    }
    // After the fuzzing: the cluster must still serve, and no agent may have panicked.
    if (0..SERVERS).all(|i| cluster.exited(i).is_none()) {
        base_load::kv_probe(&base, &AtomicU64::new(1 << 40), &tally).await;
    }
    scan_logs(&cluster, &tally);
    let warm_s = args.duration.as_secs_f64() * WARM_UP_PCT as f64 / 100.0;
    let report = Report {
        duration_s: tally.elapsed_s(),
        warm_s,
        seed: args.seed,
        build: if cfg!(debug_assertions) { "debug" } else { "release" },
        rss_growth_max_pct: args.rss_growth_max_pct,
        tally: &tally,
        rss: &rss,
        terms,
    };
    report.print();
    let json = report.json();
    println!("RESULT {json}");
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
        let path = out.join("soak.json");
        std::fs::write(&path, serde_json::to_string_pretty(&json).expect("json")).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(tally.findings_total() == 0 && !report.rss_grew())
}

/// Waits until a leader leads, the management token works and every server answers the DNS
/// canary (its [`BASE_SERVICE`] registered).
async fn ready(cluster: &Cluster, base: &BaseTarget) -> Result<(), String> {
    cluster.leader(&base.client, Duration::from_secs(READY_TIMEOUT_S)).await.ok_or("no leader elected")?;
    let deadline = Instant::now() + Duration::from_secs(READY_TIMEOUT_S);
    loop {
        let acl = base.client.get(format!("http://{}/v1/acl/tokens", base.https[0])).header("X-Consul-Token", MANAGEMENT_TOKEN).send().await;
        if acl.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        if Instant::now() > deadline {
            return Err("the management token never worked".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    base_load::register_base_service(base).await?;
    for &dns in &base.dnss {
        while !base_load::dns_lookup(dns, BASE_SERVICE).await {
            if Instant::now() > deadline {
                return Err(format!("{BASE_SERVICE} never answered in DNS at {dns}"));
            }
        }
    }
    Ok(())
}

fn start_fuzzers(args: &SoakArgs, cluster: &Cluster, tally: &Arc<Tally>, stop: &Arc<AtomicBool>, known: &Arc<Mutex<http_seeds::Known>>) -> Vec<tokio::task::JoinHandle<()>> {
    let http = http_fuzz::HttpTarget {
        addrs: (0..SERVERS).map(|i| cluster.http_of(i).parse().expect("an ip:port")).collect(),
        sources: STRANGERS.to_vec(),
        management_token: MANAGEMENT_TOKEN.into(),
        known: known.clone(),
    };
    let dns = dns_fuzz::DnsTarget { addrs: (0..SERVERS).map(|i| cluster.dns_of(i)).collect(), sources: STRANGERS.to_vec(), canary: format!("{BASE_SERVICE}.service.consul") };
    let server = server_fuzz::ServerTarget {
        servers: (0..SERVERS).map(|i| cluster.server_addr_of(i)).collect(),
        strangers: STRANGERS.to_vec(),
        management_token: MANAGEMENT_TOKEN.into(),
    };
    let mut tasks = Vec::new();
    let seed = |kind: u64, worker: usize| args.seed ^ (kind << 56) ^ worker as u64;
    for worker in 0..args.workers {
        tasks.push(tokio::spawn(http_fuzz::worker(http.clone(), seed(1, worker), tally.clone(), stop.clone())));
    }
    for worker in 0..args.workers.div_ceil(2) {
        tasks.push(tokio::spawn(dns_fuzz::udp_worker(dns.clone(), seed(2, worker), tally.clone(), stop.clone())));
        tasks.push(tokio::spawn(dns_fuzz::tcp_worker(dns.clone(), seed(3, worker), tally.clone(), stop.clone())));
        tasks.push(tokio::spawn(server_fuzz::worker(server.clone(), seed(4, worker), tally.clone(), stop.clone())));
    }
    tasks
}

/// Samples RSS and probes the cluster every few seconds until the run's end (or an agent
/// exits); returns the RSS series and the Raft terms first and last seen.
async fn monitor(args: &SoakArgs, cluster: &mut Cluster, base: &BaseTarget, tally: &Tally) -> (Vec<RssSeries>, (u64, u64)) {
    let every = Duration::from_secs_f64((args.duration.as_secs_f64() / 60.0).clamp(1.0, 5.0));
    let mut rss: Vec<RssSeries> = (1..=SERVERS).map(|i| RssSeries { agent: format!("b{i}"), samples: Vec::new(), stats: Vec::new() }).collect();
    let probe_counter = AtomicU64::new(0);
    let mut terms = (0, 0);
    let started = Instant::now();
    while started.elapsed() < args.duration {
        tokio::time::sleep(every.min(args.duration.saturating_sub(started.elapsed()))).await;
        let at_s = tally.elapsed_s();
        for (i, series) in rss.iter_mut().enumerate() {
            if let Some(status) = cluster.exited(i) {
                tally.finding("cluster", format!("agent b{} exited: {status}", i + 1), "");
                return (rss, terms);
            }
            if let Some(kib) = cluster.pid_of(i).and_then(|pid| crate::rss_kib(pid).ok()) {
                series.samples.push((at_s, kib));
            }
            if let Some(stats) = memory_stats(base, i).await {
                series.stats.push((at_s, stats));
            }
        }
        base_load::kv_probe(base, &probe_counter, tally).await;
        for &dns in &base.dnss {
            tally.count("probe.dns");
            if !base_load::dns_lookup(dns, BASE_SERVICE).await {
                tally.finding("cluster", format!("probe: {BASE_SERVICE}.service.consul unanswered at {dns}"), "");
            }
        }
        if let Some(term) = raft_term(base).await {
            terms = if terms.0 == 0 { (term, term) } else { (terms.0, term) };
        }
    }
    (rss, terms)
}

/// The Raft term the first server reports.
async fn raft_term(base: &BaseTarget) -> Option<u64> {
    let me: serde_json::Value = base.client.get(format!("http://{}/v1/agent/self", base.https[0])).header("X-Consul-Token", MANAGEMENT_TOKEN).send().await.ok()?.json().await.ok()?;
    me["Stats"]["raft"]["term"].as_str()?.parse().ok()
}

/// Server `i`'s memory counters from `/v1/agent/self`: the catalog's table sizes, RocksDB's
/// memory and the heap, each a string in Consul's style.
async fn memory_stats(base: &BaseTarget, i: usize) -> Option<BTreeMap<String, u64>> {
    let me: serde_json::Value = base.client.get(format!("http://{}/v1/agent/self", base.https[i])).header("X-Consul-Token", MANAGEMENT_TOKEN).send().await.ok()?.json().await.ok()?;
    let stats = &me["Stats"];
    let sections = [("catalog", None), ("store", None), ("runtime", Some("heap_"))];
    let mut out = BTreeMap::new();
    for (section, prefix) in sections {
        for (name, value) in stats[section].as_object()? {
            if prefix.is_none_or(|p| name.starts_with(p)) && let Some(n) = value.as_str().and_then(|v| v.parse().ok()) {
                out.insert(name.clone(), n);
            }
        }
    }
    Some(out)
}

/// A panic in any agent's log is a finding.
fn scan_logs(cluster: &Cluster, tally: &Tally) {
    for i in 0..SERVERS {
        let log = std::fs::read_to_string(cluster.log_of(i)).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("panicked")).take(5) {
            tally.finding("cluster", format!("b{} panicked", i + 1), line.chars().take(2_000).collect::<String>());
        }
        let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
        tally.add(&format!("log.b{}_error_lines", i + 1), errors.len() as u64);
        // Counted, not findings (a fuzzed request may rightly log one); shown so they can be read.
        for line in errors.iter().take(LOG_ERRORS_SHOWN_MAX) {
            eprintln!("log b{} ERROR: {}", i + 1, line.chars().take(500).collect::<String>());
        }
    }
}
