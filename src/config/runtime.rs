//! The validated, fully defaulted runtime configuration the rest of cairn reads.
//!
//! Defaults live here and in the section builders: `raw.rs` only says what a file
//! or flag set, and [`RuntimeConfig::build`] turns "unset" into Consul's default
//! (or the `-dev` default) and converts durations into plain integer fields whose
//! names end in their unit. The self-contained sections (ports, Raft timing,
//! autopilot, limits, DNS) are built in `sections.rs`; gossip, TLS and telemetry
//! in their own modules. The cross-field rules (Consul's `Builder.Validate`) run on
//! the finished value in `mod.rs`, so they read typed, defaulted fields only.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use super::ConfigError;
pub use super::go_duration::{DurationError, parse_go_duration};
use super::gossip::{GossipSettings, RawGossip};
use super::raw::RawConfig;
use super::sections::{Autopilot, DnsOptions, Limits, Ports, RaftTiming, seconds_or};
use super::telemetry::{LogFileConfig, RawLogFile, TelemetrySettings};
use super::tls::{RawTlsBlock, RawTlsKeys, TlsSettings};

/// Everything the agent needs to start, with no `Option` left where a default exists.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    pub node_name: String,
    /// Lowercased UUID; `None` means the agent derives or persists one itself.
    pub node_id: Option<String>,
    pub datacenter: String,
    /// Always fully qualified (trailing dot), e.g. `consul.`.
    pub domain: String,
    /// Consul's `alt_domain`: a second domain DNS answers under; fully qualified when set.
    pub alt_domain: Option<String>,
    pub server: bool,
    pub bootstrap: bool,
    pub bootstrap_expect: u32,
    pub dev: bool,
    /// `None` only in `-dev` mode, where the agent makes a temporary directory.
    pub data_dir: Option<PathBuf>,
    pub client_addrs: Vec<IpAddr>,
    pub bind_addr: IpAddr,
    pub advertise_addr: Option<IpAddr>,
    pub ports: Ports,
    pub log_level: LogLevel,
    pub log_json: bool,
    /// `log_file` and its rotation; `None` logs to stdout only.
    pub log_file: Option<super::telemetry::LogFileConfig>,
    /// Consul's `telemetry` block (`config::telemetry`).
    pub telemetry: super::telemetry::TelemetrySettings,
    pub enable_script_checks: bool,
    pub enable_local_script_checks: bool,
    pub retry_join: Vec<String>,
    pub retry_interval_s: u64,
    /// 0 means retry forever, like Consul's `retry_max`.
    pub retry_max_attempts: u32,
    pub rejoin_after_leave: bool,
    pub pid_file: Option<PathBuf>,
    pub ui: bool,
    /// `ui_config.dir`: the dashboard's files come from here instead of the binary.
    pub ui_dir: Option<PathBuf>,
    pub raft: RaftTiming,
    pub autopilot: Autopilot,
    pub limits: Limits,
    pub default_query_time_s: u64,
    pub max_query_time_s: u64,
    pub dns: DnsOptions,
    /// The shortest session TTL `session/create` accepts (Consul's `session_ttl_min`), kept to
    /// the millisecond so "500ms" is not rounded to a second.
    pub session_ttl_min_ms: u64,
    /// Versions of each KV key kept for `?history` (a replicated setting: the leader's wins).
    /// The catalog bounds it (`catalog::kv::KV_HISTORY_VERSIONS_MAX`).
    pub kv_history_versions: u32,
    /// How long a deleted key's tombstone (and history) is kept before the leader reaps it.
    pub kv_tombstone_ttl_ms: u64,
    pub check_output_max_size_bytes: usize,
    /// Consul's `check_update_interval`: a check result that changes only the output is
    /// written to the catalog at most this often (0: at once, like a status change).
    pub check_update_interval_ms: u64,
    /// Consul service definitions (`services` and `service`), undecoded, with their files.
    pub services: Vec<super::ConfigDefinition>,
    /// Consul check definitions (`checks` and `check`), undecoded, with their files.
    pub checks: Vec<super::ConfigDefinition>,
    pub acl_enabled: bool,
    /// `allow` or `deny`.
    pub acl_default_policy: String,
    /// `allow`, `deny`, `extend-cache` or `async-cache`: what a client agent does when no server
    /// can resolve a token (servers resolve from their own state and never need it).
    pub acl_down_policy: String,
    /// Tokens set with `PUT /v1/agent/token/*` are kept in `<data_dir>/acl-tokens.json`.
    pub acl_enable_token_persistence: bool,
    /// `?recurse` and `?keys` KV reads need `list` on the prefix (Consul's `enable_key_list_policy`).
    pub acl_enable_key_list_policy: bool,
    /// How long a client agent may keep a resolved token, policy or role (Consul's `*_ttl`).
    pub acl_token_ttl_ms: u64,
    pub acl_policy_ttl_ms: u64,
    pub acl_role_ttl_ms: u64,
    pub acl_tokens: AclTokens,
    /// LAN gossip: the key, timing, reaping and leaving (`config::gossip`).
    pub gossip: GossipSettings,
    /// TLS on the server port (`config::tls`); `None` when no TLS key was set.
    pub tls_rpc: Option<TlsSettings>,
    /// TLS on the HTTPS API port; `None` when no TLS key was set.
    pub tls_https: Option<TlsSettings>,
    pub primary_datacenter: Option<String>,
    pub node_meta: BTreeMap<String, String>,
}

