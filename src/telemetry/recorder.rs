//! The process's `metrics` recorder: one series per metric key, feeding Consul's in-memory
//! sink and, when enabled, Prometheus.
//!
//! A key is registered once (metrics-util's registry): the recorder then names it as
//! go-metrics would — `metrics_prefix`, then the host name for gauges unless
//! `disable_hostname`, then the name — decides with `prefix_filter` whether it is recorded at
//! all, and registers it with the Prometheus recorder under that name with its help text.
//! Later registrations of the key find the series without building a string, so a call site
//! may use the `metrics` macros on every request; a filtered-out series costs one branch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::PrometheusRecorder;
use metrics_util::registry::{Registry, Storage};

use crate::telemetry::inmem::{self, Aggregate, GaugeValue, Intervals, MetricsSummary, SampledValue};
use crate::telemetry::names;

/// How series are named and which are recorded (Consul's `telemetry` settings).
#[derive(Clone, Debug)]
pub(super) struct Naming {
    pub(super) prefix: String,
    /// Put into gauge names after the prefix; `None` with `disable_hostname`.
    pub(super) hostname: Option<String>,
    pub(super) filter_default: bool,
    /// `(prefix, allowed)`: the longest matching prefix decides (go-metrics' radix filter).
    pub(super) prefix_filter: Vec<(String, bool)>,
}

impl Naming {
    fn full_name(&self, name: &str, gauge: bool) -> String {
        let mut parts: Vec<&str> = Vec::with_capacity(3);
        if !self.prefix.is_empty() {
            parts.push(&self.prefix);
        }
        if let (true, Some(hostname)) = (gauge, &self.hostname) {
            parts.push(hostname);
        }
        parts.push(name);
        parts.join(".")
    }

