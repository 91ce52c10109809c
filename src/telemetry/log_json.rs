//! `-log-json`: one JSON object per line in Consul's (hclog's) shape, so log pipelines built
//! for Consul read cairn's: `@level` (`trace` … `error`), `@message`, `@module` (the code's
//! module path without `cairn::`, dotted, e.g. `agent.sync`), `@timestamp` (RFC 3339 with
//! microseconds, UTC), then each field of the event as its own key.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter for JSON logs.
pub(super) struct ConsulJson;

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// hclog's `@timestamp` layout, `2006-01-02T15:04:05.000000Z07:00`, in UTC.
fn timestamp(at: time::OffsetDateTime) -> String {
    let (date, clock) = (at.date(), at.time());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        date.year(),
        u8::from(date.month()),
        date.day(),
        clock.hour(),
        clock.minute(),
        clock.second(),
        clock.microsecond()
    )
}

/// `cairn::agent::sync` → `agent.sync`; another crate's path keeps its crate name.
fn module_of(target: &str) -> String {
    target.strip_prefix("cairn::").unwrap_or(target).replace("::", ".")
}

/// Collects an event's fields: `message` apart, the rest as JSON values. A record that came
/// from the `log` crate (a dependency's) carries its real target as `log.target`, which
/// becomes the module; its other `log.*` fields (file, line) are left out.
#[derive(Default)]
struct Fields {
    message: String,
    log_target: Option<String>,
    others: Map<String, Value>,
}

impl Fields {
    fn text(&mut self, name: &str, text: String) {
        match name {
            "message" => self.message = text,
            "log.target" => self.log_target = Some(text),
            bridged if bridged.starts_with("log.") => {}
            name => {
                self.others.insert(name.to_string(), Value::String(text));
            }
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field.name(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field.name(), value.to_string());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name().starts_with("log.") {
            return;
        }
        self.others.insert(field.name().to_string(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name().starts_with("log.") {
            return;
        }
        self.others.insert(field.name().to_string(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.others.insert(field.name().to_string(), Value::Bool(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.others.insert(field.name().to_string(), serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number));
    }
}

impl<S, N> FormatEvent<S, N> for ConsulJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        let mut line = std::mem::take(&mut fields.others);
        line.insert("@level".into(), Value::from(level_name(metadata.level())));
        line.insert("@message".into(), Value::String(std::mem::take(&mut fields.message)));
        let target = fields.log_target.as_deref().unwrap_or(metadata.target());
        line.insert("@module".into(), Value::String(module_of(target)));
        line.insert("@timestamp".into(), Value::String(timestamp(time::OffsetDateTime::now_utc())));
        writeln!(writer, "{}", Value::Object(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_event_is_one_hclog_shaped_line() {
        use tracing_subscriber::layer::SubscriberExt;
        let captured = Captured::default();
        let writer = captured.clone();
        let layer = tracing_subscriber::fmt::layer().event_format(ConsulJson).with_writer(move || writer.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            tracing::warn!(service = "web", port = 8080u64, healthy = false, "check failed");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(line["@level"], "warn");
        assert_eq!(line["@message"], "check failed");
        assert_eq!(line["@module"], "telemetry.log_json.tests");
        assert!(line["@timestamp"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 27), "{line}");
        assert_eq!((&line["service"], &line["port"], &line["healthy"]), (&Value::from("web"), &Value::from(8080), &Value::from(false)));
    }

    #[test]
    fn module_paths_read_like_hclog_modules() {
        assert_eq!(module_of("cairn::agent::sync"), "agent.sync");
        assert_eq!(module_of("hyper::proto"), "hyper.proto");
        assert_eq!(level_name(&Level::WARN), "warn");
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        assert_eq!(timestamp(at), "2023-11-14T22:13:20.123456Z");
    }
}
