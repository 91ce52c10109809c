//! `cairn-bench --start-agent --watchers N`: N blocking queries parked on one agent, one HTTP
//! connection each, and what a write does to them.
//!
//! Each watcher is a raw HTTP/1.1 keep-alive connection (no client library, so the bench's
//! own overhead stays small and visible) that issues `GET /v1/kv/<key>?index=I&wait=10m`, and
//! re-arms with the returned index as soon as an answer arrives. Connections come from many
//! loopback source addresses (127.0.0.2, .3, ...) so that no address passes the agent's
//! `limits.http_max_conns_per_client`.
//!
//! Two phases, each on freshly opened connections:
//! 1. **spread**: the N watchers spread over `--watch-keys` keys. Measures the agent's RSS
//!    before and after parking (RSS per parked watcher, connection included), then writes
//!    1,000 unrelated keys and counts the watchers woken (must be 0), then writes watched keys
//!    one at a time and times each of their watchers from the write's start to its answer.
//! 2. **one key**: all N watchers on one key; one write wakes all of them.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

/// Connections opened from one loopback source address (below the agent's default 200).
const CONNECTIONS_PER_SOURCE_IP: usize = 150;
/// Unrelated writes made while the watchers are parked.
const UNRELATED_WRITES: usize = 1_000;
/// Watched keys written one by one in the spread phase (each a latency round).
const SPREAD_ROUNDS: usize = 30;
/// How long a round waits for all the watchers it should wake.
const ROUND_TIMEOUT_MS: u64 = 10_000;
/// Largest answer a watcher accepts.
const ANSWER_BYTES_MAX: usize = 64 * 1024;

/// One answer a watcher received.
struct Wake {
    watcher: usize,
    at: Instant,
}

pub(crate) struct Report {
    pub(crate) lines: Vec<String>,
    pub(crate) json: String,
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body); returns X-Consul-Index.
async fn read_answer(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<u64, String> {
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let header = |name: &str| head.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string());
            let length: usize = header("content-length:").and_then(|v| v.parse().ok()).unwrap_or(0);
            let index: u64 = header("x-consul-index:").and_then(|v| v.parse().ok()).ok_or("answer without X-Consul-Index")?;
            let total = end + 4 + length;
            while buffer.len() < total {
                read_more(stream, buffer).await?;
            }
            buffer.drain(..total);
            return Ok(index);
        }
        read_more(stream, buffer).await?;
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("connection closed".into());
    }
    buffer.extend_from_slice(&chunk[..n]);
    if buffer.len() > ANSWER_BYTES_MAX {
        return Err("answer too large".into());
    }
    Ok(())
}

async fn connect(agent: SocketAddr, watcher: usize) -> Result<TcpStream, String> {
    let source = Ipv4Addr::new(127, 0, (2 + watcher / CONNECTIONS_PER_SOURCE_IP / 250) as u8, (2 + watcher / CONNECTIONS_PER_SOURCE_IP % 250) as u8);
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0))).map_err(|e| format!("bind {source}: {e}"))?;
    socket.connect(agent).await.map_err(|e| format!("connect from {source}: {e}"))
}

