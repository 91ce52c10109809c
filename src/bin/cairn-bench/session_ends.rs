//! `cairn-bench --session-ends`: how long the pure `catalog::apply` takes to end one session
//! in a large KV store, the work a server does inside its Raft apply loop (every write waits
//! behind it).
//!
//! ```text
//! cairn-bench --session-ends [--keys 1000000] [--samples 200] [--held 1]
//! ```
//!
//! It builds, in this process, a catalog of one node (`n-0`, with a passing node check
//! `serfHealth`) and `--keys` KV keys. Then, per sample, a session bound to that check, with
//! Consul's default lock-delay (15 s), locks `--held` consecutive keys, and two ways to end a
//! session are timed:
//! - **destroy**: `Command::SessionDestroy` (`PUT /v1/session/destroy`, or a TTL expiring);
//! - **check critical**: the node check goes critical (a failed node), which ends every session
//!   bound to it. The check is set passing again, untimed, after each sample.
//!
//! The clock stamped into the commands moves a minute per session, past any lock-delay. Each
//! sample's keys must come back unlocked, each under a lock-delay, or the run fails. Prints the percentiles in
//! microseconds and one `RESULT {...}` JSON line.

use std::collections::BTreeMap;
use std::time::Instant;

use cairn::catalog::command::{CheckRegistration, Command, Registration, SessionRequest};
use cairn::catalog::kv::KV_LOCK_DELAY_MS_MAX;
use cairn::catalog::model::{CheckDefinition, HealthStatus, SessionBehavior};
use cairn::catalog::{Catalog, ChangeSet, apply};
use serde_json::json;

/// KV keys written in one `Command::Batch` while building the catalog.
const BUILD_BATCH_KEYS: usize = 1_000;
/// The node check every session is bound to.
const NODE_CHECK: &str = "serfHealth";
/// Each session's lock-delay: Consul's default.
const LOCK_DELAY_MS: u64 = 15_000;

struct Args {
    keys: usize,
    samples: usize,
    /// Keys each session locks.
    held: usize,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut parsed = Args { keys: 1_000_000, samples: 200, held: 1 };
    let number = |flag: &str, text: String| text.parse::<usize>().map_err(|e| format!("--{flag}: {e}"));
    crate::walk_flags(args, |flag, value| {
        match flag {
            "session-ends" => {}
            "keys" => parsed.keys = number(flag, value()?)?,
            "samples" => parsed.samples = number(flag, value()?)?,
            "held" => parsed.held = number(flag, value()?)?,
            other => return Err(format!("unknown flag --{other} for --session-ends")),
        }
        Ok(())
    })?;
    if parsed.keys == 0 || parsed.samples == 0 || parsed.held == 0 {
        return Err("--keys, --samples and --held must be at least 1".into());
    }
    if parsed.held > parsed.keys {
        return Err("--held cannot be more than --keys".into());
    }
    Ok(parsed)
}

pub(crate) fn main(args: &[String]) -> std::process::ExitCode {
    crate::exit_status(parse(args).and_then(|args| run(&args)))
}

/// The catalog under test, the last Raft index applied, and the proposers' clock.
struct Bench {
    catalog: Catalog,
    index: u64,
    now_ms: u64,
}

impl Bench {
    fn apply(&mut self, command: &Command) {
        self.index += 1;
        apply(&mut self.catalog, self.index, command, &mut ChangeSet::new());
    }

    /// Applies `command` and returns how long that took, in microseconds.
    fn time(&mut self, command: &Command) -> f64 {
        self.index += 1;
        let mut changes = ChangeSet::new();
        let started = Instant::now();
        apply(&mut self.catalog, self.index, command, &mut changes);
        started.elapsed().as_secs_f64() * 1e6
    }
}

fn key(k: usize) -> String {
    format!("app/config/{:08}", k)
}

fn node_check(status: HealthStatus) -> Command {
    let check = CheckRegistration {
        check_id: NODE_CHECK.into(),
        name: "Serf Health Status".into(),
        status,
        notes: String::new(),
        output: String::new(),
        service_id: String::new(),
        definition: CheckDefinition::default(),
    };
    Command::Register(Registration {
        node_id: String::new(),
        node: "n-0".into(),
        address: "10.0.0.1".into(),
        datacenter: "dc1".into(),
        tagged_addresses: BTreeMap::new(),
        node_meta: BTreeMap::new(),
        skip_node_update: false,
        service: None,
        checks: vec![check],
    })
}

fn build(args: &Args) -> Bench {
    let mut bench = Bench { catalog: Catalog::new(), index: 0, now_ms: 1_800_000_000_000 };
    bench.apply(&node_check(HealthStatus::Passing));
    let value = vec![b'v'; 64];
    for first in (0..args.keys).step_by(BUILD_BATCH_KEYS) {
        let last = (first + BUILD_BATCH_KEYS).min(args.keys);
        let sets = (first..last).map(|k| Command::KvSet { key: key(k), value: value.clone(), flags: 0, cas_index: None });
        bench.apply(&Command::Batch(sets.collect()));
    }
    bench
}

