//! `/v1/agent/metrics` and `/v1/agent/monitor`: this agent's telemetry (`crate::telemetry`)
//! in Consul's shapes.
//!
//! - `/v1/agent/metrics`: the in-memory sink's last finished 10-second interval as Consul's
//!   JSON (`Timestamp`, `Gauges`, `Points`, `Counters`, `Samples`); with `?format=prometheus`,
//!   or an `Accept` header asking for OpenMetrics (or `text/plain; version=0.4.0`), the
//!   Prometheus text format — empty, with Consul's `X-Consul-Reason`, unless
//!   `telemetry.prometheus_retention_time` is positive.
//! - `/v1/agent/monitor?loglevel=&logjson`: the agent's log, streamed from now on at the
//!   level asked (default info), in text or Consul's JSON. A reader too slow for the log
//!   loses lines and reads Consul's `[WARN] Monitor dropped N logs during monitor request`.
//!
//! Both need `agent:read`, as in Consul.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::http::AppState;
use crate::http::agent_acl as acl;
use crate::http::authz::Authz;
use crate::http::error::ApiError;
use crate::http::query::{Params, json_body};
use crate::telemetry::inmem::{MetricsSummary, SampledValue};
use crate::telemetry::monitor::{self, MonitorFormat, MonitorItem};

/// Why `?format=prometheus` gets nothing (Consul's words).
const PROMETHEUS_OFF_REASON: &str = "Prometheus is not enabled since its retention time is not positive";
/// What promhttp answers with (Consul serves the text format even to OpenMetrics clients).
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) async fn metrics(State(state): State<AppState>, authz: Authz, headers: HeaderMap, Query(params): Query<Params>) -> Result<Response, ApiError> {
    acl::agent_read(&state, &authz)?;
    let accept = headers.get("accept").and_then(|value| value.to_str().ok()).unwrap_or("");
    if params.get("format").is_some_and(|format| format == "prometheus") || accepts_prometheus(accept) {
        return Ok(match crate::telemetry::prometheus_text() {
            Some(text) => ([("content-type", PROMETHEUS_CONTENT_TYPE)], text).into_response(),
            // Consul means a 415 here, but its HTTP wrapper returns before writing a status
            // when the handler gives no object, so clients see a 200 with an empty body and
            // the reason in `X-Consul-Reason` (py-consul's test relies on it): so do we.
            None => (StatusCode::OK, [("x-consul-reason", PROMETHEUS_OFF_REASON)]).into_response(),
        });
    }
    let body = json_body(&summary_json(&crate::telemetry::summary()), params.contains_key("pretty"));
    Ok(([("content-type", "application/json")], body).into_response())
}

/// Consul's `acceptsOpenMetricsMimeType`: any listed type is OpenMetrics, or plain text
/// version 0.4.0.
fn accepts_prometheus(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let mut parts = media.split(';').map(str::trim);
        match parts.next().map(str::to_ascii_lowercase).as_deref() {
            Some("application/openmetrics-text") => true,
            Some("text/plain") => parts.next() == Some("version=0.4.0"),
            _ => false,
        }
    })
}

fn labels_json(labels: &[(String, String)]) -> Value {
    Value::Object(labels.iter().map(|(name, value)| (name.clone(), Value::String(value.clone()))).collect())
}

fn sampled_json(sampled: &SampledValue) -> Value {
    let aggregate = &sampled.aggregate;
    json!({
        "Name": sampled.name,
        "Count": aggregate.count,
        "Rate": aggregate.rate(),
        "Sum": aggregate.sum,
        "Min": aggregate.min,
        "Max": aggregate.max,
        "Mean": aggregate.mean(),
        "Stddev": aggregate.stddev(),
        "Labels": labels_json(&sampled.labels),
    })
}

/// go-metrics' `MetricsSummary` (`Points` stays empty: nothing emits keys).
fn summary_json(summary: &MetricsSummary) -> Value {
    let gauges: Vec<Value> =
        summary.gauges.iter().map(|gauge| json!({"Name": gauge.name, "Value": gauge.value, "Labels": labels_json(&gauge.labels)})).collect();
    json!({
        "Timestamp": go_timestamp(summary.interval_start_s),
        "Gauges": gauges,
        "Points": [],
        "Counters": summary.counters.iter().map(sampled_json).collect::<Vec<_>>(),
        "Samples": summary.samples.iter().map(sampled_json).collect::<Vec<_>>(),
    })
}

/// Go's `time.Time.String()` of a UTC instant, as Consul prints the interval:
/// `2006-01-02 15:04:05 +0000 UTC`.
fn go_timestamp(unix_s: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix_s).unwrap_or(i64::MAX)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (date, clock) = (at.date(), at.time());
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
        date.year(),
        u8::from(date.month()),
        date.day(),
        clock.hour(),
        clock.minute(),
        clock.second()
    )
}

/// Consul's log levels (`logging.ValidateLogLevel`), any case.
fn monitor_level(name: &str) -> Option<tracing::Level> {
    match name.to_ascii_uppercase().as_str() {
        "TRACE" => Some(tracing::Level::TRACE),
        "DEBUG" => Some(tracing::Level::DEBUG),
        "INFO" => Some(tracing::Level::INFO),
        "WARN" => Some(tracing::Level::WARN),
        "ERR" | "ERROR" => Some(tracing::Level::ERROR),
        _ => None,
    }
}

pub(super) async fn monitor(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    acl::agent_read(&state, &authz)?;
    let name = params.get("loglevel").map(String::as_str).filter(|name| !name.is_empty()).unwrap_or("INFO");
    let Some(level) = monitor_level(name) else {
        return Err(ApiError::BadRequest(format!("Unknown log level: {name}")));
    };
    let format = if params.contains_key("logjson") { MonitorFormat::Json } else { MonitorFormat::Text };
    let watcher = monitor::subscribe(level, format);
    let shutdown = state.agent.shutdown_requested();
    // Ends when the agent shuts down; a client that hangs up drops the stream, and with it
    // the watcher.
    let lines = futures::stream::unfold((watcher, shutdown), |(mut watcher, mut shutdown)| async move {
        let item = tokio::select! {
            item = watcher.next() => item?,
            _ = shutdown.wait_for(|stop| *stop) => return None,
        };
        let bytes = match item {
            MonitorItem::Line(line) => line,
            MonitorItem::Dropped(lost) => Bytes::from(monitor::dropped_notice(lost)),
        };
        Some((Ok::<Bytes, Infallible>(bytes), (watcher, shutdown)))
    });
    Ok(([("content-type", "text/plain; charset=utf-8")], Body::from_stream(lines)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_is_chosen_as_consul_chooses_it() {
        assert!(accepts_prometheus("application/openmetrics-text; version=1.0.0; charset=utf-8"));
        assert!(accepts_prometheus("text/html, text/plain;version=0.4.0"));
        assert!(!accepts_prometheus("text/plain"));
        assert!(!accepts_prometheus("application/json"));
    }

    #[test]
    fn the_timestamp_and_levels_read_like_consuls() {
        assert_eq!(go_timestamp(1_700_000_010), "2023-11-14 22:13:30 +0000 UTC");
        assert_eq!(monitor_level("err"), Some(tracing::Level::ERROR));
        assert_eq!(monitor_level("Trace"), Some(tracing::Level::TRACE));
        assert_eq!(monitor_level("loud"), None);
    }
}
