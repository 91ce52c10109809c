//! The snapshot file format: a point-in-time copy of the state machine's rows.
//!
//! Layout: `CAIRNSNAP` magic, a format version byte, a u32 big-endian length and the
//! postcard-encoded [`SnapshotHeader`], then each row as u32 key length, key, u32 value length,
//! value, and last a CRC-32 of everything before it. Decoding checks the magic, the version,
//! every length and the checksum before anything is applied, so a truncated or corrupt file is
//! rejected whole.

use openraft::{LogId, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::raft::{NodeId, ServerNode};

/// The first bytes of every cairn snapshot.
pub(crate) const MAGIC: &[u8; 9] = b"CAIRNSNAP";
const SNAPSHOT_FORMAT_V1: u8 = 1;
/// A header larger than this is corrupt: it only holds ids and the membership.
const SNAPSHOT_HEADER_BYTES_MAX: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub last_log_id: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, ServerNode>,
    pub snapshot_id: String,
    pub row_count: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a cairn snapshot (bad magic)")]
    BadMagic,
    #[error("unsupported snapshot format version {version}")]
    UnknownVersion { version: u8 },
    #[error("snapshot is truncated")]
    Truncated,
    #[error("snapshot checksum mismatch: the file is corrupt")]
    Checksum,
    #[error("snapshot header is malformed: {0}")]
    Header(String),
}

pub fn encode(header: &SnapshotHeader, rows: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let header_bytes = postcard::to_allocvec(header).expect("postcard serializes the snapshot header");
    let body_len: usize = rows.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + 5 + header_bytes.len() + body_len + 4);
    out.extend_from_slice(MAGIC);
    out.push(SNAPSHOT_FORMAT_V1);
    out.extend_from_slice(&(header_bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&header_bytes);
    for (key, value) in rows {
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

pub fn decode(bytes: &[u8]) -> Result<(SnapshotHeader, Vec<(Vec<u8>, Vec<u8>)>), SnapshotError> {
    if bytes.len() < MAGIC.len() + 1 + 4 + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(if bytes.starts_with(MAGIC) { SnapshotError::Truncated } else { SnapshotError::BadMagic });
    }
    let (content, crc) = bytes.split_at(bytes.len() - 4);
    let version = content[MAGIC.len()];
    if version != SNAPSHOT_FORMAT_V1 {
        return Err(SnapshotError::UnknownVersion { version });
    }
    if crc32fast::hash(content) != u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err(SnapshotError::Checksum);
    }
    let mut reader = Reader { bytes: &content[MAGIC.len() + 1..] };
    let header_len = reader.u32()? as usize;
    if header_len > SNAPSHOT_HEADER_BYTES_MAX {
        return Err(SnapshotError::Header(format!("header of {header_len} bytes")));
    }
    let header: SnapshotHeader =
        postcard::from_bytes(reader.take(header_len)?).map_err(|e| SnapshotError::Header(e.to_string()))?;
    let mut rows = Vec::new();
    while !reader.bytes.is_empty() {
        let key_len = reader.u32()? as usize;
        let key = reader.take(key_len)?.to_vec();
        let value_len = reader.u32()? as usize;
        let value = reader.take(value_len)?.to_vec();
        rows.push((key, value));
    }
    if rows.len() as u64 != header.row_count {
        return Err(SnapshotError::Truncated);
    }
    Ok((header, rows))
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], SnapshotError> {
        if self.bytes.len() < len {
            return Err(SnapshotError::Truncated);
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{LogId, StoredMembership};

    use super::*;

    fn header(rows: u64) -> SnapshotHeader {
        SnapshotHeader {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 42)),
            membership: StoredMembership::default(),
            snapshot_id: "3-42-1".into(),
            row_count: rows,
        }
    }

    #[test]
    fn round_trip_and_every_corruption_is_rejected() {
        let rows = vec![(b"k1".to_vec(), b"v1".to_vec()), (b"k2".to_vec(), vec![0u8; 1000])];
        let bytes = encode(&header(2), &rows);
        let (decoded_header, decoded_rows) = decode(&bytes).expect("decodes");
        assert_eq!(decoded_header, header(2));
        assert_eq!(decoded_rows, rows);

        for cut in [0, 5, 9, 14, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut]).is_err(), "truncated at {cut} must be rejected");
        }
        for flip in [12, bytes.len() / 2, bytes.len() - 5] {
            let mut corrupt = bytes.clone();
            corrupt[flip] ^= 0x40;
            assert!(decode(&corrupt).is_err(), "bit flip at {flip} must be rejected");
        }
        let mut wrong_version = bytes.clone();
        wrong_version[9] = 2;
        assert!(matches!(decode(&wrong_version), Err(SnapshotError::UnknownVersion { version: 2 })));
        assert!(matches!(decode(b"not a snapshot at all"), Err(SnapshotError::BadMagic)));
        let lying = encode(&header(3), &rows);
        assert!(decode(&lying).is_err(), "a row count that disagrees is rejected");
    }
}