/// Runs one watcher until its task is aborted: ask, wait for the answer, report, ask again.
async fn watch(agent: SocketAddr, watcher: usize, key: String, mut index: u64, armed: Arc<AtomicUsize>, wakes: mpsc::UnboundedSender<Wake>) {
    let Ok(mut stream) = connect(agent, watcher).await else { return };
    let mut buffer = Vec::with_capacity(1024);
    let mut first = true;
    loop {
        let request = format!("GET /v1/kv/{key}?index={index}&wait=10m HTTP/1.1\r\nHost: cairn\r\n\r\n");
        if stream.write_all(request.as_bytes()).await.is_err() {
            return;
        }
        if first {
            armed.fetch_add(1, Ordering::Relaxed);
            first = false;
        }
        match read_answer(&mut stream, &mut buffer).await {
            Ok(new_index) => {
                index = new_index;
                if wakes.send(Wake { watcher, at: Instant::now() }).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

struct Fleet {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    wakes: mpsc::UnboundedReceiver<Wake>,
}

async fn current_index(client: &reqwest::Client, http: &str, key: &str) -> Result<u64, String> {
    let response = client.get(format!("http://{http}/v1/kv/{key}")).send().await.map_err(|e| e.to_string())?;
    response.headers().get("x-consul-index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).ok_or_else(|| "no index".into())
}

async fn put(client: &reqwest::Client, http: &str, key: &str, value: &str) -> Result<(), String> {
    let response = client.put(format!("http://{http}/v1/kv/{key}")).body(value.to_string()).send().await.map_err(|e| e.to_string())?;
    response.status().is_success().then_some(()).ok_or_else(|| format!("PUT {key}: {}", response.status()))
}

/// Opens `watchers` connections, watcher `i` on key `keys[i % keys.len()]`, and waits until
/// every one has sent its request and the agent has had time to park them.
async fn launch(client: &reqwest::Client, http: &str, watchers: usize, keys: &[String]) -> Result<Fleet, String> {
    let agent: SocketAddr = http.parse().map_err(|e| format!("--http {http}: {e}"))?;
    let mut indexes = Vec::new();
    for key in keys {
        indexes.push(current_index(client, http, key).await?);
    }
    let armed = Arc::new(AtomicUsize::new(0));
    let (sender, wakes) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(watchers);
    for watcher in 0..watchers {
        let slot = watcher % keys.len();
        tasks.push(tokio::spawn(watch(agent, watcher, keys[slot].clone(), indexes[slot], armed.clone(), sender.clone())));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while armed.load(Ordering::Relaxed) < watchers {
        if Instant::now() > deadline {
            return Err(format!("only {} of {watchers} watchers connected", armed.load(Ordering::Relaxed)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(Fleet { tasks, wakes })
}

fn drain(wakes: &mut mpsc::UnboundedReceiver<Wake>) -> usize {
    let mut n = 0;
    while wakes.try_recv().is_ok() {
        n += 1;
    }
    n
}

/// Writes `key` and collects the `expected` wakes it causes; returns latencies in ms and the
/// number of wakes of watchers that do not watch `key`.
async fn round(client: &reqwest::Client, http: &str, fleet: &mut Fleet, key: &str, watches: impl Fn(usize) -> bool, expected: usize) -> Result<(Vec<f64>, usize), String> {
    let started = Instant::now();
    put(client, http, key, &format!("{:?}", started)).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ROUND_TIMEOUT_MS);
    let (mut latencies, mut strays) = (Vec::with_capacity(expected), 0);
    while latencies.len() < expected {
        match tokio::time::timeout_at(deadline, fleet.wakes.recv()).await {
            Ok(Some(wake)) if watches(wake.watcher) => latencies.push(wake.at.duration_since(started).as_secs_f64() * 1000.0),
            Ok(Some(_)) => strays += 1,
            _ => return Err(format!("only {} of {expected} watchers of {key} woke within {ROUND_TIMEOUT_MS} ms", latencies.len())),
        }
    }
    Ok((latencies, strays))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

pub(crate) async fn run(client: &reqwest::Client, http: &str, agent_pid: u32, watchers: usize, watch_keys: usize) -> Result<Report, String> {
    let watch_keys = watch_keys.clamp(1, watchers.max(1));
    let keys: Vec<String> = (0..watch_keys).map(|k| format!("watched/{k}")).collect();
    for key in &keys {
        put(client, http, key, "initial").await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_kib = crate::rss_kib(agent_pid)?;

    // Phase 1: spread over keys.
    let mut fleet = launch(client, http, watchers, &keys).await?;
    let parked_kib = crate::rss_kib(agent_pid)?;
    let early = drain(&mut fleet.wakes);
    for i in 0..UNRELATED_WRITES {
        put(client, http, &format!("unrelated/{}", i % 100), "x").await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let unrelated_wakes = drain(&mut fleet.wakes) + early;
    let mut spread = Vec::new();
    let mut strays = 0;
    for r in 0..SPREAD_ROUNDS {
        let slot = r % watch_keys;
        let expected = (0..watchers).filter(|w| w % watch_keys == slot).count();
        let (latencies, stray) = round(client, http, &mut fleet, &keys[slot], |w| w % watch_keys == slot, expected).await?;
        spread.extend(latencies);
        strays += stray;
    }
    for task in &fleet.tasks {
        task.abort();
    }
    drop(fleet);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Phase 2: everyone on one key.
    let one = vec!["watched/all".to_string()];
    put(client, http, &one[0], "initial").await?;
    let mut fleet = launch(client, http, watchers, &one).await?;
    let (mut broadcast, _) = round(client, http, &mut fleet, &one[0], |_| true, watchers).await?;
    for task in &fleet.tasks {
        task.abort();
    }

    spread.sort_by(f64::total_cmp);
    broadcast.sort_by(f64::total_cmp);
    let per_watcher_bytes = (parked_kib.saturating_sub(idle_kib) * 1024) as f64 / watchers as f64;
    let per_key = watchers / watch_keys;
    let lines = vec![
        format!("watchers: {watchers} parked connections, agent RSS {idle_kib} KiB idle -> {parked_kib} KiB parked = {per_watcher_bytes:.0} B per parked watcher"),
        format!("unrelated writes: {UNRELATED_WRITES} writes to other keys woke {unrelated_wakes} watchers"),
        format!(
            "one write wakes its {per_key} watchers ({SPREAD_ROUNDS} rounds, n={}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {strays} other watchers woke",
            spread.len(),
            percentile(&spread, 50.0),
            percentile(&spread, 99.0),
            percentile(&spread, 100.0)
        ),
        format!(
            "one write wakes all {watchers} watchers of one key: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(&broadcast, 50.0),
            percentile(&broadcast, 99.0),
            percentile(&broadcast, 100.0)
        ),
    ];
    let json = format!(
        r#"{{"watchers":{watchers},"watch_keys":{watch_keys},"rss_idle_kib":{idle_kib},"rss_parked_kib":{parked_kib},"bytes_per_watcher":{per_watcher_bytes:.0},"unrelated_writes":{UNRELATED_WRITES},"unrelated_wakes":{unrelated_wakes},"stray_wakes":{strays},"wake_ms":{{"n":{},"p50":{:.3},"p99":{:.3},"max":{:.3}}},"broadcast_wake_ms":{{"n":{},"p50":{:.3},"p99":{:.3},"max":{:.3}}}}}"#,
        spread.len(),
        percentile(&spread, 50.0),
        percentile(&spread, 99.0),
        percentile(&spread, 100.0),
        broadcast.len(),
        percentile(&broadcast, 50.0),
        percentile(&broadcast, 99.0),
        percentile(&broadcast, 100.0)
    );
    Ok(Report { lines, json })
}
