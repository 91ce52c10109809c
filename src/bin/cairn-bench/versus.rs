//! `cairn-bench --vs-etcd`: a 3-server cairn cluster and a 3-member etcd cluster on loopback,
//! driven with the same workloads in one run, printed side by side with cairn/etcd ratios.
//!
//! cairn is driven through its HTTP API as a Consul client would (`PUT /v1/kv`, `GET
//! ?consistent`, `GET ?stale`); etcd through its native gRPC API (the `etcd-client` crate),
//! with linearizable and serializable reads. Both run with their default durability: cairn
//! fsyncs its Raft log before acknowledging an append, etcd fsyncs its WAL. Both are driven at
//! their leaders. Needs `etcd` on the PATH (Debian's `etcd-server`, 3.4.23) or in `ETCD_BIN`,
//! and a build with `--features etcd` (etcd-client needs `protoc`, Debian's
//! `protobuf-compiler`).
//!
//! Workloads, each for `--duration-s`: put (256 B values) at every `--clients` count,
//! linearizable and serializable get at the largest count, and a 90/10 get/put mix. Then each
//! server's RSS, idle (before the load) and loaded (after it). Results go to stdout as a table
//! and as one JSON line (`RESULT {...}`). `--puts-only` stops after the put rows (for quick
//! before/after comparisons while tuning).

mod etcd;
mod plot;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::{Stats, drive};
use crate::cluster::Cluster;

/// cairn's config for the run: Raft defaults, and room for every benchmark connection from
/// the one loopback address the clients use (Consul's default per-IP limit is 200).
const CAIRN_CONFIG: &str = "limits.http_max_conns_per_client = 4096\n";
/// Keys each client cycles through.
const KEYS_PER_CLIENT: usize = 100;
/// Keys written before the "holding 100k keys" memory reading.
const HELD_KEYS: usize = 100_000;
/// Writers that fill those keys.
const FILL_WRITERS: usize = 64;

/// Calls `write(i)` once for every `i < count`, `FILL_WRITERS` at a time; returns failures.
async fn fill<F, Fut>(count: usize, write: F) -> usize
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let write = Arc::new(write);
    let tasks: Vec<_> = (0..FILL_WRITERS)
        .map(|w| {
            let write = write.clone();
            tokio::spawn(async move {
                let mut failed = 0;
                for i in (w..count).step_by(FILL_WRITERS) {
                    if !write(i).await {
                        failed += 1;
                    }
                }
                failed
            })
        })
        .collect();
    let mut failed = 0;
    for task in tasks {
        failed += task.await.unwrap_or(0);
    }
    failed
}

fn key(worker: usize, n: usize) -> String {
    format!("bench/{worker}/{}", n % KEYS_PER_CLIENT)
}

/// One comparison row: the same workload on both systems.
struct Row {
    name: String,
    cairn: Stats,
    etcd: Stats,
}

impl Row {
    fn print(&self) {
        let ratio = self.cairn.throughput() / self.etcd.throughput().max(f64::MIN_POSITIVE);
        println!(
            "{:<22} {:>10.0} {:>10.0} {:>7.2}x   p50 {:>6.2}/{:<6.2} ms   p99 {:>6.2}/{:<6.2} ms   errors {}/{}",
            self.name,
            self.cairn.throughput(),
            self.etcd.throughput(),
            ratio,
            self.cairn.percentile_ms(50.0),
            self.etcd.percentile_ms(50.0),
            self.cairn.percentile_ms(99.0),
            self.etcd.percentile_ms(99.0),
            self.cairn.errors,
            self.etcd.errors
        );
    }

