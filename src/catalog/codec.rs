//! Versioned binary encoding of commands and persisted rows.
//!
//! Every encoded value starts with a one-byte format version followed by postcard. Decoding
//! checks the version first, so a future format can be read side by side with this one (add a
//! new version and a migration; never change what version 1 means).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::catalog::RowKey;
use crate::catalog::command::Command;

/// Format version of encoded commands.
pub const COMMAND_FORMAT_V1: u8 = 1;
/// Format version of persisted row values.
pub const ROW_FORMAT_V1: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("unknown format version {version} (this build reads version 1)")]
    UnknownVersion { version: u8 },
    #[error("empty encoded value")]
    Empty,
    #[error("malformed row key")]
    BadRowKey,
    #[error("malformed encoding: {0}")]
    Postcard(#[from] postcard::Error),
}

pub fn encode_command(command: &Command) -> Vec<u8> {
    encode_versioned(COMMAND_FORMAT_V1, command)
}

pub fn decode_command(bytes: &[u8]) -> Result<Command, CodecError> {
    decode_versioned(COMMAND_FORMAT_V1, bytes)
}

pub(crate) fn encode_row_value<T: Serialize>(value: &T) -> Vec<u8> {
    encode_versioned(ROW_FORMAT_V1, value)
}

pub(crate) fn decode_row_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_versioned(ROW_FORMAT_V1, bytes)
}

fn encode_versioned<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version];
    // Serializing our own plain structs into a Vec cannot fail: postcard only errors on
    // unsupported serde features (e.g. `deserialize_any`) and full fixed buffers.
    let body = postcard::to_allocvec(value).expect("postcard serializes plain catalog types");
    out.extend_from_slice(&body);
    out
}

fn decode_versioned<T: DeserializeOwned>(expected: u8, bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != expected {
        return Err(CodecError::UnknownVersion { version });
    }
    Ok(postcard::from_bytes(body)?)
}

/// Row keys are a table byte followed by length-prefixed parts, so that no user-chosen name
/// (which may contain any byte) can make two different rows collide.
pub(crate) fn encode_row_key(row: &RowKey) -> Vec<u8> {
    let mut key = Vec::new();
    let part = |key: &mut Vec<u8>, text: &str| {
        key.extend_from_slice(&(text.len() as u32).to_be_bytes());
        key.extend_from_slice(text.as_bytes());
    };
    match row {
        RowKey::Node(name) => {
            key.push(b'n');
            part(&mut key, name);
        }
        RowKey::Service(node, id) => {
            key.push(b's');
            part(&mut key, node);
            part(&mut key, id);
        }
        RowKey::Check(node, id) => {
            key.push(b'c');
            part(&mut key, node);
            part(&mut key, id);
        }
        RowKey::Kv(name) => {
            key.push(b'k');
            part(&mut key, name);
        }
        RowKey::Session(id) => {
            key.push(b'x');
            part(&mut key, id);
        }
        RowKey::Indexes => key.push(b'i'),
        RowKey::ConfigEntry(kind, name) => {
            key.push(b'e');
            part(&mut key, kind);
            part(&mut key, name);
        }
        RowKey::Tombstone(name) => {
            key.push(b't');
            part(&mut key, name);
        }
        RowKey::LockDelay(name) => {
            key.push(b'l');
            part(&mut key, name);
        }
        RowKey::KvVersion(name, index) => {
            key.push(b'v');
            part(&mut key, name);
            key.extend_from_slice(&index.to_be_bytes());
        }
        RowKey::Settings => key.push(b'g'),
        RowKey::RestoreFloor => key.push(b'r'),
        RowKey::ServiceIndex(name) => {
            key.push(b'w');
            part(&mut key, name);
        }
        RowKey::Coordinate(node, segment) => {
            key.push(b'o');
            part(&mut key, node);
            part(&mut key, segment);
        }
        RowKey::CoordinatesIndex => key.push(b'p'),
        RowKey::AclToken(id) => {
            key.push(b'A');
            part(&mut key, id);
        }
        RowKey::AclPolicy(id) => {
            key.push(b'P');
            part(&mut key, id);
        }
        RowKey::AclRole(id) => {
            key.push(b'R');
            part(&mut key, id);
        }
        RowKey::AclAuthMethod(name) => {
            key.push(b'M');
            part(&mut key, name);
        }
        RowKey::AclBindingRule(id) => {
            key.push(b'B');
            part(&mut key, id);
        }
        RowKey::AclIndexes => key.push(b'I'),
        RowKey::PreparedQuery(id) => {
            key.push(b'q');
            part(&mut key, id);
        }
        RowKey::PreparedQueriesIndex => key.push(b'Q'),
        RowKey::AutopilotConfig => key.push(b'a'),
    }
    key
}

pub(crate) fn decode_row_key(bytes: &[u8]) -> Result<RowKey, CodecError> {
    let (&table, mut rest) = bytes.split_first().ok_or(CodecError::BadRowKey)?;
    let rest = &mut rest;
    let row = match table {
        b'n' => RowKey::Node(text_part(rest)?),
        b's' => RowKey::Service(text_part(rest)?, text_part(rest)?),
        b'c' => RowKey::Check(text_part(rest)?, text_part(rest)?),
        b'k' => RowKey::Kv(text_part(rest)?),
        b'x' => RowKey::Session(text_part(rest)?),
        b'i' => RowKey::Indexes,
        b'e' => RowKey::ConfigEntry(text_part(rest)?, text_part(rest)?),
        b't' => RowKey::Tombstone(text_part(rest)?),
        b'l' => RowKey::LockDelay(text_part(rest)?),
        b'v' => RowKey::KvVersion(text_part(rest)?, u64_part(rest)?),
        b'g' => RowKey::Settings,
        b'r' => RowKey::RestoreFloor,
        b'w' => RowKey::ServiceIndex(text_part(rest)?),
        b'o' => RowKey::Coordinate(text_part(rest)?, text_part(rest)?),
        b'p' => RowKey::CoordinatesIndex,
        b'A' => RowKey::AclToken(text_part(rest)?),
        b'P' => RowKey::AclPolicy(text_part(rest)?),
        b'R' => RowKey::AclRole(text_part(rest)?),
        b'M' => RowKey::AclAuthMethod(text_part(rest)?),
        b'B' => RowKey::AclBindingRule(text_part(rest)?),
        b'I' => RowKey::AclIndexes,
        b'q' => RowKey::PreparedQuery(text_part(rest)?),
        b'Q' => RowKey::PreparedQueriesIndex,
        b'a' => RowKey::AutopilotConfig,
        _ => return Err(CodecError::BadRowKey),
    };
    if !rest.is_empty() {
        return Err(CodecError::BadRowKey);
    }
    Ok(row)
}

fn text_part(rest: &mut &[u8]) -> Result<String, CodecError> {
    let len: [u8; 4] = rest.get(..4).and_then(|b| b.try_into().ok()).ok_or(CodecError::BadRowKey)?;
    let len = u32::from_be_bytes(len) as usize;
    let text = rest.get(4..4 + len).ok_or(CodecError::BadRowKey)?;
    let text = String::from_utf8(text.to_vec()).map_err(|_| CodecError::BadRowKey)?;
    *rest = &rest[4 + len..];
    Ok(text)
}

fn u64_part(rest: &mut &[u8]) -> Result<u64, CodecError> {
    let bytes: [u8; 8] = rest.get(..8).and_then(|b| b.try_into().ok()).ok_or(CodecError::BadRowKey)?;
    *rest = &rest[8..];
    Ok(u64::from_be_bytes(bytes))
}
