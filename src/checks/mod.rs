//! Health-check runners for the agent's locally registered checks, following
//! Consul's `agent/checks` semantics (TTL, HTTP, TCP, script, gRPC, H2PING and UDP checks,
//! plus the pure status computation of alias checks, whose task the agent supplies).
//!
//! The runners know nothing about the catalog or Raft: each check gets one
//! tokio task that reports [`CheckResult`]s on a bounded channel the agent
//! drains. Results are sent with `try_send` so a slow agent can never stall a
//! runner; a full channel drops the result (counted, logged) because the next
//! run reports again. Every result passes through a per-runner "live" fence
//! that `remove`, `add` (replace) and `shutdown` clear under the same lock the
//! sender holds, so no result from a stopped runner can arrive after those
//! calls return.

mod alias;
mod grpc;
mod h2ping;
mod http;
mod runner;
mod script;
mod status_handler;
mod tcp;
mod tls;
mod ttl;
mod udp;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use runner::{Emitter, Probe, clamp_interval, lock, nonzero_or, run_periodic};

pub use alias::{AliasInput, AliasTarget, alias_status};
pub use status_handler::Thresholds;

/// Smallest interval between two runs of an HTTP, TCP or script check
/// (Consul's `checks.MinInterval`). Like Consul, a shorter interval is not an
/// error: it is logged and raised to this value, so registering "100ms" works.
pub const CHECK_INTERVAL_MIN: Duration = Duration::from_secs(1);

/// Consul's default `check_output_max_size`.
pub const OUTPUT_BYTES_MAX_DEFAULT: usize = 4096;

/// Timeout used when the caller passes zero for an HTTP or TCP check
/// (Consul's default), so a missing default can never make every run fail.
const NETWORK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Timeout used when the caller passes zero for a script check (Consul's).
const SCRIPT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// Script checks run with `mask` as their umask (the one the agent process started with,
/// before the agent made its own stricter for the data dir).
pub fn run_scripts_with_umask(mask: u32) {
    script::set_umask(mask);
}

/// A duration as Go prints it ("10s", "1m30s", "250ms"), which Consul's JSON carries.
pub fn go_duration_text(duration: Duration) -> String {
    runner::go_duration(duration)
}

/// Health of a check, as Consul reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckStatus {
    Passing,
    Warning,
    Critical,
}

impl CheckStatus {
    /// Consul's wire spelling (`passing`, `warning`, `critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }
}

/// What to run for a check. Timeouts of zero fall back to Consul's defaults.
#[derive(Clone, Debug)]
pub enum CheckKind {
    Ttl {
        ttl: Duration,
    },
    Http {
        url: String,
        /// Empty means GET.
        method: String,
        headers: Vec<(String, String)>,
        body: Option<String>,
        tls_skip_verify: bool,
        /// Empty: the URL's host.
        tls_server_name: String,
        interval: Duration,
        timeout: Duration,
    },
    Tcp {
        /// `host:port`.
        address: String,
        interval: Duration,
        timeout: Duration,
    },
    Script {
        /// Program and its arguments; run directly, no shell.
        args: Vec<String>,
        interval: Duration,
        timeout: Duration,
    },
    Grpc {
        /// `host:port[/service]`.
        target: String,
        use_tls: bool,
        tls_skip_verify: bool,
        tls_server_name: String,
        interval: Duration,
        timeout: Duration,
    },
    H2Ping {
        /// `host:port`.
        address: String,
        use_tls: bool,
        tls_skip_verify: bool,
        tls_server_name: String,
        interval: Duration,
        timeout: Duration,
    },
    Udp {
        /// `host:port`.
        address: String,
        interval: Duration,
        timeout: Duration,
    },
}

/// Per-check settings beside the kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Consul's `SuccessBeforePassing`/`FailuresBefore*` (periodic checks only, as in Consul).
    pub thresholds: Thresholds,
    /// Consul's per-check `OutputMaxSize`; 0 (or more than the scheduler's limit) means the
    /// scheduler's limit.
    pub output_bytes_max: usize,
}

