//! `cairn agent` flag parsing with Go `flag` package semantics.
//!
//! Hand-rolled rather than clap because Consul's users (and py-consul's test
//! harness) rely on Go behaviour clap does not have: single-dash long flags
//! (`-data-dir`), `-flag=value` and `-flag value` interchangeably, bare booleans
//! that never consume the next word (`-server -dev`), values that start with a
//! dash (`-http-port -1`), repeated flags that append, and unknown flags that
//! must only warn. One table row per flag keeps the whole surface reviewable.
//!
//! Flags become one more config layer: a JSON object using Consul's key names,
//! merged after all files, exactly like Consul's flag `Source`. Values are
//! checked here so errors name the flag rather than a config key.

use std::path::PathBuf;

use serde_json::{Map, Value};

use super::ConfigError;
use super::raw::{check_port, parse_addr_list};
use super::runtime::{LogLevel, parse_go_duration};

/// How a config file's contents should be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConfigFormat {
    Json,
    Toml,
    Hcl,
}

impl ConfigFormat {
    pub(super) fn from_name(name: &str) -> Option<Self> {
        match name {
            "json" => Some(ConfigFormat::Json),
            "toml" => Some(ConfigFormat::Toml),
            "hcl" => Some(ConfigFormat::Hcl),
            _ => None,
        }
    }
}

