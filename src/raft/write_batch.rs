//! Write batching: concurrent client writes share one Raft entry.
//!
//! openraft 0.9 handles each `client_write` on its own: one log append, one replication request
//! per follower, one commit and one state-machine apply per write, each step a message between
//! tasks. Under many writers that per-entry work, not the disk, bounded throughput (perf put
//! most of a server's time in context switches and futex wake-ups). Here every write joins a
//! queue and one task proposes what is queued: a lone write goes as itself, so a quiet server
//! adds no wait, and writes that arrive while the previous proposal is in flight gather into
//! one [`Command::Batch`] entry. At most [`WRITE_BATCHES_IN_FLIGHT_MAX`] proposals are
//! outstanding.
//!
//! A write that is itself a [`Command::Batch`] (a client agent's coalesced writes,
//! `agent::client_writes`) joins a batch as its commands, and gets their outcomes back as one
//! [`Outcome::Batch`]; batches never nest.
//!
//! `catalog::apply` gives each write of a batch its own index and its own outcome, so a client
//! sees exactly what a separate entry would have given it. Writes from one client stay in its
//! order (it waits for each answer); writes from different clients were concurrent, so any
//! order between them is linearizable.

use std::sync::Arc;
use std::time::Instant;

use openraft::Raft;
use openraft::error::{ClientWriteError, Fatal, RaftError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::catalog::{Command, Outcome};
use crate::raft::{ServerNode, TypeConfig, raft_stopped_message};
use crate::telemetry::names;

/// Most writes waiting for a batch; further writers wait for room (within their own timeout).
const WRITE_QUEUE_MAX: usize = 4096;
/// Most writes in one batch.
const WRITE_BATCH_COMMANDS_MAX: usize = 512;
/// A batch stops growing before its keys and values pass this size, so an entry stays within
/// what one AppendEntries carries in time (a single larger write still goes, alone).
const WRITE_BATCH_BYTES_MAX: usize = 512 * 1024;
/// Most proposals awaiting their commit at once. More overlap hides round trips; fewer makes
/// bigger batches, and per-entry work is what limits a busy server. Measured side by side
/// (`cairn-bench --vs-etcd --puts-only --clients 64`, two runs each, BENCHMARKS.md): 1 in
/// flight 15.1k/15.2k writes/s, 2: 14.6k/11.9k, 4: 12.4k/12.1k, 8: 11.3k/9.7k, with no
/// difference for a single client.
const WRITE_BATCHES_IN_FLIGHT_MAX: usize = 1;

/// What became of a proposed write.
#[derive(Clone, Debug)]
pub enum Proposed {
    /// Committed and applied in the Raft entry at `log_index`.
    Applied { log_index: u64, outcome: Outcome },
    /// This server does not lead; the leader, when known.
    NotLeader(Option<ServerNode>),
    /// Raft refused the entry (a membership change in progress).
    Refused(String),
    ShuttingDown,
    /// The Raft core quit on an error; the text says so (`raft_stopped_message`).
    Stopped(String),
    /// This server's storage waits for disk space (`disk_full`).
    DiskFull,
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<Proposed>,
}

/// The queue in front of `Raft::client_write`. Dropping it stops the proposing task.
pub(crate) struct WriteBatcher {
    queue: mpsc::Sender<Pending>,
    /// Proposal slots, shared by the proposing task and the fast path.
    slots: Arc<Semaphore>,
    raft: Raft<TypeConfig>,
}

impl WriteBatcher {
    pub(crate) fn start(raft: Raft<TypeConfig>) -> WriteBatcher {
        let (queue, receiver) = mpsc::channel(WRITE_QUEUE_MAX);
        let slots = Arc::new(Semaphore::new(WRITE_BATCHES_IN_FLIGHT_MAX));
        tokio::spawn(propose_queued(raft.clone(), receiver, slots.clone()));
        WriteBatcher { queue, slots, raft }
    }

    /// Proposes `command` and waits until it is applied or refused. Dropping the future does
    /// not withdraw the write (as with any request whose answer is lost).
    pub(crate) async fn propose(&self, command: Command) -> Proposed {
        // Fast path: with a proposal slot free nothing is waiting to batch with, so the write
        // goes out from this task, sparing a lone write the two hops through the queue.
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            let proposed = write_one(&self.raft, command).await;
            drop(slot);
            return proposed;
        }
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Pending { command, reply }).await.is_err() {
            return Proposed::ShuttingDown;
        }
        answer.await.unwrap_or(Proposed::ShuttingDown)
    }
}

