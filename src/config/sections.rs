//! The sections of the runtime configuration that stand on their own: listener ports, Raft
//! timing, autopilot, HTTP limits and DNS options, each with its defaults (Consul's, or the
//! `-dev` ones) and its `build` from the raw keys. [`super::runtime::RuntimeConfig::build`]
//! calls these; the cross-field rules run afterwards in `mod.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::ConfigError;
use super::raw::{GoDuration, Port, RawDnsConfig, RawLimits, RawPorts, RawRaft};
use super::recursors::{Recursor, RecursorStrategy, parse_recursors, parse_strategy, recursor_timeout_ms};

const DEFAULT_HTTP_PORT: u16 = 8500;
const DEFAULT_DNS_PORT: u16 = 8600;
const DEFAULT_SERVER_PORT: u16 = 8300;
pub const DEFAULT_SERF_LAN_PORT: u16 = 8301;
/// Consul's production default; `-dev` uses 1 (the fastest supported).
/// Consul defaults to 5 (5 s election timeout); cairn defaults to Consul's production advice,
/// 1, so that writes resume within about 2 s after a leader dies on a LAN.
const DEFAULT_RAFT_MULTIPLIER: u32 = 1;
const DEFAULT_KV_MAX_VALUE_SIZE_BYTES: usize = 512 * 1024;
const DEFAULT_TXN_MAX_REQ_LEN_BYTES: usize = 512 * 1024;
/// Head-room for JSON framing and base64 expansion around the largest payload.
const HTTP_BODY_OVERHEAD_BYTES: usize = 64 * 1024;

/// Listener ports; `None` means the listener is disabled (Consul's `-1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub http: Option<u16>,
    pub dns: Option<u16>,
    pub server: u16,
    pub serf_lan: u16,
    pub https: Option<u16>,
    pub grpc: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Autopilot {
    /// Remove failed servers from the Raft configuration when a replacement joins.
    pub cleanup_dead_servers: bool,
    /// A server that has not heard from the leader for longer is unhealthy.
    pub last_contact_threshold_ms: u64,
    /// A server more than this many entries behind the leader is unhealthy.
    pub max_trailing_logs: u64,
    /// A new server must stay healthy this long before it becomes a voter.
    pub server_stabilization_time_ms: u64,
}

