//! Telemetry, which every module may use: the agent's metrics and its logs.
//!
//! **Metrics.** Code records with the `metrics` crate's macros (`metrics::counter!`,
//! `gauge!`, `histogram!`) under the names in [`names`] — Consul's where Consul has one —
//! written without the `metrics_prefix`. [`install_metrics`] sets the process's recorder
//! (`recorder.rs`), which names each series as Consul's go-metrics would, applies the prefix
//! filter, and feeds two sinks:
//! - Consul's in-memory sink ([`inmem`]): 10-second intervals kept for a minute; [`summary`]
//!   is what `/v1/agent/metrics` shows;
//! - Prometheus (`metrics-exporter-prometheus`), only with a positive
//!   `prometheus_retention_time`, as in Consul; [`prometheus_text`] renders its text format.
//!
//! Recording before `install_metrics` (and in unit tests) does nothing. A series is made
//! once per key; after that a record is a registry lookup without allocation and one short
//! lock, so hot paths record directly.
//!
//! **Logs.** [`logging`] installs the tracing subscriber: stdout (text, or Consul's JSON with
//! `log_json`), the rotating `log_file` (`log_file.rs`), and the live stream behind
//! `/v1/agent/monitor` ([`monitor`]).

pub mod inmem;
mod log_file;
mod log_json;
pub mod logging;
pub mod monitor;
pub mod names;
mod recorder;
pub mod runtime;

use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

pub use log_file::LogFileSettings;

use recorder::{CairnRecorder, Naming, SeriesReader};

/// go-metrics' Prometheus summaries report these quantiles.
const PROMETHEUS_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];
/// A summary covers the last 10 seconds (go-metrics' `MaxAge`), in buckets of this width...
const PROMETHEUS_SUMMARY_BUCKET_S: u64 = 2;
/// ...and this many of them.
const PROMETHEUS_SUMMARY_BUCKETS: u32 = 5;
/// How often the Prometheus recorder drains its histograms when nobody scrapes.
const PROMETHEUS_UPKEEP_S: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("the metrics recorder is already installed")]
    AlreadyInstalled,
    #[error("cannot configure Prometheus: {0}")]
    Prometheus(String),
    #[error("cannot open the log file {path}: {source}")]
    LogFile { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot install the logger: {0}")]
    Logging(String),
}

/// Consul's `telemetry` settings that shape metrics.
#[derive(Clone, Debug)]
pub struct MetricsSettings {
    /// `metrics_prefix` (`consul`).
    pub prefix: String,
    /// Put into gauge names after the prefix; `None` with `disable_hostname`.
    pub hostname: Option<String>,
    /// `prometheus_retention_time`; `None` (zero) leaves Prometheus off.
    pub prometheus_retention: Option<Duration>,
    pub filter_default: bool,
    /// `prefix_filter`, as `(prefix, allowed)`.
    pub prefix_filter: Vec<(String, bool)>,
}

/// What the installed recorder is read through.
struct Installed {
    reader: SeriesReader,
    prometheus: Option<PrometheusHandle>,
    /// The interval the recorder was installed in.
    first_interval: u64,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// Installs the process's metrics recorder. Once per process.
pub fn install_metrics(settings: MetricsSettings) -> Result<(), TelemetryError> {
    let prometheus = match settings.prometheus_retention {
        Some(retention) => Some(prometheus_recorder(retention)?),
        None => None,
    };
    let handle = prometheus.as_ref().map(|recorder| recorder.handle());
    let naming = Naming { prefix: settings.prefix, hostname: settings.hostname, filter_default: settings.filter_default, prefix_filter: settings.prefix_filter };
    let recorder = CairnRecorder::new(naming, prometheus);
    let installed = Installed { reader: recorder.reader(), prometheus: handle.clone(), first_interval: inmem::interval_of(unix_now_s()) };
    if INSTALLED.set(installed).is_err() {
        return Err(TelemetryError::AlreadyInstalled);
    }
    metrics::set_global_recorder(recorder).map_err(|_| TelemetryError::AlreadyInstalled)?;
    if let Some(handle) = handle {
        let upkeep = std::thread::Builder::new().name("cairn-metrics".into()).spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(PROMETHEUS_UPKEEP_S));
                handle.run_upkeep();
            }
        });
        upkeep.map_err(|error| TelemetryError::Prometheus(format!("cannot start the upkeep thread: {error}")))?;
    }
    Ok(())
}

fn prometheus_recorder(retention: Duration) -> Result<metrics_exporter_prometheus::PrometheusRecorder, TelemetryError> {
    let invalid = |error: metrics_exporter_prometheus::BuildError| TelemetryError::Prometheus(error.to_string());
    let buckets = NonZeroU32::new(PROMETHEUS_SUMMARY_BUCKETS).expect("a positive constant");
    Ok(PrometheusBuilder::new()
        .set_quantiles(&PROMETHEUS_QUANTILES)
        .map_err(invalid)?
        .set_bucket_duration(Duration::from_secs(PROMETHEUS_SUMMARY_BUCKET_S))
        .map_err(invalid)?
        .set_bucket_count(buckets)
        // go-metrics' Prometheus sink forgets a series not updated for the retention time.
        .idle_timeout(MetricKindMask::ALL, Some(retention))
        .build_recorder())
}

/// What `/v1/agent/metrics` shows: the last finished interval (empty before installation).
pub fn summary() -> inmem::MetricsSummary {
    let current = inmem::interval_of(unix_now_s());
    match INSTALLED.get() {
        Some(installed) => installed.reader.summary(inmem::shown_interval(current, installed.first_interval)),
        None => inmem::MetricsSummary { interval_start_s: current * inmem::INTERVAL_S, ..Default::default() },
    }
}

/// The Prometheus text format, or `None` when Prometheus is off.
pub fn prometheus_text() -> Option<String> {
    INSTALLED.get()?.prometheus.as_ref().map(PrometheusHandle::render)
}

/// Seconds since the epoch, by the wall clock (intervals are aligned on it, as Consul's).
pub fn unix_now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// Milliseconds since `start`, as a go-metrics timer records them.
pub fn ms_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// A count of things in progress (blocking queries parked), read by the agent's gauge loop.
pub struct InFlight {
    count: AtomicI64,
}

/// Blocking queries waiting for a change, on this agent (`rpc.queries_blocking`).
pub static BLOCKING_QUERIES: InFlight = InFlight { count: AtomicI64::new(0) };

impl InFlight {
    /// Counts one until the guard is dropped.
    pub fn enter(&'static self) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::Relaxed);
        InFlightGuard { in_flight: self }
    }

    pub fn current(&self) -> i64 {
        self.count.load(Ordering::Relaxed)
    }
}

pub struct InFlightGuard {
    in_flight: &'static InFlight,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.in_flight.count.fetch_sub(1, Ordering::Relaxed);
    }
}
