//! A bounded, coverage-free mutation fuzzer over every decoder of remote input, run by
//! `cargo test --lib` (issue 11). cargo-fuzz needs a nightly toolchain; this needs nothing.
//!
//! Each target (one file per family below) is a list of valid seeds, built from real values,
//! and a check that decodes an input and, when decoding succeeds, also does what the server
//! does next with the value (applies a command to a catalog, answers a DNS query, evaluates a
//! filter, authorizes with parsed rules). [`fuzz`] feeds it the seeds and then mutations of
//! them ([`mutate`]) for `CAIRN_FUZZ_MS` milliseconds. Inputs a target accepts join the pool,
//! so mutations reach past the first layer of a format. A target fails on:
//! - a panic, caught per input with `catch_unwind` so that the report names the input;
//! - a stack overflow: not catchable, so every target runs on a thread with a tokio worker's
//!   stack ([`FUZZ_STACK_BYTES`]) named `fuzz-<target>-seed-<seed>`, which the abort message
//!   names: deep nesting must be refused there, not survived by luck on a bigger stack;
//! - an input slower than [`FUZZ_INPUT_MS_MAX`], or a run that stops answering (a watchdog);
//! - an input that makes the decoder hold more than its target's `alloc_bytes_max` at once
//!   (counted by the test binary's allocator, `alloc`);
//! - a seed it refuses (a target that accepts nothing fuzzes nothing).
//!
//! Environment: `CAIRN_FUZZ_MS` (time per target, default [`FUZZ_MS_DEFAULT`]),
//! `CAIRN_FUZZ_SEED` (replays a run; random by default and printed on failure),
//! `CAIRN_FUZZ_ITERATIONS` (at most this many inputs), `CAIRN_FUZZ_REPLAY` (a failing input
//! saved by an earlier run: only that input, only in its own target).
//!
//! Targets: `command` (Raft log entries and forwarded writes), `raft_frames` (the server
//! port's frames and Raft messages), `snapshot` (snapshot files and restores), `gossip`
//! (envelopes, foca packets, pongs, tags, push/pull, user events), `dns` (query packets),
//! `filter` (`?filter=`), `http_json` (request bodies), `acl_rules` (policy rules). Seeds come
//! from `samples`; what the targets found is pinned in `regressions`.

mod acl_rules;
mod alloc;
mod command;
mod dns;
mod filter;
mod gossip;
mod http_json;
mod mutate;
mod raft_frames;
mod regressions;
pub(crate) mod samples;
mod snapshot;

use std::collections::HashSet;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use self::mutate::Mutator;

/// Time each target runs by default, in milliseconds: short enough that the whole lib suite
/// stays quick; CI or a developer sets `CAIRN_FUZZ_MS` higher for a longer search.
const FUZZ_MS_DEFAULT: u64 = 2_000;
/// Most inputs one target runs unless `CAIRN_FUZZ_ITERATIONS` says otherwise.
const FUZZ_ITERATIONS_MAX_DEFAULT: u64 = 1 << 40;
/// The stack of the thread every target runs on: a tokio worker's (2 MiB).
const FUZZ_STACK_BYTES: usize = 2 << 20;
/// One input slower than this is reported as a hang, in milliseconds (debug build, shared CPU).
const FUZZ_INPUT_MS_MAX: u64 = 5_000;
/// How long past its time budget a target may take to stop before the watchdog reports it.
const FUZZ_HANG_GRACE_MS: u64 = 30_000;
/// Most inputs kept in the pool (seeds included).
const FUZZ_POOL_LEN_MAX: usize = 1024;
/// Bytes of a failing input shown in the report (the whole input is saved to a file).
const FUZZ_REPORT_BYTES_MAX: usize = 2048;
/// The default bound on what one input may make a target hold at once.
pub(crate) const FUZZ_ALLOC_BYTES_MAX_DEFAULT: usize = 64 << 20;

/// What a target did with one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Decoded (and the next steps ran): the input joins the pool.
    Accepted,
    /// Refused with an error, as hostile bytes should be.
    Refused,
}

impl Verdict {
    pub(crate) fn of<T, E>(result: &Result<T, E>) -> Verdict {
        if result.is_ok() { Verdict::Accepted } else { Verdict::Refused }
    }
}

/// One decoder under test.
pub(crate) struct Target {
    /// The test's path under `fuzz::`, e.g. `dns::packets`.
    pub(crate) name: &'static str,
    /// Valid inputs, built from real values; every one must be accepted.
    pub(crate) seeds: Vec<Vec<u8>>,
    /// Tokens of the format that mutations insert whole.
    pub(crate) dictionary: Vec<Vec<u8>>,
    /// Largest input generated, in bytes (what the real server lets through, or less).
    pub(crate) input_bytes_max: usize,
    /// Most bytes one input may make the target hold at once.
    pub(crate) alloc_bytes_max: usize,
}