/// ACL secrets; `Debug` prints only whether each is set, so logging the config is safe.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AclTokens {
    pub initial_management: Option<String>,
    pub agent: Option<String>,
    pub default: Option<String>,
    /// Allows this agent's own `/v1/agent/*` endpoints when the servers cannot resolve tokens.
    pub agent_recovery: Option<String>,
    pub replication: Option<String>,
    pub config_file_service_registration: Option<String>,
    /// The token DNS answers are filtered with (Consul 1.17+); the default token when unset.
    pub dns: Option<String>,
}

impl std::fmt::Debug for AclTokens {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |token: &Option<String>| token.as_ref().map(|_| "<redacted>");
        formatter
            .debug_struct("AclTokens")
            .field("initial_management", &redact(&self.initial_management))
            .field("agent", &redact(&self.agent))
            .field("default", &redact(&self.default))
            .field("agent_recovery", &redact(&self.agent_recovery))
            .field("replication", &redact(&self.replication))
            .field("config_file_service_registration", &redact(&self.config_file_service_registration))
            .field("dns", &redact(&self.dns))
            .finish()
    }
}

/// Log verbosity with hclog's names; parsing is case-insensitive like Consul.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    /// The name `tracing`'s env-filter understands.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// The TLS keys, the `tls` block and the pre-1.12 top-level ones beside it, taken out of `raw`.
fn tls_keys(raw: &mut RawConfig) -> RawTlsKeys {
    RawTlsKeys {
        tls: raw.tls.take(),
        legacy: RawTlsBlock {
            ca_file: raw.ca_file.take(),
            ca_path: raw.ca_path.take(),
            cert_file: raw.cert_file.take(),
            key_file: raw.key_file.take(),
            verify_incoming: raw.verify_incoming.take(),
            verify_outgoing: raw.verify_outgoing.take(),
            verify_server_hostname: raw.verify_server_hostname.take(),
            tls_min_version: raw.tls_min_version.take(),
            tls_cipher_suites: raw.tls_cipher_suites.take(),
            unknown: Default::default(),
        },
        verify_incoming_rpc: raw.verify_incoming_rpc.take(),
        verify_incoming_https: raw.verify_incoming_https.take(),
    }
}

/// The configured node name, else the hostname; a name DNS cannot carry is allowed with a
/// warning, as in Consul.
fn node_name(configured: Option<String>, warnings: &mut Vec<String>) -> String {
    let name = configured.filter(|name| !name.is_empty()).unwrap_or_else(default_node_name);
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        warnings.push(format!("node name {name:?} will not be discoverable via dns due to invalid characters"));
    }
    name
}

