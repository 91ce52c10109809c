//! Consul's `telemetry` block, and the log file keys (`log_file`, `log_rotate_bytes`,
//! `log_rotate_duration`, `log_rotate_max_files`).
//!
//! Every `telemetry` key cairn accepts does what it does in Consul: `prometheus_retention_time`
//! (Prometheus output on, and how long an idle series stays), `disable_hostname`,
//! `metrics_prefix`, `filter_default`, `prefix_filter` and `disable_compat_1.9`.
//! `retry_failed_connection` is accepted because it only concerns the sinks below, which cairn
//! refuses anyway. The keys of sinks cairn does not have (statsd, statsite, DogStatsD,
//! Circonus) and `enable_host_metrics` are refused with an error saying so, rather than
//! accepted with nothing behind them.

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;
use super::raw::{GoDuration, UnknownKeys};

/// Consul's `log_rotate_duration` default.
const LOG_ROTATE_DURATION_DEFAULT: Duration = Duration::from_secs(24 * 3600);

/// Consul `telemetry` keys cairn refuses, and why.
const UNSUPPORTED: [(&str, &str); 6] = [
    ("statsd_address", "cairn has no statsd sink"),
    ("statsite_address", "cairn has no statsite sink"),
    ("dogstatsd_addr", "cairn has no DogStatsD sink"),
    ("dogstatsd_tags", "cairn has no DogStatsD sink"),
    ("circonus_", "cairn has no Circonus sink"),
    ("enable_host_metrics", "cairn does not collect host metrics"),
];

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawTelemetry {
    pub(super) prometheus_retention_time: Option<GoDuration>,
    pub(super) disable_hostname: Option<bool>,
    pub(super) metrics_prefix: Option<String>,
    pub(super) filter_default: Option<bool>,
    pub(super) prefix_filter: Option<Vec<String>>,
    #[serde(rename = "disable_compat_1.9")]
    pub(super) disable_compat_1_9: Option<bool>,
    #[allow(dead_code)]
    pub(super) retry_failed_connection: Option<bool>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

/// The raw keys this file turns into [`TelemetrySettings`] and [`LogFileConfig`].
pub(super) struct RawLogFile {
    pub(super) log_file: Option<String>,
    pub(super) log_rotate_bytes: Option<u64>,
    pub(super) log_rotate_duration: Option<GoDuration>,
    pub(super) log_rotate_max_files: Option<i64>,
}

/// Consul's `telemetry` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// 0: no Prometheus output (`/v1/agent/metrics?format=prometheus` is refused), as Consul.
    pub prometheus_retention_ms: u64,
    /// Put into gauge names after the prefix; `None` with `disable_hostname`.
    pub metrics_hostname: Option<String>,
    pub metrics_prefix: String,
    pub filter_default: bool,
    /// `(prefix, allowed)`, allowed rules first (a prefix both allowed and blocked is blocked,
    /// as in go-metrics).
    pub prefix_filter: Vec<(String, bool)>,
    /// Skip the pre-1.9 `consul.http.<METHOD>.<path>` timers (Consul 1.12's default: true).
    pub disable_compat_1_9: bool,
}

/// Where the log also goes, and when it rotates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileConfig {
    pub path: String,
    /// 0: rotate by age only.
    pub rotate_bytes: u64,
    pub rotate_duration_ms: u64,
    /// 0: keep every archive; -1: keep none.
    pub rotate_max_files: i64,
}

impl TelemetrySettings {
    pub(super) fn build(raw: Option<RawTelemetry>, hostname: impl FnOnce() -> String) -> Result<TelemetrySettings, ConfigError> {
        let raw = raw.unwrap_or_default();
        for key in raw.unknown.keys() {
            if let Some((_, why)) = UNSUPPORTED.iter().find(|(unsupported, _)| key == unsupported || (unsupported.ends_with('_') && key.starts_with(unsupported))) {
                return Err(ConfigError::Invalid(format!(
                    "telemetry.{key} is not supported: {why}; read /v1/agent/metrics (?format=prometheus with prometheus_retention_time) instead"
                )));
            }
        }
        let (mut allowed, mut blocked) = (Vec::new(), Vec::new());
        for rule in raw.prefix_filter.unwrap_or_default() {
            match rule.split_at_checked(1) {
                Some(("+", prefix)) => allowed.push((prefix.to_string(), true)),
                Some(("-", prefix)) => blocked.push((prefix.to_string(), false)),
                _ => return Err(ConfigError::Invalid(format!("telemetry.prefix_filter: a rule must begin with '+' or '-': {rule:?}"))),
            }
        }
        allowed.extend(blocked);
        Ok(TelemetrySettings {
            prometheus_retention_ms: raw.prometheus_retention_time.map_or(0, |d| d.0.as_millis() as u64),
            metrics_hostname: (!raw.disable_hostname.unwrap_or(false)).then(hostname),
            metrics_prefix: raw.metrics_prefix.unwrap_or_else(|| "consul".to_string()),
            filter_default: raw.filter_default.unwrap_or(true),
            prefix_filter: allowed,
            disable_compat_1_9: raw.disable_compat_1_9.unwrap_or(true),
        })
    }
}

