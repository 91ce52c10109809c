//! RocksDB, and nothing else: the one module that names `rocksdb`.
//!
//! One database per agent data dir, with a column family per concern:
//!
//! | CF | key | value | writer |
//! |---|---|---|---|
//! | `raft_log` | log index, u64 big-endian | versioned entry bytes | Raft log store (synced) |
//! | `raft_meta` | `vote`, `committed`, `last_purged` | versioned bytes | Raft log store (synced) |
//! | `sm` | catalog row key | versioned row bytes | Raft state machine |
//! | `sm_meta` | `last_applied`, `membership` | versioned bytes | Raft state machine, same batch as `sm` |
//! | `agent` | agent-local key | versioned bytes | the agent's local state (unsynced, then a shared WAL sync) |
//!
//! All column families share one write-ahead log, so a batch that spans them is atomic, and a
//! synced write also makes every earlier unsynced write durable.
//!
//! Synced writes and scans block on disk: callers on the async runtime use `spawn_blocking`.
//! Unsynced writes and reads of recent log entries touch only memory (the memtable and the WAL
//! buffer) and are called inline on the hot write path.
//!
//! Tuning, measured with `cairn-bench --vs-etcd --puts-only` (BENCHMARKS.md): memtables are
//! kept small (8 MiB), which bounds memory under write load (RSS after the put runs 80 MiB
//! against 103 MiB per server) at no cost in throughput, and the WAL's total size is capped,
//! which makes RocksDB flush the small column families that would otherwise keep old WAL
//! files alive. Recycling WAL files (so that an fsync overwrites a file that already has its
//! size) was tried and measured no faster here, so it is off.
//!
//! The `agent` CF's memtable is a vector, not a skip list: the local state is written on every
//! registration and read only when the agent starts, so an insert is an append instead of a
//! skip-list search (that search was 5% of a client agent's CPU at 64 registering workers,
//! `cairn-bench --client-agents`); the vector is sorted once, when it is flushed or read.
//!
use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Direction, IteratorMode, MemtableFactory, Options, WriteBatch, WriteOptions};

const CF_RAFT_LOG: &str = "raft_log";
const CF_RAFT_META: &str = "raft_meta";
const CF_SM: &str = "sm";
const CF_SM_META: &str = "sm_meta";
const CF_AGENT: &str = "agent";
const COLUMN_FAMILIES: [&str; 5] = [CF_RAFT_LOG, CF_RAFT_META, CF_SM, CF_SM_META, CF_AGENT];

/// Memtable size of each column family before it is flushed (RocksDB's default is 64 MiB).
const MEMTABLE_BYTES_MAX: usize = 8 << 20;
/// Total WAL size at which RocksDB flushes the column families that hold the oldest WAL file.
const WAL_TOTAL_BYTES_MAX: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("column family {name} is missing")]
    MissingColumnFamily { name: &'static str },
}

/// A write to the state machine: rows to put or delete, plus metadata, applied atomically.
#[derive(Debug, Default)]
pub struct StateMachineBatch {
    pub rows: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub meta: Vec<(&'static str, Vec<u8>)>,
}

/// A handle to the agent's RocksDB. Cheap to clone; every clone is the same database.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
}

