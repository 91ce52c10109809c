//! Agent configuration: Consul-compatible flags and config files in, one
//! validated [`RuntimeConfig`] out.
//!
//! The pipeline mirrors Consul's `agent/config` builder so real Consul command
//! lines and config directories work unchanged:
//!
//! 1. `flags.rs` parses the arguments after `cairn agent` (Go flag semantics).
//! 2. Every `-config-file` / `-config-dir` path, in command-line order, is read:
//!    `.json` is Consul JSON, `.toml` is cairn's native format (same key names),
//!    `.hcl` is skipped with a warning. Directories contribute their files sorted
//!    by name. Each file is type-checked on its own so errors name the file and
//!    key, and its unknown keys become warnings.
//! 3. Layers are deep-merged as JSON: later objects override earlier ones key by
//!    key, arrays append (Consul's rule, so `retry_join` and `services` from
//!    several files add up). The flags are the last layer.
//! 4. `runtime.rs` (with `sections.rs`) applies the defaults, then `validate` checks the rules that
//!    span keys (Consul's `Builder.Validate`) on the typed result.
//!
//! The only IO is reading the named files, listing config directories and
//! reading the hostname for the default node name.

mod flags;
pub mod gossip;
mod go_duration;
mod raw;
pub mod recursors;
mod reload;
mod runtime;
mod sections;
pub mod telemetry;
pub mod tls;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use self::flags::ConfigFormat;
use self::raw::RawConfig;
pub use self::runtime::{AclTokens, DurationError, LogLevel, RuntimeConfig, parse_go_duration};
pub use self::sections::{Autopilot, DEFAULT_SERF_LAN_PORT, DnsOptions, Limits, Ports, RaftTiming};

pub use self::reload::{TLS_HTTPS_SETTING, TLS_RPC_SETTING, restart_required_changes};

/// One service or check definition from a config file, as the file wrote it (Consul's
/// spelling, snake_case or CamelCase); the agent decodes it like an HTTP registration body.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigDefinition {
    /// The file it came from, for error messages.
    pub source: PathBuf,
    pub definition: Value,
}

/// The configuration plus everything the operator should be told about it.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: RuntimeConfig,
    /// Unknown flags and keys, skipped files, deprecated keys: log these at warn.
    pub warnings: Vec<String>,
    /// The unknown keys among the warnings, as `file: key`. The agent ignores them (so full
    /// Consul configs load); `cairn validate` refuses them, as Consul does.
    pub unknown_keys: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config path {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid {format}: {message}")]
    Parse {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error("config file {path}: invalid value for key `{key}`: {message}")]
    InvalidKey {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("flag -{flag} needs a value")]
    MissingFlagValue { flag: String },
    #[error("invalid value {value:?} for flag -{flag}: {reason}")]
    InvalidFlagValue {
        flag: String,
        value: String,
        reason: String,
    },
    #[error("bad flag syntax: {arg}")]
    BadFlagSyntax { arg: String },
    #[error("unexpected argument {arg:?}: the agent takes no positional arguments")]
    UnexpectedArgument { arg: String },
    /// A rule spanning the merged configuration, worded like Consul's.
    #[error("{0}")]
    Invalid(String),
}

/// Builds the runtime configuration from the arguments that follow `cairn agent`.
///
/// # Errors
/// Any bad flag, unreadable or malformed file, wrongly typed key, or rule
/// violated by the merged configuration; unknown flags and keys only warn.
pub fn load(agent_args: &[String]) -> Result<LoadedConfig, ConfigError> {
    let agent_flags = flags::parse_agent_flags(agent_args)?;
    let mut warnings = agent_flags.warnings;
    let mut unknown_keys = Vec::new();
    let mut merged = Map::new();
    let (mut services, mut checks) = (Vec::new(), Vec::new());
    for path in &agent_flags.config_paths {
        for (file, format) in config_files_in(path, agent_flags.config_format, &mut warnings)? {
            let mut layer = read_config_file(&file, format, &mut warnings, &mut unknown_keys)?;
            services.extend(take_definitions(&mut layer, "services", &file));
            checks.extend(take_definitions(&mut layer, "checks", &file));
            merge_layer(&mut merged, layer);
        }
    }
    merge_layer(&mut merged, agent_flags.overrides);
    // Each file and every flag value was already checked, so this only fails on a bug.
    let raw: RawConfig = serde_json::from_value(Value::Object(merged)).map_err(|error| {
        ConfigError::Invalid(format!("merged configuration is invalid: {error}"))
    })?;
    let mut config = RuntimeConfig::build(raw, agent_flags.dev, &mut warnings)?;
    (config.services, config.checks) = (services, checks);
    validate(&config)?;
    Ok(LoadedConfig { config, warnings, unknown_keys })
}

