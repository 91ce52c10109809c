//! `cairn-bench --seed-ui-catalog` and `--ui-summary`: the dashboard's large catalog (issue 14:
//! "the services page complete with health in under 1 s for 5,000 services / 20,000
//! instances / 500 nodes").
//!
//! ```text
//! cairn-bench --seed-ui-catalog [--http 127.0.0.1:8500] [--services 5000] [--instances 20000] [--nodes 500] [--token T]
//! cairn-bench --ui-summary [--services 5000] [--instances 20000] [--nodes 500] [--rounds 20]
//! ```
//!
//! `--seed-ui-catalog` registers the catalog into a running agent through
//! `PUT /v1/catalog/register`, [`SEED_WORKERS`] requests in flight (concurrent writes share
//! Raft entries), then times one `GET /v1/internal/ui/services`, and prints one JSON line.
//! Instance `k` is instance `j = k / services` of service `s = k mod services` (`svc-<s>`, ID
//! `svc-<s>-<j>`), on node `n-<(131 j + s) mod nodes>`, so a service's instances sit on
//! distinct nodes. Each instance has two checks, `alive` (critical for every 50th instance)
//! and `http` (warning for every 20th); the rest pass.
//!
//! `--ui-summary` builds the same catalog in this process (the pure `catalog::apply`) and
//! times the pure summaries (`catalog::ui_summary`) over `--rounds` runs: the cost of one
//! dashboard answer before JSON.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cairn::catalog::command::{CheckRegistration, Command, Registration, ServiceRegistration};
use cairn::catalog::model::{CheckDefinition, HealthStatus};
use cairn::catalog::{Catalog, ChangeSet, apply, ui_summary};
use serde_json::{Value, json};

/// Registrations in flight while seeding.
const SEED_WORKERS: usize = 64;
/// Each registration may take at most this long.
const SEED_REQUEST_TIMEOUT_S: u64 = 30;

struct Args {
    http: String,
    services: usize,
    instances: usize,
    nodes: usize,
    rounds: usize,
    token: Option<String>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args { http: "127.0.0.1:8500".into(), services: 5_000, instances: 20_000, nodes: 500, rounds: 20, token: None };
    let number = |flag: &str, text: String| text.parse::<usize>().map_err(|e| format!("--{flag}: {e}"));
    crate::walk_flags(args, |flag, value| {
        match flag {
            "seed-ui-catalog" | "ui-summary" => {}
            "http" => parsed.http = value()?,
            "token" => parsed.token = Some(value()?),
            "services" => parsed.services = number(flag, value()?)?,
            "instances" => parsed.instances = number(flag, value()?)?,
            "nodes" => parsed.nodes = number(flag, value()?)?,
            "rounds" => parsed.rounds = number(flag, value()?)?.max(1),
            other => return Err(format!("unknown flag --{other} for --seed-ui-catalog / --ui-summary")),
        }
        Ok(())
    })?;
    if parsed.services == 0 || parsed.nodes == 0 {
        return Err("--services and --nodes must be at least 1".into());
    }
    Ok(parsed)
}

/// One instance of the generated catalog.
struct Instance {
    node: String,
    address: String,
    id: String,
    name: String,
    tags: Vec<String>,
    /// (check ID suffix, status)
    checks: [(&'static str, HealthStatus); 2],
}

fn instance(args: &Args, k: usize) -> Instance {
    let (j, s) = (k / args.services, k % args.services);
    let node = (131 * j + s) % args.nodes;
    let alive = if k % 50 == 0 { HealthStatus::Critical } else { HealthStatus::Passing };
    let http = if k % 20 == 0 { HealthStatus::Warning } else { HealthStatus::Passing };
    Instance {
        node: format!("n-{node}"),
        address: format!("10.{}.{}.{}", node / 65_536 % 256, node / 256 % 256, node % 256),
        id: format!("svc-{s}-{j}"),
        name: format!("svc-{s}"),
        tags: vec![format!("v{}", j % 3), format!("team-{}", s % 20)],
        checks: [("alive", alive), ("http", http)],
    }
}

fn registration_json(instance: &Instance) -> Value {
    let checks: Vec<Value> = instance
        .checks
        .iter()
        .map(|(suffix, status)| json!({"CheckID": format!("{}-{suffix}", instance.id), "Name": suffix, "ServiceID": instance.id, "Status": status.as_str()}))
        .collect();
    json!({
        "Node": instance.node,
        "Address": instance.address,
        "Service": {"ID": instance.id, "Service": instance.name, "Tags": instance.tags, "Port": 8080},
        "Checks": checks,
    })
}

pub(crate) async fn seed_main(args: &[String]) -> std::process::ExitCode {
    crate::exit_status(match parse(args) {
        Ok(args) => seed(args).await,
        Err(message) => Err(message),
    })
}

async fn seed(args: Args) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(SEED_WORKERS * 2)
        .timeout(Duration::from_secs(SEED_REQUEST_TIMEOUT_S))
        .build()
        .map_err(|e| e.to_string())?;
    let args = Arc::new(args);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..SEED_WORKERS {
        let (client, args, next, errors) = (client.clone(), args.clone(), next.clone(), errors.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= args.instances {
                    return;
                }
                let mut request = client.put(format!("http://{}/v1/catalog/register", args.http)).body(registration_json(&instance(&args, k)).to_string());
                if let Some(token) = &args.token {
                    request = request.header("X-Consul-Token", token);
                }
                let ok = request.send().await.is_ok_and(|r| r.status().is_success());
                if !ok && errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("cairn-bench: a registration failed (instance {k}); counting the rest");
                }
            }
        }));
    }
    for worker in workers {
        worker.await.map_err(|e| e.to_string())?;
    }
    let seed_s = started.elapsed().as_secs_f64();
    let (ui_ms, bytes, summaries) = time_ui_services(&client, &args).await?;
    let summary = json!({
        "services": args.services,
        "instances": args.instances,
        "nodes": args.nodes,
        "checks": args.instances * 2,
        "errors": errors.load(Ordering::Relaxed),
        "seed_s": (seed_s * 100.0).round() / 100.0,
        "registrations_per_s": (args.instances as f64 / seed_s).round(),
        "ui_services_ms": (ui_ms * 10.0).round() / 10.0,
        "ui_services_bytes": bytes,
        "ui_services_entries": summaries,
        "http": args.http,
    });
    println!("{summary}");
    Ok(())
}

