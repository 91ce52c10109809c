//! The Raft log on RocksDB (`openraft::storage::RaftLogStorage`).
//!
//! Invariants kept here, each of which openraft relies on:
//! - an `append` is acknowledged (`LogFlushed`) only after its entries are fsynced. Appends are
//!   written at once (so readers see them) and acknowledged by the [`LogSyncer`] thread, which
//!   fsyncs the WAL once for every append queued while the previous fsync ran: group commit.
//!   openraft 0.9 appends each client write on its own, so without this every write paid a
//!   whole fsync in turn;
//! - the vote is durable before `save_vote` returns;
//! - `committed` is written unsynced and never ahead of the entries it names (the WAL keeps
//!   order), since it is only a restart hint;
//! - `purge` records `last_purged` in the same synced batch that deletes the entries;
//! - a saved vote, committed id or log id beyond `bounds`' limits is refused at start with an
//!   error, never handed to openraft (whose arithmetic on it would wrap and panic);
//! - a write refused for lack of disk space waits for space (`disk_full`) rather than stop
//!   openraft's core.
//!
//! Entries are stored as `[format] + postcard(Entry)`, the format being the one its command
//! needs ([`entry_format`]; `catalog::codec` explains the formats); the vote and the other
//! metadata as format 1.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};

use crate::catalog::codec::split_version;
use crate::raft::disk_full::DiskSpace;
use crate::raft::{NodeId, TypeConfig, bounds};
use crate::store::Store;
use crate::telemetry::names;

/// Format version of a stored log entry or metadata value.
const LOG_FORMAT_V1: u8 = 1;
const META_VOTE: &str = "vote";
const META_COMMITTED: &str = "committed";
const META_LAST_PURGED: &str = "last_purged";

/// Most appends waiting for an fsync; `append` waits for room beyond it.
const LOG_SYNC_QUEUE_MAX: usize = 4096;

/// The log store. Cheap to clone: openraft hands clones to replication tasks as readers.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
    syncer: LogSyncer,
    space: DiskSpace,
}

impl LogStore {
    pub fn new(store: Store, space: DiskSpace) -> LogStore {
        let syncer = LogSyncer::start(store.clone(), space.clone());
        LogStore { store, syncer, space }
    }
}

/// Group commit: a thread that fsyncs the WAL and then acknowledges every append written
/// before that fsync began. It stops when the last `LogStore` clone is dropped.
#[derive(Clone)]
struct LogSyncer {
    waiting: tokio::sync::mpsc::Sender<LogFlushed<TypeConfig>>,
}

impl LogSyncer {
    fn start(store: Store, space: DiskSpace) -> LogSyncer {
        let (waiting, mut queue) = tokio::sync::mpsc::channel::<LogFlushed<TypeConfig>>(LOG_SYNC_QUEUE_MAX);
        let spawned = std::thread::Builder::new().name("cairn-log-sync".into()).spawn(move || {
            while let Some(first) = queue.blocking_recv() {
                let mut batch = vec![first];
                while let Ok(next) = queue.try_recv() {
                    batch.push(next);
                }
                // Every append in `batch` finished its write before its callback was queued,
                // so this one fsync makes all of them durable.
                let started = std::time::Instant::now();
                let synced = space.write_blocking("log fsync", || store.sync_wal().map_err(io)).map_err(|e| e.to_string());
                metrics::histogram!(names::RAFT_LOG_FSYNC).record(crate::telemetry::ms_since(started));
                metrics::histogram!(names::RAFT_LOG_APPENDS_PER_FSYNC).record(batch.len() as f64);
                for callback in batch {
                    callback.log_io_completed(synced.clone().map_err(std::io::Error::other));
                }
            }
        });
        spawned.expect("spawning the log sync thread");
        LogSyncer { waiting }
    }

    async fn acknowledge_when_durable(&self, callback: LogFlushed<TypeConfig>) -> Result<(), std::io::Error> {
        self.waiting.send(callback).await.map_err(|tokio::sync::mpsc::error::SendError(callback)| {
            let stopped = || std::io::Error::other("the log sync thread stopped");
            callback.log_io_completed(Err(stopped()));
            stopped()
        })
    }
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    encode_as(LOG_FORMAT_V1, value)
}

/// The format an entry needs: its command's (`Command::format_needed`), else format 1.
pub(crate) fn entry_format(entry: &Entry<TypeConfig>) -> u8 {
    match &entry.payload {
        EntryPayload::Normal(command) => command.format_needed(),
        EntryPayload::Blank | EntryPayload::Membership(_) => LOG_FORMAT_V1,
    }
}

pub(crate) fn encode_entry(entry: &Entry<TypeConfig>) -> Vec<u8> {
    encode_as(entry_format(entry), entry)
}

fn encode_as<T: serde::Serialize>(format: u8, value: &T) -> Vec<u8> {
    let mut out = vec![format];
    out.extend(postcard::to_allocvec(value).expect("postcard serializes openraft's plain types"));
    out
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, std::io::Error> {
    // Format 2 only added command variants: one decoder reads both.
    let (_, body) = split_version(bytes).map_err(|e| std::io::Error::other(format!("log record: {e}")))?;
    postcard::from_bytes(body).map_err(std::io::Error::other)
}

/// Runs blocking RocksDB work off the async runtime.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, std::io::Error> + Send + 'static) -> Result<T, std::io::Error> {
    tokio::task::spawn_blocking(work).await.map_err(std::io::Error::other)?
}

