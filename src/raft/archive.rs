//! Consul's snapshot archive: what `GET /v1/snapshot` sends, and what `PUT /v1/snapshot` and
//! `cairn snapshot inspect` read.
//!
//! A gzipped tar of three files, as Consul's `snapshot/archive.go` writes them:
//! - `meta.json`: Consul's `raft.SnapshotMeta` (`Version`, `ID`, `Index`, `Term`,
//!   `Configuration`, `ConfigurationIndex`, `Size`, the size of `state.bin`);
//! - `state.bin`: the state, in cairn's own snapshot encoding (`raft::snapshot`: magic,
//!   version, header, rows, CRC-32). Consul's is a msgpack stream of its own FSM, which cairn
//!   neither reads nor writes, so archives travel between cairn clusters only;
//! - `SHA256SUMS`: `sha256sum`-style lines for the other two.
//!
//! Reading keeps every limit while it decompresses: the whole unpacked stream is cut at
//! [`SNAPSHOT_UNPACKED_BYTES_MAX`] (a gzip bomb stops there, with [`ArchiveError::TooLarge`]),
//! each file at its own limit, and the archive at [`SNAPSHOT_ARCHIVE_ENTRIES_MAX`] files. Any
//! other file, a file twice, a missing file or a checksum that disagrees refuses the archive
//! whole, before anything of it is used.
//!
//! [`open`] also takes a bare cairn snapshot, the format `GET /v1/snapshot` sent before this
//! archive, so that backups taken then stay restorable.

use std::cell::Cell;
use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::raft::snapshot::{self, SnapshotError, SnapshotHeader};
use crate::raft::{NodeId, ServerNode};

/// Largest `state.bin` an archive may hold: a restore travels as one Raft entry, which must
/// stay well below the server port's body limit (`rpc::RPC_BODY_BYTES_MAX`).
pub const SNAPSHOT_STATE_BYTES_MAX: usize = 12 * 1024 * 1024;
/// Largest `meta.json`: it holds ids and the server list.
const SNAPSHOT_META_BYTES_MAX: usize = 64 * 1024;
/// Largest `SHA256SUMS`: two lines.
const SNAPSHOT_SUMS_BYTES_MAX: usize = 4 * 1024;
/// Most bytes the gzip stream may unpack to: the three files plus their tar headers.
pub const SNAPSHOT_UNPACKED_BYTES_MAX: usize = SNAPSHOT_STATE_BYTES_MAX + 1024 * 1024;
/// Files in an archive: exactly Consul's three.
pub const SNAPSHOT_ARCHIVE_ENTRIES_MAX: usize = 3;
/// The only `raft.SnapshotMeta` version there is.
const SNAPSHOT_META_VERSION: u64 = 1;

const META_FILE: &str = "meta.json";
const STATE_FILE: &str = "state.bin";
const SUMS_FILE: &str = "SHA256SUMS";
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Consul's `raft.SnapshotMeta` as `meta.json` carries it (`Peers`, hashicorp/raft's legacy
/// encoding of the same servers, is left out; readers ignore its absence).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArchiveMeta {
    pub version: u64,
    #[serde(rename = "ID")]
    pub id: String,
    pub index: u64,
    pub term: u64,
    #[serde(default)]
    pub configuration: ArchiveConfiguration,
    #[serde(default)]
    pub configuration_index: u64,
    /// The size of `state.bin` in bytes.
    pub size: u64,
}

/// hashicorp/raft's `Configuration`: the servers at the snapshot's index.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArchiveConfiguration {
    #[serde(default)]
    pub servers: Vec<ArchiveServer>,
}

/// One server: `Suffrage` 0 is a voter, 1 a non-voter (hashicorp/raft's numbering).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ArchiveServer {
    pub suffrage: u8,
    #[serde(rename = "ID")]
    pub id: String,
    pub address: String,
}

