//! The agent's local state: the services and checks registered with *this* agent.
//!
//! Like Consul's `agent/local`, this is the source of truth for the agent's own node: the
//! catalog is brought in line with it by anti-entropy (`agent::anti_entropy`). It is persisted
//! in the `agent` column family so a restarted agent still knows (and keeps syncing) what was
//! registered with it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::command::{CheckRegistration, ServiceRegistration};

/// Format version of persisted local entries.
const LOCAL_FORMAT_V1: u8 = 1;
pub(crate) const SERVICE_PREFIX: &str = "svc/";
pub(crate) const CHECK_PREFIX: &str = "chk/";

/// How the agent runs a check. A serializable mirror of `checks::CheckKind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckRunner {
    Ttl { ttl_ms: u64 },
    Http { url: String, method: String, headers: Vec<(String, String)>, body: Option<String>, tls_skip_verify: bool, interval_ms: u64, timeout_ms: u64 },
    Tcp { address: String, interval_ms: u64, timeout_ms: u64 },
    Script { args: Vec<String>, interval_ms: u64, timeout_ms: u64 },
}

/// A check registered with this agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalCheck {
    pub registration: CheckRegistration,
    /// `None` for checks the agent does not run itself (maintenance checks).
    pub runner: Option<CheckRunner>,
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
    pub checks: BTreeMap<String, LocalCheck>,
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![LOCAL_FORMAT_V1];
    out.extend(postcard::to_allocvec(value).expect("postcard serializes local state"));
    out
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&LOCAL_FORMAT_V1, body)) => postcard::from_bytes(body).map_err(|e| e.to_string()),
        _ => Err("unknown local state format".to_string()),
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
