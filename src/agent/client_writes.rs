//! A client agent's writes, coalesced: writes made while one is on its way to the servers
//! travel together, as one [`Command::Batch`], when it returns.
//!
//! Every write of a client agent (an anti-entropy sync, a coordinate update) is a round trip
//! to a server and, from a follower, one more to the leader. Under many concurrent
//! registrations those round trips, not the Raft commit, bounded a client's throughput. Here a
//! write goes at once from its own task while fewer than [`CLIENT_WRITES_IN_FLIGHT_MAX`] are
//! in flight (a quiet agent adds no wait); writes that arrive while that many are in flight
//! queue, and one task sends what queued as a single batch when one returns. The leader's
//! write batching (`raft::write_batch`) joins that batch's
//! commands to its own entry and answers with one outcome per command, so each writer gets
//! exactly what a write of its own would have given it; a failed batch fails each of its
//! writers with the same error, as a failed write of its own would have.
//!
//! Order: a writer waits for its answer before its next write, so one writer's writes stay in
//! order; writes of different writers were concurrent, and any order between them is fine.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::agent::role::{ServerPool, WriteError, Written, write_through_servers};
use crate::catalog::{Command, Outcome};
use crate::raft::write_batch::{BatchQueue, QueuedSize};
use crate::rpc::client::RpcClient;

/// Most writes waiting for a batch; further writers wait for room.
const CLIENT_WRITE_QUEUE_MAX: usize = 4096;
/// Most commands in one batch sent to a server.
const CLIENT_WRITE_BATCH_COMMANDS_MAX: usize = 256;
/// A batch stops growing before its keys and values pass this size (a single larger write
/// still goes, alone).
const CLIENT_WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;
/// Most writes or batches on their way to the servers at once. Fewer makes bigger batches and
/// fewer round trips; more lets a write leave without waiting for the batch ahead of it, and
/// gives the leader more writes to join in one Raft entry. With writes sent as frames
/// (`rpc::frames`) a round trip is cheap enough that 8 measured best at 16 workers and no worse
/// than 2 or 4 at 64 (`cairn-bench --client-agents --clients 16,64`, registrations / KV puts,
/// BENCHMARKS.md "Session 14"): 1 in flight 0.70-0.76x at 16 workers and 0.76-0.83x at 64;
/// 2: 0.78-0.91x at 64; 4: 0.77-0.78x and 0.80-0.86x; 8: 0.81-1.01x and 0.73-0.92x; 16: 0.86x
/// and 0.74x; unbatched 0.80-0.83x and 0.71x.
const CLIENT_WRITES_IN_FLIGHT_MAX: usize = 8;

type Reply = oneshot::Sender<Result<Written, WriteError>>;

struct Pending {
    command: Command,
    reply: Reply,
}

/// The queue in front of a client's writes. Dropping it stops the sending task.
pub struct ClientWrites {
    queue: mpsc::Sender<Pending>,
    slots: Arc<Semaphore>,
    rpc: Arc<RpcClient>,
    pool: ServerPool,
}

impl ClientWrites {
    pub(crate) fn start(rpc: Arc<RpcClient>, pool: ServerPool) -> ClientWrites {
        let (queue, receiver) = mpsc::channel(CLIENT_WRITE_QUEUE_MAX);
        let slots = Arc::new(Semaphore::new(CLIENT_WRITES_IN_FLIGHT_MAX));
        tokio::spawn(send_queued(rpc.clone(), pool.clone(), receiver, slots.clone()));
        ClientWrites { queue, slots, rpc, pool }
    }

    /// Sends `command` to the servers, alone or in a batch, and waits for its outcome.
    pub(crate) async fn write(&self, command: Command) -> Result<Written, WriteError> {
        // A proposed batch or a restore goes alone (batches do not nest).
        if matches!(command, Command::Batch(_) | Command::Restore { .. }) {
            return write_through_servers(&self.rpc, &self.pool, &command).await;
        }
        // Fast path: with a slot free nothing is in flight to batch behind, so the write goes
        // out from this task, sparing a lone write the two hops through the queue.
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            let written = write_through_servers(&self.rpc, &self.pool, &command).await;
            drop(slot);
            return written;
        }
        let (reply, answer) = oneshot::channel();
        if self.queue.send(Pending { command, reply }).await.is_err() {
            return Err(WriteError::ShuttingDown);
        }
        answer.await.unwrap_or(Err(WriteError::ShuttingDown))
    }
}

/// The sending task: takes what is queued, up to the limits, whenever a slot frees.
async fn send_queued(rpc: Arc<RpcClient>, pool: ServerPool, queue: mpsc::Receiver<Pending>, slots: Arc<Semaphore>) {
    let mut queue = BatchQueue::new(queue);
    // Only batchable writes are queued (`ClientWrites::write`); each is one command.
    let size = |pending: &Pending| QueuedSize { bytes: pending.command.payload_bytes(), commands: 1, batchable: true };
    while let Some((batch, slot)) = queue.next(&slots, CLIENT_WRITE_BATCH_BYTES_MAX, CLIENT_WRITE_BATCH_COMMANDS_MAX, size).await {
        tokio::spawn(send(rpc.clone(), pool.clone(), batch, slot));
    }
}

/// Sends one batch (a lone write as itself) and answers each of its writers.
async fn send(rpc: Arc<RpcClient>, pool: ServerPool, mut batch: Vec<Pending>, _slot: OwnedSemaphorePermit) {
    if batch.len() == 1 {
        let Pending { command, reply } = batch.pop().expect("one pending write");
        let _ = reply.send(write_through_servers(&rpc, &pool, &command).await);
        return;
    }
    let (commands, replies): (Vec<Command>, Vec<Reply>) = batch.into_iter().map(|p| (p.command, p.reply)).unzip();
    let count = commands.len();
    match write_through_servers(&rpc, &pool, &Command::Batch(commands)).await {
        Ok((index, Outcome::Batch(outcomes))) if outcomes.len() == count => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok((index, outcome)));
            }
        }
        Ok((_, other)) => {
            // A server answers a batch with one outcome per command; anything else is a bug,
            // reported to every writer rather than guessed at.
            let message = format!("a server answered a batch of {count} writes with {other:?}");
            tracing::error!("{message}");
            for reply in replies {
                let _ = reply.send(Err(WriteError::Forward(message.clone())));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