/// How a check task supplied by the agent (alias checks) reports: through the same fenced,
/// bounded channel as the built-in runners.
pub struct CheckReporter {
    emitter: Emitter,
}

impl CheckReporter {
    /// Sends one result. Returns false when the task should end (stopped or replaced).
    pub fn report(&self, status: CheckStatus, output: String) -> bool {
        self.emitter.emit(status, output)
    }
}

/// One run's outcome. Sent on every run; deduplication is the agent's job.
#[derive(Clone, Debug)]
pub struct CheckResult {
    pub check_id: String,
    pub status: CheckStatus,
    pub output: String,
}

/// Limits applied to every check of a [`Scheduler`].
#[derive(Clone, Copy, Debug)]
pub struct CheckLimits {
    /// Largest `output` a result may carry (Consul's `check_output_max_size`).
    pub output_bytes_max: usize,
}

impl Default for CheckLimits {
    fn default() -> Self {
        CheckLimits {
            output_bytes_max: OUTPUT_BYTES_MAX_DEFAULT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("unknown check {check_id:?}")]
    Unknown { check_id: String },
    #[error("check {check_id:?} is not a TTL check")]
    NotTtl { check_id: String },
}

/// Owns the runner task of every locally registered check.
pub struct Scheduler {
    /// Where runners report; cloned into each runner's `Emitter`.
    results: mpsc::Sender<CheckResult>,
    /// Applied to every runner started by `add`.
    limits: CheckLimits,
    /// Live runners by check id. Locked only for map updates and lookups
    /// (never across an await), which also serialises add/remove of one id.
    runners: Mutex<HashMap<String, Runner>>,
    /// Results dropped because the channel was full; shared with every
    /// emitter so the agent can see the total.
    dropped: Arc<AtomicU64>,
    /// HTTP clients shared by all HTTP checks, built on first use.
    http: http::HttpClients,
}

/// Handle on one running check.
struct Runner {
    /// The check's task; aborted when the runner stops.
    task: JoinHandle<()>,
    /// The fence shared with the runner's `Emitter`; cleared on stop.
    live: Arc<Mutex<bool>>,
    /// State shared with `ttl_update`; `Some` only for TTL checks.
    ttl: Option<Arc<ttl::TtlShared>>,
    /// The options it was started with.
    options: RunOptions,
}

impl Runner {
    /// Fences the emitter first, so nothing is sent once this returns even if
    /// the task is mid-poll on another worker, then aborts the task (which
    /// drops, and so kills, any script child it holds).
    fn stop(self) {
        *lock(&self.live) = false;
        self.task.abort();
    }
}

impl Scheduler {
    /// Results go to `results` (a bounded channel the agent drains). Nothing
    /// runs until `add`.
    pub fn new(results: mpsc::Sender<CheckResult>, limits: CheckLimits) -> Scheduler {
        Scheduler {
            results,
            limits,
            runners: Mutex::new(HashMap::new()),
            dropped: Arc::new(AtomicU64::new(0)),
            http: http::HttpClients::default(),
        }
    }

    /// Starts (or restarts, replacing) the runner for this check id. Must be
    /// called inside a tokio runtime; outside one it logs an error and does
    /// nothing rather than panic.
    pub fn add(&self, check_id: &str, kind: CheckKind) {
        self.add_with(check_id, kind, RunOptions::default());
    }