/// What [`open`] found: the state's rows, its header, and the archive's metadata (none for a
/// bare cairn snapshot).
#[derive(Debug)]
pub struct OpenedSnapshot {
    pub meta: Option<ArchiveMeta>,
    pub header: SnapshotHeader,
    pub rows: Vec<(Vec<u8>, Vec<u8>)>,
    /// The size of the state in bytes (`state.bin`, or the whole bare snapshot).
    pub state_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("snapshot {what} is larger than {limit_bytes} bytes")]
    TooLarge { what: &'static str, limit_bytes: usize },
    #[error("not a snapshot: neither a gzipped snapshot archive nor a cairn snapshot")]
    NotASnapshot,
    #[error("failed reading snapshot: {0}")]
    Read(String),
    #[error("unexpected file {0:?} in snapshot")]
    UnexpectedFile(String),
    #[error("file {0:?} appears twice in snapshot")]
    DuplicateFile(&'static str),
    #[error("failed to decode snapshot metadata: {0}")]
    Meta(String),
    #[error("failed checking integrity of snapshot: {0}")]
    Integrity(String),
    #[error("snapshot state.bin is not cairn's state (a Consul snapshot cannot be restored into cairn): {0}")]
    State(SnapshotError),
}

/// The archive of `state` (a `raft::snapshot` encoding described by `header`), its files
/// stamped with `mtime_s` (seconds since the Unix epoch).
pub fn write(header: &SnapshotHeader, state: &[u8], mtime_s: u64) -> Vec<u8> {
    let meta = meta_of(header, state.len() as u64);
    let mut meta_json = serde_json::to_vec(&meta).expect("the snapshot metadata serializes to JSON");
    meta_json.push(b'\n');
    let sums = format!("{}  {META_FILE}\n{}  {STATE_FILE}\n", sha256_hex(&meta_json), sha256_hex(state));
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for (name, data) in [(META_FILE, meta_json.as_slice()), (STATE_FILE, state), (SUMS_FILE, sums.as_bytes())] {
        let mut entry = tar::Header::new_ustar();
        entry.set_path(name).expect("a short ASCII file name fits a tar header");
        entry.set_size(data.len() as u64);
        entry.set_mode(0o600);
        entry.set_mtime(mtime_s);
        entry.set_entry_type(tar::EntryType::Regular);
        entry.set_cksum();
        builder.append(&entry, data).expect("writing a tar entry into memory cannot fail");
    }
    let encoder = builder.into_inner().expect("finishing a tar in memory cannot fail");
    encoder.finish().expect("finishing a gzip stream in memory cannot fail")
}

/// Consul's metadata for a snapshot with this header and a `state.bin` of `size` bytes.
fn meta_of(header: &SnapshotHeader, size: u64) -> ArchiveMeta {
    let membership = header.membership.membership();
    let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
    let servers = membership
        .nodes()
        .map(|(id, node): (&NodeId, &ServerNode)| ArchiveServer {
            suffrage: if voters.contains(id) { 0 } else { 1 },
            id: format!("{id:016x}"),
            address: node.raft_addr.clone(),
        })
        .collect();
    ArchiveMeta {
        version: SNAPSHOT_META_VERSION,
        id: header.snapshot_id.clone(),
        index: header.last_log_id.map_or(0, |l| l.index),
        term: header.last_log_id.map_or(0, |l| l.leader_id.term),
        configuration: ArchiveConfiguration { servers },
        configuration_index: header.membership.log_id().map_or(0, |l| l.index),
        size,
    }
}

/// Reads a backup: Consul's archive (checksums verified), or a bare cairn snapshot.
pub fn open(bytes: &[u8]) -> Result<OpenedSnapshot, ArchiveError> {
    if bytes.starts_with(&GZIP_MAGIC) {
        let (meta, state) = read(bytes)?;
        let (header, rows) = snapshot::decode(&state).map_err(ArchiveError::State)?;
        return Ok(OpenedSnapshot { meta: Some(meta), header, rows, state_bytes: state.len() });
    }
    if bytes.starts_with(snapshot::MAGIC) {
        let (header, rows) = snapshot::decode(bytes).map_err(ArchiveError::State)?;
        return Ok(OpenedSnapshot { meta: None, header, rows, state_bytes: bytes.len() });
    }
    Err(ArchiveError::NotASnapshot)
}

/// How many rows of one table a snapshot holds, and their bytes (keys and values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableStat {
    pub name: &'static str,
    pub count: u64,
    pub bytes: u64,
}

/// The rows of a snapshot by table, largest first (Consul's `snapshot inspect` order).
pub fn table_stats(rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<TableStat> {
    let mut stats: Vec<TableStat> = Vec::new();
    for (key, value) in rows {
        let name = crate::catalog::RowKey::table_of(key).unwrap_or("Unknown");
        let bytes = (key.len() + value.len()) as u64;
        match stats.iter_mut().find(|stat| stat.name == name) {
            Some(stat) => {
                stat.count += 1;
                stat.bytes += bytes;
            }
            None => stats.push(TableStat { name, count: 1, bytes }),
        }
    }
    stats.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.name.cmp(b.name)));
    stats
}

/// The three files read from a gzipped tar, each at most its limit.
#[derive(Default)]
struct Files {
    meta: Option<Vec<u8>>,
    state: Option<Vec<u8>>,
    sums: Option<Vec<u8>>,
}