impl Store {
    /// Opens (creating if needed) the database under `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        options.set_max_total_wal_size(WAL_TOTAL_BYTES_MAX);
        // The (unused) default column family is opened with the same options: after "No space
        // left on device" RocksDB resumes by itself once the largest memtable size is free, and
        // the default CF's own 64 MiB would make it wait for 64 MiB (`raft::disk_full`).
        let descriptors = COLUMN_FAMILIES.iter().chain(&[rocksdb::DEFAULT_COLUMN_FAMILY_NAME]).map(|name| {
            let mut cf = Options::default();
            cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
            cf.set_write_buffer_size(MEMTABLE_BYTES_MAX);
            if *name == CF_AGENT {
                // Written often, read at start only (module docs).
                cf.set_memtable_factory(MemtableFactory::Vector);
            }
            ColumnFamilyDescriptor::new(*name, cf)
        });
        let db = DB::open_cf_descriptors(&options, path, descriptors)?;
        let store = Store { db: Arc::new(db) };
        for name in COLUMN_FAMILIES {
            store.cf(name)?;
        }
        Ok(store)
    }

    fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StoreError> {
        self.db.cf_handle(name).ok_or(StoreError::MissingColumnFamily { name })
    }

    fn synced() -> WriteOptions {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        options
    }

    // ---- Raft log --------------------------------------------------------------------------

    /// Writes entries in one batch, *not yet durable*: readable at once, durable after the next
    /// [`Store::sync_wal`] (or any synced write), which group commit batches.
    pub fn log_write(&self, entries: &[(u64, Vec<u8>)]) -> Result<(), StoreError> {
        let cf = self.cf(CF_RAFT_LOG)?;
        let mut batch = WriteBatch::default();
        for (index, bytes) in entries {
            batch.put_cf(cf, index.to_be_bytes(), bytes);
        }
        self.db.write_opt(batch, &WriteOptions::default())?;
        Ok(())
    }

    /// Fsyncs the write-ahead log: every write made before this call is durable when it returns.
    pub fn sync_wal(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// Entries with `start <= index < end`, in order.
    pub fn log_range(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let cf = self.cf(CF_RAFT_LOG)?;
        let mut out = Vec::new();
        let start_key = start.to_be_bytes();
        for item in self.db.iterator_cf(cf, IteratorMode::From(&start_key, Direction::Forward)) {
            let (key, value) = item?;
            let index = decode_index(&key);
            if index >= end {
                break;
            }
            out.push((index, value.to_vec()));
        }
        Ok(out)
    }

    /// The last entry in the log, if any.
    pub fn log_last(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let cf = self.cf(CF_RAFT_LOG)?;
        match self.db.iterator_cf(cf, IteratorMode::End).next() {
            Some(item) => {
                let (key, value) = item?;
                Ok(Some((decode_index(&key), value.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// Deletes entries with `index >= from` (conflict truncation), synced.
    pub fn log_truncate_from(&self, from: u64) -> Result<(), StoreError> {
        let cf = self.cf(CF_RAFT_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, from.to_be_bytes(), u64::MAX.to_be_bytes());
        batch.delete_cf(cf, u64::MAX.to_be_bytes());
        self.db.write_opt(batch, &Self::synced())?;
        Ok(())
    }

    /// Records `meta_key = meta_value` and deletes entries with `index <= upto`, in one synced
    /// batch, so the purge marker is never behind the deletion.
    pub fn log_purge_upto(&self, upto: u64, meta_key: &'static str, meta_value: Vec<u8>) -> Result<(), StoreError> {
        let log = self.cf(CF_RAFT_LOG)?;
        let meta = self.cf(CF_RAFT_META)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, meta_key, meta_value);
        batch.delete_range_cf(log, 0u64.to_be_bytes(), upto.saturating_add(1).to_be_bytes());
        self.db.write_opt(batch, &Self::synced())?;
        Ok(())
    }

    pub fn raft_meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_RAFT_META)?, key)?)
    }

    /// Writes Raft metadata (the vote) durably.
    pub fn raft_meta_put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.raft_meta_write(key, value, &Self::synced())
    }

    /// Writes Raft metadata *not yet durable*, like [`Store::log_write`]: it becomes durable
    /// with the next WAL fsync, and the WAL keeps order, so after a crash it is either lost
    /// or present together with every write made before it.
    pub fn raft_meta_put_unsynced(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.raft_meta_write(key, value, &WriteOptions::default())
    }

    fn raft_meta_write(&self, key: &str, value: Vec<u8>, options: &WriteOptions) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_RAFT_META)?, key, value);
        self.db.write_opt(batch, options)?;
        Ok(())
    }

    // ---- State machine ---------------------------------------------------------------------

    /// Writes catalog rows and state-machine metadata in one atomic batch. Not synced: the log
    /// is the durable record, and after a crash the metadata and rows roll back together, so
    /// Raft re-applies from the log.
    pub fn sm_write(&self, write: &StateMachineBatch) -> Result<(), StoreError> {
        let rows = self.cf(CF_SM)?;
        let meta = self.cf(CF_SM_META)?;
        let mut batch = WriteBatch::default();
        for (key, value) in &write.rows {
            match value {
                Some(value) => batch.put_cf(rows, key, value),
                None => batch.delete_cf(rows, key),
            }
        }
        for (key, value) in &write.meta {
            batch.put_cf(meta, key, value);
        }
        self.db.write(batch)?;
        Ok(())
    }

    /// Replaces the whole state machine (snapshot install) in one synced batch.
    pub fn sm_replace(&self, write: &StateMachineBatch) -> Result<(), StoreError> {
        let rows = self.cf(CF_SM)?;
        let meta = self.cf(CF_SM_META)?;
        let mut batch = WriteBatch::default();
        // Row keys start with an ASCII table byte, so this range covers every row.
        batch.delete_range_cf(rows, [0u8].as_slice(), [0xffu8].as_slice());
        for (key, value) in &write.rows {
            if let Some(value) = value {
                batch.put_cf(rows, key, value);
            }
        }
        for (key, value) in &write.meta {
            batch.put_cf(meta, key, value);
        }
        self.db.write_opt(batch, &Self::synced())?;
        Ok(())
    }

    pub fn sm_meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_SM_META)?, key)?)
    }

    /// Every state-machine row plus the metadata, read from one consistent RocksDB snapshot.
    pub fn sm_read_consistent(&self, meta_keys: &[&'static str]) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, Vec<Option<Vec<u8>>>), StoreError> {
        let snapshot = self.db.snapshot();
        let mut rows = Vec::new();
        for item in snapshot.iterator_cf(self.cf(CF_SM)?, IteratorMode::Start) {
            let (key, value) = item?;
            rows.push((key.to_vec(), value.to_vec()));
        }
        let mut meta = Vec::with_capacity(meta_keys.len());
        for key in meta_keys {
            meta.push(snapshot.get_cf(self.cf(CF_SM_META)?, key)?);
        }
        Ok((rows, meta))
    }

    // ---- Agent-local state -----------------------------------------------------------------

    pub fn agent_put(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_AGENT)?, key, value);
        self.db.write_opt(batch, &Self::synced())?;
        Ok(())
    }

    /// Writes agent-local entries in one batch, *not yet durable*, like [`Store::log_write`]:
    /// durable after the next [`Store::sync_wal`] (`agent::persist` groups those).
    pub fn agent_write(&self, puts: Vec<(String, Vec<u8>)>, deletes: Vec<String>) -> Result<(), StoreError> {
        let cf = self.cf(CF_AGENT)?;
        let mut batch = WriteBatch::default();
        for (key, value) in puts {
            batch.put_cf(cf, key, value);
        }
        for key in deletes {
            batch.delete_cf(cf, key);
        }
        self.db.write_opt(batch, &WriteOptions::default())?;
        Ok(())
    }

    pub fn agent_delete(&self, key: &str) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_AGENT)?, key);
        self.db.write_opt(batch, &Self::synced())?;
        Ok(())
    }

    pub fn agent_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_AGENT)?, key)?)
    }

    /// Every agent-local entry whose key starts with `prefix`.
    pub fn agent_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let cf = self.cf(CF_AGENT)?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::From(prefix.as_bytes(), Direction::Forward)) {
            let (key, value) = item?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            out.push((String::from_utf8_lossy(&key).into_owned(), value.to_vec()));
        }
        Ok(out)
    }
}

