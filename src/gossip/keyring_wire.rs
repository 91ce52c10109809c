//! Keyring operations across the pool: the agent that is asked applies the operation to its own
//! ring, then dials every other alive member on its gossip TCP port with a `KeyringRequest` and
//! collects each member's `KeyringResponse` (its keys afterwards, or its error).
//!
//! Consul does this differently: the request goes to a server (`Internal.KeyringOperation`),
//! which fires serf queries (`_serf_install-key`, ...) that spread by gossip and collect acks
//! and responses until a timeout. cairn has no serf queries, and a keyring operation must not
//! depend on Raft or a leader (rotating a key is exactly what one does when the cluster is in
//! trouble), so the receiving agent asks each member itself over the push/pull listener, which
//! every member already runs. The answer is the same: which member holds which keys, and which
//! failed.
//!
//! Wire: one connection per member, one sealed message each way, framed as push/pull messages.
//! A request is a postcard `KeyringRequest { op, key }`, an answer `KeyringResponse { keys,
//! error }`; both are always sealed with the sender's primary key (`Sealer::seal_always`), and
//! a plaintext one is refused on either side, whatever `encrypt_verify_incoming` says: only a
//! holder of a ring key may change the ring.
//!
//! Limits: `KEYRING_DIALS_IN_FLIGHT_MAX` members asked at once, `KEYRING_MEMBER_TIMEOUT_MS` per
//! member (connect and exchange), `KEYRING_MESSAGE_BYTES_MAX` per message,
//! `KEYRING_ERROR_BYTES_MAX` per error text.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::envelope::{Kind, Sealer};
use super::keyring::{Cipher, KEYRING_KEYS_MAX};
use super::keyring_ops::{GossipKey, KeyringOp, LocalKeyring, NodeAnswer, NodeKeys, NodeOutcome};
use super::push_pull::{ReadError, describe_io, read_envelope, write_envelope};
use super::Shared;
use super::stats::Counters;

/// The most members asked at once.
pub(super) const KEYRING_DIALS_IN_FLIGHT_MAX: usize = 16;

/// Deadline for one member: connecting, sending the request and reading its answer. Serf's
/// query timeout for a small pool is a few seconds too.
pub(super) const KEYRING_MEMBER_TIMEOUT_MS: u64 = 5_000;

/// The largest keyring message, in bytes (16 keys of 32 bytes and an error take about 1.3 KiB).
const KEYRING_MESSAGE_BYTES_MAX: usize = 4096;

/// The longest error text a member may answer, in bytes.
const KEYRING_ERROR_BYTES_MAX: usize = 1024;

/// The operation, on the wire. Append only: postcard encodes the variant's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum WireOp {
    List,
    Install,
    Use,
    Remove,
}

/// `KeyringRequest`'s body.
#[derive(Debug, Serialize, Deserialize)]
struct KeyringRequest {
    op: WireOp,
    /// The key's bytes; empty for a list.
    key: Vec<u8>,
}

/// `KeyringResponse`'s body: the member's keys afterwards (base64, primary first), or its error.
#[derive(Debug, Serialize, Deserialize)]
struct KeyringResponse {
    keys: Vec<String>,
    error: Option<String>,
}

pub(super) fn encode_request(op: &KeyringOp) -> Vec<u8> {
    let (op, key) = match op {
        KeyringOp::List => (WireOp::List, Vec::new()),
        KeyringOp::Install(key) => (WireOp::Install, key.cipher.key_bytes().to_vec()),
        KeyringOp::Use(key) => (WireOp::Use, key.cipher.key_bytes().to_vec()),
        KeyringOp::Remove(key) => (WireOp::Remove, key.cipher.key_bytes().to_vec()),
    };
    postcard::to_allocvec(&KeyringRequest { op, key }).expect("a keyring request encodes")
}

pub(super) fn decode_request(body: &[u8]) -> Result<KeyringOp, String> {
    let request: KeyringRequest = postcard::from_bytes(body).map_err(|error| error.to_string())?;
    if request.op == WireOp::List {
        return Ok(KeyringOp::List);
    }
    let cipher = Cipher::from_key_bytes(&request.key).ok_or("key size must be 16, 24 or 32 bytes")?;
    let key = GossipKey { cipher };
    Ok(match request.op {
        WireOp::List => KeyringOp::List,
        WireOp::Install => KeyringOp::Install(key),
        WireOp::Use => KeyringOp::Use(key),
        WireOp::Remove => KeyringOp::Remove(key),
    })
}

