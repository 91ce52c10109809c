//! Persisting the local state: what was registered with this agent survives a restart.
//!
//! A change is acknowledged only once it is on disk, synced. It gets there in two steps:
//! - **Write**, inline, at once ([`Agent::persist_queue`]): under one lock, the changed entries'
//!   *current* values (or their absence) are read and written to RocksDB without a sync, which
//!   touches only memory (`store`). Each write takes the next sequence number. Because one
//!   lock covers both the read and the write, the newest value of an entry is always the last
//!   one in the WAL. Entries from config files are never written (`config_defs`).
//! - **Sync**, later ([`Persisting::done`]): the change is durable once a WAL sync that began
//!   after its write has finished. If one has (`synced >= seq`), `done` answers at once, with
//!   no wake-up; otherwise it asks the sync thread, which syncs once for every waiter and for
//!   everything written so far (group commit), never on the async runtime.
//!
//! Why the sync waits: a registration asks for its outcome only after its write to the
//! servers returns (a Raft round trip), and by then a sync that another registration asked
//! for has nearly always covered it. So a busy agent syncs about once per round trip, where
//! syncing as each write arrived cost one sync, and one wake-up of the writer thread, per two
//! or three registrations (`cairn-bench --client-agents`, BENCHMARKS.md). A quiet agent (at
//! most [`PERSIST_EAGER_SYNC_OUTSTANDING_MAX`] persists outstanding) asks for the sync as soon
//! as it writes, so a lone registration's sync still overlaps its round trip; a busy one also
//! asks once [`PERSIST_SYNC_AFTER_WRITES`] writes wait, so a slow sync starts early.
//!
//! `Agent::stop` syncs what was written, stops and joins the sync thread, so its handle on the
//! store is gone before the process exits (RocksDB aborts a process that exits while another
//! thread closes a database); later persists fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::agent::local::{self, CHECK_PREFIX, LocalCell, SERVICE_PREFIX};
use crate::agent::{Agent, AgentError};
use crate::store::Store;

/// Most sync requests waiting for the sync thread; further waiters wait for room.
const PERSIST_SYNC_QUEUE_MAX: usize = 4096;
/// Most waiters one sync answers before the thread looks at its queue again.
const PERSIST_SYNC_WAITERS_MAX: usize = 1024;
/// With at most this many persists outstanding (written, not yet waited for), a write asks
/// for its sync at once instead of when its outcome is asked for (see the module docs).
const PERSIST_EAGER_SYNC_OUTSTANDING_MAX: usize = 2;
/// A sync is asked for once this many writes are unsynced and unasked for, without waiting
/// for a waiter: when syncs are slow (a disk busy with other writes), the sync is then under
/// way before the waiters come, rather than starting only when the first one asks.
const PERSIST_SYNC_AFTER_WRITES: u64 = 16;

/// What the sync thread is asked to do.
enum SyncRequest {
    /// Sync everything written so far; answer the sender, if any, once it is durable.
    Sync(Option<oneshot::Sender<Result<(), String>>>),
    Stop,
}

/// The sequence numbers the writers and the sync thread share.
#[derive(Default)]
struct Progress {
    /// The last write's sequence number, published once that write has returned.
    written: AtomicU64,
    /// Every write up to this sequence number is durable.
    synced: AtomicU64,
    /// The last write after which a sync was asked for without a waiter.
    asked: AtomicU64,
    /// Persists written and not yet waited for (or dropped).
    outstanding: AtomicUsize,
    /// WAL syncs made (what the tests count).
    syncs: AtomicU64,
}

/// Held while the entries are read and written: the last sequence number handed out, and
/// whether the writer has stopped.
struct WriteTurn {
    seq: u64,
    stopped: bool,
}

