//! Anti-entropy runs: bringing the catalog in line with the local state (Consul's `agent/ae`
//! state syncer).
//!
//! Two kinds of run:
//! - **A change** (`sync_change`): a registration, a deregistration or a check's new status
//!   compares only its [`SyncScope`] (a service with its checks, or one node check) and writes
//!   what differs before the HTTP request returns, so the catalog reflects the change at once.
//!   Changes in different scopes run concurrently (their writes meet in the leader's Raft
//!   batches); changes in one scope take turns on that scope's lock, and each reads the local
//!   state *inside* the lock, so the last write of a scope always carries its newest state.
//!   This is what keeps registrations from queueing one Raft round trip behind another.
//! - **The periodic full sync** (`sync_full`): compares everything, because the catalog can
//!   drift without a local change (an operator's catalog deregister, a restored snapshot). It
//!   runs every minute plus a random stagger scaled by the cluster size, after a failure 15 s
//!   plus a stagger, and within a staggered 3 s of a new server appearing (Consul's timings,
//!   with its `scaleFactor`; the arithmetic is in `anti_entropy`). It waits for the change runs
//!   in flight and holds new ones back while it runs.
//!
//! On a client, a diff needs this node's rows as the servers hold them. A full run reads them
//! from a server; a change run compares against the rows the runs before it left (the read
//! rows with each run's own commands applied by the pure `catalog::apply`), so a registration
//! costs no read round trip, as Consul's agent trusts its `InSync` flags between full syncs. A
//! failed or refused write forgets those rows, so the next run reads them again.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::agent::anti_entropy::{self, SyncScope};
use crate::agent::role::Role;
use crate::agent::{Agent, AgentError};
use crate::catalog::Catalog;
use crate::catalog::command::Command;

/// Most writes of one anti-entropy run in flight at once.
pub(crate) const SYNC_WRITES_IN_FLIGHT_MAX: usize = 64;
/// Reads of this node's rows one client run may make before it gives up.
const NODE_ROWS_READS_MAX: usize = 3;
/// Locks that change runs of different scopes hash onto (two scopes may share one, which only
/// makes them take turns).
pub(crate) const SYNC_SCOPE_LOCKS: usize = 64;

/// The locks anti-entropy runs take (see the module docs).
pub(crate) struct SyncLocks {
    /// Change runs hold it shared, full runs exclusively.
    runs: tokio::sync::RwLock<()>,
    /// One per hash bucket of scopes: change runs of one scope take turns.
    scopes: Vec<tokio::sync::Mutex<()>>,
    /// On a client: its node's rows as the servers hold them after the last run; `None` until
    /// a full run reads them, and after any failure.
    node_rows: std::sync::Mutex<Option<Catalog>>,
}

impl Default for SyncLocks {
    fn default() -> Self {
        SyncLocks {
            runs: tokio::sync::RwLock::new(()),
            scopes: (0..SYNC_SCOPE_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            node_rows: std::sync::Mutex::new(None),
        }
    }
}

impl SyncLocks {
    fn scope_lock(&self, scope: &SyncScope) -> &tokio::sync::Mutex<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let bucket = BuildHasherDefault::<DefaultHasher>::default().hash_one(scope) as usize % self.scopes.len();
        &self.scopes[bucket]
    }

    fn node_rows(&self) -> std::sync::MutexGuard<'_, Option<Catalog>> {
        self.node_rows.lock().expect("node rows lock poisoned")
    }
}

impl Agent {
    /// Brings `scope` of the catalog in line with the local state as it is now.
    pub(crate) async fn sync_change(&self, scope: &SyncScope) -> Result<(), AgentError> {
        let _shared = self.sync.runs.read().await;
        let _turn = self.sync.scope_lock(scope).lock().await;
        self.sync_run(Some(scope)).await
    }

    /// A full anti-entropy run, whether or not anything changed locally.
    pub(crate) async fn sync_full(&self) -> Result<(), AgentError> {
        let _exclusive = self.sync.runs.write().await;
        self.sync_run(None).await
    }

