//! The Raft state machine (`openraft::storage::RaftStateMachine`): the catalog, durable in
//! RocksDB, with an in-memory read view.
//!
//! `apply` runs `catalog::apply` for each committed entry, then writes every touched row plus
//! `last_applied` and the membership in **one** RocksDB batch. On restart the catalog is rebuilt
//! from those rows, so openraft only re-applies entries after `last_applied`.
//!
//! Snapshots are built from a consistent RocksDB view (rows and metadata read from one RocksDB
//! snapshot), not from the in-memory catalog, so they are exactly the durable state at their
//! `last_log_id`.
//!
//! Every write waits out a full disk (`disk_full`) rather than stop openraft's core.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};

use crate::catalog::{self, Catalog, ChangeSet, Outcome};
use crate::raft::disk_full::DiskSpace;
use crate::raft::snapshot::{self, SnapshotHeader};
use crate::raft::{CatalogView, NodeId, ServerNode, TypeConfig};
use crate::store::{StateMachineBatch, Store};

const META_LAST_APPLIED: &str = "last_applied";
const META_MEMBERSHIP: &str = "membership";
const STATE_FORMAT_V1: u8 = 1;
const SNAPSHOT_FILE: &str = "snapshot.bin";

pub struct StateMachine {
    store: Store,
    view: Arc<CatalogView>,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, ServerNode>,
    /// Where the latest snapshot is kept, so a restarted server can send it to followers.
    snapshot_dir: PathBuf,
    /// Tells snapshots built in the same millisecond apart.
    snapshot_counter: u64,
    space: DiskSpace,
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![STATE_FORMAT_V1];
    out.extend(postcard::to_allocvec(value).expect("postcard serializes openraft's plain types"));
    out
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, std::io::Error> {
    match bytes.split_first() {
        Some((&STATE_FORMAT_V1, body)) => postcard::from_bytes(body).map_err(std::io::Error::other),
        _ => Err(std::io::Error::other("unknown state-machine metadata format")),
    }
}

fn io(error: impl std::error::Error + Send + Sync + 'static) -> std::io::Error {
    std::io::Error::other(error)
}

impl StateMachine {
    /// Opens the state machine, rebuilding the catalog from RocksDB.
    pub fn open(store: Store, view: Arc<CatalogView>, snapshot_dir: PathBuf, space: DiskSpace) -> Result<StateMachine, std::io::Error> {
        std::fs::create_dir_all(&snapshot_dir)?;
        let (rows, last_applied, membership) = read_durable(&store)?;
        let mut catalog = Catalog::new();
        for (key, value) in &rows {
            // A row we wrote ourselves that no longer decodes means the store is corrupt:
            // refuse to start rather than serve a diverged catalog.
            catalog.load_row(key, value).map_err(io)?;
        }
        view.replace(catalog, last_applied.map_or(0, |l| l.index));
        tracing::info!(rows = rows.len(), last_applied = ?last_applied, "state machine reopened from rocksdb");
        Ok(StateMachine { store, view, last_applied, membership, snapshot_dir, snapshot_counter: 0, space })
    }