/// What RocksDB holds in memory, summed over the column families (RocksDB's own
/// accounting: `rocksdb.cur-size-all-mem-tables`, `rocksdb.estimate-table-readers-mem` and
/// `rocksdb.block-cache-usage`). The soak and `/v1/agent/self` report it beside RSS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreMemory {
    pub memtables_bytes: u64,
    pub table_readers_bytes: u64,
    pub block_cache_bytes: u64,
}

impl Store {
    /// RocksDB's memory, as it counts it. A property RocksDB cannot give counts as 0.
    pub fn memory(&self) -> StoreMemory {
        let mut memory = StoreMemory::default();
        let property = |cf: &ColumnFamily, name: &str| self.db.property_int_value_cf(cf, name).ok().flatten().unwrap_or(0);
        for name in COLUMN_FAMILIES {
            let Ok(cf) = self.cf(name) else { continue };
            memory.memtables_bytes += property(cf, "rocksdb.cur-size-all-mem-tables");
            memory.table_readers_bytes += property(cf, "rocksdb.estimate-table-readers-mem");
            memory.block_cache_bytes += property(cf, "rocksdb.block-cache-usage");
        }
        memory
    }

    /// Bytes of table files on disk, every column family together (0 if RocksDB cannot say).
    pub fn sst_files_bytes(&self) -> u64 {
        let property = |cf: &ColumnFamily| self.db.property_int_value_cf(cf, "rocksdb.total-sst-files-size").ok().flatten().unwrap_or(0);
        COLUMN_FAMILIES.iter().filter_map(|name| self.cf(name).ok()).map(property).sum()
    }
}

fn decode_index(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    // Keys in raft_log are always written as 8 bytes by `log_append`.
    assert_eq!(key.len(), 8, "raft_log key is not a u64 index");
    bytes.copy_from_slice(key);
    u64::from_be_bytes(bytes)
}
