//! What one config source said, before defaults: serde structs where every field
//! is an `Option`, shared by Consul JSON files, our TOML files and the flags.
//!
//! Both formats are first turned into a `serde_json::Value` so that merging
//! (`mod.rs`) works on one representation, then deserialized into [`RawConfig`].
//! Value-level checks that need no other key (durations, IP addresses, ports,
//! log level) happen here, so their errors can name the file and key. Keys cairn
//! does not know land in the `unknown` maps and become warnings, never errors,
//! so real Consul configs load.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::runtime::{LogLevel, parse_go_duration};

/// Keys a struct did not declare, kept only so they can be reported.
pub(super) type UnknownKeys = BTreeMap<String, Value>;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawConfig {
    pub(super) node_name: Option<String>,
    pub(super) node_id: Option<String>,
    pub(super) datacenter: Option<String>,
    pub(super) domain: Option<String>,
    pub(super) alt_domain: Option<String>,
    pub(super) server: Option<bool>,
    pub(super) bootstrap: Option<bool>,
    pub(super) bootstrap_expect: Option<u32>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) client_addr: Option<AddrList>,
    pub(super) bind_addr: Option<IpAddr>,
    pub(super) advertise_addr: Option<IpAddr>,
    pub(super) ports: Option<RawPorts>,
    pub(super) log_level: Option<LogLevel>,
    pub(super) log_json: Option<bool>,
    pub(super) log_file: Option<String>,
    pub(super) log_rotate_bytes: Option<u64>,
    pub(super) log_rotate_duration: Option<GoDuration>,
    pub(super) log_rotate_max_files: Option<i64>,
    pub(super) telemetry: Option<super::telemetry::RawTelemetry>,
    pub(super) enable_script_checks: Option<bool>,
    pub(super) enable_local_script_checks: Option<bool>,
    pub(super) retry_join: Option<Vec<String>>,
    pub(super) retry_interval: Option<GoDuration>,
    pub(super) retry_max: Option<u32>,
    pub(super) rejoin_after_leave: Option<bool>,
    pub(super) pid_file: Option<PathBuf>,
    /// Deprecated in Consul in favour of `ui_config.enabled`.
    pub(super) ui: Option<bool>,
    /// Deprecated in Consul in favour of `ui_config.dir`.
    pub(super) ui_dir: Option<String>,
    pub(super) ui_config: Option<RawUiConfig>,
    pub(super) performance: Option<RawPerformance>,
    /// cairn-only explicit raft timings; Consul only has `performance.raft_multiplier`.
    pub(super) raft: Option<RawRaft>,
    pub(super) raft_protocol: Option<u32>,
    pub(super) autopilot: Option<RawAutopilot>,
    pub(super) raft_snapshot_threshold: Option<u64>,
    pub(super) raft_trailing_logs: Option<u64>,
    pub(super) limits: Option<RawLimits>,
    pub(super) default_query_time: Option<GoDuration>,
    pub(super) max_query_time: Option<GoDuration>,
    pub(super) dns_config: Option<RawDnsConfig>,
    pub(super) recursors: Option<Vec<String>>,
    pub(super) session_ttl_min: Option<GoDuration>,
    pub(super) kv_history_versions: Option<u32>,
    pub(super) kv_tombstone_ttl: Option<GoDuration>,
    pub(super) check_output_max_size: Option<usize>,
    pub(super) check_update_interval: Option<GoDuration>,
    // The four definition keys are only type-checked here, file by file: `load` moves the
    // definitions out of each file (with the file's name) before the files are merged.
    #[allow(dead_code)]
    #[serde(default, deserialize_with = "definitions")]
    pub(super) services: Option<Vec<Value>>,
    #[allow(dead_code)]
    #[serde(default, deserialize_with = "definitions")]
    pub(super) service: Option<Vec<Value>>,
    #[allow(dead_code)]
    #[serde(default, deserialize_with = "definitions")]
    pub(super) checks: Option<Vec<Value>>,
    #[allow(dead_code)]
    #[serde(default, deserialize_with = "definitions")]
    pub(super) check: Option<Vec<Value>>,
    pub(super) acl: Option<RawAcl>,
    pub(super) acl_master_token: Option<String>,
    pub(super) acl_token: Option<String>,
    pub(super) acl_agent_token: Option<String>,
    pub(super) acl_default_policy: Option<String>,
    pub(super) acl_datacenter: Option<String>,
    pub(super) tls: Option<super::tls::RawTls>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) ca_path: Option<PathBuf>,
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) verify_incoming: Option<bool>,
    pub(super) verify_incoming_rpc: Option<bool>,
    pub(super) verify_incoming_https: Option<bool>,
    pub(super) verify_outgoing: Option<bool>,
    pub(super) verify_server_hostname: Option<bool>,
    pub(super) tls_min_version: Option<String>,
    pub(super) tls_cipher_suites: Option<String>,
    pub(super) encrypt: Option<String>,
    pub(super) encrypt_verify_incoming: Option<bool>,
    pub(super) encrypt_verify_outgoing: Option<bool>,
    pub(super) gossip_lan: Option<super::gossip::RawGossipLan>,
    pub(super) reconnect_timeout: Option<GoDuration>,
    pub(super) leave_on_terminate: Option<bool>,
    pub(super) skip_leave_on_interrupt: Option<bool>,
    pub(super) primary_datacenter: Option<String>,
    pub(super) node_meta: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawPorts {
    pub(super) http: Option<Port>,
    pub(super) dns: Option<Port>,
    pub(super) server: Option<Port>,
    pub(super) serf_lan: Option<Port>,
    pub(super) https: Option<Port>,
    pub(super) grpc: Option<Port>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawUiConfig {
    pub(super) enabled: Option<bool>,
    /// Serve the dashboard from this directory instead of the embedded files (Consul's
    /// `ui_config.dir`).
    pub(super) dir: Option<String>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawPerformance {
    pub(super) raft_multiplier: Option<u32>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAutopilot {
    pub(super) cleanup_dead_servers: Option<bool>,
    pub(super) last_contact_threshold: Option<GoDuration>,
    pub(super) max_trailing_logs: Option<u64>,
    pub(super) server_stabilization_time: Option<GoDuration>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRaft {
    pub(super) heartbeat_interval: Option<GoDuration>,
    pub(super) election_timeout_min: Option<GoDuration>,
    pub(super) election_timeout_max: Option<GoDuration>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawLimits {
    pub(super) kv_max_value_size: Option<usize>,
    pub(super) txn_max_req_len: Option<usize>,
    pub(super) http_max_conns_per_client: Option<u32>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawDnsConfig {
    pub(super) only_passing: Option<bool>,
    pub(super) node_ttl: Option<GoDuration>,
    pub(super) service_ttl: Option<BTreeMap<String, GoDuration>>,
    pub(super) allow_stale: Option<bool>,
    pub(super) a_record_limit: Option<usize>,
    pub(super) udp_answer_limit: Option<usize>,
    pub(super) enable_truncate: Option<bool>,
    pub(super) recursor_strategy: Option<String>,
    pub(super) recursor_timeout: Option<GoDuration>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAcl {
    pub(super) enabled: Option<bool>,
    pub(super) default_policy: Option<String>,
    pub(super) down_policy: Option<String>,
    pub(super) enable_token_persistence: Option<bool>,
    pub(super) enable_key_list_policy: Option<bool>,
    pub(super) token_ttl: Option<GoDuration>,
    pub(super) policy_ttl: Option<GoDuration>,
    pub(super) role_ttl: Option<GoDuration>,
    pub(super) tokens: Option<RawAclTokens>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawAclTokens {
    pub(super) initial_management: Option<String>,
    /// Pre-1.11 name of `initial_management`.
    pub(super) master: Option<String>,
    pub(super) agent: Option<String>,
    pub(super) default: Option<String>,
    pub(super) agent_recovery: Option<String>,
    /// Pre-1.11 name of `agent_recovery`.
    pub(super) agent_master: Option<String>,
    pub(super) replication: Option<String>,
    pub(super) config_file_service_registration: Option<String>,
    pub(super) dns: Option<String>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

/// A Go duration string such as "10s", checked when the file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GoDuration(pub(super) std::time::Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_go_duration(&text)
            .map(GoDuration)
            .map_err(D::Error::custom)
    }
}

/// Consul's `client_addr`: one string holding space-separated IP addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AddrList(pub(super) Vec<IpAddr>);

impl<'de> Deserialize<'de> for AddrList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_addr_list(&text)
            .map(AddrList)
            .map_err(D::Error::custom)
    }
}

/// Parses a space-separated address list; go-sockaddr templates are not supported.
pub(super) fn parse_addr_list(text: &str) -> Result<Vec<IpAddr>, String> {
    let addrs = text
        .split_whitespace()
        .map(|part| {
            part.parse::<IpAddr>()
                .map_err(|_| format!("{part:?} is not an ip address (templates are not supported)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        Err("expected at least one ip address".to_string())
    } else {
        Ok(addrs)
    }
}

/// A port as Consul writes it: `<= 0` (usually -1) disables the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Port(pub(super) i64);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        check_port(i64::deserialize(deserializer)?)
            .map(Port)
            .map_err(D::Error::custom)
    }
}

pub(super) fn check_port(port: i64) -> Result<i64, String> {
    if port > i64::from(u16::MAX) {
        Err(format!(
            "invalid port {port}: use 1-65535, or -1 to disable"
        ))
    } else {
        Ok(port)
    }
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "trace" => Ok(LogLevel::Trace),
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "err" | "error" => Ok(LogLevel::Error),
            _ => Err(format!(
                "unknown log level {text:?} (use trace, debug, info, warn or err)"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(D::Error::custom)
    }
}

/// Service and check definitions: Consul allows one object or a list of objects.
fn definitions<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<Value>>, D::Error> {
    let definitions = match Option::<Value>::deserialize(deserializer)? {
        None => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(single) => vec![single],
    };
    if definitions.iter().any(|definition| !definition.is_object()) {
        return Err(D::Error::custom("expected an object or a list of objects"));
    }
    Ok(Some(definitions))
}

impl RawConfig {
    /// Dotted names of every key no struct declared, e.g. `telemetry`, `ports.grpc_tls`.
    pub(super) fn unknown_keys(&self) -> Vec<String> {
        let acl_tokens = self.acl.as_ref().and_then(|acl| acl.tokens.as_ref());
        let tls = self.tls.as_ref();
        let nested: [(&str, Option<&UnknownKeys>); 14] = [
            ("telemetry", self.telemetry.as_ref().map(|section| &section.unknown)),
            ("tls", tls.map(|section| &section.unknown)),
            ("tls.defaults", tls.and_then(|t| t.defaults.as_ref()).map(|section| &section.unknown)),
            ("tls.internal_rpc", tls.and_then(|t| t.internal_rpc.as_ref()).map(|section| &section.unknown)),
            ("autopilot", self.autopilot.as_ref().map(|section| &section.unknown)),
            ("ports", self.ports.as_ref().map(|section| &section.unknown)),
            (
                "ui_config",
                self.ui_config.as_ref().map(|section| &section.unknown),
            ),
            (
                "performance",
                self.performance.as_ref().map(|section| &section.unknown),
            ),
            ("raft", self.raft.as_ref().map(|section| &section.unknown)),
            ("gossip_lan", self.gossip_lan.as_ref().map(|section| &section.unknown)),
            (
                "limits",
                self.limits.as_ref().map(|section| &section.unknown),
            ),
            (
                "dns_config",
                self.dns_config.as_ref().map(|section| &section.unknown),
            ),
            ("acl", self.acl.as_ref().map(|section| &section.unknown)),
            ("acl.tokens", acl_tokens.map(|section| &section.unknown)),
        ];
        let mut keys: Vec<String> = self.unknown.keys().cloned().collect();
        for (prefix, unknown) in nested {
            keys.extend(
                unknown
                    .into_iter()
                    .flat_map(|map| map.keys())
                    .map(|key| format!("{prefix}.{key}")),
            );
        }
        keys
    }

    /// Deprecated spellings that still work, as (old key, replacement).
    pub(super) fn deprecated_keys(&self) -> Vec<(&'static str, &'static str)> {
        let acl_tokens = self.acl.as_ref().and_then(|acl| acl.tokens.as_ref());
        let master = acl_tokens.and_then(|tokens| tokens.master.as_ref());
        let agent_master = acl_tokens.and_then(|tokens| tokens.agent_master.as_ref());
        [
            (agent_master.is_some(), "acl.tokens.agent_master", "acl.tokens.agent_recovery"),
            (self.ui.is_some(), "ui", "ui_config.enabled"),
            (self.ui_dir.is_some(), "ui_dir", "ui_config.dir"),
            (
                master.is_some(),
                "acl.tokens.master",
                "acl.tokens.initial_management",
            ),
            (
                self.acl_master_token.is_some(),
                "acl_master_token",
                "acl.tokens.initial_management",
            ),
            (self.acl_token.is_some(), "acl_token", "acl.tokens.default"),
            (
                self.acl_agent_token.is_some(),
                "acl_agent_token",
                "acl.tokens.agent",
            ),
            (
                self.acl_default_policy.is_some(),
                "acl_default_policy",
                "acl.default_policy",
            ),
            (
                self.acl_datacenter.is_some(),
                "acl_datacenter",
                "primary_datacenter",
            ),
        ]
        .into_iter()
        .filter(|(present, _, _)| *present)
        .map(|(_, old, new)| (old, new))
        .collect()
    }
}

/// Parses a Consul JSON document; the top level must be an object.
pub(super) fn parse_json(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text).map_err(|error| error.to_string())? {
        Value::Object(map) => Ok(map),
        _ => Err("the top level must be an object".to_string()),
    }
}

/// Parses our TOML format into the same JSON shape Consul files have.
pub(super) fn parse_toml(text: &str) -> Result<Map<String, Value>, String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|error| error.to_string().trim_end().to_string())?;
    match serde_json::to_value(table).map_err(|error| error.to_string())? {
        Value::Object(map) => Ok(map),
        _ => Err("the top level must be a table".to_string()),
    }
}