    fn snapshot_path(&self) -> PathBuf {
        self.snapshot_dir.join(SNAPSHOT_FILE)
    }
}

/// The durable rows, `last_applied` and membership, from one consistent RocksDB view.
type DurableState = (Vec<(Vec<u8>, Vec<u8>)>, Option<LogId<NodeId>>, StoredMembership<NodeId, ServerNode>);

fn read_durable(store: &Store) -> Result<DurableState, std::io::Error> {
    let (rows, meta) = store.sm_read_consistent(&[META_LAST_APPLIED, META_MEMBERSHIP]).map_err(io)?;
    let last_applied = match &meta[0] {
        Some(bytes) => decode(bytes)?,
        None => None,
    };
    let membership = match &meta[1] {
        Some(bytes) => decode(bytes)?,
        None => StoredMembership::default(),
    };
    Ok((rows, last_applied, membership))
}

/// Encodes the durable state machine as a snapshot file (consistent RocksDB view).
/// The durable state as Consul's snapshot archive, with Consul's snapshot ID
/// (`term-index-milliseconds`), and the index it reflects.
pub(crate) fn export(store: &Store, now_ms: u64) -> Result<(Vec<u8>, u64), std::io::Error> {
    let (rows, last_log_id, membership) = read_durable(store)?;
    let index = last_log_id.map_or(0, |l| l.index);
    let term = last_log_id.map_or(0, |l| l.leader_id.term);
    let header = SnapshotHeader { last_log_id, membership, snapshot_id: format!("{term}-{index}-{now_ms}"), row_count: rows.len() as u64 };
    let state = snapshot::encode(&header, &rows);
    Ok((crate::raft::archive::write(&header, &state, now_ms / 1000), index))
}

/// Writes `bytes` to `path` atomically and durably (temp file, fsync, rename, fsync dir).
fn write_file_durably(path: &std::path::Path, bytes: &[u8]) -> Result<(), std::io::Error> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Builds snapshots from a consistent RocksDB view.
pub struct SnapshotBuilder {
    store: Store,
    snapshot_path: PathBuf,
    counter: u64,
    space: DiskSpace,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let store = self.store.clone();
        let path = self.snapshot_path.clone();
        let counter = self.counter;
        let space = self.space.clone();
        let built = tokio::task::spawn_blocking(move || -> Result<_, std::io::Error> {
            let (rows, last_log_id, membership) = read_durable(&store)?;
            let snapshot_id = match last_log_id {
                Some(l) => format!("{}-{}-{counter}", l.leader_id.term, l.index),
                None => format!("0-0-{counter}"),
            };
            let header = SnapshotHeader { last_log_id, membership, snapshot_id, row_count: rows.len() as u64 };
            let bytes = snapshot::encode(&header, &rows);
            space.write_blocking("snapshot file", || write_file_durably(&path, &bytes))?;
            Ok((header, bytes))
        })
        .await
        .map_err(io)
        .and_then(|r| r);
        let (header, bytes) = built.map_err(|e| StorageIOError::read_state_machine(&e))?;
        tracing::info!(snapshot_id = %header.snapshot_id, rows = header.row_count, bytes = bytes.len(), "built snapshot");
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id: header.last_log_id,
                last_membership: header.membership,
                snapshot_id: header.snapshot_id,
            },
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, ServerNode>), StorageError<NodeId>> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut outcomes = Vec::new();
        let mut changes = ChangeSet::new();
        let batch = {
            let mut catalog = self.view.write();
            for entry in entries {
                self.last_applied = Some(entry.log_id);
                let outcome = match &entry.payload {
                    EntryPayload::Blank => Outcome::Done,
                    EntryPayload::Normal(command) => {
                        catalog::apply(&mut catalog, entry.log_id.index, command, &mut changes)
                    }
                    EntryPayload::Membership(membership) => {
                        self.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                        Outcome::Done
                    }
                };
                outcomes.push(outcome);
            }
            let mut batch = StateMachineBatch::default();
            for row in changes.rows() {
                match catalog.encode_row(row) {
                    Some((key, value)) => batch.rows.push((key, Some(value))),
                    None => batch.rows.push((Catalog::row_key_bytes(row), None)),
                }
            }
            batch
        };
        let mut batch = batch;
        batch.meta.push((META_LAST_APPLIED, encode(&self.last_applied)));
        batch.meta.push((META_MEMBERSHIP, encode(&self.membership)));
        // Unsynced, the write only fills RocksDB's memtable and WAL buffer (microseconds), so it
        // runs here: a hop to the blocking pool would cost every applied batch two context
        // switches on the write path.
        let write = || std::future::ready(self.store.sm_write(&batch).map_err(io));
        self.space.write("state machine apply", write).await.map_err(|e| StorageIOError::write_state_machine(&e))?;
        if let Some(applied) = self.last_applied {
            self.view.publish_applied(applied.index, &changes);
        }
        metrics::histogram!(crate::telemetry::names::RAFT_FSM_APPLY).record(crate::telemetry::ms_since(started));
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_counter += 1;
        SnapshotBuilder {
            store: self.store.clone(),
            snapshot_path: self.snapshot_path(),
            counter: self.snapshot_counter,
            space: self.space.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, ServerNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let (header, rows) = snapshot::decode(&bytes).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &io(e)))?;
        let mut catalog = Catalog::new();
        for (key, value) in &rows {
            catalog.load_row(key, value).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &io(e)))?;
        }
        let mut batch = StateMachineBatch::default();
        batch.rows = rows.into_iter().map(|(k, v)| (k, Some(v))).collect();
        batch.meta.push((META_LAST_APPLIED, encode(&meta.last_log_id)));
        batch.meta.push((META_MEMBERSHIP, encode(&meta.last_membership)));
        let store = self.store.clone();
        let path = self.snapshot_path();
        let space = self.space.clone();
        tokio::task::spawn_blocking(move || -> Result<(), std::io::Error> {
            space.write_blocking("snapshot install", || {
                store.sm_replace(&batch).map_err(io)?;
                write_file_durably(&path, &bytes)
            })
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &io(e)))?
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.view.replace(catalog, meta.last_log_id.map_or(0, |l| l.index));
        tracing::info!(snapshot_id = %header.snapshot_id, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let path = self.snapshot_path();
        let read = tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
        .map_err(io)
        .and_then(|r| r)
        .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let Some(bytes) = read else { return Ok(None) };
        let (header, _) = snapshot::decode(&bytes).map_err(|e| StorageIOError::read_snapshot(None, &io(e)))?;
        Ok(Some(Snapshot {
            meta: SnapshotMeta {
                last_log_id: header.last_log_id,
                last_membership: header.membership,
                snapshot_id: header.snapshot_id,
            },
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
