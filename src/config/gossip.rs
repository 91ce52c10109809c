//! The LAN gossip settings: Consul's `encrypt`, `encrypt_verify_incoming`/`_outgoing`,
//! `gossip_lan`, `reconnect_timeout`, `leave_on_terminate` and `skip_leave_on_interrupt`.
//!
//! Defaults are memberlist's LAN values (Consul's), and `-dev` uses Consul's dev values (faster
//! probes), so a dev cluster notices a dead member within a second or so.

use base64::Engine as _;
use serde::Deserialize;

use super::ConfigError;
use super::raw::{GoDuration, UnknownKeys};

/// Consul refuses a `reconnect_timeout` below 8 minutes.
pub const RECONNECT_TIMEOUT_MS_MIN: u64 = 8 * 60 * 1000;
/// Consul's default: a failed member is kept 72 hours before it is reaped.
const RECONNECT_TIMEOUT_MS_DEFAULT: u64 = 72 * 3600 * 1000;
/// A gossip key is 16, 24 or 32 bytes (AES-128, -192 or -256).
const GOSSIP_KEY_BYTES: [usize; 3] = [16, 24, 32];

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawGossipLan {
    pub(super) gossip_nodes: Option<usize>,
    pub(super) gossip_interval: Option<GoDuration>,
    pub(super) probe_interval: Option<GoDuration>,
    pub(super) probe_timeout: Option<GoDuration>,
    pub(super) retransmit_mult: Option<u32>,
    pub(super) suspicion_mult: Option<u32>,
    #[serde(flatten)]
    pub(super) unknown: UnknownKeys,
}

/// The raw keys this file turns into [`GossipSettings`].
pub(super) struct RawGossip {
    pub(super) encrypt: Option<String>,
    pub(super) encrypt_verify_incoming: Option<bool>,
    pub(super) encrypt_verify_outgoing: Option<bool>,
    pub(super) gossip_lan: Option<RawGossipLan>,
    pub(super) reconnect_timeout: Option<GoDuration>,
    pub(super) leave_on_terminate: Option<bool>,
    pub(super) skip_leave_on_interrupt: Option<bool>,
}

/// Consul's `gossip_lan` block, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GossipLan {
    pub gossip_nodes: usize,
    pub gossip_interval_ms: u64,
    pub probe_interval_ms: u64,
    pub probe_timeout_ms: u64,
    pub retransmit_mult: u32,
    pub suspicion_mult: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipSettings {
    /// The base64 gossip key, checked to be 16, 24 or 32 bytes.
    pub encrypt: Option<String>,
    pub encrypt_verify_incoming: bool,
    pub encrypt_verify_outgoing: bool,
    pub lan: GossipLan,
    pub reconnect_timeout_ms: u64,
    /// Leave the pool gracefully on SIGTERM (Consul: true for clients, false for servers).
    pub leave_on_terminate: bool,
    /// Stay in the pool on SIGINT (Consul: true for servers, false for clients).
    pub skip_leave_on_interrupt: bool,
}

fn ms(value: Option<GoDuration>, default_ms: u64) -> u64 {
    value.map_or(default_ms, |d| d.0.as_millis() as u64)
}

impl GossipSettings {
    pub(super) fn build(raw: RawGossip, server: bool, dev: bool) -> Result<GossipSettings, ConfigError> {
        if let Some(key) = &raw.encrypt {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(key.trim())
                .map_err(|e| ConfigError::Invalid(format!("encrypt: the key is not valid base64: {e}")))?;
            if !GOSSIP_KEY_BYTES.contains(&bytes.len()) {
                return Err(ConfigError::Invalid(format!(
                    "encrypt: the key must be 16, 24 or 32 bytes (it is {}); `cairn keygen` makes one",
                    bytes.len()
                )));
            }
        }
        let lan = raw.gossip_lan.unwrap_or_default();
        // Consul's DevConfig gossips faster; memberlist's DefaultLANConfig otherwise.
        let (interval, probe, timeout, suspicion) = if dev { (100, 100, 100, 3) } else { (200, 1_000, 500, 4) };
        let lan = GossipLan {
            gossip_nodes: lan.gossip_nodes.unwrap_or(3),
            gossip_interval_ms: ms(lan.gossip_interval, interval),
            probe_interval_ms: ms(lan.probe_interval, probe),
            probe_timeout_ms: ms(lan.probe_timeout, timeout),
            retransmit_mult: lan.retransmit_mult.unwrap_or(4),
            suspicion_mult: lan.suspicion_mult.unwrap_or(suspicion),
        };
        let rules = [
            (lan.gossip_nodes == 0, "gossip_lan.gossip_nodes must be at least 1"),
            (lan.gossip_interval_ms == 0, "gossip_lan.gossip_interval must be positive"),
            (lan.probe_interval_ms == 0, "gossip_lan.probe_interval must be positive"),
            (lan.probe_timeout_ms == 0 || lan.probe_timeout_ms > lan.probe_interval_ms, "gossip_lan.probe_timeout must be positive and at most probe_interval"),
            (lan.retransmit_mult == 0, "gossip_lan.retransmit_mult must be at least 1"),
            (lan.suspicion_mult == 0, "gossip_lan.suspicion_mult must be at least 1"),
        ];
        if let Some((_, message)) = rules.iter().find(|(broken, _)| *broken) {
            return Err(ConfigError::Invalid((*message).to_string()));
        }
        let reconnect_timeout_ms = ms(raw.reconnect_timeout, RECONNECT_TIMEOUT_MS_DEFAULT);
        if reconnect_timeout_ms < RECONNECT_TIMEOUT_MS_MIN {
            return Err(ConfigError::Invalid("reconnect_timeout must be >= 8m0s".into()));
        }
        Ok(GossipSettings {
            encrypt: raw.encrypt.map(|key| key.trim().to_string()),
            encrypt_verify_incoming: raw.encrypt_verify_incoming.unwrap_or(true),
            encrypt_verify_outgoing: raw.encrypt_verify_outgoing.unwrap_or(true),
            lan,
            reconnect_timeout_ms,
            leave_on_terminate: raw.leave_on_terminate.unwrap_or(!server),
            skip_leave_on_interrupt: raw.skip_leave_on_interrupt.unwrap_or(server),
        })
    }
}