/// The local state's writer, and the thread that syncs its writes. [`PersistWriter::stop`]
/// (or dropping the writer, with the agent) ends the thread.
pub(crate) struct PersistWriter {
    state: Arc<LocalCell>,
    store: Store,
    turn: std::sync::Mutex<WriteTurn>,
    progress: Arc<Progress>,
    syncs: mpsc::Sender<SyncRequest>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl PersistWriter {
    pub(crate) fn start(state: Arc<LocalCell>, store: Store) -> Result<PersistWriter, AgentError> {
        let (syncs, requests) = mpsc::channel(PERSIST_SYNC_QUEUE_MAX);
        let progress = Arc::new(Progress::default());
        let (thread_progress, thread_store) = (progress.clone(), store.clone());
        let thread = std::thread::Builder::new()
            .name("cairn-persist".into())
            .spawn(move || sync_loop(&thread_progress, &thread_store, requests))
            .map_err(|e| AgentError::Rejected(format!("cannot start the local state writer: {e}")))?;
        let turn = std::sync::Mutex::new(WriteTurn { seq: 0, stopped: false });
        Ok(PersistWriter { state, store, turn, progress, syncs, thread: std::sync::Mutex::new(Some(thread)) })
    }

    /// Writes the current entries (or their absence) for these IDs, unsynced; `true` marks an
    /// entry from a config file (never written, and a copy the API saved under the same ID is
    /// deleted). Returns the write's sequence number.
    fn write(&self, services: &[(String, bool)], checks: &[(String, bool)]) -> Result<u64, AgentError> {
        let mut turn = self.turn.lock().expect("persist turn lock poisoned");
        if turn.stopped {
            return Err(writer_stopped());
        }
        let (mut puts, mut deletes) = (Vec::new(), Vec::new());
        {
            let state = self.state.read();
            for (id, from_config) in services {
                let key = format!("{SERVICE_PREFIX}{id}");
                match state.services.get(id) {
                    Some(service) if !from_config => puts.push((key, local::encode(service))),
                    _ => deletes.push(key),
                }
            }
            for (id, from_config) in checks {
                let key = format!("{CHECK_PREFIX}{id}");
                match state.checks.get(id) {
                    Some(check) if !from_config => puts.push((key, local::encode(check))),
                    _ => deletes.push(key),
                }
            }
        }
        self.store.agent_write(puts, deletes).map_err(|e| AgentError::Rejected(format!("persisting local state failed: {e}")))?;
        turn.seq += 1;
        self.progress.written.store(turn.seq, Ordering::Release);
        Ok(turn.seq)
    }

    /// Writes these entries (see [`PersistWriter::write`]) and asks for their sync at once if
    /// the agent is quiet or enough writes wait (see the module docs).
    fn persist(&self, services: &[(String, bool)], checks: &[(String, bool)]) -> Result<Persisting, AgentError> {
        let seq = self.write(services, checks)?;
        let progress = &self.progress;
        let outstanding = progress.outstanding.fetch_add(1, Ordering::AcqRel) + 1;
        let covered = progress.synced.load(Ordering::Acquire).max(progress.asked.load(Ordering::Acquire));
        if outstanding <= PERSIST_EAGER_SYNC_OUTSTANDING_MAX || seq.saturating_sub(covered) >= PERSIST_SYNC_AFTER_WRITES {
            progress.asked.fetch_max(seq, Ordering::AcqRel);
            // A full queue means syncs are on their way already.
            let _ = self.syncs.try_send(SyncRequest::Sync(None));
        }
        Ok(Persisting { seq, progress: self.progress.clone(), syncs: self.syncs.clone() })
    }

    /// Syncs what was written, stops the thread and waits for it. Later persists fail.
    pub(crate) async fn stop(&self) {
        self.turn.lock().expect("persist turn lock poisoned").stopped = true;
        let _ = self.syncs.send(SyncRequest::Stop).await;
        let thread = self.thread.lock().expect("persist thread lock poisoned").take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// The sync thread: one WAL sync for every request queued, until the agent goes.
fn sync_loop(progress: &Progress, store: &Store, mut requests: mpsc::Receiver<SyncRequest>) {
    let mut stopping = false;
    while !stopping && let Some(first) = requests.blocking_recv() {
        let mut waiters = Vec::new();
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                SyncRequest::Sync(waiter) => waiters.extend(waiter),
                SyncRequest::Stop => stopping = true,
            }
            if !stopping && waiters.len() < PERSIST_SYNC_WAITERS_MAX {
                next = requests.try_recv().ok();
            }
        }
        let synced = sync_written(progress, store);
        for waiter in waiters {
            let _ = waiter.send(synced.clone());
        }
    }
    if let Err(error) = sync_written(progress, store) {
        tracing::error!(%error, "the last sync of the local state failed");
    }
}

/// Makes every write published so far durable (nothing to do if it already is).
fn sync_written(progress: &Progress, store: &Store) -> Result<(), String> {
    // Read before the sync: every write up to here has returned, so the sync covers it.
    let written = progress.written.load(Ordering::Acquire);
    if progress.synced.load(Ordering::Acquire) >= written {
        return Ok(());
    }
    store.sync_wal().map_err(|e| format!("persisting local state failed: {e}"))?;
    progress.syncs.fetch_add(1, Ordering::Relaxed);
    progress.synced.fetch_max(written, Ordering::AcqRel);
    Ok(())
}

/// A written change on its way to disk; [`Persisting::done`] waits until it is durable.
///
/// Write first, wait later: a caller with other work (a registration's sync to the servers)
/// writes, does that work, and only then asks for the outcome (see the module docs).
#[must_use = "a persisted change must be waited for before it is acknowledged"]
pub(crate) struct Persisting {
    seq: u64,
    progress: Arc<Progress>,
    syncs: mpsc::Sender<SyncRequest>,
}

impl Persisting {
    /// The write's outcome: `Ok` once the entries are on disk, synced.
    pub(crate) async fn done(self) -> Result<(), AgentError> {
        if self.progress.synced.load(Ordering::Acquire) >= self.seq {
            return Ok(());
        }
        let (waiter, synced) = oneshot::channel();
        self.syncs.send(SyncRequest::Sync(Some(waiter))).await.map_err(|_| writer_stopped())?;
        synced.await.map_err(|_| writer_stopped())?.map_err(AgentError::Rejected)
    }
}

impl Drop for Persisting {
    fn drop(&mut self) {
        self.progress.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

fn writer_stopped() -> AgentError {
    AgentError::Rejected("persisting local state failed: the writer has stopped".into())
}

impl Agent {
    /// Writes the current entries (or their absence) for these service and check IDs, synced.
    pub(crate) async fn persist_local(&self, service_ids: Vec<String>, check_ids: Vec<String>) -> Result<(), AgentError> {
        self.persist_queue(service_ids, check_ids)?.done().await
    }

    /// Makes the write [`Agent::persist_local`] makes, without waiting for its sync (see
    /// [`Persisting`]).
    pub(crate) fn persist_queue(&self, service_ids: Vec<String>, check_ids: Vec<String>) -> Result<Persisting, AgentError> {
        // Config entries are read from the files at every start, never from the data dir (as
        // Consul): they are not written, and a copy the API saved under the same ID goes.
        let services: Vec<(String, bool)> = service_ids.into_iter().map(|id| (self.config_defs.is_config_service(&id), id)).map(|(c, id)| (id, c)).collect();
        let checks: Vec<(String, bool)> = check_ids.into_iter().map(|id| (self.config_defs.is_config_check(&id), id)).map(|(c, id)| (id, c)).collect();
        self.persister.persist(&services, &checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::local::{LocalService, LocalState};
    use crate::catalog::command::ServiceRegistration;

    fn service(id: &str, port: u16) -> LocalService {
        LocalService { registration: ServiceRegistration { id: id.into(), name: "web".into(), port, ..Default::default() } }
    }

    fn ids(ids: &[&str]) -> Vec<(String, bool)> {
        ids.iter().map(|id| (id.to_string(), false)).collect()
    }

    fn stored_port(store: &Store, id: &str) -> Option<u16> {
        let bytes = store.agent_get(&format!("{SERVICE_PREFIX}{id}")).unwrap()?;
        Some(local::decode::<LocalService>(&bytes).unwrap().registration.port)
    }

    #[tokio::test]
    async fn writes_waited_for_together_share_few_syncs_and_each_is_covered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let state = Arc::new(LocalCell::new(LocalState::default()));
        let writer = PersistWriter::start(state.clone(), store.clone()).unwrap();
        const WRITES: usize = 64;
        let mut pending = Vec::new();
        for n in 0..WRITES {
            let id = format!("s{n}");
            state.write().services.insert(id.clone(), service(&id, 80));
            pending.push(writer.persist(&ids(&[&id]), &[]).unwrap());
        }
        let last = pending.last().unwrap().seq;
        assert_eq!(last, WRITES as u64);
        // Each write is readable before it is durable (the unsynced write touched memory).
        assert_eq!(stored_port(&store, "s63"), Some(80));
        for outcome in futures::future::join_all(pending.into_iter().map(Persisting::done)).await {
            outcome.unwrap();
        }
        assert!(writer.progress.synced.load(Ordering::Acquire) >= last, "every acknowledged write is covered by a sync");
        let syncs = writer.progress.syncs.load(Ordering::Relaxed);
        // Two eager syncs (the agent was quiet), one per 16 waiting writes, one for the waiters.
        assert!((1..=WRITES as u64 / 4).contains(&syncs), "{syncs} syncs for {WRITES} writes");
        assert_eq!(writer.progress.outstanding.load(Ordering::Acquire), 0);
        writer.stop().await;
    }

    #[tokio::test]
    async fn the_newest_value_is_the_one_on_disk_and_a_stopped_writer_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let state = Arc::new(LocalCell::new(LocalState::default()));
        let writer = Arc::new(PersistWriter::start(state.clone(), store.clone()).unwrap());
        // Writers on several threads change one entry and persist it, racing each other: the
        // value read under the write lock is the newest, whichever write comes last.
        let mut threads = Vec::new();
        for t in 0..4u16 {
            let (state, writer) = (state.clone(), writer.clone());
            threads.push(std::thread::spawn(move || {
                for n in 0..200u16 {
                    state.write().services.insert("web".into(), service("web", t * 1000 + n));
                    drop(writer.persist(&ids(&["web"]), &[]).unwrap());
                }
            }));
        }
        for thread in threads {
            thread.join().unwrap();
        }
        let newest = state.read().services["web"].registration.port;
        writer.persist(&ids(&["web"]), &[]).unwrap().done().await.unwrap();
        assert_eq!(stored_port(&store, "web"), Some(newest));
        // A config-file entry is never written, and the API's copy goes.
        writer.persist(&[("web".to_string(), true)], &[]).unwrap().done().await.unwrap();
        assert_eq!(stored_port(&store, "web"), None);
        writer.stop().await;
        let refused = writer.persist(&ids(&["web"]), &[]).err().expect("a stopped writer refuses");
        assert!(refused.to_string().contains("the writer has stopped"), "{refused}");
    }
}