impl LogFileConfig {
    /// `None` without `log_file`; the rotation keys alone are refused (they would do nothing).
    pub(super) fn build(raw: RawLogFile) -> Result<Option<LogFileConfig>, ConfigError> {
        let Some(path) = raw.log_file.filter(|path| !path.is_empty()) else {
            let rotation = [
                ("log_rotate_bytes", raw.log_rotate_bytes.is_some()),
                ("log_rotate_duration", raw.log_rotate_duration.is_some()),
                ("log_rotate_max_files", raw.log_rotate_max_files.is_some()),
            ];
            return match rotation.iter().find(|(_, set)| *set) {
                Some((key, _)) => Err(ConfigError::Invalid(format!("{key} needs log_file (-log-file): without it there is nothing to rotate"))),
                None => Ok(None),
            };
        };
        let rotate_max_files = raw.log_rotate_max_files.unwrap_or(0);
        if rotate_max_files < -1 {
            return Err(ConfigError::Invalid(format!("log_rotate_max_files must be -1 (keep no archive), 0 (keep all) or more: {rotate_max_files}")));
        }
        let duration = raw.log_rotate_duration.map(|d| d.0).filter(|d| !d.is_zero()).unwrap_or(LOG_ROTATE_DURATION_DEFAULT);
        Ok(Some(LogFileConfig {
            path,
            rotate_bytes: raw.log_rotate_bytes.unwrap_or(0),
            rotate_duration_ms: duration.as_millis() as u64,
            rotate_max_files,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telemetry(json: serde_json::Value) -> Result<TelemetrySettings, ConfigError> {
        TelemetrySettings::build(Some(serde_json::from_value(json).expect("raw telemetry")), || "host-a".to_string())
    }

    #[test]
    fn consul_defaults_and_the_keys_cairn_implements() {
        let defaults = TelemetrySettings::build(None, || "host-a".to_string()).unwrap();
        assert_eq!(defaults.prometheus_retention_ms, 0);
        assert_eq!(defaults.metrics_hostname.as_deref(), Some("host-a"));
        assert_eq!((defaults.metrics_prefix.as_str(), defaults.filter_default, defaults.disable_compat_1_9), ("consul", true, true));
        let set = telemetry(serde_json::json!({
            "prometheus_retention_time": "60s", "disable_hostname": true, "metrics_prefix": "cairn",
            "filter_default": false, "prefix_filter": ["-consul.raft", "+consul.raft.apply"], "disable_compat_1.9": false,
            "retry_failed_connection": true,
        }))
        .unwrap();
        assert_eq!(set.prometheus_retention_ms, 60_000);
        assert_eq!(set.metrics_hostname, None);
        assert_eq!(set.prefix_filter, vec![("consul.raft.apply".to_string(), true), ("consul.raft".to_string(), false)]);
        assert!(!set.filter_default && !set.disable_compat_1_9);
    }

    #[test]
    fn sinks_cairn_lacks_and_bad_filter_rules_are_refused() {
        for key in ["statsd_address", "dogstatsd_addr", "circonus_api_token", "enable_host_metrics"] {
            let error = telemetry(serde_json::json!({ key: "x" })).unwrap_err().to_string();
            assert!(error.contains(&format!("telemetry.{key} is not supported")), "{error}");
        }
        let error = telemetry(serde_json::json!({"prefix_filter": ["consul.raft"]})).unwrap_err().to_string();
        assert!(error.contains("must begin with '+' or '-'"), "{error}");
    }

    #[test]
    fn log_rotation_needs_a_log_file() {
        let raw = |file: Option<&str>, max_files: Option<i64>| RawLogFile { log_file: file.map(str::to_string), log_rotate_bytes: None, log_rotate_duration: None, log_rotate_max_files: max_files };
        assert_eq!(LogFileConfig::build(raw(None, None)).unwrap(), None);
        assert!(LogFileConfig::build(raw(None, Some(3))).unwrap_err().to_string().contains("log_rotate_max_files needs log_file"));
        let file = LogFileConfig::build(raw(Some("/var/log/cairn/"), Some(-1))).unwrap().unwrap();
        assert_eq!((file.rotate_bytes, file.rotate_duration_ms, file.rotate_max_files), (0, 24 * 3600 * 1000, -1));
        assert!(LogFileConfig::build(raw(Some("a.log"), Some(-2))).is_err());
    }
}