/// The keys a session of sample `k` locks.
fn held_keys(args: &Args, k: usize) -> impl Iterator<Item = String> {
    (k..k + args.held).map(|k| key(k % args.keys))
}

/// Moves the clock past any lock-delay, creates session `id` bound to the node check and
/// locks the sample's keys with it.
fn hold(bench: &mut Bench, args: &Args, id: &str, k: usize) -> Result<(), String> {
    bench.now_ms += KV_LOCK_DELAY_MS_MAX + 1;
    let request = SessionRequest {
        id: id.into(),
        name: "bench".into(),
        node: "n-0".into(),
        node_checks: vec![NODE_CHECK.into()],
        service_checks: Vec::new(),
        lock_delay_ms: LOCK_DELAY_MS,
        behavior: SessionBehavior::Release,
        ttl_s: 0,
    };
    bench.apply(&Command::SessionCreate(request));
    for key in held_keys(args, k) {
        bench.apply(&Command::KvLock { key: key.clone(), value: b"held".to_vec(), flags: 0, session: id.into(), now_ms: bench.now_ms });
        if bench.catalog.kv_get(&key).and_then(|e| e.session.as_deref()) != Some(id) {
            return Err(format!("session {id} could not lock {key}"));
        }
    }
    Ok(())
}

/// Every key of the sample is unlocked, and refuses a lock during its lock-delay.
fn released(bench: &mut Bench, args: &Args, k: usize) -> Result<(), String> {
    for key in held_keys(args, k) {
        if bench.catalog.kv_get(&key).is_none_or(|entry| entry.session.is_some()) {
            return Err(format!("{key} is still locked after its session ended"));
        }
    }
    let first = key(k);
    bench.apply(&Command::SessionCreate(SessionRequest {
        id: "probe".into(),
        name: String::new(),
        node: "n-0".into(),
        node_checks: Vec::new(),
        service_checks: Vec::new(),
        lock_delay_ms: 0,
        behavior: SessionBehavior::Release,
        ttl_s: 0,
    }));
    bench.apply(&Command::KvLock { key: first.clone(), value: Vec::new(), flags: 0, session: "probe".into(), now_ms: bench.now_ms });
    let refused = bench.catalog.kv_get(&first).is_some_and(|e| e.session.is_none());
    bench.apply(&Command::SessionDestroy { session: "probe".into(), now_ms: bench.now_ms });
    if refused { Ok(()) } else { Err(format!("{first} was locked again during its lock-delay")) }
}

fn percentiles(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
    (at(0.5), at(0.99), at(1.0))
}

fn run(args: &Args) -> Result<(), String> {
    let started = Instant::now();
    let mut bench = build(args);
    eprintln!("cairn-bench: {} keys applied in {:.1} s; {} held per session", args.keys, started.elapsed().as_secs_f64(), args.held);
    let (mut destroy_us, mut critical_us) = (Vec::new(), Vec::new());
    for sample in 0..args.samples {
        // Spread the locked keys over the whole key space.
        let k = sample * 7_919 % args.keys;
        let id = format!("00000000-0000-4000-8000-{sample:012}");
        hold(&mut bench, args, &id, k)?;
        destroy_us.push(bench.time(&Command::SessionDestroy { session: id.clone(), now_ms: bench.now_ms }));
        released(&mut bench, args, k)?;

        let id = format!("00000000-0000-4000-9000-{sample:012}");
        hold(&mut bench, args, &id, k)?;
        critical_us.push(bench.time(&node_check(HealthStatus::Critical).stamped(bench.now_ms)));
        released(&mut bench, args, k)?;
        if bench.catalog.session(&id).is_some() {
            return Err(format!("session {id} outlived its critical check"));
        }
        bench.apply(&node_check(HealthStatus::Passing));
    }
    let (destroy, critical) = (percentiles(destroy_us), percentiles(critical_us));
    println!("  {:<16} {:>10} {:>10} {:>10}", "end by", "p50 µs", "p99 µs", "max µs");
    println!("  {:<16} {:>10.1} {:>10.1} {:>10.1}", "destroy", destroy.0, destroy.1, destroy.2);
    println!("  {:<16} {:>10.1} {:>10.1} {:>10.1}", "check critical", critical.0, critical.1, critical.2);
    let result = json!({
        "keys": args.keys, "samples": args.samples, "held": args.held,
        "destroy_p50_us": destroy.0, "destroy_p99_us": destroy.1, "destroy_max_us": destroy.2,
        "check_critical_p50_us": critical.0, "check_critical_p99_us": critical.1, "check_critical_max_us": critical.2,
    });
    println!("RESULT {result}");
    Ok(())
}