/// Unpacks an archive and verifies it: its metadata and `state.bin`.
fn read(bytes: &[u8]) -> Result<(ArchiveMeta, Vec<u8>), ArchiveError> {
    let exceeded = Cell::new(false);
    let unpacked = Bounded { inner: flate2::read::GzDecoder::new(bytes), remaining: SNAPSHOT_UNPACKED_BYTES_MAX, exceeded: &exceeded };
    let mut archive = tar::Archive::new(unpacked);
    let files = read_files(&mut archive, &exceeded)?;
    // Read on to the end of the gzip stream, so that its own CRC and length are checked too (a
    // truncated file is refused) and nothing is left unread past the tar's end blocks.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(|error| unpack_error(error, &exceeded))?;
    let (meta_json, state, sums) = match (files.meta, files.state, files.sums) {
        (Some(meta_json), Some(state), Some(sums)) => (meta_json, state, sums),
        (None, _, _) => return Err(ArchiveError::Integrity(format!("file missing for {META_FILE:?}"))),
        (_, None, _) => return Err(ArchiveError::Integrity(format!("file missing for {STATE_FILE:?}"))),
        (_, _, None) => return Err(ArchiveError::Integrity(format!("file missing for {SUMS_FILE:?}"))),
    };
    verify_sums(&sums, &[(META_FILE, &meta_json), (STATE_FILE, &state)])?;
    let meta: ArchiveMeta = serde_json::from_slice(&meta_json).map_err(|e| ArchiveError::Meta(e.to_string()))?;
    if meta.size != state.len() as u64 {
        return Err(ArchiveError::Integrity(format!("meta.json gives a size of {} but state.bin has {} bytes", meta.size, state.len())));
    }
    Ok((meta, state))
}

fn read_files<R: Read>(archive: &mut tar::Archive<R>, exceeded: &Cell<bool>) -> Result<Files, ArchiveError> {
    let failed = |error: std::io::Error| unpack_error(error, exceeded);
    let mut files = Files::default();
    let mut count = 0;
    for entry in archive.entries().map_err(failed)? {
        let entry = entry.map_err(failed)?;
        count += 1;
        if count > SNAPSHOT_ARCHIVE_ENTRIES_MAX {
            return Err(ArchiveError::Read(format!("more than {SNAPSHOT_ARCHIVE_ENTRIES_MAX} files in snapshot")));
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let (slot, name, limit_bytes) = match name.as_str() {
            META_FILE => (&mut files.meta, META_FILE, SNAPSHOT_META_BYTES_MAX),
            STATE_FILE => (&mut files.state, STATE_FILE, SNAPSHOT_STATE_BYTES_MAX),
            SUMS_FILE => (&mut files.sums, SUMS_FILE, SNAPSHOT_SUMS_BYTES_MAX),
            _ => return Err(ArchiveError::UnexpectedFile(name)),
        };
        if !entry.header().entry_type().is_file() {
            return Err(ArchiveError::UnexpectedFile(format!("{name} (not a regular file)")));
        }
        if slot.is_some() {
            return Err(ArchiveError::DuplicateFile(name));
        }
        let mut data = Vec::new();
        entry.take(limit_bytes as u64 + 1).read_to_end(&mut data).map_err(failed)?;
        if data.len() > limit_bytes {
            return Err(ArchiveError::TooLarge { what: name, limit_bytes });
        }
        *slot = Some(data);
    }
    Ok(files)
}

/// A read error while unpacking: the limit, if that is what stopped it.
fn unpack_error(error: std::io::Error, exceeded: &Cell<bool>) -> ArchiveError {
    if exceeded.get() {
        return ArchiveError::TooLarge { what: "archive unpacked", limit_bytes: SNAPSHOT_UNPACKED_BYTES_MAX };
    }
    ArchiveError::Read(error.to_string())
}

/// Consul's `DecodeAndVerify`: every line names a file we hold and its hash matches, and every
/// file we hold has a line.
fn verify_sums(sums: &[u8], files: &[(&'static str, &[u8])]) -> Result<(), ArchiveError> {
    let text = std::str::from_utf8(sums).map_err(|_| ArchiveError::Integrity("SHA256SUMS is not text".into()))?;
    let mut seen = Vec::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        let Some((hash, name)) = line.split_once("  ") else {
            return Err(ArchiveError::Integrity(format!("malformed line in SHA256SUMS: {line:?}")));
        };
        let Some((file, data)) = files.iter().find(|(file, _)| *file == name) else {
            return Err(ArchiveError::Integrity(format!("list missing hash for {name:?}")));
        };
        if !hash.eq_ignore_ascii_case(&sha256_hex(data)) {
            return Err(ArchiveError::Integrity(format!("hash check failed for {name:?}")));
        }
        seen.push(*file);
    }
    match files.iter().find(|(file, _)| !seen.contains(file)) {
        Some((file, _)) => Err(ArchiveError::Integrity(format!("file missing for {file:?}"))),
        None => Ok(()),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A reader that fails once more than `remaining` bytes come out of `inner`, and says so in
/// `exceeded` (the tar reader wraps the error, so its kind cannot carry the news).
struct Bounded<'a, R> {
    inner: R,
    remaining: usize,
    exceeded: &'a Cell<bool>,
}

impl<R: Read> Read for Bounded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            // At the limit: one more byte means the stream is larger than allowed.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.exceeded.set(true);
            return Err(std::io::Error::other("snapshot archive unpacks to more than its limit"));
        }
        let wanted = buf.len().min(self.remaining);
        let read = self.inner.read(&mut buf[..wanted])?;
        self.remaining -= read;
        Ok(read)
    }
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
