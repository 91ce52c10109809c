//! Persisting the local state: what was registered with this agent survives a restart.
//!
//! Writes are synced (the registration is acknowledged only once it is on disk) and run on a
//! blocking thread, never on the async runtime. A persist writes the entries' *current* values
//! (or their absence) under one lock, so two requests changing the same ID in quick
//! succession can never leave the older value on disk: whichever persist runs last writes
//! what the state holds then.

use crate::agent::local::{self, CHECK_PREFIX, SERVICE_PREFIX};
use crate::agent::{Agent, AgentError};

impl Agent {
    /// Writes the current entries (or their absence) for these service and check IDs in one
    /// synced batch.
    pub(crate) async fn persist_local(&self, service_ids: Vec<String>, check_ids: Vec<String>) -> Result<(), AgentError> {
        let (state, store, ordered) = (self.local.clone(), self.store.clone(), self.persist_lock.clone());
        let written = tokio::task::spawn_blocking(move || {
            let _ordered = ordered.lock().expect("persist lock poisoned");
            let (mut puts, mut deletes) = (Vec::new(), Vec::new());
            {
                let state = state.read();
                for id in service_ids {
                    let key = format!("{SERVICE_PREFIX}{id}");
                    match state.services.get(&id) {
                        Some(service) => puts.push((key, local::encode(service))),
                        None => deletes.push(key),
                    }
                }
                for id in check_ids {
                    let key = format!("{CHECK_PREFIX}{id}");
                    match state.checks.get(&id) {
                        Some(check) => puts.push((key, local::encode(check))),
                        None => deletes.push(key),
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
