//! The agent's log: one tracing subscriber with three outputs.
//!
//! - **stdout**, and with `log_file` also the file (`log_file.rs`), in tracing's text format
//!   or, with `log_json`, Consul's JSON (`log_json.rs`). Filtered at `log_level` (a reload
//!   changes it through [`LogLevelHandle`]), with chatty dependencies ([`NOISY_TARGETS`])
//!   held to warnings, unless the `CAIRN_LOG` environment variable gives a filter of its own.
//! - **the monitor stream** (`monitor.rs`), in both formats, at whatever level its watchers
//!   want.
//!
//! Log lines carry structured fields; no field anywhere holds an ACL token or a gossip key
//! (tokens are named by accessor, keys never), and `tests/it/telemetry.rs` checks a running
//! agent's file and monitor stream for the ones it was given.

use std::sync::{Arc, Mutex};

use tracing::level_filters::LevelFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, fmt, reload};

use crate::telemetry::TelemetryError;
use crate::telemetry::log_file::{LogFile, LogFileSettings, SharedLogFile};
use crate::telemetry::log_json::ConsulJson;
use crate::telemetry::monitor::{MonitorFilter, MonitorFormat, MonitorWriter};

/// Dependencies whose debug output floods the log: held to warnings and errors.
pub const NOISY_TARGETS: [&str; 2] = ["openraft", "hickory_server"];

/// How the agent logs.
#[derive(Clone, Debug)]
pub struct LogSettings {
    pub level: LevelFilter,
    pub json: bool,
    /// A `CAIRN_LOG` filter (tracing's `EnvFilter` syntax); it then wins over `level`.
    pub env_filter: Option<String>,
    pub file: Option<LogFileSettings>,
}

/// Changes the level of stdout and the file (`log_level` on reload).
pub struct LogLevelHandle {
    /// `None` when `CAIRN_LOG` decides the filter.
    reload: Option<reload::Handle<EnvFilter, Registry>>,
}

impl LogLevelHandle {
    /// Whether [`Self::set_level`] can change anything (not with `CAIRN_LOG`).
    pub fn adjustable(&self) -> bool {
        self.reload.is_some()
    }

    pub fn set_level(&self, level: LevelFilter) -> Result<(), String> {
        let Some(reload) = &self.reload else { return Err("the CAIRN_LOG environment variable sets the log filter".into()) };
        reload.reload(agent_filter(level)).map_err(|error| format!("cannot change the log level: {error}"))
    }
}

/// `level`, with [`NOISY_TARGETS`] held to warnings.
pub fn agent_filter(level: LevelFilter) -> EnvFilter {
    let mut directives = level.to_string().to_lowercase();
    for target in NOISY_TARGETS {
        directives.push_str(&format!(",{target}=warn"));
    }
    EnvFilter::new(directives)
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Opens the log file (an error stops the agent) and installs the subscriber.
/// [`TelemetryError::Logging`] means another subscriber is already installed (a test's).
pub fn init(settings: LogSettings) -> Result<LogLevelHandle, TelemetryError> {
    let file = match &settings.file {
        Some(file_settings) => {
            let file = LogFile::open(file_settings.clone()).map_err(|source| TelemetryError::LogFile { path: file_settings.path.clone(), source })?;
            Some(SharedLogFile(Arc::new(Mutex::new(file))))
        }
        None => None,
    };
    let from_env = settings.env_filter.as_deref().and_then(|spec| EnvFilter::try_new(spec).ok());
    let env_decides = from_env.is_some();
    let (filter, handle) = reload::Layer::new(from_env.unwrap_or_else(|| agent_filter(settings.level)));
    // Colours only for a terminal, and never when the same lines go to a file.
    let ansi = file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let output: BoxedLayer = match (settings.json, file) {
        (false, None) => fmt::layer().with_target(false).with_ansi(ansi).with_filter(filter).boxed(),
        (false, Some(file)) => fmt::layer().with_target(false).with_ansi(false).with_writer(std::io::stdout.and(file)).with_filter(filter).boxed(),
        (true, None) => fmt::layer().event_format(ConsulJson).with_filter(filter).boxed(),
        (true, Some(file)) => fmt::layer().event_format(ConsulJson).with_writer(std::io::stdout.and(file)).with_filter(filter).boxed(),
    };
    let monitor_text: BoxedLayer = fmt::layer()
        .with_target(false)
        .with_ansi(false)
        .with_writer(MonitorWriter(MonitorFormat::Text))
        .with_filter(MonitorFilter(MonitorFormat::Text))
        .boxed();
    let monitor_json: BoxedLayer =
        fmt::layer().event_format(ConsulJson).with_writer(MonitorWriter(MonitorFormat::Json)).with_filter(MonitorFilter(MonitorFormat::Json)).boxed();
    tracing_subscriber::registry()
        .with(vec![output, monitor_text, monitor_json])
        .try_init()
        .map_err(|error| TelemetryError::Logging(error.to_string()))?;
    Ok(LogLevelHandle { reload: (!env_decides).then_some(handle) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_filter_holds_noisy_dependencies_to_warnings() {
        let filter = agent_filter(LevelFilter::DEBUG).to_string();
        for directive in ["debug", "openraft=warn", "hickory_server=warn"] {
            assert!(filter.split(',').any(|d| d == directive), "{filter}");
        }
    }
}
