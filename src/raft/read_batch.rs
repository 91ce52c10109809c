//! Coalesced ReadIndex rounds: concurrent `?consistent` reads share one leadership check.
//!
//! openraft's `ensure_linearizable` confirms leadership with a quorum and waits until the state
//! machine has applied up to the commit index known then. Each call is a round of messages to
//! the followers, so 256 concurrent reads used to cost 256 rounds. Here every read takes a
//! ticket and a single task runs rounds back to back: a round first notes the newest ticket
//! issued, then checks. A read may use a round only if its ticket is at most that note, that
//! is, only if it arrived before the round began; the round's read index then covers every
//! write acknowledged before the read arrived, which is what linearizability asks. A read that
//! arrives mid-round waits for the next one. (etcd batches its linearizable reads the same way.)

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::Raft;
use openraft::error::{Fatal, RaftError};
use tokio::sync::{Notify, watch};

use crate::raft::{ReadError, TypeConfig, raft_stopped_message};

/// The outcome of the last finished round: the newest ticket it covers, and its result.
#[derive(Clone)]
struct Round {
    covers: u64,
    result: Result<(), ReadError>,
}

pub(crate) struct ReadBatcher {
    /// The newest ticket issued.
    issued: AtomicU64,
    wake: Notify,
    finished: watch::Sender<Round>,
}

impl ReadBatcher {
    /// Starts the round task; it ends when the batcher is dropped.
    pub(crate) fn start(raft: Raft<TypeConfig>, round_timeout: Duration) -> Arc<ReadBatcher> {
        let batcher = Arc::new(ReadBatcher { issued: AtomicU64::new(0), wake: Notify::new(), finished: watch::Sender::new(Round { covers: 0, result: Ok(()) }) });
        let weak = Arc::downgrade(&batcher);
        tokio::spawn(async move {
            loop {
                let Some(batcher) = weak.upgrade() else { return };
                let covered = batcher.finished.borrow().covers;
                if batcher.issued.load(Ordering::SeqCst) <= covered {
                    // Re-checked after a bounded wait, so the task ends soon after the server
                    // drops the batcher.
                    let _ = tokio::time::timeout(Duration::from_secs(1), batcher.wake.notified()).await;
                    continue;
                }
                // Every ticket up to `covers` was issued before this round began.
                let covers = batcher.issued.load(Ordering::SeqCst);
                let result = match tokio::time::timeout(round_timeout, raft.ensure_linearizable()).await {
                    Err(_) => Err(ReadError::NoLeader),
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(RaftError::Fatal(Fatal::Stopped))) => Err(ReadError::ShuttingDown),
                    Ok(Err(RaftError::Fatal(fatal))) => Err(ReadError::Stopped(raft_stopped_message(&fatal))),
                    Ok(Err(RaftError::APIError(_))) => Err(ReadError::NoLeader),
                };
                batcher.finished.send_replace(Round { covers, result });
            }
        });
        batcher
    }

    /// Waits for a round that began after this call, and returns its result.
    pub(crate) async fn barrier(&self) -> Result<(), ReadError> {
        let mut finished = self.finished.subscribe();
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        self.wake.notify_one();
        loop {
            {
                let round = finished.borrow_and_update();
                if round.covers >= ticket {
                    return round.result.clone();
                }
            }
            if finished.changed().await.is_err() {
                return Err(ReadError::ShuttingDown);
            }
        }
    }
}