/// One `GET /v1/internal/ui/services`: milliseconds, body bytes, entries.
async fn time_ui_services(client: &reqwest::Client, args: &Args) -> Result<(f64, usize, usize), String> {
    let started = Instant::now();
    let mut request = client.get(format!("http://{}/v1/internal/ui/services", args.http));
    if let Some(token) = &args.token {
        request = request.header("X-Consul-Token", token);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("GET /v1/internal/ui/services answered {}", response.status()));
    }
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let entries = serde_json::from_slice::<Vec<Value>>(&body).map_err(|e| e.to_string())?.len();
    Ok((ms, body.len(), entries))
}

pub(crate) fn summary_main(args: &[String]) -> std::process::ExitCode {
    crate::exit_status(parse(args).map(|args| measure_summaries(&args)))
}

/// The generated catalog, applied in this process.
fn build_catalog(args: &Args) -> Catalog {
    let mut catalog = Catalog::new();
    for k in 0..args.instances {
        let instance = instance(args, k);
        let checks = instance.checks.iter().map(|(suffix, status)| CheckRegistration {
            check_id: format!("{}-{suffix}", instance.id),
            name: suffix.to_string(),
            status: *status,
            notes: String::new(),
            output: String::new(),
            service_id: instance.id.clone(),
            definition: CheckDefinition::default(),
        });
        let command = Command::Register(Registration {
            node_id: String::new(),
            node: instance.node.clone(),
            address: instance.address.clone(),
            datacenter: "dc1".into(),
            tagged_addresses: BTreeMap::new(),
            node_meta: BTreeMap::new(),
            skip_node_update: false,
            service: Some(ServiceRegistration {
                id: instance.id.clone(),
                name: instance.name.clone(),
                tags: instance.tags.clone(),
                port: 8080,
                ..Default::default()
            }),
            checks: checks.collect(),
        });
        apply(&mut catalog, k as u64 + 1, &command, &mut ChangeSet::new());
    }
    catalog
}

fn measure_summaries(args: &Args) {
    let catalog = build_catalog(args);
    let time = |run: &dyn Fn() -> usize| -> (f64, usize) {
        let mut samples: Vec<f64> = Vec::new();
        let mut size = 0;
        for _ in 0..args.rounds {
            let started = Instant::now();
            size = run();
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        samples.sort_by(f64::total_cmp);
        (samples[samples.len() / 2], size)
    };
    let (services_ms, services) = time(&|| ui_summary::service_summaries(&catalog, |_| true).len());
    let (nodes_ms, nodes) = time(&|| ui_summary::node_infos(&catalog).len());
    let (overview_ms, _) = time(&|| ui_summary::catalog_overview(&catalog).services.len());
    let summary = json!({
        "services": args.services, "instances": args.instances, "nodes": args.nodes, "rounds": args.rounds,
        "service_summaries_p50_ms": (services_ms * 100.0).round() / 100.0, "service_summaries": services,
        "node_infos_p50_ms": (nodes_ms * 100.0).round() / 100.0, "node_infos": nodes,
        "catalog_overview_p50_ms": (overview_ms * 100.0).round() / 100.0,
    });
    println!("{summary}");
}