/// How long and from where a run searches.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    pub(crate) time_ms: u64,
    pub(crate) iterations_max: u64,
    pub(crate) seed: u64,
    pub(crate) input_ms_max: u64,
    pub(crate) hang_grace_ms: u64,
    /// Replaying saved inputs: run the seeds only, and a refused one is no failure.
    pub(crate) replaying: bool,
}

impl Budget {
    fn from_env() -> Budget {
        let number = |name: &str| std::env::var(name).ok().map(|text| text.trim().parse::<u64>().unwrap_or_else(|_| panic!("{name} must be a number, got {text:?}")));
        Budget {
            time_ms: number("CAIRN_FUZZ_MS").unwrap_or(FUZZ_MS_DEFAULT),
            iterations_max: number("CAIRN_FUZZ_ITERATIONS").unwrap_or(FUZZ_ITERATIONS_MAX_DEFAULT),
            seed: number("CAIRN_FUZZ_SEED").unwrap_or_else(rand::random),
            input_ms_max: FUZZ_INPUT_MS_MAX,
            hang_grace_ms: FUZZ_HANG_GRACE_MS,
            replaying: false,
        }
    }
}

/// What a run that found nothing did.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) executions: u64,
    pub(crate) accepted: u64,
    pub(crate) pool_len: usize,
    pub(crate) elapsed: Duration,
}

/// An input that broke a target, with what is needed to replay it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) target: &'static str,
    pub(crate) seed: u64,
    pub(crate) iteration: u64,
    pub(crate) input: Vec<u8>,
    pub(crate) reason: String,
    pub(crate) saved: Option<PathBuf>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.input[..self.input.len().min(FUZZ_REPORT_BYTES_MAX)];
        let more = if shown.len() < self.input.len() { " (first bytes)" } else { "" };
        let filter = format!("fuzz::{}", self.target);
        writeln!(f, "fuzz target `{}` failed at iteration {} of seed {}: {}", self.target, self.iteration, self.seed, self.reason)?;
        writeln!(f, "input of {} bytes{more}:", self.input.len())?;
        writeln!(f, "  hex:  {}", shown.iter().map(|b| format!("{b:02x}")).collect::<String>())?;
        writeln!(f, "  text: b\"{}\"", shown.escape_ascii())?;
        if let Some(path) = &self.saved {
            writeln!(f, "replay the input: CAIRN_FUZZ_REPLAY={} cargo test --lib {filter}", path.display())?;
        }
        write!(f, "replay the search: CAIRN_FUZZ_SEED={} cargo test --lib {filter}", self.seed)
    }
}

/// Runs `target` within the budget from the environment; panics with a report naming the
/// input if it finds a failure. `setup` builds the check on the fuzzing thread.
pub(crate) fn fuzz<C, S>(target: Target, setup: S)
where
    S: FnOnce() -> C + Send + 'static,
    C: FnMut(&[u8]) -> Verdict,
{
    let name = target.name;
    let mut budget = Budget::from_env();
    let target = match replay_input(name) {
        Replay::Other => return,
        Replay::Input(input) => {
            budget = Budget { iterations_max: 1, replaying: true, ..budget };
            Target { seeds: vec![input], ..target }
        }
        Replay::None => target,
    };
    match try_fuzz(target, budget, setup) {
        Ok(report) => {
            let seconds = report.elapsed.as_secs_f64().max(1e-9);
            eprintln!(
                "fuzz {name}: {} inputs in {:.1} s ({:.0}/s), {} accepted, pool {}, seed {}",
                report.executions,
                seconds,
                report.executions as f64 / seconds,
                report.accepted,
                report.pool_len,
                budget.seed
            );
        }
        Err(mut failure) => {
            failure.saved = save(&failure);
            panic!("{failure}");
        }
    }
}

enum Replay {
    /// No replay asked for: search as usual.
    None,
    /// A replay of another target's input: this target does nothing.
    Other,
    /// Run only this input.
    Input(Vec<u8>),
}

fn replay_input(name: &str) -> Replay {
    let Ok(path) = std::env::var("CAIRN_FUZZ_REPLAY") else { return Replay::None };
    let file_name = std::path::Path::new(&path).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if !file_name.starts_with(&format!("{}-", file_prefix(name))) {
        return Replay::Other;
    }
    Replay::Input(std::fs::read(&path).unwrap_or_else(|error| panic!("CAIRN_FUZZ_REPLAY={path}: {error}")))
}

fn file_prefix(name: &str) -> String {
    format!("cairn-fuzz-{}", name.replace("::", "-"))
}

/// Saves a failing input whole, for `CAIRN_FUZZ_REPLAY`.
fn save(failure: &Failure) -> Option<PathBuf> {
    let path = std::env::temp_dir().join(format!("{}-{}-{}.bin", file_prefix(failure.target), failure.seed, failure.iteration));
    std::fs::write(&path, &failure.input).ok().map(|()| path)
}