/// Saved Raft state that no real cluster can reach (see `bounds`): only a forged message,
/// accepted by a version without those checks, can have put it there. The server refuses to
/// start on it rather than let openraft's arithmetic on it wrap and panic.
fn impossible_saved_state(error: bounds::BoundsError) -> std::io::Error {
    std::io::Error::other(format!(
        "{error}: no real cluster reaches this, so a forged Raft message wrote it (versions before issue 11 \
         did not check); refusing to start on it: restore this server from a snapshot, or move its data dir \
         away and join it to the cluster again as a new server"
    ))
}

fn io(error: impl std::error::Error + Send + Sync + 'static) -> std::io::Error {
    std::io::Error::other(error)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        // Read here rather than on the blocking pool: replication asks for the entries it just
        // appended, which sit in RocksDB's memtable, so the read takes microseconds while a
        // hop would cost each replication request two context switches. (Older entries, read
        // when a lagging follower catches up, may touch disk; that path is rare and bounded by
        // `RAFT_APPEND_ENTRIES_MAX` entries per call.)
        let read = self.store.log_range(start, end).map_err(io).and_then(|rows| {
            rows.iter().map(|(_, bytes)| decode::<Entry<TypeConfig>>(bytes)).collect::<Result<Vec<_>, _>>()
        });
        read.map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let store = self.store.clone();
        let state = blocking(move || {
            let last_purged: Option<LogId<NodeId>> = match store.raft_meta_get(META_LAST_PURGED).map_err(io)? {
                Some(bytes) => Some(decode(&bytes)?),
                None => None,
            };
            let last = match store.log_last().map_err(io)? {
                Some((_, bytes)) => Some(decode::<Entry<TypeConfig>>(&bytes)?.log_id),
                None => None,
            };
            bounds::check_log_id("the last purged log id", last_purged.as_ref()).map_err(impossible_saved_state)?;
            bounds::check_log_id("the last log entry", last.as_ref()).map_err(impossible_saved_state)?;
            Ok(LogState { last_purged_log_id: last_purged, last_log_id: last.or(last_purged) })
        })
        .await;
        state.map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = encode(vote);
        let save = || {
            let (store, bytes) = (self.store.clone(), bytes.clone());
            blocking(move || store.raft_meta_put(META_VOTE, bytes).map_err(io))
        };
        self.space.write("vote", save).await.map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        let store = self.store.clone();
        blocking(move || match store.raft_meta_get(META_VOTE).map_err(io)? {
            Some(bytes) => {
                let vote: Vote<NodeId> = decode(&bytes)?;
                bounds::check_vote("the saved vote", &vote).map_err(impossible_saved_state)?;
                Ok(Some(vote))
            }
            None => Ok(None),
        })
        .await
        .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        // openraft calls this before every apply, inline in its core loop. `committed` is only
        // a hint for restart (entries up to it may be applied without a new quorum round), so
        // it needs no fsync of its own: it is written after the entries it names, and the WAL
        // keeps order, so a crash never leaves it ahead of the log. Unsynced, the write is a
        // memtable insert, done here rather than on the blocking pool.
        let bytes = encode(&committed);
        let save = || std::future::ready(self.store.raft_meta_put_unsynced(META_COMMITTED, bytes.clone()).map_err(io));
        self.space.write("committed log id", save).await.map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let store = self.store.clone();
        blocking(move || match store.raft_meta_get(META_COMMITTED).map_err(io)? {
            Some(bytes) => {
                let committed: Option<LogId<NodeId>> = decode(&bytes)?;
                bounds::check_log_id("the saved committed log id", committed.as_ref()).map_err(impossible_saved_state)?;
                Ok(committed)
            }
            None => Ok(None),
        })
        .await
        .map_err(|e| StorageIOError::read(&e).into())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows: Vec<(u64, Vec<u8>)> = entries.into_iter().map(|e| (e.log_id.index, encode_entry(&e))).collect();
        // Written now, on this task: an unsynced write only copies into RocksDB's memtable and
        // WAL buffer (microseconds), and openraft's core awaits every append in turn, so a
        // hop to the blocking pool here would cost every write a context switch. The syncer
        // acknowledges it after its next fsync.
        let write = || std::future::ready(self.store.log_write(&rows).map_err(io));
        let written = self.space.write("log append", write).await;
        let queued = match written {
            Ok(()) => self.syncer.acknowledge_when_durable(callback).await,
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e)
            }
        };
        queued.map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let truncate = || {
            let store = self.store.clone();
            blocking(move || store.log_truncate_from(log_id.index).map_err(io))
        };
        self.space.write("log truncate", truncate).await.map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let bytes = encode(&log_id);
        let purge = || {
            let (store, bytes) = (self.store.clone(), bytes.clone());
            blocking(move || store.log_purge_upto(log_id.index, META_LAST_PURGED, bytes).map_err(io))
        };
        self.space.write("log purge", purge).await.map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 11): a vote of term 2^64-1 saved by an unchecked version made
    /// openraft panic on every start; now reading it back is a clear error.
    #[tokio::test]
    async fn an_impossible_saved_vote_is_refused_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        let mut log = LogStore::new(store.clone(), DiskSpace::default());
        log.save_vote(&Vote::new(7, 1)).await.unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(7, 1)));
        store.raft_meta_put(META_VOTE, encode(&Vote::new_committed(u64::MAX, 2))).unwrap();
        let error = log.read_vote().await.unwrap_err().to_string();
        assert!(error.contains("above RAFT_TERM_MAX") && error.contains("forged"), "{error}");
        store.raft_meta_put(META_COMMITTED, encode(&Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), u64::MAX)))).unwrap();
        let error = log.read_committed().await.unwrap_err().to_string();
        assert!(error.contains("above RAFT_INDEX_MAX"), "{error}");
    }
}