/// Every flag `cairn agent` takes, with whether it takes a value: the CLI's completions and
/// man page list them.
pub fn agent_flags() -> Vec<(&'static str, bool)> {
    flags::agent_flag_names().collect()
}

/// Consul's `Builder.Validate`: rules spanning several keys, checked on the
/// defaulted, typed result and worded like Consul's messages.
fn validate(config: &RuntimeConfig) -> Result<(), ConfigError> {
    let expecting = config.bootstrap_expect > 0;
    let raft = &config.raft;
    let limits = &config.limits;
    let datacenters = std::iter::once(("datacenter", &config.datacenter)).chain(
        config
            .primary_datacenter
            .iter()
            .map(|name| ("primary_datacenter", name)),
    );
    let mut rules: Vec<(bool, String)> = vec![
        (
            expecting && config.dev,
            "'bootstrap_expect > 0' not allowed in dev mode".into(),
        ),
        (
            expecting && config.bootstrap,
            "'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive".into(),
        ),
        (
            expecting && !config.server,
            "'bootstrap_expect > 0' requires 'server = true'".into(),
        ),
        (
            config.bootstrap && !config.server,
            "'bootstrap = true' requires 'server = true'".into(),
        ),
        (
            config.data_dir.is_none() && !config.dev,
            "data_dir is required (set -data-dir or use -dev)".into(),
        ),
    ];
    for (key, name) in datacenters {
        let valid = !name.is_empty()
            && (name.bytes())
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
        rules.push((
            !valid,
            format!("{key} cannot be {name:?}: use only [a-z0-9_-]"),
        ));
    }
    if let Some(node_id) = &config.node_id {
        rules.push((
            !is_uuid(node_id),
            format!("node_id {node_id:?} must be a uuid"),
        ));
    }
    if let Some(dir) = &config.ui_dir {
        // As Consul's builder: a UI directory must hold the dashboard's index.
        rules.push((
            !dir.join("index.html").is_file(),
            format!("ui_config.dir {} does not contain an index.html", dir.display()),
        ));
    }
    rules.extend([
        (config.domain == ".", "domain cannot be empty".to_string()),
        (
            config.advertise_addr.is_some_and(|addr| addr.is_unspecified()),
            "advertise_addr cannot be 0.0.0.0 or ::".into(),
        ),
        (
            !(1..=10).contains(&raft.raft_multiplier),
            format!(
                "performance.raft_multiplier cannot be {}: must be between 1 and 10",
                raft.raft_multiplier
            ),
        ),
        // Heartbeats must land inside the election window, and the window must be non-empty.
        (
            raft.heartbeat_interval_ms == 0
                || raft.heartbeat_interval_ms >= raft.election_timeout_min_ms,
            format!(
                "raft.heartbeat_interval ({} ms) must be positive and below raft.election_timeout_min ({} ms)",
                raft.heartbeat_interval_ms, raft.election_timeout_min_ms
            ),
        ),
        (
            raft.election_timeout_min_ms >= raft.election_timeout_max_ms,
            format!(
                "raft.election_timeout_min ({} ms) must be below raft.election_timeout_max ({} ms)",
                raft.election_timeout_min_ms, raft.election_timeout_max_ms
            ),
        ),
        (
            limits.kv_max_value_size_bytes == 0 || limits.txn_max_req_len_bytes == 0,
            "limits.kv_max_value_size and limits.txn_max_req_len must be positive".into(),
        ),
        (
            config.kv_tombstone_ttl_ms == 0,
            "kv_tombstone_ttl must be positive".into(),
        ),
        (
            config.default_query_time_s == 0 || config.max_query_time_s == 0,
            "default_query_time and max_query_time must be positive".into(),
        ),
        (
            config.check_output_max_size_bytes == 0,
            "check_output_max_size must be positive".into(),
        ),
        (
            !["allow", "deny", "extend-cache", "async-cache"].contains(&config.acl_down_policy.as_str()),
            format!("acl.down_policy cannot be {:?}: use allow, deny, extend-cache or async-cache", config.acl_down_policy),
        ),
        (
            config.ports.https.is_some() && config.tls_https.as_ref().is_none_or(|tls| tls.cert_file.is_none()),
            "ports.https needs a certificate: set cert_file and key_file (tls.https or tls.defaults)".into(),
        ),
        (
            !["allow", "deny"].contains(&config.acl_default_policy.as_str()),
            format!("acl.default_policy cannot be {:?}: use allow or deny", config.acl_default_policy),
        ),
    ]);
    if let Some((_, message)) = rules.into_iter().find(|(violated, _)| *violated) {
        return Err(ConfigError::Invalid(message));
    }
    check_port_conflicts(&config.ports)
}