impl Autopilot {
    /// Consul's defaults.
    pub(super) fn build(raw: Option<&super::raw::RawAutopilot>) -> Autopilot {
        let millis = |value: Option<GoDuration>, default: u64| {
            value.map_or(default, |duration| u64::try_from(duration.0.as_millis()).unwrap_or(u64::MAX))
        };
        Autopilot {
            cleanup_dead_servers: raw.and_then(|r| r.cleanup_dead_servers).unwrap_or(true),
            last_contact_threshold_ms: millis(raw.and_then(|r| r.last_contact_threshold), 200),
            max_trailing_logs: raw.and_then(|r| r.max_trailing_logs).unwrap_or(250),
            server_stabilization_time_ms: millis(raw.and_then(|r| r.server_stabilization_time), 10_000),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    pub raft_multiplier: u32,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub snapshot_threshold_entries: u64,
    pub trailing_logs_entries: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub kv_max_value_size_bytes: usize,
    pub txn_max_req_len_bytes: usize,
    pub http_max_conns_per_client: u32,
    /// Derived: the larger of the two payload limits plus 64 KiB of framing.
    pub http_body_bytes_max: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsOptions {
    pub only_passing: bool,
    pub node_ttl_s: u32,
    /// Consul's `dns_config.service_ttl`: a service name, a `prefix*` or `*` → seconds.
    pub service_ttls_s: BTreeMap<String, u32>,
    pub allow_stale: bool,
    pub a_record_limit: usize,
    pub udp_answer_limit: usize,
    pub enable_truncate: bool,
    /// Upstream DNS servers for names outside our domains (`recursors`, `-recursor`).
    pub recursors: Vec<Recursor>,
    pub recursor_strategy: RecursorStrategy,
    /// One exchange with one recursor (Consul's `recursor_timeout`, 2 s by default).
    pub recursor_timeout_ms: u64,
}

/// Whole seconds, rounding a fractional second up so "500ms" never becomes 0.
fn seconds_rounded_up(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

pub(super) fn seconds_or(value: Option<GoDuration>, default_s: u64) -> u64 {
    value.map_or(default_s, |duration| seconds_rounded_up(duration.0))
}

/// A port that may be disabled: unset -> default, `<= 0` -> disabled (Consul's rule).
fn optional_port(value: Option<Port>, default: Option<u16>) -> Option<u16> {
    match value {
        None => default,
        Some(Port(port)) => u16::try_from(port).ok().filter(|port| *port > 0),
    }
}

fn required_port(key: &str, value: Option<Port>, default: u16) -> Result<u16, ConfigError> {
    optional_port(value, Some(default))
        .ok_or_else(|| ConfigError::Invalid(format!("{key} cannot be disabled")))
}

impl Ports {
    /// Server RPC and LAN gossip cannot be switched off; the listeners can.
    pub(super) fn build(raw: &RawPorts) -> Result<Self, ConfigError> {
        Ok(Ports {
            http: optional_port(raw.http, Some(DEFAULT_HTTP_PORT)),
            dns: optional_port(raw.dns, Some(DEFAULT_DNS_PORT)),
            server: required_port("ports.server", raw.server, DEFAULT_SERVER_PORT)?,
            serf_lan: required_port("ports.serf_lan", raw.serf_lan, DEFAULT_SERF_LAN_PORT)?,
            https: optional_port(raw.https, None),
            grpc: optional_port(raw.grpc, None),
        })
    }
}

impl RaftTiming {
    pub(super) fn build(
        raft_multiplier: Option<u32>,
        overrides: &RawRaft,
        snapshot_threshold: Option<u64>,
        trailing_logs: Option<u64>,
        dev: bool,
    ) -> Self {
        let raft_multiplier =
            raft_multiplier.unwrap_or(if dev { 1 } else { DEFAULT_RAFT_MULTIPLIER });
        // Dev mode wants a leader well within a second; otherwise scale like Consul
        // (multiplier 1 = 1 s election timeout). The range is checked by `validate`.
        let (heartbeat_ms, election_min_ms, election_max_ms) = if dev && raft_multiplier == 1 {
            (50, 150, 300)
        } else {
            // Per unit: 100 ms heartbeat, 500-1000 ms randomized election timeout.
            let multiplier = u64::from(raft_multiplier);
            (100 * multiplier, 500 * multiplier, 1000 * multiplier)
        };
        let millis = |value: Option<GoDuration>, default: u64| {
            value.map_or(default, |duration| {
                u64::try_from(duration.0.as_millis()).unwrap_or(u64::MAX)
            })
        };
        RaftTiming {
            raft_multiplier,
            heartbeat_interval_ms: millis(overrides.heartbeat_interval, heartbeat_ms),
            election_timeout_min_ms: millis(overrides.election_timeout_min, election_min_ms),
            election_timeout_max_ms: millis(overrides.election_timeout_max, election_max_ms),
            snapshot_threshold_entries: snapshot_threshold.unwrap_or(16384),
            trailing_logs_entries: trailing_logs.unwrap_or(10240),
        }
    }
}

impl Limits {
    pub(super) fn build(raw: &RawLimits) -> Self {
        let kv_max_value_size_bytes = raw
            .kv_max_value_size
            .unwrap_or(DEFAULT_KV_MAX_VALUE_SIZE_BYTES);
        let txn_max_req_len_bytes = raw.txn_max_req_len.unwrap_or(DEFAULT_TXN_MAX_REQ_LEN_BYTES);
        let largest_payload_bytes = kv_max_value_size_bytes.max(txn_max_req_len_bytes);
        Limits {
            kv_max_value_size_bytes,
            txn_max_req_len_bytes,
            http_max_conns_per_client: raw.http_max_conns_per_client.unwrap_or(200),
            http_body_bytes_max: largest_payload_bytes.saturating_add(HTTP_BODY_OVERHEAD_BYTES),
        }
    }
}

impl DnsOptions {
    pub(super) fn build(raw: RawDnsConfig, recursors: &[String]) -> Result<Self, ConfigError> {
        let ttl_s = |value| u32::try_from(seconds_or(value, 0)).unwrap_or(u32::MAX);
        let service_ttls_s = raw
            .service_ttl
            .unwrap_or_default()
            .into_iter()
            .map(|(service, ttl)| (service, ttl_s(Some(ttl))))
            .collect();
        Ok(DnsOptions {
            only_passing: raw.only_passing.unwrap_or(false),
            node_ttl_s: ttl_s(raw.node_ttl),
            service_ttls_s,
            allow_stale: raw.allow_stale.unwrap_or(true),
            a_record_limit: raw.a_record_limit.unwrap_or(0),
            udp_answer_limit: raw.udp_answer_limit.unwrap_or(3),
            enable_truncate: raw.enable_truncate.unwrap_or(false),
            recursors: parse_recursors(recursors)?,
            recursor_strategy: parse_strategy(raw.recursor_strategy.as_deref())?,
            recursor_timeout_ms: recursor_timeout_ms(raw.recursor_timeout.map(|timeout| timeout.0))?,
        })
    }
}