pub(super) fn encode_response(result: &Result<NodeKeys, String>) -> Vec<u8> {
    let response = match result {
        Ok(node_keys) => KeyringResponse { keys: node_keys.keys.clone(), error: None },
        Err(error) => KeyringResponse { keys: Vec::new(), error: Some(error.chars().take(KEYRING_ERROR_BYTES_MAX / 4).collect()) },
    };
    postcard::to_allocvec(&response).expect("a keyring response encodes")
}

/// A member's answer as an outcome; a response that breaks the limits is malformed.
pub(super) fn decode_response(body: &[u8]) -> Result<NodeOutcome, String> {
    let response: KeyringResponse = postcard::from_bytes(body).map_err(|error| error.to_string())?;
    if let Some(error) = response.error {
        if error.len() > KEYRING_ERROR_BYTES_MAX {
            return Err(format!("an error of {} bytes", error.len()));
        }
        return Ok(NodeOutcome::Refused(error));
    }
    if response.keys.is_empty() || response.keys.len() > KEYRING_KEYS_MAX {
        return Err(format!("{} keys", response.keys.len()));
    }
    for key in &response.keys {
        Cipher::from_base64(key)?;
    }
    Ok(NodeOutcome::Applied(NodeKeys { keys: response.keys }))
}

/// Serves one keyring request that arrived sealed: applies it here, answers sealed.
pub(super) async fn answer(stream: &mut TcpStream, body: &[u8], sealer: &Sealer, keyring: &LocalKeyring, counters: &Counters) {
    let peer = stream.peer_addr().ok();
    if body.len() > KEYRING_MESSAGE_BYTES_MAX {
        ReadError::Oversized(body.len()).count(counters);
        return;
    }
    let op = match decode_request(body) {
        Ok(op) => op,
        Err(reason) => {
            ReadError::Malformed(reason.clone()).count(counters);
            tracing::debug!(?peer, %reason, "gossip: malformed keyring request refused");
            return;
        }
    };
    let result = keyring.apply(&op).await.map_err(|error| error.to_string());
    tracing::info!(?peer, operation = super::keyring_ops::op_name(&op), ok = result.is_ok(), "gossip: keyring request served");
    // `apply` refuses every operation without a ring, so there is a key to seal with; a
    // member without one never opened the request in the first place.
    let Some(envelope) = sealer.seal_always(Kind::KeyringResponse, &encode_response(&result)) else { return };
    if let Err(error) = write_envelope(stream, &envelope).await {
        tracing::debug!(?peer, %error, "gossip: writing a keyring answer failed");
    }
}

