//! `cairn-bench --dns-scale`: DNS with a large catalog (issue 12: "a catalog of 5,000
//! services / 50,000 instances: the time a single registration takes to show in DNS (p50/p99
//! of 100), and the agent's RSS, side by side with the empty catalog").
//!
//! ```text
//! cairn-bench --dns-scale [--services 5000] [--instances 10] [--samples 100] [--out DIR]
//! ```
//!
//! One cairn server (the binary next to this one). First, with the empty catalog: RSS, then
//! `--samples` times a service registered through `/v1/agent/service/register` and the time
//! from its 200 OK until an SRV query for it is answered. Then `--services` services of
//! `--instances` instances each are registered in the catalog (instance k of all of them goes
//! to node `n<k / instances>`, service `svc-<k mod services>`: 5,000 nodes of 10 services
//! each, every service on 10 nodes), and the same measurements run again.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::Cluster;

/// Registrations in flight while the catalog is loaded.
const LOAD_WORKERS: usize = 64;
/// How long a registration may take to show in DNS before the sample counts as lost.
const VISIBLE_TIMEOUT_MS: u64 = 10_000;

struct Args {
    services: usize,
    instances: usize,
    samples: usize,
    out: Option<std::path::PathBuf>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args { services: 5_000, instances: 10, samples: 100, out: None };
    crate::walk_flags(args, |flag, value| {
        match flag {
            "dns-scale" => {}
            "services" => parsed.services = value()?.parse().map_err(|e| format!("--services: {e}"))?,
            "instances" => parsed.instances = value()?.parse().map_err(|e| format!("--instances: {e}"))?,
            "samples" => parsed.samples = value()?.parse().map_err(|e| format!("--samples: {e}"))?,
            "out" => parsed.out = Some(value()?.into()),
            other => return Err(format!("unknown flag --{other} for --dns-scale")),
        }
        Ok(())
    })?;
    Ok(parsed)
}

pub(crate) async fn main(args: &[String]) -> std::process::ExitCode {
    crate::exit_status(match parse(args) {
        Ok(args) => run(&args).await,
        Err(message) => Err(message),
    })
}

/// One state's figures: RSS and the visibility samples (sorted, ms).
struct Measured {
    rss_kib: u64,
    visible_ms: Vec<f64>,
}

impl Measured {
    fn percentile(&self, p: f64) -> f64 {
        if self.visible_ms.is_empty() {
            return f64::NAN;
        }
        self.visible_ms[((p / 100.0) * (self.visible_ms.len() - 1) as f64).round() as usize]
    }
}

async fn run(args: &Args) -> Result<(), String> {
    let cluster = Cluster::start_with(1, "")?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(LOAD_WORKERS * 2).build().map_err(|e| e.to_string())?;
    cluster.leader(&client, Duration::from_secs(30)).await.ok_or("cairn elected no leader")?;
    let (http, dns) = (cluster.http_of(0), cluster.dns_of(0));
    let pid = cluster.pid_of(0).ok_or("no agent process")?;
    let empty = measure(&client, &http, dns, pid, args.samples, "empty").await?;
    let started = Instant::now();
    load(&client, &http, args.services, args.instances).await?;
    let load_s = started.elapsed().as_secs_f64();
    let held = catalog_services(&client, &http).await?;
    if held < args.services * args.instances {
        return Err(format!("the catalog holds {held} service instances after the load, not {}", args.services * args.instances));
    }
    println!("loaded {} services x {} instances in {load_s:.1} s (the catalog holds {held} instances)", args.services, args.instances);
    let loaded = measure(&client, &http, dns, pid, args.samples, "loaded").await?;
    println!("  {:<28} {:>10} {:>10} {:>10} {:>9}", "catalog", "RSS MiB", "p50 ms", "p99 ms", "samples");
    for (name, m) in [("empty", &empty), (&*format!("{} x {}", args.services, args.instances), &loaded)] {
        println!("  {name:<28} {:>10.1} {:>10.2} {:>10.2} {:>9}", m.rss_kib as f64 / 1024.0, m.percentile(50.0), m.percentile(99.0), m.visible_ms.len());
    }
    let row = |m: &Measured| json!({ "rss_kib": m.rss_kib, "visible_p50_ms": m.percentile(50.0), "visible_p99_ms": m.percentile(99.0), "samples": m.visible_ms.len() });
    let result = json!({ "services": args.services, "instances": args.instances, "load_s": load_s, "empty": row(&empty), "loaded": row(&loaded) });
    println!("RESULT {result}");
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
        std::fs::write(out.join("dns-scale.json"), serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The service instances the catalog holds (`/v1/agent/self`'s `Stats.catalog.services`).
async fn catalog_services(client: &reqwest::Client, http: &str) -> Result<usize, String> {
    let me: serde_json::Value = client.get(format!("http://{http}/v1/agent/self")).send().await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
    me["Stats"]["catalog"]["services"].as_str().and_then(|n| n.parse().ok()).ok_or_else(|| "no Stats.catalog.services in /v1/agent/self".to_string())
}

/// RSS, then `samples` registrations timed until DNS answers them.
async fn measure(client: &reqwest::Client, http: &str, dns: std::net::SocketAddr, pid: u32, samples: usize, label: &str) -> Result<Measured, String> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_kib = crate::rss_kib(pid)?;
    let mut visible_ms = Vec::new();
    for i in 0..samples {
        let name = format!("probe-{label}-{i}");
        let body = json!({ "Name": name, "Port": 7000 + i });
        let response = client.put(format!("http://{http}/v1/agent/service/register")).json(&body).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("registering {name}: {}", response.status()));
        }
        let acknowledged = Instant::now();
        while acknowledged.elapsed() < Duration::from_millis(VISIBLE_TIMEOUT_MS) {
            if crate::dns_answers(dns, &format!("{name}.service.consul.")).await {
                visible_ms.push(acknowledged.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    visible_ms.sort_by(|a, b| a.total_cmp(b));
    Ok(Measured { rss_kib, visible_ms })
}

/// Registers `services` x `instances` instances, `LOAD_WORKERS` requests at a time.
async fn load(client: &reqwest::Client, http: &str, services: usize, instances: usize) -> Result<(), String> {
    let total = services * instances;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..LOAD_WORKERS {
        let (client, http, next) = (client.clone(), http.to_string(), next.clone());
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    return Ok::<(), String>(());
                }
                let (service, node) = (n % services, n / instances);
                let body = json!({
                    "Node": format!("n{node}"), "Address": format!("10.{}.{}.{}", 100 + node / 65_536, (node / 256) % 256, node % 256),
                    "Service": { "ID": format!("svc-{service}"), "Service": format!("svc-{service}"), "Port": 20_000 + service % 40_000 },
                });
                let response = client.put(format!("http://{http}/v1/catalog/register")).json(&body).send().await.map_err(|e| e.to_string())?;
                if !response.status().is_success() {
                    return Err(format!("registering svc-{service} on n{node}: {}", response.status()));
                }
            }
        });
    }
    while let Some(result) = workers.join_next().await {
        result.map_err(|e| e.to_string())??;
    }
    Ok(())
}
