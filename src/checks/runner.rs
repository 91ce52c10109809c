//! The machinery shared by all runners: the fenced result emitter, the
//! periodic loop with its first-run stagger and interval clamp, and small
//! output helpers (char-safe truncation, Go-style durations) that keep the
//! output text Consul-compatible.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::status_handler::{StatusHandler, Thresholds};
use super::{CHECK_INTERVAL_MIN, CheckResult, CheckStatus, grpc, h2ping, http, script, tcp, udp};

/// Upper bound of the random delay before a check's first run. Consul staggers
/// over the whole interval to spread load when many checks start together; we
/// keep the spread but cap it so a new check reports promptly after `add`.
const FIRST_RUN_STAGGER_MAX: Duration = Duration::from_millis(250);

/// A runner's way of reporting: formats, fences and sends one result.
#[derive(Clone)]
pub(super) struct Emitter {
    /// Stamped on every result; shared, not copied, between the task and
    /// `ttl_update`.
    pub(super) check_id: Arc<str>,
    /// The agent's bounded channel; only ever used with `try_send`.
    pub(super) results: mpsc::Sender<CheckResult>,
    /// `true` while the runner is current. Held while sending, and cleared
    /// by `Runner::stop` under the same lock, which makes stop a fence.
    pub(super) live: Arc<Mutex<bool>>,
    /// Scheduler-wide count of results dropped on a full channel.
    pub(super) dropped: Arc<AtomicU64>,
    /// Every emitted output is cut to this, whatever the check kind.
    pub(super) output_bytes_max: usize,
}

impl Emitter {
    /// Sends one result. Returns false when the runner should end: it was
    /// stopped, or the agent dropped the receiving end.
    pub(super) fn emit(&self, status: CheckStatus, mut output: String) -> bool {
        truncate_to_bytes(&mut output, self.output_bytes_max);
        let live = lock(&self.live);
        if !*live {
            return false;
        }
        let result = CheckResult {
            check_id: self.check_id.to_string(),
            status,
            output,
        };
        match self.results.try_send(result) {
            Ok(()) => true,
            Err(TrySendError::Full(result)) => {
                let dropped_total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    check_id = %result.check_id,
                    status = result.status.as_str(),
                    dropped_total,
                    "check results channel full; result dropped"
                );
                true
            }
            Err(TrySendError::Closed(_)) => {
                tracing::debug!(check_id = %self.check_id, "check results channel closed; runner ends");
                false
            }
        }
    }
}

/// What a periodic check does on each run.
pub(super) enum Probe {
    Http(http::HttpProbe),
    Tcp {
        address: String,
        timeout: Duration,
    },
    Script {
        args: Vec<String>,
        timeout: Duration,
    },
    Grpc(grpc::GrpcProbe),
    H2Ping(h2ping::H2PingProbe),
    Udp {
        address: String,
        timeout: Duration,
    },
}

impl Probe {
    async fn run(&self, output_bytes_max: usize) -> (CheckStatus, String) {
        match self {
            Probe::Http(probe) => probe.run(output_bytes_max).await,
            Probe::Tcp { address, timeout } => tcp::run(address, *timeout).await,
            Probe::Script { args, timeout } => script::run(args, *timeout, output_bytes_max).await,
            Probe::Grpc(probe) => probe.run().await,
            Probe::H2Ping(probe) => probe.run().await,
            Probe::Udp { address, timeout } => udp::run(address, *timeout).await,
        }
    }
}

/// Runs `probe` after a short random stagger, then every `interval` measured
/// from the end of the previous run (as Consul does, so runs never overlap). Each result
/// passes Consul's `StatusHandler` counters before it is reported.
pub(super) async fn run_periodic(emitter: Emitter, interval: Duration, probe: Probe, thresholds: Thresholds) {
    let mut handler = StatusHandler::new(thresholds);
    tokio::time::sleep(first_run_stagger(interval)).await;
    loop {
        let (status, output) = probe.run(emitter.output_bytes_max).await;
        if let Some(status) = handler.update(status)
            && !emitter.emit(status, output)
        {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

fn first_run_stagger(interval: Duration) -> Duration {
    let bound = interval.min(FIRST_RUN_STAGGER_MAX);
    let bound_nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    if bound_nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rand::thread_rng().gen_range(0..bound_nanos))
}

/// Consul raises intervals below the minimum (with a warning) rather than
/// rejecting the registration; a too-short interval would fork-bomb the host.
/// An error and its causes on one line: a client's top-level message alone ("error sending
/// request", "transport error") does not say what went wrong. Shared by the network checks.
pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub(super) fn clamp_interval(check_id: &str, interval: Duration) -> Duration {
    if interval < CHECK_INTERVAL_MIN {
        tracing::warn!(
            check_id,
            interval_ms = interval.as_millis() as u64,
            minimum_interval_ms = CHECK_INTERVAL_MIN.as_millis() as u64,
            "check has interval below minimum; using the minimum"
        );
        return CHECK_INTERVAL_MIN;
    }
    interval
}

pub(super) fn nonzero_or(value: Duration, default: Duration) -> Duration {
    if value.is_zero() { default } else { value }
}

/// Locks, ignoring poisoning: the guarded data stays consistent across a
/// panic elsewhere, and runners must keep going rather than panic in turn.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Cuts `text` to at most `bytes_max` bytes on a char boundary.
pub(super) fn truncate_to_bytes(text: &mut String, bytes_max: usize) {
    if text.len() > bytes_max {
        let mut cut = bytes_max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

/// Formats a duration the way Go's `time.Duration.String` does ("200ms",
/// "30s", "1m30s"), because Consul puts it in check output verbatim.
pub(super) fn go_duration(duration: Duration) -> String {
    fn decimal(value: u128, unit: u128, unit_digits: usize) -> String {
        let whole = value / unit;
        let fraction = value % unit;
        if fraction == 0 {
            return whole.to_string();
        }
        let fraction = format!("{fraction:0unit_digits$}");
        format!("{whole}.{}", fraction.trim_end_matches('0'))
    }
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", decimal(nanos, 1_000, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", decimal(nanos, 1_000_000, 6));
    }
    let secs = duration.as_secs();
    let (hours, minutes) = (secs / 3600, (secs % 3600) / 60);
    let seconds = decimal(nanos % 60_000_000_000, 1_000_000_000, 9);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}