    /// `add` with per-check options (thresholds, output limit).
    pub fn add_with(&self, check_id: &str, kind: CheckKind, options: RunOptions) {
        if let CheckKind::Ttl { ttl } = &kind
            && self.restart_ttl(check_id, *ttl, options)
        {
            return;
        }
        let Some(handle) = runtime_handle(check_id) else { return };
        let live = Arc::new(Mutex::new(true));
        let emitter = self.emitter(check_id, &live, options.output_bytes_max);
        let thresholds = options.thresholds;
        // The first HTTP check builds a client (loading root certificates):
        // do that before taking the map lock.
        let runnable = probe_of(check_id, kind, &self.http);
        // Hold the map lock across stop + spawn + insert so concurrent adds of
        // one id cannot leave two runners reporting for it.
        let mut runners = lock(&self.runners);
        if let Some(previous) = runners.remove(check_id) {
            previous.stop();
        }
        // Every log line of the runner carries the check id.
        let span = tracing::info_span!("check", check_id);
        let (task, ttl) = match runnable {
            Runnable::Ttl(ttl) => {
                let shared = Arc::new(ttl::TtlShared::new(ttl, emitter));
                (handle.spawn(ttl::run(Arc::clone(&shared)).instrument(span)), Some(shared))
            }
            Runnable::Periodic(probe, interval) => {
                let interval = clamp_interval(check_id, interval);
                (handle.spawn(run_periodic(emitter, interval, probe, thresholds).instrument(span)), None)
            }
        };
        runners.insert(check_id.to_owned(), Runner { task, live, ttl, options });
        tracing::debug!(check_id, "check runner started");
    }

    /// Starts (or restarts, replacing) a check whose task the caller supplies (alias checks):
    /// `make` gets the reporter and returns the task, which is stopped like any runner.
    pub fn add_task<F, Fut>(&self, check_id: &str, make: F)
    where
        F: FnOnce(CheckReporter) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(handle) = runtime_handle(check_id) else { return };
        let live = Arc::new(Mutex::new(true));
        let reporter = CheckReporter { emitter: self.emitter(check_id, &live, 0) };
        let task = make(reporter);
        let mut runners = lock(&self.runners);
        if let Some(previous) = runners.remove(check_id) {
            previous.stop();
        }
        let span = tracing::info_span!("check", check_id);
        runners.insert(check_id.to_owned(), Runner { task: handle.spawn(task.instrument(span)), live, ttl: None, options: RunOptions::default() });
    }

    /// Whether a runner (or task) is running for this check id.
    pub fn is_running(&self, check_id: &str) -> bool {
        lock(&self.runners).contains_key(check_id)
    }

    fn emitter(&self, check_id: &str, live: &Arc<Mutex<bool>>, output_bytes_max: usize) -> Emitter {
        let limit = self.limits.output_bytes_max;
        Emitter {
            check_id: Arc::from(check_id),
            results: self.results.clone(),
            live: Arc::clone(live),
            dropped: Arc::clone(&self.dropped),
            output_bytes_max: if output_bytes_max == 0 { limit } else { output_bytes_max.min(limit) },
        }
    }

    /// A TTL check registered again with the same TTL and options keeps its runner, its timer
    /// restarted (`TtlShared::restart`). Replacing the runner cost an abort, a spawn and a
    /// wake-up per registration, which a client agent under many registrations felt
    /// (`cairn-bench --client-agents`). Returns false when a new runner is needed.
    fn restart_ttl(&self, check_id: &str, ttl: std::time::Duration, options: RunOptions) -> bool {
        let runners = lock(&self.runners);
        runners
            .get(check_id)
            .is_some_and(|runner| runner.options == options && !runner.task.is_finished() && runner.ttl.as_ref().is_some_and(|shared| shared.restart(ttl)))
    }

    /// Stops the runner for this id, if any. No result from it is sent after
    /// this returns (results already queued stay in the channel).
    pub fn remove(&self, check_id: &str) {
        let removed = lock(&self.runners).remove(check_id);
        if let Some(runner) = removed {
            runner.stop();
        }
    }

    /// TTL checks: pass/warn/fail/update. Resets the TTL timer and emits a
    /// result at once. Output longer than the limit is cut the way Consul
    /// does (`... (captured N of M bytes)`).
    pub fn ttl_update(
        &self,
        check_id: &str,
        status: CheckStatus,
        output: &str,
    ) -> Result<(), CheckError> {
        let shared = {
            let runners = lock(&self.runners);
            let runner = runners.get(check_id).ok_or_else(|| CheckError::Unknown {
                check_id: check_id.to_owned(),
            })?;
            runner.ttl.clone().ok_or_else(|| CheckError::NotTtl {
                check_id: check_id.to_owned(),
            })?
        };
        shared.update(status, output);
        Ok(())
    }