/// A domain with its trailing dot.
fn fully_qualified(mut domain: String) -> String {
    if !domain.ends_with('.') {
        domain.push('.');
    }
    domain
}

/// The machine's hostname without libc: procfs first, then /etc/hostname.
fn default_node_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim().to_string())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "cairn".to_string())
}

impl RuntimeConfig {
    /// Applies defaults (dev-aware) to the merged sources, like Consul's
    /// `Builder.Build`; the cross-field rules are checked afterwards by
    /// `validate` in `mod.rs`, like Consul's `Builder.Validate`.
    pub(super) fn build(
        mut raw: RawConfig,
        dev: bool,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        // First, before any field is moved out of `raw`.
        let tls = TlsSettings::build(tls_keys(&mut raw), raw.server.unwrap_or(dev))?;
        let mut bootstrap = raw.bootstrap.unwrap_or(dev);
        let mut bootstrap_expect = raw.bootstrap_expect.unwrap_or(0);
        // Consul converts before validating, so `bootstrap_expect = 1` is legal even in -dev.
        if bootstrap_expect == 1 {
            warnings
                .push("bootstrap_expect is set to 1; this is the same as bootstrap mode".into());
            (bootstrap, bootstrap_expect) = (true, 0);
        }
        let node_name = node_name(raw.node_name, warnings);
        let domain = fully_qualified(raw.domain.unwrap_or_else(|| "consul.".to_string()));
        let alt_domain = raw.alt_domain.filter(|alt| !alt.trim().is_empty()).map(fully_qualified);
        let primary_datacenter = raw.primary_datacenter.or(raw.acl_datacenter.clone());
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let any_addr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let raft_multiplier = raw.performance.and_then(|section| section.raft_multiplier);
        let raft = RaftTiming::build(
            raft_multiplier,
            &raw.raft.unwrap_or_default(),
            raw.raft_snapshot_threshold,
            raw.raft_trailing_logs,
            dev,
        );
        if raw.raft_protocol.is_some_and(|version| version != 3) {
            warnings.push("raft_protocol: only raft protocol 3 is supported; ignored".into());
        }
        let recursors = raw.recursors.unwrap_or_default();
        // New-style ACL keys win over the pre-1.4 top-level ones.
        let acl = raw.acl.unwrap_or_default();
        let tokens = acl.tokens.unwrap_or_default();
        let acl_default_policy = acl.default_policy.or(raw.acl_default_policy);
        let ui_enabled = raw.ui_config.as_ref().and_then(|section| section.enabled);
        let ui_dir = raw.ui_config.and_then(|section| section.dir).or(raw.ui_dir).map(PathBuf::from);

        Ok(RuntimeConfig {
            node_name,
            // Consul lowercases both identifiers before checking them.
            node_id: raw.node_id.map(|id| id.to_ascii_lowercase()),
            datacenter: raw
                .datacenter
                .unwrap_or_else(|| "dc1".to_string())
                .to_ascii_lowercase(),
            domain,
            alt_domain,
            server: raw.server.unwrap_or(dev),
            bootstrap,
            bootstrap_expect,
            dev,
            data_dir: raw.data_dir.filter(|dir| !dir.as_os_str().is_empty()),
            client_addrs: raw
                .client_addr
                .map_or_else(|| vec![loopback], |list| list.0),
            bind_addr: raw
                .bind_addr
                .unwrap_or(if dev { loopback } else { any_addr }),
            advertise_addr: raw.advertise_addr,
            ports: Ports::build(&raw.ports.unwrap_or_default())?,
            log_level: raw.log_level.unwrap_or(LogLevel::Info),
            log_json: raw.log_json.unwrap_or(false),
            log_file: LogFileConfig::build(RawLogFile {
                log_file: raw.log_file,
                log_rotate_bytes: raw.log_rotate_bytes,
                log_rotate_duration: raw.log_rotate_duration,
                log_rotate_max_files: raw.log_rotate_max_files,
            })?,
            telemetry: TelemetrySettings::build(raw.telemetry, default_node_name)?,
            enable_script_checks: raw.enable_script_checks.unwrap_or(false),
            enable_local_script_checks: raw.enable_local_script_checks.unwrap_or(false),
            retry_join: raw.retry_join.unwrap_or_default(),
            retry_interval_s: seconds_or(raw.retry_interval, 30),
            retry_max_attempts: raw.retry_max.unwrap_or(0),
            rejoin_after_leave: raw.rejoin_after_leave.unwrap_or(false),
            pid_file: raw.pid_file,
            ui: ui_enabled.or(raw.ui).unwrap_or(true),
            ui_dir,
            raft,
            autopilot: Autopilot::build(raw.autopilot.as_ref()),
            limits: Limits::build(&raw.limits.unwrap_or_default()),
            default_query_time_s: seconds_or(raw.default_query_time, 300),
            max_query_time_s: seconds_or(raw.max_query_time, 600),
            dns: DnsOptions::build(raw.dns_config.unwrap_or_default(), &recursors)?,
            session_ttl_min_ms: raw.session_ttl_min.map_or(10_000, |d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX)),
            // Opt-in: each archived version costs a row write on every server (about 15% of
            // write throughput at 64 clients, BENCHMARKS.md), which Consul users do not expect.
            kv_history_versions: raw.kv_history_versions.unwrap_or(1),
            kv_tombstone_ttl_ms: raw.kv_tombstone_ttl.map_or(15 * 60 * 1000, |d| d.0.as_millis() as u64),
            check_output_max_size_bytes: raw.check_output_max_size.unwrap_or(4096),
            check_update_interval_ms: raw.check_update_interval.map_or(5 * 60 * 1000, |d| d.0.as_millis() as u64),
            // `load` takes the definitions out of each file before merging, so that they keep
            // the name of their file, and puts them back here.
            services: Vec::new(),
            checks: Vec::new(),
            // Before Consul 1.4, setting acl_datacenter is what turned ACLs on.
            acl_enabled: acl.enabled.unwrap_or(raw.acl_datacenter.is_some()),
            acl_default_policy: acl_default_policy.unwrap_or_else(|| "allow".to_string()),
            acl_down_policy: acl.down_policy.unwrap_or_else(|| "extend-cache".to_string()),
            acl_enable_token_persistence: acl.enable_token_persistence.unwrap_or(false),
            acl_enable_key_list_policy: acl.enable_key_list_policy.unwrap_or(false),
            acl_token_ttl_ms: acl.token_ttl.map_or(30_000, |d| d.0.as_millis() as u64),
            acl_policy_ttl_ms: acl.policy_ttl.map_or(30_000, |d| d.0.as_millis() as u64),
            acl_role_ttl_ms: acl.role_ttl.map_or(30_000, |d| d.0.as_millis() as u64),
            acl_tokens: AclTokens {
                initial_management: (tokens.initial_management.or(tokens.master))
                    .or(raw.acl_master_token),
                agent: tokens.agent.or(raw.acl_agent_token),
                default: tokens.default.or(raw.acl_token),
                agent_recovery: tokens.agent_recovery.or(tokens.agent_master),
                replication: tokens.replication,
                config_file_service_registration: tokens.config_file_service_registration,
                dns: tokens.dns,
            },
            gossip: GossipSettings::build(
                RawGossip {
                    encrypt: raw.encrypt,
                    encrypt_verify_incoming: raw.encrypt_verify_incoming,
                    encrypt_verify_outgoing: raw.encrypt_verify_outgoing,
                    gossip_lan: raw.gossip_lan,
                    reconnect_timeout: raw.reconnect_timeout,
                    leave_on_terminate: raw.leave_on_terminate,
                    skip_leave_on_interrupt: raw.skip_leave_on_interrupt,
                },
                raw.server.unwrap_or(dev),
                dev,
            )?,
            tls_rpc: tls.rpc,
            tls_https: tls.https,
            primary_datacenter: primary_datacenter.map(|name| name.to_ascii_lowercase()),
            node_meta: raw.node_meta.unwrap_or_default(),
        })
    }
}
