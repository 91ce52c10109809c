//! Anti-entropy runs: bringing the catalog in line with the local state (Consul's
//! `agent/ae` state syncer), as group commits.
//!
//! Two kinds of run, one lock:
//! - **A change** (`sync`): a registration, a deregistration or a check's new status waits
//!   until a run that *began after* its change has committed, so the catalog reflects the
//!   change when the HTTP request returns. Concurrent changes share runs: while one run writes,
//!   the changes made meanwhile queue on the lock, and the next run (one diff, one read of the
//!   node's rows on a client) covers them all. A waiter whose change an earlier run already
//!   covered returns without a run of its own. This is the group commit that keeps
//!   registrations from queueing one Raft round trip behind another.
//! - **The periodic full sync** (`sync_full`): always diffs, because the catalog can drift
//!   without a local change (an operator's catalog deregister, a restored snapshot). It runs
//!   every minute plus a random stagger scaled by the cluster size, after a failure 15 s plus a
//!   stagger, and within a staggered 3 s of a new server appearing (Consul's timings, with its
//!   `scaleFactor`; the arithmetic is in `anti_entropy`).
//!
//! A run's writes go out together (at most [`SYNC_WRITES_IN_FLIGHT_MAX`] at once), after the
//! node's own registration when that is part of the diff; the leader batches them into Raft
//! entries. A run that fails leaves nothing marked synced, so the next run redoes it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;

use crate::agent::role::Role;
use crate::agent::{Agent, AgentError, anti_entropy};
use crate::catalog::command::Command;

/// Most writes of one anti-entropy run in flight at once.
pub(crate) const SYNC_WRITES_IN_FLIGHT_MAX: usize = 64;

impl Agent {
    /// Returns once the catalog reflects every local change made before the call (see the
    /// module docs). Errors are the run's: the caller decides whether to report them.
    pub async fn sync(&self) -> Result<(), AgentError> {
        let wanted = self.local.version();
        let _serialized = self.sync_lock.lock().await;
        if self.synced_version.load(Ordering::Acquire) >= wanted {
            return Ok(());
        }
        self.sync_run().await
    }

    /// A full anti-entropy run, whether or not anything changed locally.
    pub(crate) async fn sync_full(&self) -> Result<(), AgentError> {
        let _serialized = self.sync_lock.lock().await;
        self.sync_run().await
    }

    /// One run; the caller holds `sync_lock`.
    async fn sync_run(&self) -> Result<(), AgentError> {
        let (version, local) = self.local.snapshot();
        let node = self.node_registration();
        let commands = match &self.role {
            Role::Server(_) => self.view.read(|catalog| anti_entropy::diff(&local, catalog, &node)),
            // A client has no catalog: diff against its node's rows as the servers have them.
            Role::Client(_) => anti_entropy::diff(&local, &self.own_node_view().await?, &node),
        };
        let (node_updates, rest): (Vec<Command>, Vec<Command>) =
            commands.into_iter().partition(|command| matches!(command, Command::Register(r) if !r.skip_node_update));
        for command in node_updates {
            self.sync_write(command).await?;
        }
        let mut writes = futures::stream::iter(rest).map(|command| self.sync_write(command)).buffer_unordered(SYNC_WRITES_IN_FLIGHT_MAX);
        let mut first_error = None;
        while let Some(result) = writes.next().await {
            if let Err(error) = result {
                first_error.get_or_insert(error);
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        self.synced_version.fetch_max(version, Ordering::AcqRel);
        Ok(())
    }

    async fn sync_write(&self, command: Command) -> Result<(), AgentError> {
        let (_, outcome) = self.write(command).await?;
        if let crate::catalog::Outcome::Rejected(reason) = outcome {
            tracing::warn!(%reason, "anti-entropy command rejected");
        }
        Ok(())
    }

    /// The sync after a change to the local state, inside the request that made it. A server
    /// reports a failure (the request fails, as before); a client agent keeps the change and
    /// answers success, as Consul's do, and anti-entropy syncs it once a server answers (with
    /// no server known, `No known Consul servers` is only logged).
    pub(crate) async fn sync_local_change(&self) -> Result<(), AgentError> {
        match (self.sync().await, &self.role) {
            (Err(error), Role::Client(_)) => {
                tracing::warn!(%error, "local change kept; anti-entropy will sync it when a server answers");
                Ok(())
            }
            (result, _) => result,
        }
    }

    /// Asks for a full sync soon: a new server appeared (Consul's `SyncFull.Trigger`).
    pub(crate) fn trigger_full_sync(&self) {
        self.full_sync_wanted.notify_one();
    }
}

/// The periodic full sync (see the module docs), until shutdown.
pub(super) async fn anti_entropy_loop(agent: Arc<Agent>) {
    let mut shutdown = agent.shutdown_requested();
    let mut delay = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = agent.full_sync_wanted.notified() => {
                let stagger = anti_entropy::stagger(anti_entropy::SERVER_UP_INTERVAL, agent.cluster_size(), rand::random());
                tokio::select! {
                    _ = tokio::time::sleep(stagger) => {}
                    _ = shutdown.changed() => return,
                }
            }
            _ = shutdown.changed() => return,
        }
        let size = agent.cluster_size();
        delay = match agent.sync_full().await {
            Ok(()) => anti_entropy::full_sync_delay(size, rand::random()),
            Err(error) => {
                tracing::debug!(%error, "anti-entropy sync failed; will retry");
                anti_entropy::retry_delay(size, rand::random())
            }
        };
    }
}