/// Asks every member in `members` (name, gossip address) to apply `op`, at most
/// `KEYRING_DIALS_IN_FLIGHT_MAX` at once; one answer per member, in no particular order.
/// `None` without a keyring to seal the request with.
pub(super) async fn ask_members(
    members: Vec<(String, SocketAddr)>,
    op: &KeyringOp,
    sealer: &Sealer,
    shared: &Arc<Shared>,
) -> Option<Vec<NodeAnswer>> {
    let request = Arc::new(sealer.seal_always(Kind::KeyringRequest, &encode_request(op))?);
    let permits = Arc::new(Semaphore::new(KEYRING_DIALS_IN_FLIGHT_MAX));
    let mut asked = JoinSet::new();
    for (node, addr) in members {
        let (request, sealer, shared, permits) = (Arc::clone(&request), sealer.clone(), Arc::clone(shared), Arc::clone(&permits));
        asked.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("the semaphore is never closed");
            let deadline = Duration::from_millis(KEYRING_MEMBER_TIMEOUT_MS);
            let outcome = match tokio::time::timeout(deadline, ask(addr, &request, &sealer, &shared.counters)).await {
                Ok(outcome) => outcome,
                Err(_elapsed) => NodeOutcome::NoAnswer(format!("no answer from {addr} within {KEYRING_MEMBER_TIMEOUT_MS} ms")),
            };
            NodeAnswer { node, outcome }
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = asked.join_next().await {
        // A task only ends early if it panicked, which would be a bug in this file.
        answers.push(joined.expect("a keyring ask never panics"));
    }
    Some(answers)
}

/// One member: dial, send the sealed request, read its sealed answer.
async fn ask(addr: SocketAddr, request: &[u8], sealer: &Sealer, counters: &Counters) -> NodeOutcome {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(error) => return NodeOutcome::NoAnswer(format!("dial tcp {addr}: connect: {}", describe_io(&error))),
    };
    if let Err(error) = write_envelope(&mut stream, request).await {
        return NodeOutcome::NoAnswer(format!("keyring request to {addr}: {}", describe_io(&error)));
    }
    let opened = match read_envelope(&mut stream, KEYRING_MESSAGE_BYTES_MAX).await {
        Ok(envelope) => sealer.open_envelope(&envelope).map_err(ReadError::Refused),
        Err(ReadError::Io(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            let reason = "closed the connection without answering (does it hold a key of this ring?)";
            return NodeOutcome::NoAnswer(format!("{addr} {reason}"));
        }
        Err(error) => Err(error),
    };
    let decoded = match opened {
        Ok(opened) if opened.sealed && opened.kind == Kind::KeyringResponse => decode_response(&opened.body).map_err(ReadError::Malformed),
        Ok(opened) => Err(ReadError::Malformed(format!("a {} {:?} answer", if opened.sealed { "sealed" } else { "plaintext" }, opened.kind))),
        Err(error) => Err(error),
    };
    decoded.unwrap_or_else(|error| {
        error.count(counters);
        NodeOutcome::NoAnswer(format!("keyring answer from {addr}: {}", error.describe()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::keyring::generate_key_base64;

    #[test]
    fn requests_and_answers_round_trip() {
        let key = GossipKey::from_base64(&generate_key_base64()).expect("a key");
        for op in [KeyringOp::List, KeyringOp::Install(key.clone()), KeyringOp::Use(key.clone()), KeyringOp::Remove(key.clone())] {
            let decoded = decode_request(&encode_request(&op)).expect("decodes");
            assert_eq!(super::super::keyring_ops::op_name(&decoded), super::super::keyring_ops::op_name(&op));
            assert_eq!(decoded.key().map(GossipKey::to_base64), op.key().map(GossipKey::to_base64));
        }
        let keys = NodeKeys { keys: vec![key.to_base64()] };
        assert_eq!(decode_response(&encode_response(&Ok(keys.clone()))), Ok(NodeOutcome::Applied(keys)));
        let refused = encode_response(&Err("Removing the primary key is not allowed".to_owned()));
        assert_eq!(decode_response(&refused), Ok(NodeOutcome::Refused("Removing the primary key is not allowed".to_owned())));
    }

    /// Golden bytes of every variant: these travel between agents of different releases.
    #[test]
    fn the_wire_bytes_of_every_variant_are_pinned() {
        let key = || GossipKey { cipher: Cipher::from_key_bytes(&[7u8; 16]).expect("a 16-byte key") };
        let with_key = |op: u8| [&[op, 16][..], &[7u8; 16][..]].concat();
        assert_eq!(encode_request(&KeyringOp::List), [0, 0]);
        assert_eq!(encode_request(&KeyringOp::Install(key())), with_key(1));
        assert_eq!(encode_request(&KeyringOp::Use(key())), with_key(2));
        assert_eq!(encode_request(&KeyringOp::Remove(key())), with_key(3));
        assert_eq!(encode_response(&Ok(NodeKeys { keys: vec!["k".into()] })), [1, 1, b'k', 0]);
        assert_eq!(encode_response(&Err("e".into())), [0, 1, 1, b'e']);
        assert_eq!((Kind::KeyringRequest as u8, Kind::KeyringResponse as u8), (8, 9));
    }

    #[test]
    fn hostile_bodies_are_refused() {
        // The operation numbers are on the wire.
        assert_eq!(encode_request(&KeyringOp::List), [0, 0]);
        assert!(decode_request(&[1, 3, 1, 2, 3]).err().expect("a 3-byte key").contains("key size"));
        assert!(decode_request(&[9, 0]).is_err());
        assert!(decode_request(&[]).is_err());
        let empty = postcard::to_allocvec(&KeyringResponse { keys: Vec::new(), error: None }).expect("encodes");
        assert!(decode_response(&empty).is_err());
        let junk = postcard::to_allocvec(&KeyringResponse { keys: vec!["junk".into()], error: None }).expect("encodes");
        assert!(decode_response(&junk).is_err());
        let long = postcard::to_allocvec(&KeyringResponse { keys: Vec::new(), error: Some("e".repeat(KEYRING_ERROR_BYTES_MAX + 1)) });
        assert!(decode_response(&long.expect("encodes")).is_err());
    }
}
