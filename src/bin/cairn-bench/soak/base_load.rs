//! The soak's realistic base load, so that RSS measures a working cluster: KV puts and gets on
//! a fixed set of keys, service registrations coming and going, DNS lookups, and blocking
//! queries parked on a key and on a service's health. And the probes the monitor runs every
//! few seconds: a linearizable KV write then read, and a DNS lookup, on every server.
//!
//! All of it leaves from its own loopback address ([`BASE_SOURCE`]), so the fuzzers' use of
//! the per-client connection limit never throttles it. Every request is valid: a 5xx or an
//! error here is a finding.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use rand::seq::SliceRandom;

use super::report::Tally;

/// The base load's and probes' source address (no fuzzer and no member uses it).
pub(crate) const BASE_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
/// The service every server registers and the DNS canary asks for.
pub(crate) const BASE_SERVICE: &str = "soak-base";
/// Keys the base load writes and reads.
const BASE_KEYS: usize = 100;
/// Services the churn task registers and deregisters in turn.
const CHURN_SERVICES: usize = 10;
/// Pause between two operations of one base-load task: a steady, realistic rate.
const BASE_PAUSE_MS: u64 = 5;
/// Blocking queries' wait.
const BLOCKING_WAIT: &str = "5s";
/// Longest any base-load or probe request may take.
const BASE_REQUEST_TIMEOUT_S: u64 = 30;

/// The cluster as the base load sees it.
#[derive(Clone)]
pub(crate) struct BaseTarget {
    pub(crate) client: reqwest::Client,
    /// Each server's HTTP `host:port`.
    pub(crate) https: Vec<String>,
    /// Each server's DNS address.
    pub(crate) dnss: Vec<SocketAddr>,
}

/// An HTTP client whose connections leave from [`BASE_SOURCE`].
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(BASE_SOURCE)
        .timeout(Duration::from_secs(BASE_REQUEST_TIMEOUT_S))
        .pool_max_idle_per_host(64)
        .build()
        .expect("http client")
}

/// Registers [`BASE_SERVICE`] on every server (the DNS canary's answer).
pub(crate) async fn register_base_service(target: &BaseTarget) -> Result<(), String> {
    for http in &target.https {
        let body = format!(r#"{{"ID":"{BASE_SERVICE}","Name":"{BASE_SERVICE}","Tags":["primary"],"Port":8080}}"#);
        let response = target.client.put(format!("http://{http}/v1/agent/service/register")).body(body).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("registering {BASE_SERVICE} at {http}: {}", response.status()));
        }
    }
    Ok(())
}

/// Starts the base load's tasks; they run until `stop`.
pub(crate) fn start(target: &BaseTarget, tally: &Arc<Tally>, stop: &Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for kind in [Op::KvPut, Op::KvPut, Op::KvGet, Op::KvGet, Op::Churn, Op::Dns, Op::Dns] {
        let (target, tally, stop) = (target.clone(), tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                one(&target, kind, n, &tally).await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(BASE_PAUSE_MS)).await;
            }
        }));
    }
    for (position, path) in ["/v1/kv/base/0", "/v1/kv/base/1", "/v1/health/service/soak-base", "/v1/catalog/services"].into_iter().enumerate() {
        let (target, tally, stop) = (target.clone(), tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move { blocking(&target, position, path, &tally, &stop).await }));
    }
    tasks
}

#[derive(Clone, Copy)]
enum Op {
    KvPut,
    KvGet,
    Churn,
    Dns,
}