/// A restore replaces the whole state and may be large: it always goes alone (and so does a
/// proposed batch holding one).
fn batchable(command: &Command) -> bool {
    match command {
        Command::Restore { .. } => false,
        Command::Batch(commands) => !commands.iter().any(|c| matches!(c, Command::Restore { .. })),
        _ => true,
    }
}

/// How many commands a write adds to a batch (a proposed batch adds its commands).
fn command_count(command: &Command) -> usize {
    match command {
        Command::Batch(commands) => commands.len(),
        _ => 1,
    }
}

/// The proposing task: takes what is queued, up to the limits, whenever a proposal slot frees.
async fn propose_queued(raft: Raft<TypeConfig>, queue: mpsc::Receiver<Pending>, slots: Arc<Semaphore>) {
    let mut queue = BatchQueue::new(queue);
    let size = |pending: &Pending| QueuedSize {
        bytes: pending.command.payload_bytes(),
        commands: command_count(&pending.command),
        batchable: batchable(&pending.command),
    };
    while let Some((batch, slot)) = queue.next(&slots, WRITE_BATCH_BYTES_MAX, WRITE_BATCH_COMMANDS_MAX, size).await {
        tokio::spawn(commit(raft.clone(), batch, slot));
    }
}

/// How much a queued write adds to a batch, and whether it may share one.
pub(crate) struct QueuedSize {
    pub bytes: usize,
    pub commands: usize,
    pub batchable: bool,
}

/// Writes waiting to leave in batches: the leader's here, and a client agent's
/// (`agent::client_writes`), which batch the same way.
pub(crate) struct BatchQueue<T> {
    queue: mpsc::Receiver<T>,
    /// A write taken from the queue that did not fit the batch before it: it starts the next.
    held: Option<T>,
}

impl<T> BatchQueue<T> {
    pub(crate) fn new(queue: mpsc::Receiver<T>) -> BatchQueue<T> {
        BatchQueue { queue, held: None }
    }

    /// Waits for a write, then for a slot (so an idle sender leaves its slot to a fast path),
    /// and returns the writes queued by then that fit the limits; the first always goes, a
    /// write that may not share a batch goes alone. `None` once every sender is gone.
    pub(crate) async fn next(
        &mut self,
        slots: &Arc<Semaphore>,
        bytes_max: usize,
        commands_max: usize,
        size: impl Fn(&T) -> QueuedSize,
    ) -> Option<(Vec<T>, OwnedSemaphorePermit)> {
        let first = match self.held.take() {
            Some(write) => write,
            None => self.queue.recv().await?,
        };
        let slot = slots.clone().acquire_owned().await.ok()?;
        let first_size = size(&first);
        let (mut bytes, mut commands) = (first_size.bytes, first_size.commands);
        let mut batch = vec![first];
        while first_size.batchable && commands < commands_max {
            let Ok(next) = self.queue.try_recv() else { break };
            let next_size = size(&next);
            let fits = bytes + next_size.bytes <= bytes_max && commands + next_size.commands <= commands_max;
            if !next_size.batchable || !fits {
                self.held = Some(next);
                break;
            }
            (bytes, commands) = (bytes + next_size.bytes, commands + next_size.commands);
            batch.push(next);
        }
        Some((batch, slot))
    }
}

