//! `cairn-bench --gossip-sim`: cairn's LAN gossip (foca, configured by
//! `gossip::timing::foca_config(N, &GossipTiming::lan_default())`) on a simulated LAN of N
//! members in one process, against memberlist's (Consul's) default timings.
//!
//! ```text
//! cairn-bench --gossip-sim [--members 1000,5000] [--trials 10] [--sim-minutes 10] [--loss 0.05]
//!             [--latency-ms 0.2,2] [--identity-bytes 25] [--seed 1]
//!             [--no-notify-down | --foca-stale-timers]
//! ```
//! Every due timer goes through `gossip::suspicion::timer_still_due` before foca sees it, as in
//! the gossip task: a `ChangeSuspectToDown` for a member that refuted is dropped, because foca
//! 2.0.0 would still send it `TurnUndead` (see `network::Counters`). Two experiments show the
//! alternatives: `--foca-stale-timers` hands every timer to foca (foca 2.0.0 alone, the
//! "before"); `--no-notify-down` turns `notify_down_members` off in `foca_config`'s result.
//!
//! The network (`gossip_sim/network.rs`): simulated clock, one priority queue of timers and
//! packets, each packet lost with probability `--loss` or delivered after a one-way latency
//! drawn uniformly from `--latency-ms`, all from `--seed`. Members use a small simulated
//! identity (member number + generation, renewed on a false down so the member rejoins, as
//! `gossip::identity::NodeId` does) whose wire size is `--identity-bytes`: 25 B is the postcard
//! size of a `NodeId` named `node-1234` with an IPv4 address and a microsecond bump
//! (`gossip_sim/identity.rs`). Not modelled: the gossip module's own RTT ping/pong, custom
//! broadcasts (tags, leave intents, user events), push/pull, and `set_config` as the pool
//! changes (the pool size is fixed per run).
//!
//! Per pool size N it measures, in this order:
//! 1. **bootstrap**: every member gets the full roster (`apply_many`), timers start at random
//!    phases; after 30 simulated seconds every view must be full.
//! 2. **steady state** for `--sim-minutes` with no failure: down notifications about running
//!    members (false failures: notifications, distinct identities, rejoins) and the foca payload
//!    bytes and packets sent per member per simulated second.
//! 3. **failure detection**, `--trials` times: a random running member stops (sends and answers
//!    nothing more); the time until each other member gets `MemberDown` for it. Per trial the
//!    time until *every* member knows; p50/p99 over trials, and p50 over all members' times.
//!    Trials run one after another in the same pool (victims stay down), 20 s apart plus a
//!    random phase; the victim and the phase come from the seed.
//!
//! The anchor is memberlist's (Consul's LAN defaults) expected time for every member to know,
//! from the same `GossipTiming`: `probe interval + suspicion timeout + dissemination`, where
//! suspicion timeout = `suspicion_mult × max(1, log10 N) × probe interval` (Lifeguard starts at
//! 6× that and shrinks it towards 1× as other members confirm), and dissemination =
//! `retransmit_mult × log10(N + 1)` gossip rounds of `gossip_interval`. For N = 1000 that is
//! 1 + 12 + 2.4 = 15.4 s (75.4 s at Lifeguard's 6×). The target: p99 of "every member knows"
//! within the 1× anchor, and no false failures at 5% loss.
//!
//! Output: a table and one `RESULT {json}` line, like the other modes.

mod identity;
mod network;
mod report;

use std::time::{Duration, Instant};

use rand010::rngs::SmallRng;
use rand010::{RngExt, SeedableRng};

use cairn::gossip::timing::{GossipTiming, foca_config};

use network::{NetworkConfig, Pool};

/// Simulated time after the bootstrap before anything is measured.
const WARMUP_S: u64 = 30;
/// A trial that has not reached every member this long after the stop counts as undetected.
const DETECTION_TIMEOUT_S: u64 = 300;
/// Simulated time between the end of one trial and the next stop (plus up to a probe period).
const TRIAL_SETTLE_S: u64 = 20;
/// Largest pool the simulator accepts (memory: one foca with the full roster per member).
const MEMBERS_MAX: usize = 20_000;

