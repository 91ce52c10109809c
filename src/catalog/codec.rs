//! Versioned binary encoding of commands and persisted rows.
//!
//! Every encoded value starts with a one-byte format version followed by postcard. Decoding
//! checks the version first, so an older format is read side by side with the newest (add a
//! new version and a decoder for the old one; never change what an existing version means).
//! How to add one is `docs/formats.md`; `tests/golden/` pins the bytes of every version.
//!
//! **Writers use the oldest format that holds the value**, so that during a rolling upgrade
//! servers of the previous release read everything the cluster writes: a command or row is
//! written in format 2 only when it uses what format 2 added. The proposer's gate
//! (`agent::formats`) keeps such values out until every server reads format 2.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::catalog::RowKey;
use crate::catalog::command::Command;
use crate::catalog::model::Session;

/// Format 1: the first release's commands and rows.
pub const FORMAT_V1: u8 = 1;
/// Format 2 adds [`Command::SessionCreateExact`] and session rows whose TTL is kept to the
/// millisecond (`model::Session::ttl_ms`; format 1 rows hold whole seconds).
pub const FORMAT_V2: u8 = 2;
/// The newest format this build reads and writes; servers announce it in gossip.
pub const FORMAT_NEWEST: u8 = FORMAT_V2;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Written by a newer release: this server must be upgraded before it can read it.
    #[error("format version {version} was written by a newer release of cairn (this build reads formats 1 to {FORMAT_NEWEST}): upgrade this agent")]
    Newer { version: u8 },
    #[error("unknown format version {version}")]
    UnknownVersion { version: u8 },
    #[error("empty encoded value")]
    Empty,
    #[error("malformed row key")]
    BadRowKey,
    #[error("a value out of range: {0}")]
    OutOfRange(&'static str),
    #[error("malformed encoding: {0}")]
    Postcard(#[from] postcard::Error),
}

/// Encodes a command in the oldest format that holds it ([`Command::format_needed`]).
pub fn encode_command(command: &Command) -> Vec<u8> {
    encode_versioned(command.format_needed(), command)
}

/// Decodes a command of any format up to [`FORMAT_NEWEST`]. Format 2 only added variants,
/// so one decoder reads both.
pub fn decode_command(bytes: &[u8]) -> Result<Command, CodecError> {
    // A format 1 byte around a format 2 variant is read too, as `rpc::decode` reads it (no
    // release writes one; the variant itself is what an older release cannot read).
    let (_, body) = split_version(bytes)?;
    Ok(postcard::from_bytes(body)?)
}

/// Checks the format byte: known formats give the body; newer ones are told apart from junk.
pub fn split_version(bytes: &[u8]) -> Result<(u8, &[u8]), CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&version, body)) if (FORMAT_V1..=FORMAT_NEWEST).contains(&version) => Ok((version, body)),
        Some((&0, _)) => Err(CodecError::UnknownVersion { version: 0 }),
        Some((&version, _)) => Err(CodecError::Newer { version }),
    }
}

/// Rows whose shape never changed: format 1, whatever the newest format is.
pub(crate) fn encode_row_value<T: Serialize>(value: &T) -> Vec<u8> {
    encode_versioned(FORMAT_V1, value)
}

/// Reads a row whose shape never changed. A format 2 body of such a row is the same as its
/// format 1 body, so both are read; newer formats are refused.
pub(crate) fn decode_row_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (_, body) = split_version(bytes)?;
    Ok(postcard::from_bytes(body)?)
}

/// A session row: format 1 (whole seconds) when its TTL is whole seconds, else format 2.
pub(crate) fn encode_session_row(session: &Session) -> Vec<u8> {
    if session.ttl_ms % 1000 == 0 {
        encode_versioned(FORMAT_V1, &v1::Session::from(session))
    } else {
        encode_versioned(FORMAT_V2, session)
    }
}

pub(crate) fn decode_session_row(bytes: &[u8]) -> Result<Session, CodecError> {
    match split_version(bytes)? {
        (FORMAT_V1, body) => postcard::from_bytes::<v1::Session>(body)?.into_current(),
        (_, body) => Ok(postcard::from_bytes(body)?),
    }
}

pub(crate) fn encode_versioned<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
    let mut out = vec![version];
    // Serializing our own plain structs into a Vec cannot fail: postcard only errors on
    // unsupported serde features (e.g. `deserialize_any`) and full fixed buffers.
    let body = postcard::to_allocvec(value).expect("postcard serializes plain catalog types");
    out.extend_from_slice(&body);
    out
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

/// The format 1 shapes of rows that changed since, kept only to read old rows and written
/// while their values fit (see the module docs).
mod v1 {
    use serde::{Deserialize, Serialize};

    use super::CodecError;
    use crate::catalog::model::SessionBehavior;

    /// A session as format 1 stored it: the TTL in whole seconds.
    #[derive(Serialize, Deserialize)]
    pub(super) struct Session {
        id: String,
        name: String,
        node: String,
        node_checks: Vec<String>,
        service_checks: Vec<String>,
        lock_delay_ms: u64,
        behavior: SessionBehavior,
        ttl_s: u64,
        create_index: u64,
        modify_index: u64,
    }

    impl From<&super::Session> for Session {
        fn from(s: &super::Session) -> Session {
            Session {
                id: s.id.clone(),
                name: s.name.clone(),
                node: s.node.clone(),
                node_checks: s.node_checks.clone(),
                service_checks: s.service_checks.clone(),
                lock_delay_ms: s.lock_delay_ms,
                behavior: s.behavior,
                ttl_s: s.ttl_ms / 1000,
                create_index: s.create_index,
                modify_index: s.modify_index,
            }
        }
    }

    impl Session {
        pub(super) fn into_current(self) -> Result<super::Session, CodecError> {
            let ttl_ms = self.ttl_s.checked_mul(1000).ok_or(CodecError::OutOfRange("session TTL"))?;
            Ok(super::Session {
                id: self.id,
                name: self.name,
                node: self.node,
                node_checks: self.node_checks,
                service_checks: self.service_checks,
                lock_delay_ms: self.lock_delay_ms,
                behavior: self.behavior,
                ttl_ms,
                create_index: self.create_index,
                modify_index: self.modify_index,
            })
        }
    }
}
