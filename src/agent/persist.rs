//! Persisting the local state: what was registered with this agent survives a restart.
//!
//! Writes are synced (the registration is acknowledged only once it is on disk) and run on a
//! blocking thread, never on the async runtime. A persist writes the entries' *current* values
//! (or their absence) under one lock, so two requests changing the same ID in quick
//! succession can never leave the older value on disk: whichever persist runs last writes
//! what the state holds then. Entries from config files are never written (`config_defs`).

use crate::agent::local::{self, CHECK_PREFIX, SERVICE_PREFIX};
use crate::agent::{Agent, AgentError};

impl Agent {
    /// Writes the current entries (or their absence) for these service and check IDs in one
    /// synced batch.
    pub(crate) async fn persist_local(&self, service_ids: Vec<String>, check_ids: Vec<String>) -> Result<(), AgentError> {
        // Config entries are read from the files at every start, never from the data dir (as
        // Consul): they are not written, and a copy the API saved under the same ID goes.
        let config_services: Vec<bool> = service_ids.iter().map(|id| self.config_defs.is_config_service(id)).collect();
        let config_checks: Vec<bool> = check_ids.iter().map(|id| self.config_defs.is_config_check(id)).collect();
        let (state, store, ordered) = (self.local.clone(), self.store.clone(), self.persist_lock.clone());
        let written = tokio::task::spawn_blocking(move || {
            let _ordered = ordered.lock().expect("persist lock poisoned");
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
