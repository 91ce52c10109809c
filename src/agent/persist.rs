//! Persisting the local state: what was registered with this agent survives a restart.
//!
//! Writes are synced (a registration is acknowledged only once it is on disk) and made by one
//! writer thread, never on the async runtime. Requests name the entries that changed; the
//! writer takes every request queued while it was busy, reads those entries' *current* values
//! (or their absence) and writes them all in one synced batch, then answers each request. So
//! concurrent registrations share one disk sync (group commit), and because one thread writes
//! in turn, reading the state as it is when it writes, the newest value of an entry is always
//! the last one on disk. Entries from config files are never written (`config_defs`).
//! `Agent::stop` stops and joins the writer, so its handle on the store is gone before the
//! process exits (RocksDB aborts a process that exits while another thread closes a database).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::agent::local::{self, CHECK_PREFIX, LocalCell, SERVICE_PREFIX};
use crate::agent::{Agent, AgentError};
use crate::store::Store;

/// Most persist requests waiting for the writer; further requests wait for room.
const PERSIST_QUEUE_MAX: usize = 4096;
/// Most requests written in one batch.
const PERSIST_BATCH_REQUESTS_MAX: usize = 512;

/// One request: these IDs changed; `true` marks an entry from a config file (never written,
/// and a copy the API saved under the same ID is deleted).
struct Request {
    services: Vec<(String, bool)>,
    checks: Vec<(String, bool)>,
    done: oneshot::Sender<Result<(), String>>,
}

/// What the writer thread is asked to do.
enum Message {
    Write(Request),
    Stop,
}

/// The queue to the writer thread, and the thread. [`PersistWriter::stop`] (or dropping the
/// queue, with the agent) ends the thread.
pub(crate) struct PersistWriter {
    queue: mpsc::Sender<Message>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl PersistWriter {
    pub(crate) fn start(state: Arc<LocalCell>, store: Store) -> Result<PersistWriter, AgentError> {
        let (queue, requests) = mpsc::channel(PERSIST_QUEUE_MAX);
        let thread = std::thread::Builder::new()
            .name("cairn-persist".into())
            .spawn(move || write_loop(&state, &store, requests))
            .map_err(|e| AgentError::Rejected(format!("cannot start the local state writer: {e}")))?;
        Ok(PersistWriter { queue, thread: std::sync::Mutex::new(Some(thread)) })
    }

    /// Writes what is queued, stops the thread and waits for it. Later persists fail.
    pub(crate) async fn stop(&self) {
        let _ = self.queue.send(Message::Stop).await;
        let thread = self.thread.lock().expect("persist thread lock poisoned").take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// The writer thread: one synced batch for everything queued, until the agent goes.
fn write_loop(state: &LocalCell, store: &Store, mut requests: mpsc::Receiver<Message>) {
    let mut stopping = false;
    while !stopping && let Some(Message::Write(first)) = requests.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < PERSIST_BATCH_REQUESTS_MAX {
            match requests.try_recv() {
                Ok(Message::Write(next)) => batch.push(next),
                Ok(Message::Stop) => {
                    stopping = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let (mut puts, mut deletes) = (Vec::new(), Vec::new());
        {
            let state = state.read();
            let services = batch.iter().flat_map(|r| &r.services);
            for (id, from_config) in services {
                let key = format!("{SERVICE_PREFIX}{id}");
                match state.services.get(id) {
                    Some(service) if !from_config => puts.push((key, local::encode(service))),
                    _ => deletes.push(key),
                }
            }
            for (id, from_config) in batch.iter().flat_map(|r| &r.checks) {
                let key = format!("{CHECK_PREFIX}{id}");
                match state.checks.get(id) {
                    Some(check) if !from_config => puts.push((key, local::encode(check))),
                    _ => deletes.push(key),
                }
            }
        }
        // A key named by two requests is written twice with the same value: harmless.
        let written = store.agent_write(puts, deletes).map_err(|e| format!("persisting local state failed: {e}"));
        for request in batch {
            let _ = request.done.send(written.clone());
        }
    }
}

/// A persist request on its way to the writer thread; [`Persisting::done`] waits for it.
///
/// Queue first, wait later: a caller with other work (a registration's sync to the servers)
/// queues the write, does that work, and only then asks for the outcome. By then the write is
/// nearly always done, so the answer costs no wake-up; awaiting both at once woke the task one
/// more time per registration, for the disk's answer alone, and on a busy client agent those
/// wake-ups (a worker thread unparked from another thread) cost more CPU than the
/// registration's own code (`cairn-bench --client-agents`, BENCHMARKS.md).
#[must_use = "a queued persist must be waited for before the change is acknowledged"]
pub(crate) struct Persisting(oneshot::Receiver<Result<(), String>>);

impl Persisting {
    /// The write's outcome: `Ok` once the entries are on disk, synced.
    pub(crate) async fn done(self) -> Result<(), AgentError> {
        self.0.await.map_err(|_| writer_stopped())?.map_err(AgentError::Rejected)
    }
}

fn writer_stopped() -> AgentError {
    AgentError::Rejected("persisting local state failed: the writer has stopped".into())
}

impl Agent {
    /// Writes the current entries (or their absence) for these service and check IDs, synced.
    pub(crate) async fn persist_local(&self, service_ids: Vec<String>, check_ids: Vec<String>) -> Result<(), AgentError> {
        self.persist_queue(service_ids, check_ids).await?.done().await
    }

    /// Queues the write [`Agent::persist_local`] makes, without waiting for it (see
    /// [`Persisting`]).
    pub(crate) async fn persist_queue(&self, service_ids: Vec<String>, check_ids: Vec<String>) -> Result<Persisting, AgentError> {
        // Config entries are read from the files at every start, never from the data dir (as
        // Consul): they are not written, and a copy the API saved under the same ID goes.
        let services = service_ids.into_iter().map(|id| (self.config_defs.is_config_service(&id), id)).map(|(from_config, id)| (id, from_config));
        let checks = check_ids.into_iter().map(|id| (self.config_defs.is_config_check(&id), id)).map(|(from_config, id)| (id, from_config));
        let (services, checks) = (services.collect(), checks.collect());
        let (done, written) = oneshot::channel();
        self.persister.queue.send(Message::Write(Request { services, checks, done })).await.map_err(|_| writer_stopped())?;
        Ok(Persisting(written))
    }
}