/// What one flag does; the `&str` is the dotted Consul config key it sets.
#[derive(Debug, Clone, Copy)]
enum FlagAction {
    Dev,
    ConfigPath,
    ConfigFormat,
    Hcl,
    Bool(&'static str),
    Text(&'static str),
    Count(&'static str),
    /// A non-negative 64-bit integer (a size in bytes).
    Size(&'static str),
    /// A signed integer (`-log-rotate-max-files=-1`).
    Int(&'static str),
    Port(&'static str),
    Duration(&'static str),
    IpAddr(&'static str),
    ClientAddrs,
    LogLevel,
    Append(&'static str),
    NodeMeta,
}

impl FlagAction {
    /// Boolean flags never take the next argument as their value (Go semantics).
    fn is_boolean(self) -> bool {
        matches!(self, FlagAction::Dev | FlagAction::Bool(_))
    }
}

/// Every flag `cairn agent` understands, in Consul's spelling.
const AGENT_FLAGS: &[(&str, FlagAction)] = &[
    ("advertise", FlagAction::IpAddr("advertise_addr")),
    ("alt-domain", FlagAction::Text("alt_domain")),
    ("bind", FlagAction::IpAddr("bind_addr")),
    ("bootstrap", FlagAction::Bool("bootstrap")),
    ("bootstrap-expect", FlagAction::Count("bootstrap_expect")),
    ("client", FlagAction::ClientAddrs),
    ("config-dir", FlagAction::ConfigPath),
    ("config-file", FlagAction::ConfigPath),
    ("config-format", FlagAction::ConfigFormat),
    ("data-dir", FlagAction::Text("data_dir")),
    ("datacenter", FlagAction::Text("datacenter")),
    (
        "default-query-time",
        FlagAction::Duration("default_query_time"),
    ),
    ("dev", FlagAction::Dev),
    ("dns-port", FlagAction::Port("ports.dns")),
    ("domain", FlagAction::Text("domain")),
    (
        "enable-local-script-checks",
        FlagAction::Bool("enable_local_script_checks"),
    ),
    (
        "enable-script-checks",
        FlagAction::Bool("enable_script_checks"),
    ),
    ("encrypt", FlagAction::Text("encrypt")),
    ("grpc-port", FlagAction::Port("ports.grpc")),
    ("hcl", FlagAction::Hcl),
    ("http-port", FlagAction::Port("ports.http")),
    ("https-port", FlagAction::Port("ports.https")),
    ("join", FlagAction::Append("retry_join")),
    ("log-file", FlagAction::Text("log_file")),
    ("log-json", FlagAction::Bool("log_json")),
    ("log-level", FlagAction::LogLevel),
    ("log-rotate-bytes", FlagAction::Size("log_rotate_bytes")),
    ("log-rotate-duration", FlagAction::Duration("log_rotate_duration")),
    ("log-rotate-max-files", FlagAction::Int("log_rotate_max_files")),
    ("max-query-time", FlagAction::Duration("max_query_time")),
    ("node", FlagAction::Text("node_name")),
    ("node-id", FlagAction::Text("node_id")),
    ("node-meta", FlagAction::NodeMeta),
    ("pid-file", FlagAction::Text("pid_file")),
    ("raft-protocol", FlagAction::Count("raft_protocol")),
    ("recursor", FlagAction::Append("recursors")),
    ("rejoin", FlagAction::Bool("rejoin_after_leave")),
    ("retry-interval", FlagAction::Duration("retry_interval")),
    ("retry-join", FlagAction::Append("retry_join")),
    ("retry-max", FlagAction::Count("retry_max")),
    ("serf-lan-port", FlagAction::Port("ports.serf_lan")),
    ("server", FlagAction::Bool("server")),
    ("server-port", FlagAction::Port("ports.server")),
    ("ui", FlagAction::Bool("ui_config.enabled")),
    ("ui-dir", FlagAction::Text("ui_config.dir")),
];

/// The result of parsing the arguments after `cairn agent`.
#[derive(Debug, Default)]
pub(super) struct AgentFlags {
    pub(super) dev: bool,
    /// `-config-file` and `-config-dir` values, interleaved in command-line order.
    pub(super) config_paths: Vec<PathBuf>,
    pub(super) config_format: Option<ConfigFormat>,
    /// Config keys set by flags, merged over every file.
    pub(super) overrides: Map<String, Value>,
    pub(super) warnings: Vec<String>,
}

/// Every `cairn agent` flag and whether it takes a value (for shell completions).
pub(super) fn agent_flag_names() -> impl Iterator<Item = (&'static str, bool)> {
    AGENT_FLAGS.iter().map(|(name, action)| (*name, !action.is_boolean()))
}

fn find_flag(name: &str) -> Option<FlagAction> {
    AGENT_FLAGS
        .iter()
        .find(|(flag, _)| *flag == name)
        .map(|(_, action)| *action)
}

/// Splits `-name`, `--name`, `-name=value` into (name, inline value); `None` if not a flag.
fn split_flag(arg: &str) -> Option<(&str, Option<&str>)> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    Some(match body.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (body, None),
    })
}

/// True when `arg` is a flag this parser knows, so it cannot be a missing value.
fn is_known_flag(arg: &str) -> bool {
    split_flag(arg).is_some_and(|(name, _)| find_flag(name).is_some())
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Parses the arguments that follow `cairn agent`.
pub(super) fn parse_agent_flags(args: &[String]) -> Result<AgentFlags, ConfigError> {
    let mut flags = AgentFlags::default();
    let mut index = 0;
    while let Some(arg) = args.get(index) {
        index += 1;
        if arg == "--" {
            return match args.get(index) {
                Some(extra) => Err(ConfigError::UnexpectedArgument { arg: extra.clone() }),
                None => Ok(flags),
            };
        }
        let Some((name, inline_value)) = split_flag(arg).filter(|_| arg != "-") else {
            return Err(ConfigError::UnexpectedArgument { arg: arg.clone() });
        };
        if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
            return Err(ConfigError::BadFlagSyntax { arg: arg.clone() });
        }
        let Some(action) = find_flag(name) else {
            // Unknown flags only warn so newer Consul command lines still start;
            // the agent takes no positional arguments, so a following word is its value.
            let value = match inline_value {
                Some(value) => Some(value.to_string()),
                None => match args.get(index).filter(|next| !next.starts_with('-')) {
                    Some(next) => {
                        index += 1;
                        Some(next.clone())
                    }
                    None => None,
                },
            };
            // The value is not repeated: warnings are logged, and it may be a secret.
            flags.warnings.push(match value {
                Some(_) => format!("unknown flag -{name} ignored, with its value"),
                None => format!("unknown flag -{name} ignored"),
            });
            continue;
        };
        if action.is_boolean() {
            let value = match inline_value {
                None => true,
                Some(text) => parse_go_bool(text)
                    .ok_or_else(|| invalid_value(name, text, "expected true or false"))?,
            };
            match action {
                FlagAction::Dev => flags.dev = value,
                FlagAction::Bool(key) => set_key(&mut flags.overrides, key, Value::Bool(value)),
                _ => {}
            }
            continue;
        }
        let value = match inline_value {
            Some(value) => value.to_string(),
            None => match args.get(index).filter(|next| !is_known_flag(next)) {
                Some(next) => {
                    index += 1;
                    next.clone()
                }
                None => {
                    return Err(ConfigError::MissingFlagValue {
                        flag: name.to_string(),
                    });
                }
            },
        };
        if value.is_empty() {
            return Err(invalid_value(name, &value, "must not be empty"));
        }
        apply_value(&mut flags, name, action, value)?;
    }
    Ok(flags)
}

fn invalid_value(flag: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidFlagValue {
        flag: flag.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Checks a value flag's argument and records it as a config key (or source path).
fn apply_value(
    flags: &mut AgentFlags,
    name: &str,
    action: FlagAction,
    value: String,
) -> Result<(), ConfigError> {
    let overrides = &mut flags.overrides;
    match action {
        FlagAction::ConfigPath => flags.config_paths.push(PathBuf::from(value)),
        FlagAction::ConfigFormat => {
            let format = ConfigFormat::from_name(&value)
                .ok_or_else(|| invalid_value(name, &value, "use json, toml or hcl"))?;
            if format == ConfigFormat::Hcl {
                flags.warnings.push(
                    "-config-format=hcl: hcl is not supported yet; such files are skipped"
                        .to_string(),
                );
            }
            flags.config_format = Some(format);
        }
        FlagAction::Hcl => flags
            .warnings
            .push(format!("-hcl ignored ({} bytes, not repeated here: it may hold secrets): hcl is not supported yet", value.len())),
        FlagAction::Text(key) => set_key(overrides, key, Value::String(value)),
        FlagAction::Count(key) => {
            let count: u32 = value
                .parse()
                .map_err(|_| invalid_value(name, &value, "expected a non-negative integer"))?;
            set_key(overrides, key, Value::from(count));
        }
        FlagAction::Size(key) => {
            let size: u64 = value.parse().map_err(|_| invalid_value(name, &value, "expected a non-negative integer"))?;
            set_key(overrides, key, Value::from(size));
        }
        FlagAction::Int(key) => {
            let number: i64 = value.parse().map_err(|_| invalid_value(name, &value, "expected an integer"))?;
            set_key(overrides, key, Value::from(number));
        }
        FlagAction::Port(key) => {
            let port = value
                .parse::<i64>()
                .map_err(|_| "expected a port number".to_string())
                .and_then(check_port)
                .map_err(|reason| invalid_value(name, &value, reason))?;
            set_key(overrides, key, Value::from(port));
        }
        FlagAction::Duration(key) => {
            parse_go_duration(&value).map_err(|error| invalid_value(name, &value, error.reason))?;
            set_key(overrides, key, Value::String(value));
        }
        FlagAction::IpAddr(key) => {
            value
                .parse::<std::net::IpAddr>()
                .map_err(|_| invalid_value(name, &value, "expected an ip address"))?;
            set_key(overrides, key, Value::String(value));
        }
        FlagAction::ClientAddrs => {
            parse_addr_list(&value).map_err(|reason| invalid_value(name, &value, reason))?;
            set_key(overrides, "client_addr", Value::String(value));
        }
        FlagAction::LogLevel => {
            value
                .parse::<LogLevel>()
                .map_err(|reason| invalid_value(name, &value, reason))?;
            set_key(overrides, "log_level", Value::String(value));
        }
        FlagAction::Append(key) => {
            let list = overrides
                .entry(key)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = list {
                items.push(Value::String(value));
            }
        }
        FlagAction::NodeMeta => {
            let Some((meta_key, meta_value)) =
                value.split_once(':').filter(|(key, _)| !key.is_empty())
            else {
                return Err(invalid_value(name, &value, "expected key:value"));
            };
            let meta = overrides
                .entry("node_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(entries) = meta {
                entries.insert(meta_key.to_string(), Value::String(meta_value.to_string()));
            }
        }
        FlagAction::Dev | FlagAction::Bool(_) => {}
    }
    Ok(())
}

/// Sets a dotted key such as `ports.http`, creating the intermediate objects.
fn set_key(target: &mut Map<String, Value>, dotted_key: &str, value: Value) {
    match dotted_key.split_once('.') {
        None => {
            target.insert(dotted_key.to_string(), value);
        }
        Some((head, rest)) => {
            let child = target
                .entry(head)
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            if let Value::Object(child_map) = child {
                set_key(child_map, rest, value);
            }
        }
    }
}