    fn json(&self) -> String {
        let side = |s: &Stats| format!(r#"{{"ops_per_s":{:.1},"p50_ms":{:.3},"p99_ms":{:.3},"errors":{}}}"#, s.throughput(), s.percentile_ms(50.0), s.percentile_ms(99.0), s.errors);
        format!(r#"{{"name":"{}","cairn":{},"etcd":{}}}"#, self.name, side(&self.cairn), side(&self.etcd))
    }
}

/// Below this share of one core, summed over every server of both systems, the machine counts
/// as quiet.
const QUIET_CPU_PERCENT: f64 = 5.0;
/// The longest wait for quiet before a workload starts anyway.
const QUIET_WAIT_MAX_S: u64 = 20;

/// CPU time used so far by a process, in clock ticks (`/proc/<pid>/stat` utime + stime).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// Waits until the servers of both systems are quiet (flushes and compactions left over from
/// the previous workload done), so that no workload pays for the one before it.
async fn quiesce(pids: &[u32]) {
    const TICKS_PER_S: f64 = 100.0;
    const WINDOW_MS: u64 = 500;
    let give_up = Instant::now() + Duration::from_secs(QUIET_WAIT_MAX_S);
    loop {
        let before: u64 = pids.iter().map(|&p| cpu_ticks(p)).sum();
        tokio::time::sleep(Duration::from_millis(WINDOW_MS)).await;
        let used: u64 = pids.iter().map(|&p| cpu_ticks(p)).sum::<u64>() - before;
        let percent = used as f64 / TICKS_PER_S / (WINDOW_MS as f64 / 1000.0) * 100.0;
        if percent < QUIET_CPU_PERCENT || Instant::now() > give_up {
            return;
        }
    }
}

fn mean_rss_kib(pids: &[u32]) -> u64 {
    pids.iter().map(|&pid| crate::rss_kib(pid).unwrap_or(0)).sum::<u64>() / pids.len().max(1) as u64
}

pub(crate) async fn run(clients: &[usize], duration: Duration, value_bytes: usize, puts_only: bool, out: Option<&std::path::Path>) -> Result<(), String> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(4096).build().map_err(|e| e.to_string())?;
    // `CAIRN_BENCH_CONFIG` adds config lines, for trying a setting side by side.
    let config = format!("{CAIRN_CONFIG}{}\n", std::env::var("CAIRN_BENCH_CONFIG").unwrap_or_default());
    let mut cairn = Cluster::start_with(3, &config)?;
    let leader = cairn.leader(&http, Duration::from_secs(30)).await.ok_or("cairn: no leader")?;
    let mut etcd = etcd::EtcdCluster::start(3)?;
    let etcd_leader = etcd.leader(Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cairn_pids, etcd_pids) = (cairn.pids(), etcd.pids());
    let all_pids: Vec<u32> = cairn_pids.iter().chain(&etcd_pids).copied().collect();
    let idle = (mean_rss_kib(&cairn_pids), mean_rss_kib(&etcd_pids));
    println!("3 cairn servers (leader b{}) and 3 etcd members (leader {}) on loopback; {} s per row", leader + 1, etcd_leader.name, duration.as_secs());
    println!("{:<22} {:>10} {:>10} {:>8}", "workload", "cairn/s", "etcd/s", "ratio");

    let base = Arc::new(format!("http://{}/v1/kv", cairn.http_of(leader)));
    let value = Arc::new(vec![b'v'; value_bytes]);
    let conns = etcd_leader.connections(16).await?;
    let mut rows = Vec::new();
    let largest = clients.iter().copied().max().unwrap_or(1);
    for &c in clients {
        let (base, cairn_value, http) = (base.clone(), value.clone(), http.clone());
        quiesce(&all_pids).await;
        let cairn_stats = drive(c, duration, move |w, n| {
            let request = http.put(format!("{base}/{}", key(w, n))).body(cairn_value.as_ref().clone());
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        quiesce(&all_pids).await;
        let etcd_stats = etcd::drive_put(&conns, c, duration, value.clone()).await;
        rows.push(Row { name: format!("put, {c} clients"), cairn: cairn_stats, etcd: etcd_stats });
        rows.last().expect("pushed").print();
    }
    let loaded = (mean_rss_kib(&cairn_pids), mean_rss_kib(&etcd_pids));
    if puts_only {
        // A quick comparison while tuning the write path: the put rows and memory, no more.
        println!("RSS per server (mean of 3): idle {} KiB cairn vs {} KiB etcd; after the puts {} KiB vs {} KiB", idle.0, idle.1, loaded.0, loaded.1);
        println!("RESULT {{\"versus\":[{}]}}", rows.iter().map(Row::json).collect::<Vec<_>>().join(","));
        return Ok(());
    }
    for (name, query, serializable) in [("get linearizable", "?consistent", false), ("get stale/serializable", "?stale", true)] {
        let (base, http) = (base.clone(), http.clone());
        quiesce(&all_pids).await;
        let cairn_stats = drive(largest, duration, move |w, n| {
            let request = http.get(format!("{base}/{}{query}", key(w, n)));
            async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        quiesce(&all_pids).await;
        let etcd_stats = etcd::drive_get(&conns, largest, duration, serializable).await;
        rows.push(Row { name: format!("{name}, {largest} cl."), cairn: cairn_stats, etcd: etcd_stats });
        rows.last().expect("pushed").print();
    }
    let (base2, value2, http2) = (base.clone(), value.clone(), http.clone());
    quiesce(&all_pids).await;
    let cairn_mix = drive(largest, duration, move |w, n| {
        let url = format!("{base2}/{}", key(w, n));
        let request = if n % 10 == 0 { http2.put(url).body(value2.as_ref().clone()) } else { http2.get(format!("{url}?consistent")) };
        async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    quiesce(&all_pids).await;
    let etcd_mix = etcd::drive_mix(&conns, largest, duration, value.clone()).await;
    rows.push(Row { name: format!("90/10 get/put, {largest} cl."), cairn: cairn_mix, etcd: etcd_mix });
    rows.last().expect("pushed").print();

    let (fill_base, fill_value, fill_http) = (base.clone(), value.clone(), http.clone());
    let cairn_failed = fill(HELD_KEYS, move |i| {
        let request = fill_http.put(format!("{fill_base}/held/{i}")).body(fill_value.as_ref().clone());
        async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    let etcd_failed = etcd::fill(&conns, HELD_KEYS, value.clone()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = (mean_rss_kib(&cairn_pids), mean_rss_kib(&etcd_pids));
    println!(
        "RSS per server holding {HELD_KEYS} more keys of {value_bytes} B: {} KiB cairn vs {} KiB etcd ({:.2}x); failed writes {cairn_failed}/{etcd_failed}",
        held.0,
        held.1,
        held.0 as f64 / held.1.max(1) as f64
    );
    let cairn_failover = cairn_failover(&mut cairn, &http, leader).await?;
    let etcd_failover = etcd::failover(&mut etcd, &etcd_leader).await?;
    println!(
        "failover (kill -9 of the leader under 16 writers -> first acknowledged write sent after it): cairn {:.0} ms ({} acknowledged, {} lost), etcd {:.0} ms ({} acknowledged, {} lost)",
        cairn_failover.ms, cairn_failover.acknowledged, cairn_failover.lost, etcd_failover.ms, etcd_failover.acknowledged, etcd_failover.lost
    );
    println!(
        "RSS per server (mean of 3): idle {} KiB cairn vs {} KiB etcd ({:.2}x); after the put load {} KiB vs {} KiB ({:.2}x)",
        idle.0,
        idle.1,
        idle.0 as f64 / idle.1.max(1) as f64,
        loaded.0,
        loaded.1,
        loaded.0 as f64 / loaded.1.max(1) as f64
    );
    let result = format!(
        "{{\"versus\":[{}],\"rss_kib\":{{\"idle\":{{\"cairn\":{},\"etcd\":{}}},\"loaded\":{{\"cairn\":{},\"etcd\":{}}},\"held_100k\":{{\"cairn\":{},\"etcd\":{}}}}},\"failover\":{{\"cairn\":{},\"etcd\":{}}}}}",
        rows.iter().map(Row::json).collect::<Vec<_>>().join(","),
        idle.0,
        idle.1,
        loaded.0,
        loaded.1,
        held.0,
        held.1,
        cairn_failover.json(),
        etcd_failover.json()
    );
    println!("RESULT {result}");
    if let Some(dir) = out {
        write_results(dir, &result, &rows, clients)?;
    }
    Ok(())
}

/// How long one failover write may take; a write to a dead server must fail fast so that its
/// writer moves on to a live one (gRPC to a killed member would otherwise hang).
const FAILOVER_WRITE_TIMEOUT_MS: u64 = 1_000;
/// How long the writers go on after the kill.
const FAILOVER_WINDOW_S: u64 = 5;

/// What a failover run saw: acknowledged writes as (key, sent, acknowledged).
type Acks = Arc<std::sync::Mutex<Vec<(String, Instant, Instant)>>>;

/// Failover under load: 16 writers spread over every server of a system, each write bounded by
/// `FAILOVER_WRITE_TIMEOUT_MS`; the leader is `kill -9`ed after 2 s; reports the time from the kill to the first acknowledgement of a
/// write sent after it, and how many acknowledged writes are missing afterwards.
pub(crate) struct Failover {
    ms: f64,
    acknowledged: usize,
    lost: usize,
}

impl Failover {
    fn json(&self) -> String {
        format!(r#"{{"ms":{:.1},"acknowledged":{},"lost":{}}}"#, self.ms, self.acknowledged, self.lost)
    }
}

/// Runs 16 writers calling `write(writer, key)` until stopped; returns their acknowledgements.
fn start_writers<F, Fut>(write: F) -> (Acks, Arc<AtomicBool>, Vec<tokio::task::JoinHandle<()>>)
where
    F: Fn(usize, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let (acks, stop, write) = (Acks::default(), Arc::new(AtomicBool::new(false)), Arc::new(write));
    let writers = (0..16usize)
        .map(|w| {
            let (acks, stop, write) = (acks.clone(), stop.clone(), write.clone());
            tokio::spawn(async move {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("failover/w{w}-{n}");
                    let sent = Instant::now();
                    if write(w + n, key.clone()).await {
                        acks.lock().expect("ack list").push((key, sent, Instant::now()));
                    }
                    n += 1;
                }
            })
        })
        .collect();
    (acks, stop, writers)
}

async fn finish_failover<C, CFut>(acks: Acks, stop: Arc<AtomicBool>, writers: Vec<tokio::task::JoinHandle<()>>, killed_at: Instant, check: C) -> Failover
where
    C: Fn(String) -> CFut,
    CFut: Future<Output = bool>,
{
    tokio::time::sleep(Duration::from_secs(FAILOVER_WINDOW_S)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        let _ = writer.await;
    }
    let acks = acks.lock().expect("ack list").clone();
    let first = acks.iter().filter(|(_, sent, _)| *sent > killed_at).map(|(_, _, at)| at.duration_since(killed_at)).min();
    let mut lost = 0;
    for (key, _, _) in &acks {
        if !check(key.clone()).await {
            lost += 1;
        }
    }
    Failover { ms: first.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0), acknowledged: acks.len(), lost }
}

async fn cairn_failover(cairn: &mut Cluster, http: &reqwest::Client, leader: usize) -> Result<Failover, String> {
    let targets: Arc<Vec<String>> = Arc::new((0..3).map(|i| cairn.http_of(i)).collect());
    let (client, t) = (http.clone(), targets.clone());
    let (acks, stop, writers) = start_writers(move |i, key| {
        let request = client.put(format!("http://{}/v1/kv/{key}", t[i % t.len()])).body(key).timeout(Duration::from_millis(FAILOVER_WRITE_TIMEOUT_MS));
        async move { request.send().await.is_ok_and(|r| r.status().is_success()) }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = Instant::now();
    cairn.kill9(leader);
    let new_leader = cairn.leader(http, Duration::from_secs(30)).await.ok_or("cairn: no leader after the kill")?;
    let base = cairn.http_of(new_leader);
    Ok(finish_failover(acks, stop, writers, killed_at, |key| {
        let request = http.get(format!("http://{base}/v1/kv/{key}?consistent"));
        async move { request.send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await)
}

/// Writes `results.json`, `throughput.svg` (puts against clients) and `latency-cdf.svg` (puts
/// at the largest client count) into `dir`.
fn write_results(dir: &std::path::Path, result: &str, rows: &[Row], clients: &[usize]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).map_err(|e| format!("{name}: {e}"));
    write("results.json", &format!("{result}\n"))?;
    let puts = &rows[..clients.len().min(rows.len())];
    let throughput = |pick: fn(&Row) -> &Stats| puts.iter().zip(clients).map(|(row, &c)| (c as f64, pick(row).throughput())).collect::<Vec<_>>();
    let series = [
        plot::Series { name: "cairn (HTTP)", color: "#1f77b4", points: throughput(|r| &r.cairn) },
        plot::Series { name: "etcd (gRPC)", color: "#d62728", points: throughput(|r| &r.etcd) },
    ];
    write("throughput.svg", &plot::line_chart("KV put throughput, 3 servers each", "concurrent clients", "puts per second", &series, true))?;
    if let Some(last) = puts.last() {
        let cdf = |stats: &Stats| (0..=100).map(|p| (stats.percentile_ms(p as f64), p as f64)).collect::<Vec<_>>();
        let series = [
            plot::Series { name: "cairn (HTTP)", color: "#1f77b4", points: cdf(&last.cairn) },
            plot::Series { name: "etcd (gRPC)", color: "#d62728", points: cdf(&last.etcd) },
        ];
        let title = format!("KV put latency CDF, {}", last.name);
        write("latency-cdf.svg", &plot::line_chart(&title, "latency (ms)", "percent of puts at or below", &series, false))?;
    }
    println!("wrote results.json, throughput.svg and latency-cdf.svg to {}", dir.display());
    Ok(())
}