/// The flags of `--gossip-sim`; see the module doc.
pub(crate) struct GossipSimArgs {
    pub(crate) members: Vec<usize>,
    pub(crate) trials: usize,
    pub(crate) sim_minutes: f64,
    pub(crate) loss: f64,
    pub(crate) latency_ms: (f64, f64),
    pub(crate) identity_bytes: usize,
    pub(crate) seed: u64,
    /// Turns foca's `notify_down_members` off on top of `foca_config` (an experiment).
    pub(crate) no_notify_down: bool,
    /// Hands stale suspicion timers to foca too, as foca 2.0.0 alone would (an experiment).
    pub(crate) foca_stale_timers: bool,
}

/// What one pool size measured.
pub(crate) struct PoolResult {
    members: usize,
    foca: foca::Config,
    /// Per trial: seconds until every running member knew (the timeout if some never did).
    all_know_s: Vec<f64>,
    undetected_trials: usize,
    /// Every member's time to learn, over all trials (the timeout for those that never did).
    per_member_s: Vec<f64>,
    trial_false_down_notifications: u64,
    steady: network::Counters,
    steady_s: f64,
    wall: Duration,
}

impl GossipSimArgs {
    /// Reads the flags after the program name; `--gossip-sim` itself is accepted and ignored.
    pub(crate) fn parse(args: &[String]) -> Result<GossipSimArgs, String> {
        let mut parsed = GossipSimArgs {
            members: vec![1000, 5000],
            trials: 10,
            sim_minutes: 10.0,
            loss: 0.05,
            latency_ms: (0.2, 2.0),
            identity_bytes: 25,
            seed: 1,
            no_notify_down: false,
            foca_stale_timers: false,
        };
        crate::walk_flags(args, |flag, value| {
            match flag {
                "gossip-sim" => {}
                "no-notify-down" => parsed.no_notify_down = true,
                "foca-stale-timers" => parsed.foca_stale_timers = true,
                "members" => parsed.members = parse_list(flag, &value()?)?,
                "trials" => parsed.trials = parse_one(flag, &value()?)?,
                "sim-minutes" => parsed.sim_minutes = parse_one(flag, &value()?)?,
                "loss" => parsed.loss = parse_one(flag, &value()?)?,
                "identity-bytes" => parsed.identity_bytes = parse_one(flag, &value()?)?,
                "seed" => parsed.seed = parse_one(flag, &value()?)?,
                "latency-ms" => match parse_list::<f64>(flag, &value()?)?[..] {
                    [low, high] => parsed.latency_ms = (low, high),
                    _ => return Err("--latency-ms takes two values: LOW,HIGH".into()),
                },
                other => return Err(format!("unknown flag --{other} for --gossip-sim")),
            }
            Ok(())
        })?;
        parsed.validate()?;
        Ok(parsed)
    }

    fn validate(&self) -> Result<(), String> {
        if self.no_notify_down && self.foca_stale_timers {
            return Err("--no-notify-down and --foca-stale-timers are two separate experiments: pick one".into());
        }
        if self.members.iter().any(|members| !(3..=MEMBERS_MAX).contains(members)) {
            return Err(format!("--members: each pool needs 3..={MEMBERS_MAX} members"));
        }
        if !(0.0..1.0).contains(&self.loss) {
            return Err("--loss must be in [0, 1)".into());
        }
        let (low, high) = self.latency_ms;
        if !(low.is_finite() && high.is_finite() && 0.0 < low && low <= high && high < 1000.0) {
            return Err("--latency-ms must be 0 < LOW <= HIGH < 1000".into());
        }
        if self.members.iter().any(|members| self.trials + 2 > *members) {
            return Err("--trials must leave at least two members running".into());
        }
        if !(self.sim_minutes.is_finite() && self.sim_minutes > 0.0) {
            return Err("--sim-minutes must be positive".into());
        }
        Ok(())
    }
}

