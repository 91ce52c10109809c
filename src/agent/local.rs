//! The agent's local state: the services and checks registered with *this* agent.
//!
//! Like Consul's `agent/local`, this is the source of truth for the agent's own node: the
//! catalog is brought in line with it by anti-entropy (`agent::anti_entropy`). It is persisted
//! in the `agent` column family so a restarted agent still knows (and keeps syncing) what was
//! registered with it.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::catalog::command::{CheckRegistration, ServiceRegistration};

mod checks;
pub use checks::LocalChecks;

/// Format versions of persisted local entries. V1: the first shape (TTL, HTTP, TCP and script
/// runners; no check options). V2: `LocalCheck::options`, `CheckRunner::Http::tls_server_name`
/// and the gRPC, H2PING, UDP and alias runners. V1 bytes still decode (`v1`); V2 is written.
const LOCAL_FORMAT_V1: u8 = 1;
const LOCAL_FORMAT_V2: u8 = 2;
pub(crate) const SERVICE_PREFIX: &str = "svc/";
pub(crate) const CHECK_PREFIX: &str = "chk/";

/// How the agent runs a check. A serializable mirror of `checks::CheckKind`. Variants and
/// fields are a format promise (`tests::local_format_v2_is_pinned`): append variants only, and
/// a new field needs a new format version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckRunner {
    Ttl { ttl_ms: u64 },
    Http { url: String, method: String, headers: Vec<(String, String)>, body: Option<String>, tls_skip_verify: bool, tls_server_name: String, interval_ms: u64, timeout_ms: u64 },
    Tcp { address: String, interval_ms: u64, timeout_ms: u64 },
    Script { args: Vec<String>, interval_ms: u64, timeout_ms: u64 },
    /// `target` is Consul's `host:port[/service]`.
    Grpc { target: String, use_tls: bool, tls_skip_verify: bool, tls_server_name: String, interval_ms: u64, timeout_ms: u64 },
    H2Ping { address: String, use_tls: bool, tls_skip_verify: bool, tls_server_name: String, interval_ms: u64, timeout_ms: u64 },
    Udp { address: String, interval_ms: u64, timeout_ms: u64 },
    /// Mirrors another service's health; `node` empty means this agent's own services.
    Alias { service_id: String, node: String },
}

/// Consul's per-check options beside the runner (`SuccessBeforePassing`, ...). Zero means
/// "not set" for every field, as in Consul.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOptions {
    pub success_before_passing: u32,
    pub failures_before_warning: u32,
    pub failures_before_critical: u32,
    /// The owning service is deregistered once this check has been critical this long
    /// (raised to Consul's one-minute minimum when the reaper reads it).
    pub deregister_critical_service_after_ms: u64,
    /// Caps the output below the agent's `check_output_max_size`.
    pub output_max_size: u64,
}

/// A check registered with this agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalCheck {
    pub registration: CheckRegistration,
    /// `None` for checks the agent does not run itself (maintenance checks).
    pub runner: Option<CheckRunner>,
    pub options: CheckOptions,
}

/// A service registered with this agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalService {
    pub registration: ServiceRegistration,
}

/// Everything registered with this agent.
#[derive(Clone, Debug, Default)]
pub struct LocalState {
    pub services: BTreeMap<String, LocalService>,
    /// Indexed by service too (`checks`).
    pub checks: LocalChecks,
    /// Not persisted. When each check last turned critical (Consul's `CriticalTime`), for
    /// `DeregisterCriticalServiceAfter`; a restart starts the clocks anew, as in Consul.
    pub critical_since: BTreeMap<String, Instant>,
    /// Not persisted. Checks whose output changed without a status change, with the time the
    /// new output may be written to the catalog (Consul's `check_update_interval` deferral).
    /// Anti-entropy ignores their output until then.
    pub deferred_output: BTreeMap<String, Instant>,
}

/// A type persisted in the `agent` column family, decodable from every format version.
pub(crate) trait Persisted: Serialize + serde::de::DeserializeOwned {
    /// Decodes a V1 body into today's shape.
    fn from_v1(body: &[u8]) -> Result<Self, String>;
}

impl Persisted for LocalService {
    fn from_v1(body: &[u8]) -> Result<Self, String> {
        // A service's shape did not change between V1 and V2.
        postcard::from_bytes(body).map_err(|e| e.to_string())
    }
}

impl Persisted for LocalCheck {
    fn from_v1(body: &[u8]) -> Result<Self, String> {
        let old: v1::LocalCheck = postcard::from_bytes(body).map_err(|e| e.to_string())?;
        Ok(old.into())
    }
}