    /// Stops all runners. The scheduler stays usable: later `add`s start anew.
    pub fn shutdown(&self) {
        let drained: Vec<Runner> = lock(&self.runners)
            .drain()
            .map(|(_, runner)| runner)
            .collect();
        for runner in drained {
            runner.stop();
        }
    }

    /// How many results were dropped so far because the channel was full.
    pub fn dropped_results(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn runtime_handle(check_id: &str) -> Option<tokio::runtime::Handle> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => Some(handle),
        Err(err) => {
            tracing::error!(check_id, error = %err, "cannot start check runner outside a tokio runtime");
            None
        }
    }
}

/// What runs a check: a TTL timer, or a probe every interval.
enum Runnable {
    Ttl(Duration),
    Periodic(Probe, Duration),
}

/// The runner of a check of `kind`; an HTTP check gets the shared client for its TLS setting.
fn probe_of(check_id: &str, kind: CheckKind, http_clients: &http::HttpClients) -> Runnable {
    let tls_options = |use_tls: bool, skip_verify: bool, server_name: String| use_tls.then_some(tls::TlsOptions { skip_verify, server_name });
    match kind {
        CheckKind::Ttl { ttl } => Runnable::Ttl(ttl),
        CheckKind::Http { url, method, headers, body, tls_skip_verify, tls_server_name, interval, timeout } => {
            if !tls_server_name.is_empty() {
                // The HTTP decoder refuses TLSServerName for HTTP checks (reqwest names
                // the URL's host); a persisted one would only come from a newer release.
                tracing::warn!(check_id, tls_server_name, "HTTP check TLSServerName is not supported; the URL's host is verified");
            }
            let probe = Probe::Http(http::HttpProbe {
                client: http_clients.get(tls_skip_verify),
                method: if method.trim().is_empty() { "GET".to_owned() } else { method },
                url,
                headers,
                body,
                timeout: nonzero_or(timeout, NETWORK_TIMEOUT_DEFAULT),
            });
            Runnable::Periodic(probe, interval)
        }
        CheckKind::Tcp { address, interval, timeout } => {
            Runnable::Periodic(Probe::Tcp { address, timeout: nonzero_or(timeout, NETWORK_TIMEOUT_DEFAULT) }, interval)
        }
        CheckKind::Script { args, interval, timeout } => {
            Runnable::Periodic(Probe::Script { args, timeout: nonzero_or(timeout, SCRIPT_TIMEOUT_DEFAULT) }, interval)
        }
        CheckKind::Grpc { target, use_tls, tls_skip_verify, tls_server_name, interval, timeout } => {
            let tls = tls_options(use_tls, tls_skip_verify, tls_server_name);
            Runnable::Periodic(Probe::Grpc(grpc::GrpcProbe { target, tls, timeout: nonzero_or(timeout, NETWORK_TIMEOUT_DEFAULT) }), interval)
        }
        CheckKind::H2Ping { address, use_tls, tls_skip_verify, tls_server_name, interval, timeout } => {
            let tls = tls_options(use_tls, tls_skip_verify, tls_server_name);
            Runnable::Periodic(Probe::H2Ping(h2ping::H2PingProbe { address, tls, timeout: nonzero_or(timeout, NETWORK_TIMEOUT_DEFAULT) }), interval)
        }
        CheckKind::Udp { address, interval, timeout } => {
            Runnable::Periodic(Probe::Udp { address, timeout: nonzero_or(timeout, NETWORK_TIMEOUT_DEFAULT) }, interval)
        }
    }
}

impl Drop for Scheduler {
    /// Runners must not outlive their owner: they would keep probing and
    /// spawning scripts for checks nobody tracks any more.
    fn drop(&mut self) {
        self.shutdown();
    }
}
