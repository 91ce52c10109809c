//! Persisting the local state: what was registered with this agent survives a restart.
//!
//! Writes are synced (the registration is acknowledged only once it is on disk) and run on a
//! blocking thread, never on the async runtime. A persist writes the entries' *current* values
//! (or their absence) holding the locks of their keys, so two requests changing the same ID in
//! quick succession can never leave the older value on disk: whichever persist runs last
//! writes what the state holds then. Keys hash onto [`PERSIST_KEY_LOCKS`] locks, so persists
//! of different entries run at once and RocksDB syncs their writes to the log together. Entries from config files are never written (`config_defs`).

use std::sync::Mutex;

use crate::agent::local::{self, CHECK_PREFIX, SERVICE_PREFIX};
use crate::agent::{Agent, AgentError};

/// Locks that persisted keys hash onto (two keys may share one, which only makes them wait).
pub(crate) const PERSIST_KEY_LOCKS: usize = 64;

/// The per-key locks of [`Agent::persist_local`].
pub(crate) struct PersistLocks(Vec<Mutex<()>>);

impl Default for PersistLocks {
    fn default() -> Self {
        PersistLocks((0..PERSIST_KEY_LOCKS).map(|_| Mutex::new(())).collect())
    }
}

impl PersistLocks {
    /// The lock buckets of `keys`, in ascending order (so two persists never deadlock).
    fn buckets(&self, keys: impl Iterator<Item = String>) -> Vec<usize> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let mut buckets: Vec<usize> = keys.map(|key| BuildHasherDefault::<DefaultHasher>::default().hash_one(key) as usize % self.0.len()).collect();
        buckets.sort_unstable();
        buckets.dedup();
        buckets
    }
}

impl Agent {
    /// Writes the current entries (or their absence) for these service and check IDs in one
    /// synced batch.
    pub(crate) async fn persist_local(&self, service_ids: Vec<String>, check_ids: Vec<String>) -> Result<(), AgentError> {
        // Config entries are read from the files at every start, never from the data dir (as
        // Consul): they are not written, and a copy the API saved under the same ID goes.
        let config_services: Vec<bool> = service_ids.iter().map(|id| self.config_defs.is_config_service(id)).collect();
        let config_checks: Vec<bool> = check_ids.iter().map(|id| self.config_defs.is_config_check(id)).collect();
        let (state, store, ordered) = (self.local.clone(), self.store.clone(), self.persist_locks.clone());
        let written = tokio::task::spawn_blocking(move || {
            let keys = service_ids.iter().map(|id| format!("{SERVICE_PREFIX}{id}")).chain(check_ids.iter().map(|id| format!("{CHECK_PREFIX}{id}")));
            let buckets = ordered.buckets(keys);
            let _ordered: Vec<_> = buckets.iter().map(|&b| ordered.0[b].lock().expect("persist lock poisoned")).collect();
            let (mut puts, mut deletes) = (Vec::new(), Vec::new());
            {
                let state = state.read();
                for (id, from_config) in service_ids.into_iter().zip(config_services) {
                    let key = format!("{SERVICE_PREFIX}{id}");
                    match state.services.get(&id) {
                        Some(service) if !from_config => puts.push((key, local::encode(service))),
                        _ => deletes.push(key),
                    }
                }
                for (id, from_config) in check_ids.into_iter().zip(config_checks) {
                    let key = format!("{CHECK_PREFIX}{id}");
                    match state.checks.get(&id) {
                        Some(check) if !from_config => puts.push((key, local::encode(check))),
                        _ => deletes.push(key),
                    }
                }
            }
            store.agent_write(puts, deletes)
        })
        .await;
        match written {
            Ok(result) => Ok(result?),
            Err(join_error) => Err(AgentError::Rejected(format!("persisting local state failed: {join_error}"))),
        }
    }
}