fn parse_one<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value.trim().parse().map_err(|e| format!("--{flag}: {e}"))
}

fn parse_list<T: std::str::FromStr>(flag: &str, value: &str) -> Result<Vec<T>, String>
where
    T::Err: std::fmt::Display,
{
    value.split(',').map(|item| parse_one(flag, item)).collect()
}

/// Runs every pool size in turn, then prints the table and the `RESULT` line.
pub(crate) fn run(args: &GossipSimArgs) -> Result<(), String> {
    let timing = GossipTiming::lan_default();
    let mut results = Vec::new();
    for &members in &args.members {
        let result = run_pool(members, &timing, args)?;
        eprintln!("gossip-sim: N={members} done in {:.0} s of wall time", result.wall.as_secs_f64());
        results.push(result);
    }
    report::print(args, &timing, &results);
    Ok(())
}

fn run_pool(members: usize, timing: &GossipTiming, args: &GossipSimArgs) -> Result<PoolResult, String> {
    let started = Instant::now();
    let mut foca = foca_config(members, timing);
    if args.no_notify_down {
        foca.notify_down_members = false;
    }
    let latency_ns = ((args.latency_ms.0 * 1e6) as u64, (args.latency_ms.1 * 1e6) as u64);
    let foca_stale_timers = args.foca_stale_timers;
    let network = NetworkConfig { loss: args.loss, latency_ns, seed: args.seed, foca_stale_timers };
    let mut pool = Pool::new(members, &foca, args.identity_bytes, &network);
    pool.bootstrap(foca.probe_period)?;
    pool.run_until(Duration::from_secs(WARMUP_S));
    if !pool.views_are_full() {
        return Err(format!("N={members}: views are not full {WARMUP_S} s after the bootstrap"));
    }
    eprintln!("gossip-sim: N={members} bootstrapped in {:.0} s of wall time", started.elapsed().as_secs_f64());

    pool.take_counters();
    let steady_s = args.sim_minutes * 60.0;
    pool.run_until(pool.now() + Duration::from_secs_f64(steady_s));
    let steady = pool.take_counters();
    eprintln!("gossip-sim: N={members} steady state done at {:.0} s of wall time", started.elapsed().as_secs_f64());

    let mut result = PoolResult {
        members,
        all_know_s: Vec::new(),
        undetected_trials: 0,
        per_member_s: Vec::new(),
        trial_false_down_notifications: 0,
        steady,
        steady_s,
        wall: Duration::ZERO,
        foca,
    };
    run_trials(&mut pool, args, &mut result);
    result.wall = started.elapsed();
    Ok(result)
}

/// Stops one random running member per trial and records who learnt it when.
fn run_trials(pool: &mut Pool, args: &GossipSimArgs, result: &mut PoolResult) {
    let mut rng = SmallRng::seed_from_u64(args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ result.members as u64);
    let phase_ns_max = result.foca.probe_period.as_nanos() as u64;
    for _ in 0..args.trials {
        let phase = Duration::from_nanos(rng.random_range(0..phase_ns_max));
        pool.run_until(pool.now() + phase);
        let victim = loop {
            let candidate = rng.random_range(0..pool.member_count());
            if !pool.is_stopped(candidate) {
                break candidate;
            }
        };
        pool.stop_and_watch(victim);
        let learnt = pool.run_until_known(Duration::from_secs(DETECTION_TIMEOUT_S));
        // A member that never learnt counts as the timeout: a lower bound, flagged as undetected.
        let timeout_s = DETECTION_TIMEOUT_S as f64;
        let times_s: Vec<f64> = learnt.iter().map(|time| time.map_or(timeout_s, |time| time.as_secs_f64())).collect();
        if learnt.iter().any(Option::is_none) {
            result.undetected_trials += 1;
        }
        result.all_know_s.push(times_s.iter().copied().fold(0.0, f64::max));
        result.per_member_s.extend(times_s);
        pool.run_until(pool.now() + Duration::from_secs(TRIAL_SETTLE_S));
    }
    result.trial_false_down_notifications = pool.counters().false_down_notifications;
}