/// The input being run, for the watchdog.
type Current = Arc<Mutex<(u64, Vec<u8>)>>;

/// Runs `target` within `budget` on a thread of its own with [`FUZZ_STACK_BYTES`] of stack.
pub(crate) fn try_fuzz<C, S>(target: Target, budget: Budget, setup: S) -> Result<Report, Failure>
where
    S: FnOnce() -> C + Send + 'static,
    C: FnMut(&[u8]) -> Verdict,
{
    let name = target.name;
    let current: Current = Arc::new(Mutex::new((0, Vec::new())));
    let (done_tx, done_rx) = mpsc::channel();
    let thread_current = Arc::clone(&current);
    let spawned = std::thread::Builder::new()
        .name(format!("fuzz-{}-seed-{}", name.replace("::", "-"), budget.seed))
        .stack_size(FUZZ_STACK_BYTES)
        .spawn(move || {
            let result = search(target, budget, setup(), &thread_current);
            let _ = done_tx.send(result);
        })
        .expect("spawn the fuzzing thread");
    let failure = |iteration: u64, input: Vec<u8>, reason: String| Failure { target: name, seed: budget.seed, iteration, input, reason, saved: None };
    match done_rx.recv_timeout(Duration::from_millis(budget.time_ms + budget.hang_grace_ms)) {
        Ok(result) => {
            let _ = spawned.join();
            result
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let (iteration, input) = current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
            Err(failure(iteration, input, format!("hang: no answer {} ms past the time budget", budget.hang_grace_ms)))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let (iteration, input) = current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
            Err(failure(iteration, input, "the fuzzing thread died outside an input (setup panicked?)".into()))
        }
    }
}

/// The loop on the fuzzing thread: seeds first, then mutations, until the budget is spent.
fn search<C: FnMut(&[u8]) -> Verdict>(target: Target, budget: Budget, mut check: C, current: &Current) -> Result<Report, Failure> {
    let mut pool: Vec<Vec<u8>> = target.seeds.into_iter().map(|mut seed| {
        seed.truncate(target.input_bytes_max);
        seed
    }).collect();
    assert!(!pool.is_empty(), "fuzz target {} has no seeds", target.name);
    let seeds_len = pool.len();
    let mut seen: HashSet<u64> = pool.iter().map(|input| digest(input)).collect();
    let mut mutator = Mutator::new(budget.seed, target.dictionary, target.input_bytes_max);
    let mut tracking = alloc::Tracking::start();
    let started = Instant::now();
    let deadline = started + Duration::from_millis(budget.time_ms);
    let mut report = Report { executions: 0, accepted: 0, pool_len: 0, elapsed: Duration::ZERO };
    for iteration in 0..budget.iterations_max {
        let is_seed = (iteration as usize) < seeds_len;
        if !is_seed && Instant::now() >= deadline {
            break;
        }
        let input = if is_seed { pool[iteration as usize].clone() } else { mutator.next_input(&pool) };
        *current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = (iteration, input.clone());
        let failure = |reason: String| Failure { target: target.name, seed: budget.seed, iteration, input: input.clone(), reason, saved: None };
        tracking.reset_peak();
        let began = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        let took = began.elapsed();
        let (peak_bytes, largest_bytes) = tracking.peak();
        let verdict = outcome.map_err(|payload| failure(format!("panicked: {}", panic_message(payload.as_ref()))))?;
        if took > Duration::from_millis(budget.input_ms_max) {
            return Err(failure(format!("slow: one input took {} ms (limit {} ms)", took.as_millis(), budget.input_ms_max)));
        }
        if peak_bytes > target.alloc_bytes_max {
            return Err(failure(format!(
                "allocated {peak_bytes} bytes at once (largest single request {largest_bytes}); the limit is {}",
                target.alloc_bytes_max
            )));
        }
        report.executions += 1;
        match verdict {
            Verdict::Refused if is_seed && !budget.replaying => return Err(failure("a seed is refused: the target cannot accept valid input".into())),
            Verdict::Refused => {}
            Verdict::Accepted => {
                report.accepted += 1;
                if !is_seed && seen.insert(digest(&input)) {
                    if pool.len() < FUZZ_POOL_LEN_MAX {
                        pool.push(input);
                    } else {
                        // Seeds stay; a random earlier find makes room.
                        let replaced = seeds_len + mutator.below(pool.len() - seeds_len);
                        pool[replaced] = input;
                    }
                }
            }
        }
    }
    report.pool_len = pool.len();
    report.elapsed = started.elapsed();
    Ok(report)
}

fn digest(input: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    input.hash(&mut hasher);
    hasher.finish()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic with a non-string payload".into()
    }
}

#[cfg(test)]
mod tests;