    fn allowed(&self, full_name: &str) -> bool {
        let matching = self.prefix_filter.iter().filter(|(prefix, _)| full_name.starts_with(prefix.as_str()));
        matching.max_by_key(|(prefix, _)| prefix.len()).map_or(self.filter_default, |(_, allowed)| *allowed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SeriesKind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric key's values: its recent intervals and its Prometheus handle.
pub(super) struct Series {
    kind: SeriesKind,
    /// The full dotted name; empty when the filter left the series out.
    name: String,
    labels: Vec<(String, String)>,
    recorded: bool,
    /// Per interval: counters and histograms aggregate; a gauge keeps its last value as `max`.
    intervals: Mutex<Intervals<Aggregate>>,
    /// A gauge's current value (f64 bits), for `increment` and `decrement`.
    gauge_bits: AtomicU64,
    prometheus: Option<PrometheusHandle>,
}

enum PrometheusHandle {
    Counter(Counter),
    Gauge(Gauge),
    Histogram(Histogram),
}

impl Series {
    fn ingest(&self, value: f64) {
        let interval = inmem::interval_of(super::unix_now_s());
        let mut intervals = self.intervals.lock().expect("metric series lock poisoned");
        intervals.current(interval).ingest(value);
    }

    fn gauge_to(&self, value: f64) {
        let interval = inmem::interval_of(super::unix_now_s());
        let mut intervals = self.intervals.lock().expect("metric series lock poisoned");
        let last = intervals.current(interval);
        *last = Aggregate::default();
        last.ingest(value);
        drop(intervals);
        if let Some(PrometheusHandle::Gauge(gauge)) = &self.prometheus {
            gauge.set(value);
        }
    }

    fn gauge_by(&self, delta: f64) {
        let mut next = 0.0;
        let _ = self.gauge_bits.fetch_update(Ordering::AcqRel, Ordering::Acquire, |bits| {
            next = f64::from_bits(bits) + delta;
            Some(next.to_bits())
        });
        self.gauge_to(next);
    }
}

impl CounterFn for Series {
    fn increment(&self, value: u64) {
        if !self.recorded {
            return;
        }
        self.ingest(value as f64);
        if let Some(PrometheusHandle::Counter(counter)) = &self.prometheus {
            counter.increment(value);
        }
    }

    fn absolute(&self, value: u64) {
        if let (true, Some(PrometheusHandle::Counter(counter))) = (self.recorded, &self.prometheus) {
            counter.absolute(value);
        }
    }
}

impl GaugeFn for Series {
    fn increment(&self, value: f64) {
        if self.recorded {
            self.gauge_by(value);
        }
    }

    fn decrement(&self, value: f64) {
        if self.recorded {
            self.gauge_by(-value);
        }
    }

    fn set(&self, value: f64) {
        if self.recorded {
            self.gauge_bits.store(value.to_bits(), Ordering::Release);
            self.gauge_to(value);
        }
    }
}

impl HistogramFn for Series {
    fn record(&self, value: f64) {
        if !self.recorded {
            return;
        }
        self.ingest(value);
        if let Some(PrometheusHandle::Histogram(histogram)) = &self.prometheus {
            histogram.record(value);
        }
    }
}

/// Makes a new key's series (metrics-util calls it once per key).
pub(super) struct SeriesStorage {
    naming: Naming,
    prometheus: Option<PrometheusRecorder>,
}

impl SeriesStorage {
    fn series(&self, key: &Key, kind: SeriesKind) -> Arc<Series> {
        let name = self.naming.full_name(key.name(), kind == SeriesKind::Gauge);
        let recorded = self.naming.allowed(&name);
        let labels: Vec<(String, String)> = key.labels().map(|label| (label.key().to_string(), label.value().to_string())).collect();
        let prometheus = self.prometheus.as_ref().filter(|_| recorded).map(|recorder| {
            let help = SharedString::const_str(names::help(key.name()));
            let prometheus_key = Key::from_parts(name.clone(), key.labels().cloned().collect::<Vec<_>>());
            let metadata = Metadata::new(module_path!(), metrics::Level::INFO, None);
            let key_name = KeyName::from(name.clone());
            match kind {
                SeriesKind::Counter => {
                    recorder.describe_counter(key_name, None, help);
                    PrometheusHandle::Counter(recorder.register_counter(&prometheus_key, &metadata))
                }
                SeriesKind::Gauge => {
                    recorder.describe_gauge(key_name, None, help);
                    PrometheusHandle::Gauge(recorder.register_gauge(&prometheus_key, &metadata))
                }
                SeriesKind::Histogram => {
                    recorder.describe_histogram(key_name, None, help);
                    PrometheusHandle::Histogram(recorder.register_histogram(&prometheus_key, &metadata))
                }
            }
        });
        Arc::new(Series {
            kind,
            name: if recorded { name } else { String::new() },
            labels,
            recorded,
            intervals: Mutex::new(Intervals::default()),
            gauge_bits: AtomicU64::new(0f64.to_bits()),
            prometheus,
        })
    }
}

impl Storage<Key> for SeriesStorage {
    type Counter = Arc<Series>;
    type Gauge = Arc<Series>;
    type Histogram = Arc<Series>;

    fn counter(&self, key: &Key) -> Arc<Series> {
        self.series(key, SeriesKind::Counter)
    }

    fn gauge(&self, key: &Key) -> Arc<Series> {
        self.series(key, SeriesKind::Gauge)
    }

    fn histogram(&self, key: &Key) -> Arc<Series> {
        self.series(key, SeriesKind::Histogram)
    }
}

/// The recorder installed for the process (and, in tests, used locally).
pub(super) struct CairnRecorder {
    registry: Arc<Registry<Key, SeriesStorage>>,
}

impl CairnRecorder {
    pub(super) fn new(naming: Naming, prometheus: Option<PrometheusRecorder>) -> CairnRecorder {
        CairnRecorder { registry: Arc::new(Registry::new(SeriesStorage { naming, prometheus })) }
    }

    /// A handle that reads what this recorder gathered.
    pub(super) fn reader(&self) -> SeriesReader {
        SeriesReader { registry: self.registry.clone() }
    }
}

impl Recorder for CairnRecorder {
    // Help texts come from `names`, attached when a series is made.
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.registry.get_or_create_counter(key, |series| Counter::from_arc(series.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.registry.get_or_create_gauge(key, |series| Gauge::from_arc(series.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.registry.get_or_create_histogram(key, |series| Histogram::from_arc(series.clone()))
    }
}

/// Reads the recorder's series for `/v1/agent/metrics`.
#[derive(Clone)]
pub(super) struct SeriesReader {
    registry: Arc<Registry<Key, SeriesStorage>>,
}

impl SeriesReader {
    /// Every recorded series' value in `interval` (Consul's `DisplayMetrics` for it).
    pub(super) fn summary(&self, interval: u64) -> MetricsSummary {
        let mut summary = MetricsSummary { interval_start_s: interval * inmem::INTERVAL_S, ..MetricsSummary::default() };
        let mut collect = |series: &Arc<Series>| {
            if !series.recorded {
                return;
            }
            let intervals = series.intervals.lock().expect("metric series lock poisoned");
            let Some(aggregate) = intervals.at(interval).copied() else { return };
            let (name, labels) = (series.name.clone(), series.labels.clone());
            match series.kind {
                SeriesKind::Gauge => summary.gauges.push(GaugeValue { name, value: aggregate.max, labels }),
                SeriesKind::Counter => summary.counters.push(SampledValue { name, aggregate, labels }),
                SeriesKind::Histogram => summary.samples.push(SampledValue { name, aggregate, labels }),
            }
        };
        self.registry.visit_counters(|_, series| collect(series));
        self.registry.visit_gauges(|_, series| collect(series));
        self.registry.visit_histograms(|_, series| collect(series));
        summary.gauges.sort_by_cached_key(|gauge| inmem::sort_key(&gauge.name, &gauge.labels));
        summary.counters.sort_by_cached_key(|counter| inmem::sort_key(&counter.name, &counter.labels));
        summary.samples.sort_by_cached_key(|sample| inmem::sort_key(&sample.name, &sample.labels));
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming(hostname: Option<&str>, filter_default: bool, prefix_filter: &[(&str, bool)]) -> Naming {
        Naming {
            prefix: "consul".into(),
            hostname: hostname.map(str::to_string),
            filter_default,
            prefix_filter: prefix_filter.iter().map(|(prefix, allowed)| (prefix.to_string(), *allowed)).collect(),
        }
    }

    #[test]
    fn gauges_carry_the_host_name_unless_disabled_as_in_go_metrics() {
        let with_host = naming(Some("node-a"), true, &[]);
        assert_eq!(with_host.full_name("runtime.alloc_bytes", true), "consul.node-a.runtime.alloc_bytes");
        assert_eq!(with_host.full_name("raft.apply", false), "consul.raft.apply");
        assert_eq!(naming(None, true, &[]).full_name("runtime.alloc_bytes", true), "consul.runtime.alloc_bytes");
    }

    #[test]
    fn the_longest_matching_prefix_decides_else_the_default() {
        let filter = naming(None, true, &[("consul.http", false), ("consul.http.GET", true)]);
        assert!(!filter.allowed("consul.http.PUT.v1.kv._"));
        assert!(filter.allowed("consul.http.GET.v1.kv._"));
        assert!(filter.allowed("consul.raft.apply"));
        let deny_by_default = naming(None, false, &[("consul.raft", true)]);
        assert!(deny_by_default.allowed("consul.raft.apply") && !deny_by_default.allowed("consul.kvs.apply"));
    }

    #[test]
    fn a_summary_shows_one_interval_sorted_with_filtered_series_left_out() {
        // Recorded and read within one interval: a run that straddles an interval's end retries.
        let (summary, reader) = loop {
            let recorder = CairnRecorder::new(naming(Some("h"), true, &[("consul.kvs", false)]), None);
            let before = inmem::interval_of(crate::telemetry::unix_now_s());
            metrics::with_local_recorder(&recorder, || {
                metrics::histogram!(names::RAFT_COMMIT_TIME).record(2.0);
                metrics::histogram!(names::RAFT_COMMIT_TIME).record(4.0);
                metrics::histogram!(names::KVS_APPLY).record(1.0);
                metrics::counter!(names::RAFT_APPLY).increment(3);
                metrics::gauge!(names::RPC_QUERIES_BLOCKING).increment(2.0);
                metrics::gauge!(names::RPC_QUERIES_BLOCKING).decrement(1.0);
                metrics::histogram!(names::API_HTTP, "method" => "GET", "path" => "v1_kv_").record(1.0);
            });
            let summary = recorder.reader().summary(before);
            if inmem::interval_of(crate::telemetry::unix_now_s()) == before {
                break (summary, recorder.reader());
            }
        };
        assert_eq!(summary.gauges, vec![GaugeValue { name: "consul.h.rpc.queries_blocking".into(), value: 1.0, labels: vec![] }]);
        assert_eq!(summary.counters.len(), 1);
        assert_eq!((summary.counters[0].aggregate.count, summary.counters[0].aggregate.sum), (1, 3.0));
        let names: Vec<&str> = summary.samples.iter().map(|sample| sample.name.as_str()).collect();
        assert_eq!(names, ["consul.api.http", "consul.raft.commitTime"], "kvs.apply is filtered out");
        assert_eq!(summary.samples[0].labels, vec![("method".to_string(), "GET".to_string()), ("path".to_string(), "v1_kv_".to_string())]);
        assert_eq!(summary.samples[1].aggregate.mean(), 3.0);
        assert!(reader.summary(1).gauges.is_empty(), "nothing was recorded in that interval");
    }
}