    /// One run over `scope` (everything when `None`); the caller holds the locks.
    async fn sync_run(&self, scope: Option<&SyncScope>) -> Result<(), AgentError> {
        let node = self.node_registration();
        if let Role::Server(_) = &self.role {
            let local = anti_entropy::scoped_local(&self.local.read(), scope);
            let commands = self.view.read(|catalog| anti_entropy::diff_scoped(&local, catalog, &node, scope));
            self.write_all(commands).await?;
            return Ok(());
        }
        // A client has no catalog: compare against its node's rows as the servers hold them.
        if scope.is_none() {
            *self.sync.node_rows() = None;
        }
        let local = anti_entropy::scoped_local(&self.local.read(), scope);
        let mut reads = 0;
        let commands = loop {
            if let Some(rows) = self.sync.node_rows().as_ref() {
                break anti_entropy::diff_scoped(&local, rows, &node, scope);
            }
            // Another run may forget the rows between our read and our diff; read again then.
            if reads == NODE_ROWS_READS_MAX {
                return Err(AgentError::Rejected("anti-entropy: this node's rows keep being forgotten; will retry".into()));
            }
            let fresh = self.own_node_view().await?;
            reads += 1;
            self.sync.node_rows().get_or_insert(fresh);
        };
        let written = self.write_all(commands.clone()).await;
        let mut rows = self.sync.node_rows();
        match written {
            Ok(true) => *rows = rows.take().and_then(|rows| rows_after(rows, &commands)),
            Ok(false) | Err(_) => *rows = None,
        }
        written.map(drop)
    }

    /// Writes a run's commands: the node's own registration first, then the rest together.
    /// Returns whether every command was applied (none refused by the data model's rules).
    async fn write_all(&self, commands: Vec<Command>) -> Result<bool, AgentError> {
        let (node_updates, rest): (Vec<Command>, Vec<Command>) =
            commands.into_iter().partition(|command| matches!(command, Command::Register(r) if !r.skip_node_update));
        let mut all_applied = true;
        for command in node_updates {
            all_applied &= self.sync_write(command).await?;
        }
        // A change run's usual case, one command, spares the concurrent machinery below.
        if rest.len() == 1 {
            let command = rest.into_iter().next().expect("one command");
            return Ok(all_applied & self.sync_write(command).await?);
        }
        let mut writes = futures::stream::iter(rest).map(|command| self.sync_write(command)).buffer_unordered(SYNC_WRITES_IN_FLIGHT_MAX);
        let mut first_error = None;
        while let Some(result) = writes.next().await {
            match result {
                Ok(applied) => all_applied &= applied,
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(all_applied), Err)
    }

    async fn sync_write(&self, command: Command) -> Result<bool, AgentError> {
        let (_, outcome) = self.write(command).await?;
        if let crate::catalog::Outcome::Rejected(reason) = outcome {
            tracing::warn!(%reason, "anti-entropy command rejected");
            return Ok(false);
        }
        Ok(true)
    }

    /// The sync after a change to the local state, inside the request that made it. A server
    /// reports a failure (the request fails, as before); a client agent keeps the change and
    /// answers success, as Consul's do, and anti-entropy syncs it once a server answers (with
    /// no server known, `No known Consul servers` is only logged).
    pub(crate) async fn sync_local_change(&self, scope: &SyncScope) -> Result<(), AgentError> {
        match (self.sync_change(scope).await, &self.role) {
            (Err(error), Role::Client { .. }) => {
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

/// A client's rows for its node after its own commands, as the servers applied them; `None`
/// (read them again next run) if the pure apply refuses one, which the servers did not.
fn rows_after(mut rows: Catalog, commands: &[Command]) -> Option<Catalog> {
    let mut changes = crate::catalog::ChangeSet::new();
    for command in commands {
        let index = rows.last_index() + 1;
        if let crate::catalog::Outcome::Rejected(_) = crate::catalog::apply(&mut rows, index, command, &mut changes) {
            return None;
        }
    }
    Some(rows)
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