/// Consul's security settings that cairn does not implement yet, by their key (a section's
/// name covers every key in it). Warning "unknown key ignored" would leave an operator who set
/// one believing they have it, so each is an error instead.
const UNHONOURED_SECURITY_KEYS: [(&str, &str); 5] = [
    // Every TLS key cairn knows is declared in `config::tls`; any other one is a setting it
    // does not have.
    ("tls", "this TLS setting"),
    ("auto_encrypt", "auto_encrypt"),
    ("auto_config", "auto_config"),
    ("acl.enable_token_replication", "ACL token replication"),
    // Every ACL key cairn knows is declared in `raw::RawAcl`; any other one (`acl.msp_disable_bootstrap`,
    // `acl.tokens.managed_service_provider`, ...) is a setting it does not have.
    ("acl", "this ACL setting"),
];

/// What an unknown key that is a security setting stands for, if it is one.
fn unhonoured_security_key(key: &str) -> Option<&'static str> {
    UNHONOURED_SECURITY_KEYS
        .iter()
        .find(|(name, _)| key == *name || key.strip_prefix(name).is_some_and(|rest| rest.starts_with('.')))
        .map(|(_, what)| *what)
}

/// Consul requires `node_id` to be a UUID (8-4-4-4-12 hex digits).
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && (groups.iter().zip([8, 4, 4, 4, 12]))
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Every enabled listener needs its own port: http and dns both listen on TCP.
fn check_port_conflicts(ports: &Ports) -> Result<(), ConfigError> {
    let listeners = [
        ("http", ports.http),
        ("https", ports.https),
        ("dns", ports.dns),
        ("grpc", ports.grpc),
        ("server", Some(ports.server)),
        ("serf_lan", Some(ports.serf_lan)),
    ];
    for (index, (first_name, first_port)) in listeners.iter().enumerate() {
        for (second_name, second_port) in &listeners[index + 1..] {
            if let (Some(port), true) = (first_port, first_port == second_port) {
                return Err(ConfigError::Invalid(format!(
                    "ports.{first_name} and ports.{second_name} both use port {port}"
                )));
            }
        }
    }
    Ok(())
}

/// The files a `-config-file` or `-config-dir` path stands for, with their formats.
///
/// Like Consul, a path may be a file or a directory (non-recursive, sorted by
/// name), an explicit `-config-format` overrides every extension, and files of
/// unknown extension are skipped with a warning rather than failing startup.
fn config_files_in(
    path: &Path,
    explicit_format: Option<ConfigFormat>,
    warnings: &mut Vec<String>,
) -> Result<Vec<(PathBuf, ConfigFormat)>, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let candidates = if std::fs::metadata(path).map_err(read_error)?.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(read_error)? {
            let entry_path = entry.map_err(read_error)?.path();
            // metadata() follows symlinks, so a linked file counts as a file.
            if std::fs::metadata(&entry_path).is_ok_and(|metadata| metadata.is_file()) {
                files.push(entry_path);
            }
        }
        files.sort_by(|left, right| left.file_name().cmp(&right.file_name()));
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut selected = Vec::new();
    for file in candidates {
        let extension = file
            .extension()
            .and_then(|extension| extension.to_str())
            .unwrap_or("");
        match explicit_format.or_else(|| ConfigFormat::from_name(extension)) {
            Some(ConfigFormat::Hcl) => {
                warnings.push(format!("skipping config file {}: hcl is not supported yet", file.display()));
            }
            Some(format) => selected.push((file, format)),
            None => warnings.push(format!(
                "skipping config file {}: extension must be .json or .toml, or -config-format must be set",
                file.display()
            )),
        }
    }
    Ok(selected)
}

