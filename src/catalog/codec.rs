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
    }
    key
}

pub(crate) fn decode_row_key(bytes: &[u8]) -> Result<RowKey, CodecError> {
    let (&table, mut rest) = bytes.split_first().ok_or(CodecError::BadRowKey)?;
    let mut next = || -> Result<String, CodecError> {
        if rest.len() < 4 {
            return Err(CodecError::BadRowKey);
        }
        let (len, tail) = rest.split_at(4);
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if tail.len() < len {
            return Err(CodecError::BadRowKey);
        }
        let (text, tail) = tail.split_at(len);
        rest = tail;
        String::from_utf8(text.to_vec()).map_err(|_| CodecError::BadRowKey)
    };
    let row = match table {
        b'n' => RowKey::Node(next()?),
        b's' => RowKey::Service(next()?, next()?),
        b'c' => RowKey::Check(next()?, next()?),
        b'k' => RowKey::Kv(next()?),
        b'x' => RowKey::Session(next()?),
        b'i' => RowKey::Indexes,
        b'e' => RowKey::ConfigEntry(next()?, next()?),
        _ => return Err(CodecError::BadRowKey),
    };
    if !rest.is_empty() {
        return Err(CodecError::BadRowKey);
    }
    Ok(row)
}