impl LocalCheck {
    /// A critical check named after its ID, bound to `service_id` (empty: a node check), with
    /// no runner and no options: what unit tests start from.
    #[cfg(test)]
    pub(crate) fn for_test(id: &str, service_id: &str) -> LocalCheck {
        let registration = CheckRegistration {
            check_id: id.into(),
            name: id.into(),
            status: crate::catalog::model::HealthStatus::Critical,
            notes: String::new(),
            output: String::new(),
            service_id: service_id.into(),
            definition: crate::catalog::model::CheckDefinition::default(),
        };
        LocalCheck { registration, runner: None, options: CheckOptions::default() }
    }
}

pub(crate) fn encode<T: Persisted>(value: &T) -> Vec<u8> {
    let mut out = vec![LOCAL_FORMAT_V2];
    out.extend(postcard::to_allocvec(value).expect("postcard serializes local state"));
    out
}

pub(crate) fn decode<T: Persisted>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&LOCAL_FORMAT_V1, body)) => T::from_v1(body),
        Some((&LOCAL_FORMAT_V2, body)) => postcard::from_bytes(body).map_err(|e| e.to_string()),
        _ => Err("unknown local state format".to_string()),
    }
}

/// The V1 shapes, kept only to read entries written before V2.
mod v1 {
    use serde::{Deserialize, Serialize};

    use crate::catalog::command::CheckRegistration;

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub(super) enum CheckRunner {
        Ttl { ttl_ms: u64 },
        Http { url: String, method: String, headers: Vec<(String, String)>, body: Option<String>, tls_skip_verify: bool, interval_ms: u64, timeout_ms: u64 },
        Tcp { address: String, interval_ms: u64, timeout_ms: u64 },
        Script { args: Vec<String>, interval_ms: u64, timeout_ms: u64 },
    }

    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub(super) struct LocalCheck {
        pub(super) registration: CheckRegistration,
        pub(super) runner: Option<CheckRunner>,
    }

    impl From<LocalCheck> for super::LocalCheck {
        fn from(old: LocalCheck) -> super::LocalCheck {
            use super::CheckRunner as New;
            let runner = old.runner.map(|runner| match runner {
                CheckRunner::Ttl { ttl_ms } => New::Ttl { ttl_ms },
                CheckRunner::Http { url, method, headers, body, tls_skip_verify, interval_ms, timeout_ms } => {
                    New::Http { url, method, headers, body, tls_skip_verify, tls_server_name: String::new(), interval_ms, timeout_ms }
                }
                CheckRunner::Tcp { address, interval_ms, timeout_ms } => New::Tcp { address, interval_ms, timeout_ms },
                CheckRunner::Script { args, interval_ms, timeout_ms } => New::Script { args, interval_ms, timeout_ms },
            });
            super::LocalCheck { registration: old.registration, runner, options: super::CheckOptions::default() }
        }
    }

    #[cfg(test)]
    pub(super) fn encode(check: &LocalCheck) -> Vec<u8> {
        let mut out = vec![super::LOCAL_FORMAT_V1];
        out.extend(postcard::to_allocvec(check).expect("postcard serializes"));
        out
    }
}

/// The local state behind a lock, with a change counter that hash-based blocking queries
/// (`/v1/agent/services?hash=`) wait on. Every write guard bumps the counter when dropped.
pub struct LocalCell {
    state: std::sync::Mutex<LocalState>,
    changed: tokio::sync::watch::Sender<u64>,
}

/// Mutable access to the local state; announces a change when dropped.
pub struct LocalWriteGuard<'a> {
    guard: std::sync::MutexGuard<'a, LocalState>,
    changed: &'a tokio::sync::watch::Sender<u64>,
}

impl LocalCell {
    pub fn new(state: LocalState) -> LocalCell {
        LocalCell { state: std::sync::Mutex::new(state), changed: tokio::sync::watch::Sender::new(0) }
    }

    pub fn read(&self) -> std::sync::MutexGuard<'_, LocalState> {
        self.state.lock().expect("local state lock poisoned")
    }

    pub fn write(&self) -> LocalWriteGuard<'_> {
        LocalWriteGuard { guard: self.read(), changed: &self.changed }
    }

    /// A receiver that sees every later write.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

impl std::ops::Deref for LocalWriteGuard<'_> {
    type Target = LocalState;
    fn deref(&self) -> &LocalState {
        &self.guard
    }
}

impl std::ops::DerefMut for LocalWriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut LocalState {
        &mut self.guard
    }
}

impl Drop for LocalWriteGuard<'_> {
    fn drop(&mut self) {
        self.changed.send_modify(|version| *version += 1);
    }
}

/// Where a service or check definition came from (Consul's `configSource`), which decides
/// whether it may hold a script check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefinitionSource {
    /// A config file (at start or on reload).
    ConfigFile,
    /// The HTTP API (directly, relayed through another agent, or persisted by an earlier run).
    Api,
}

#[cfg(test)]
mod tests;