/// Reads, type-checks and normalizes one config file into a merge layer.
fn read_config_file(
    path: &Path,
    format: ConfigFormat,
    warnings: &mut Vec<String>,
    unknown_keys: &mut Vec<String>,
) -> Result<Map<String, Value>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (format_name, parsed) = match format {
        ConfigFormat::Toml => ("toml", raw::parse_toml(&text)),
        ConfigFormat::Json | ConfigFormat::Hcl => ("json", raw::parse_json(&text)),
    };
    let mut layer = parsed.map_err(|message| ConfigError::Parse {
        path: path.to_path_buf(),
        format: format_name,
        message,
    })?;
    let checked = match serde_json::from_value::<RawConfig>(Value::Object(layer.clone())) {
        Ok(checked) => checked,
        Err(error) => {
            let (key, message) = find_invalid_key(&mut Vec::new(), &layer)
                .unwrap_or_else(|| ("(unknown)".to_string(), error.to_string()));
            return Err(ConfigError::InvalidKey {
                path: path.to_path_buf(),
                key,
                message,
            });
        }
    };
    for key in checked.unknown_keys() {
        if let Some(unhonoured) = unhonoured_security_key(&key) {
            return Err(ConfigError::InvalidKey {
                path: path.to_path_buf(),
                key,
                message: format!("{unhonoured} is not supported by cairn yet; refusing to start rather than run without it"),
            });
        }
        warnings.push(format!(
            "config file {}: unknown key `{key}` ignored",
            path.display()
        ));
        unknown_keys.push(format!("{}: {key}", path.display()));
    }
    for (old_key, new_key) in checked.deprecated_keys() {
        warnings.push(format!(
            "config file {}: `{old_key}` is deprecated; use `{new_key}`",
            path.display()
        ));
    }
    for (key, list_key) in [
        ("services", "services"),
        ("service", "services"),
        ("checks", "checks"),
        ("check", "checks"),
    ] {
        fold_into_list(&mut layer, key, list_key);
    }
    Ok(layer)
}

/// Removes a file's (already folded) definition list, tagging each with the file.
fn take_definitions(layer: &mut Map<String, Value>, list_key: &str, file: &Path) -> Vec<ConfigDefinition> {
    match layer.remove(list_key) {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|definition| ConfigDefinition { source: file.to_path_buf(), definition })
            .collect(),
        _ => Vec::new(),
    }
}

/// Reads one definition file as `cairn services register` takes it: TOML when the name ends
/// in `.toml`, Consul JSON otherwise (HCL is not supported), into the JSON shape of a config
/// file, with `service` and `services` both folded into the `services` list.
///
/// # Errors
/// The file cannot be read or is not a valid document of its format.
pub fn read_definition_file(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
    let is_toml = path.extension().is_some_and(|extension| extension == "toml");
    let (format, parsed) = if is_toml { ("toml", raw::parse_toml(&text)) } else { ("json", raw::parse_json(&text)) };
    let mut document = parsed.map_err(|message| ConfigError::Parse { path: path.to_path_buf(), format, message })?;
    for (key, list_key) in [("services", "services"), ("service", "services"), ("checks", "checks"), ("check", "checks")] {
        fold_into_list(&mut document, key, list_key);
    }
    Ok(document)
}

/// Finds the dotted key whose value fails to deserialize, with serde's message.
///
/// `serde_json` errors carry no path, so each key is retried on its own (nested
/// inside its parents) and the search descends into the first failing object.
fn find_invalid_key(
    parents: &mut Vec<String>,
    object: &Map<String, Value>,
) -> Option<(String, String)> {
    for (key, value) in object {
        parents.push(key.clone());
        let alone = parents.iter().rev().fold(value.clone(), |inner, parent| {
            Value::Object(Map::from_iter([(parent.clone(), inner)]))
        });
        let found = match serde_json::from_value::<RawConfig>(alone) {
            Ok(_) => None,
            Err(error) => {
                let deeper = match value {
                    Value::Object(inner) => find_invalid_key(parents, inner),
                    _ => None,
                };
                Some(deeper.unwrap_or_else(|| (parents.join("."), error.to_string())))
            }
        };
        parents.pop();
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Moves Consul's singular `service`/`check` into the plural list (and turns a
/// lone object under the plural key into a list), so that two files each
/// defining one `service` register two services instead of merging into one.
fn fold_into_list(layer: &mut Map<String, Value>, single_key: &str, list_key: &str) {
    let Some(single) = layer.remove(single_key) else {
        return;
    };
    let definitions = match single {
        Value::Array(items) => items,
        definition => vec![definition],
    };
    // The plural key is folded first, so an existing entry is always a list here.
    if let Value::Array(items) = layer
        .entry(list_key)
        .or_insert_with(|| Value::Array(Vec::new()))
    {
        items.extend(definitions);
    }
}

/// Merges a later layer into the accumulated one: objects merge key by key,
/// arrays append, anything else is replaced by the later value.
fn merge_layer(target: &mut Map<String, Value>, layer: Map<String, Value>) {
    for (key, value) in layer {
        match (target.get_mut(&key), value) {
            // Consul treats an explicit null as "not set", so it never erases a value.
            (_, Value::Null) => {}
            (Some(Value::Object(existing)), Value::Object(incoming)) => {
                merge_layer(existing, incoming);
            }
            (Some(Value::Array(existing)), Value::Array(incoming)) => existing.extend(incoming),
            (_, incoming) => {
                target.insert(key, incoming);
            }
        }
    }
}