/// Proposes one write as its own entry.
async fn write_one(raft: &Raft<TypeConfig>, command: Command) -> Proposed {
    let commands = command_count(&command);
    let started = Instant::now();
    match raft.client_write(command).await {
        Ok(response) => {
            record_commit(started, commands);
            Proposed::Applied { log_index: response.log_id.index, outcome: response.data }
        }
        Err(error) => refused(error),
    }
}

/// `raft.apply`, `raft.commitTime` (from the proposal until openraft answers, which is once
/// the entry is committed and applied here) and the entry's batch size, for a committed entry.
fn record_commit(started: Instant, commands: usize) {
    metrics::counter!(names::RAFT_APPLY).increment(1);
    metrics::histogram!(names::RAFT_COMMIT_TIME).record(crate::telemetry::ms_since(started));
    metrics::histogram!(names::RAFT_WRITE_BATCH_COMMANDS).record(commands as f64);
}

/// Proposes one batch (a lone write as itself) and answers each of its writers.
async fn commit(raft: Raft<TypeConfig>, mut batch: Vec<Pending>, _slot: OwnedSemaphorePermit) {
    if batch.len() == 1 {
        let Pending { command, reply } = batch.pop().expect("one pending write");
        let _ = reply.send(write_one(&raft, command).await);
        return;
    }
    // Flatten: a proposed batch contributes its commands, and gets their outcomes back whole.
    let mut commands = Vec::new();
    let mut replies: Vec<(oneshot::Sender<Proposed>, Option<usize>)> = Vec::with_capacity(batch.len());
    for Pending { command, reply } in batch {
        match command {
            Command::Batch(inner) => {
                replies.push((reply, Some(inner.len())));
                commands.extend(inner);
            }
            single => {
                replies.push((reply, None));
                commands.push(single);
            }
        }
    }
    let count = commands.len();
    let started = Instant::now();
    match raft.client_write(Command::Batch(commands)).await {
        Ok(response) => {
            record_commit(started, count);
            let log_index = response.log_id.index;
            let outcomes = match response.data {
                Outcome::Batch(outcomes) if outcomes.len() == count => outcomes,
                other => {
                    // `catalog::apply` answers a batch with one outcome per write; anything
                    // else is a bug, reported to every writer rather than guessed at.
                    let message = format!("internal error: a batch of {count} writes was answered with {other:?}");
                    tracing::error!("{message}");
                    vec![Outcome::Rejected(message); count]
                }
            };
            let mut outcomes = outcomes.into_iter();
            for (reply, proposed_batch) in replies {
                let outcome = match proposed_batch {
                    Some(len) => Outcome::Batch(outcomes.by_ref().take(len).collect()),
                    None => outcomes.next().unwrap_or_else(|| Outcome::Rejected("internal error: no outcome for this write".into())),
                };
                let _ = reply.send(Proposed::Applied { log_index, outcome });
            }
        }
        Err(error) => {
            let proposed = refused(error);
            for (reply, _) in replies {
                let _ = reply.send(proposed.clone());
            }
        }
    }
}

fn refused(error: RaftError<u64, ClientWriteError<u64, ServerNode>>) -> Proposed {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => Proposed::NotLeader(forward.leader_node),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => Proposed::Refused(e.to_string()),
        RaftError::Fatal(Fatal::Stopped) => Proposed::ShuttingDown,
        RaftError::Fatal(fatal) => Proposed::Stopped(raft_stopped_message(&fatal)),
    }
}

#[cfg(test)]
mod tests {
    use openraft::{StorageError, StorageIOError};

    use super::*;

    /// A write after the core quit on a storage error says so, instead of "shutting down".
    #[test]
    fn a_fatal_storage_error_is_reported_as_such() {
        let error = std::io::Error::other("No space left on device");
        let fatal = Fatal::StorageError(StorageError::from(StorageIOError::write_logs(&error)));
        match refused(RaftError::Fatal(fatal)) {
            Proposed::Stopped(message) => assert!(message.contains("No space left on device"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(refused(RaftError::Fatal(Fatal::Stopped)), Proposed::ShuttingDown));
    }
}