async fn one(target: &BaseTarget, op: Op, n: usize, tally: &Tally) {
    let http = target.https.choose(&mut rand::thread_rng()).expect("a server");
    let key = format!("base/{}", n % BASE_KEYS);
    let (name, request) = match op {
        Op::KvPut => ("kv_put", target.client.put(format!("http://{http}/v1/kv/{key}")).body(vec![b'b'; 256])),
        Op::KvGet => ("kv_get", target.client.get(format!("http://{http}/v1/kv/{key}"))),
        Op::Churn => {
            let id = format!("soak-churn-{}", n % CHURN_SERVICES);
            if (n / CHURN_SERVICES).is_multiple_of(2) {
                let body = format!(r#"{{"ID":"{id}","Name":"soak-churn","Port":{},"Check":{{"TTL":"60s","Status":"passing"}}}}"#, 9000 + n % CHURN_SERVICES);
                ("register", target.client.put(format!("http://{http}/v1/agent/service/register")).body(body))
            } else {
                ("deregister", target.client.put(format!("http://{http}/v1/agent/service/deregister/{id}")))
            }
        }
        Op::Dns => {
            let dns = *target.dnss.choose(&mut rand::thread_rng()).expect("a server");
            tally.count("base.dns");
            if !dns_lookup(dns, BASE_SERVICE).await {
                tally.count("base.dns_unanswered");
            }
            return;
        }
    };
    tally.count(&format!("base.{name}"));
    match request.send().await {
        // A fuzzer may delete the base keys (a transaction's delete-tree on a confused key).
        Ok(response) if response.status().is_success() || (matches!(op, Op::KvGet) && response.status() == 404) => {
            let _ = response.bytes().await;
        }
        Ok(response) => {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            tally.count("base.failed");
            // Broken down by operation and status: most are deregistrations answered 404
            // because the service was registered with another server's agent (agent endpoints
            // are local) or a fuzzer removed it first. Those are not findings.
            tally.count(&format!("base.failed_{name}_{}", status.as_u16()));
            if status.is_server_error() {
                tally.finding("http", format!("base load {name} at {http} answered {status}: {text}"), key);
            }
        }
        Err(error) => {
            tally.count("base.failed");
            tally.finding("http", format!("base load {name} at {http} failed: {error}"), key);
        }
    }
}

/// A blocking query loop: each answer's `X-Consul-Index` is the next request's `index`.
async fn blocking(target: &BaseTarget, position: usize, path: &str, tally: &Tally, stop: &AtomicBool) {
    let http = &target.https[position % target.https.len()];
    let mut index = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tally.count("base.blocking");
        let url = format!("http://{http}{path}?index={index}&wait={BLOCKING_WAIT}");
        match target.client.get(url).send().await {
            Ok(response) if response.status().is_success() || response.status() == 404 => {
                index = response.headers().get("X-Consul-Index").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(0);
                let _ = response.bytes().await;
            }
            Ok(response) => {
                let status = response.status();
                tally.count("base.failed");
                if status.is_server_error() {
                    tally.finding("http", format!("blocking query {path} at {http} answered {status}"), "");
                }
                index = 0;
            }
            Err(error) => {
                tally.finding("http", format!("blocking query {path} at {http} failed: {error}"), "");
                index = 0;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// An SRV lookup of `service` answered with records (three tries of one second).
pub(crate) async fn dns_lookup(dns: SocketAddr, service: &str) -> bool {
    for _ in 0..3 {
        if crate::dns_answers_from(BASE_SOURCE, dns, &format!("{service}.service.consul.")).await {
            return true;
        }
    }
    false
}

/// The linearizability probe: a write through one server, then a `?consistent` read through
/// another, must see it. A read that misses it is tried once more after a second (a fuzzed
/// transaction may delete every key in between), then it is a finding.
pub(crate) async fn kv_probe(target: &BaseTarget, counter: &AtomicU64, tally: &Tally) {
    for attempt in 0..2 {
        let value = counter.fetch_add(1, Ordering::Relaxed).to_string();
        let (writer, reader) = {
            let mut rng = rand::thread_rng();
            let writer = rng.gen_range(0..target.https.len());
            (writer, (writer + 1 + rng.gen_range(0..target.https.len() - 1)) % target.https.len())
        };
        let key = format!("soak-probe/{writer}");
        let write = target.client.put(format!("http://{}/v1/kv/{key}", target.https[writer])).body(value.clone()).send().await;
        match write {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tally.finding("cluster", format!("probe write at {} answered {}", target.https[writer], response.status()), key.clone());
                return;
            }
            Err(error) => {
                tally.finding("cluster", format!("probe write at {} failed: {error}", target.https[writer]), key.clone());
                return;
            }
        }
        let read = target.client.get(format!("http://{}/v1/kv/{key}?consistent&raw", target.https[reader])).send().await;
        let seen = match read {
            Ok(response) if response.status().is_success() => response.text().await.unwrap_or_default(),
            Ok(response) => format!("status {}", response.status()),
            Err(error) => format!("error {error}"),
        };
        tally.count("probe.kv");
        if seen == value {
            return;
        }
        if attempt == 1 {
            tally.finding("cluster", format!("probe: wrote {value} at {}, a consistent read at {} saw {seen:?}", target.https[writer], target.https[reader]), key);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
