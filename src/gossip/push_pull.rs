//! TCP push/pull: full state exchange for joins and periodic anti-entropy (memberlist's
//! push/pull), on the gossip port.
//!
//! One exchange is one connection: the dialer writes one message (`PushPullRequest`), the
//! listener answers with one (`PushPullResponse`) and closes. A message is a 4-byte big-endian
//! length followed by an envelope (see `envelope`) around a postcard `PushPullState`: foca's
//! member states (down ones included), the tags and leave intents known, and the user-event
//! Lamport clock. The same listener serves keyring operations (`keyring_wire`): it dispatches
//! on the kind of the first message, and answers a `KeyringRequest` only when it was sealed
//! with a key of the ring, whatever `encrypt_verify_incoming` says.
//!
//! Invariants: a message is read only up to `PUSH_PULL_BYTES_MAX` bytes and within
//! `PUSH_PULL_TIMEOUT_MS`; at most `TCP_CONNS_MAX` exchanges are served at once (more are
//! closed at once and counted); a state with more than `PUSH_PULL_MEMBERS_MAX` entries of any
//! kind, or with invalid names or tags, is refused and counted as malformed.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use super::broadcasts::{LeaveIntent, NodeMeta, check_tags};
use super::driver::Command;
use super::envelope::{Kind, Opened, Refused, Sealer};
use super::identity::NodeId;
use super::keyring_ops::LocalKeyring;
use super::keyring_wire;
use super::stats::{Counters, bump};
use super::{MEMBERS_MAX, Shared};

/// The largest encoding of one member's share of a push/pull state, in bytes: its foca
/// member, node meta and leave intent with the longest name, an IPv6 address, the largest
/// numbers and `TAGS_BYTES_MAX` of tags encode to 957 bytes (checked by a test below).
const PUSH_PULL_ENTRY_BYTES_MAX: usize = 1024;

/// The largest push/pull message, in bytes: `MEMBERS_MAX` maximal entries (16 MiB for
/// 16,384 members; a pool of 5,000 with short names and small tags sends about 1 MiB). Memory
/// follows the bytes actually received, not the length a peer announces.
pub(super) const PUSH_PULL_BYTES_MAX: usize = MEMBERS_MAX * PUSH_PULL_ENTRY_BYTES_MAX;

/// The most entries of each kind (members, metas, leave intents) a push/pull may carry.
pub(super) const PUSH_PULL_MEMBERS_MAX: usize = MEMBERS_MAX;

/// Deadline for connecting and for the whole exchange, on the dialing side (memberlist's
/// `TCPTimeout`).
pub(super) const JOIN_TIMEOUT_MS: u64 = 10_000;

/// Deadline for reading the request and writing the answer, on the listening side.
const PUSH_PULL_TIMEOUT_MS: u64 = 10_000;

/// The most push/pull exchanges served at once.
pub(super) const TCP_CONNS_MAX: usize = 16;

/// What one side of a push/pull knows.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct PushPullState {
    pub(super) members: Vec<foca::Member<NodeId>>,
    pub(super) metas: Vec<NodeMeta>,
    pub(super) leaves: Vec<LeaveIntent>,
    pub(super) user_event_ltime: u64,
}

impl PushPullState {
    /// Checks the limits that decoding alone does not (names are checked by decoding).
    pub(super) fn validate(&self) -> Result<(), String> {
        let most = self.members.len().max(self.metas.len()).max(self.leaves.len());
        if most > PUSH_PULL_MEMBERS_MAX {
            return Err(format!("{most} entries, the limit is {PUSH_PULL_MEMBERS_MAX}"));
        }
        self.metas.iter().try_for_each(|meta| check_tags(&meta.tags))
    }
}

/// Why a push/pull (or keyring) message was not read.
#[derive(Debug)]
pub(super) enum ReadError {
    Io(io::Error),
    Oversized(usize),
    Refused(Refused),
    Malformed(String),
}

impl ReadError {
    pub(super) fn count(&self, counters: &Counters) {
        match self {
            ReadError::Io(_) => bump(&counters.push_pulls_failed),
            ReadError::Oversized(_) => bump(&counters.dropped_oversized),
            ReadError::Refused(refused) => counters.refused(*refused),
            ReadError::Malformed(_) => bump(&counters.dropped_malformed),
        }
    }

    /// A sentence for the joiner, worded like Go's network errors where there is one.
    pub(super) fn describe(&self) -> String {
        match self {
            ReadError::Io(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                "the remote end closed the connection without answering (is the gossip encryption key the same?)"
                    .to_owned()
            }
            ReadError::Io(error) => describe_io(error),
            ReadError::Oversized(bytes) => format!("answer of {bytes} bytes exceeds {PUSH_PULL_BYTES_MAX}"),
            ReadError::Refused(Refused::Decrypt) => "answer does not decrypt with our keyring".to_owned(),
            ReadError::Refused(Refused::Plaintext) => {
                "answer is not encrypted but encrypt_verify_incoming is set".to_owned()
            }
            ReadError::Refused(Refused::Malformed) => "answer is malformed".to_owned(),
            ReadError::Malformed(reason) => format!("answer is malformed: {reason}"),
        }
    }
}

/// Go's wording of common socket errors ("connection refused", "i/o timeout", ...).
pub(super) fn describe_io(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".to_owned(),
        io::ErrorKind::TimedOut => "i/o timeout".to_owned(),
        io::ErrorKind::HostUnreachable => "no route to host".to_owned(),
        io::ErrorKind::NetworkUnreachable => "network is unreachable".to_owned(),
        io::ErrorKind::AddrNotAvailable => "cannot assign requested address".to_owned(),
        _ => error.to_string(),
    }
}

async fn write_message(stream: &mut TcpStream, sealer: &Sealer, kind: Kind, state: &PushPullState) -> io::Result<()> {
    let body = postcard::to_allocvec(state).map_err(io::Error::other)?;
    write_envelope(stream, &sealer.seal(kind, &body)).await
}

/// Writes one message: the envelope's length, then the envelope.
pub(super) async fn write_envelope(stream: &mut TcpStream, envelope: &[u8]) -> io::Result<()> {
    let length = u32::try_from(envelope.len()).map_err(io::Error::other)?;
    stream.write_all(&length.to_be_bytes()).await?;
    stream.write_all(envelope).await?;
    stream.flush().await
}

/// Reads one message's envelope, refusing one announced above `bytes_max`.
pub(super) async fn read_envelope(stream: &mut TcpStream, bytes_max: usize) -> Result<Vec<u8>, ReadError> {
    let mut length_bytes = [0u8; 4];
    stream.read_exact(&mut length_bytes).await.map_err(ReadError::Io)?;
    let length = u32::from_be_bytes(length_bytes) as usize;
    if length > bytes_max {
        return Err(ReadError::Oversized(length));
    }
    // Grown as bytes arrive: announcing 16 MiB costs the sender 16 MiB too.
    let mut envelope = Vec::new();
    (&mut *stream).take(length as u64).read_to_end(&mut envelope).await.map_err(ReadError::Io)?;
    if envelope.len() < length {
        return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(envelope)
}

/// The state an opened envelope of `expected` kind carries.
fn decode_state(kind: Kind, body: &[u8], expected: Kind) -> Result<PushPullState, ReadError> {
    if kind != expected {
        return Err(ReadError::Malformed(format!("expected {expected:?}, got {kind:?}")));
    }
    let state: PushPullState = postcard::from_bytes(body).map_err(|error| ReadError::Malformed(error.to_string()))?;
    state.validate().map_err(ReadError::Malformed)?;
    Ok(state)
}

async fn read_message(stream: &mut TcpStream, sealer: &Sealer, expected: Kind) -> Result<PushPullState, ReadError> {
    let envelope = read_envelope(stream, PUSH_PULL_BYTES_MAX).await?;
    let (kind, body) = sealer.open(&envelope).map_err(ReadError::Refused)?;
    decode_state(kind, &body, expected)
}

/// Dials `addr`, sends `local` and returns the remote's state, within `JOIN_TIMEOUT_MS` for
/// the connection and again for the exchange. Errors are sentences for the operator.
pub(super) async fn exchange(
    addr: SocketAddr,
    sealer: &Sealer,
    counters: &Counters,
    local: &PushPullState,
) -> Result<PushPullState, String> {
    let deadline = Duration::from_millis(JOIN_TIMEOUT_MS);
    let mut stream = match tokio::time::timeout(deadline, TcpStream::connect(addr)).await {
        Err(_elapsed) => return Err(format!("dial tcp {addr}: i/o timeout")),
        Ok(Err(error)) => return Err(format!("dial tcp {addr}: connect: {}", describe_io(&error))),
        Ok(Ok(stream)) => stream,
    };
    let talk = async {
        write_message(&mut stream, sealer, Kind::PushPullRequest, local).await.map_err(ReadError::Io)?;
        read_message(&mut stream, sealer, Kind::PushPullResponse).await
    };
    match tokio::time::timeout(deadline, talk).await {
        Err(_elapsed) => {
            bump(&counters.push_pulls_failed);
            Err(format!("push/pull with {addr}: i/o timeout"))
        }
        Ok(Err(error)) => {
            error.count(counters);
            Err(format!("push/pull with {addr}: {}", error.describe()))
        }
        Ok(Ok(remote)) => Ok(remote),
    }
}

/// Accepts push/pull and keyring connections until the task is aborted.
pub(super) async fn serve(
    listener: TcpListener,
    sealer: Sealer,
    shared: Arc<Shared>,
    commands: mpsc::WeakSender<Command>,
    keyring: Arc<LocalKeyring>,
) {
    let permits = Arc::new(Semaphore::new(TCP_CONNS_MAX));
    // Dropping the set (when this task is aborted) aborts the exchanges in flight.
    let mut exchanges = JoinSet::new();
    loop {
        while exchanges.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Accept errors (EMFILE, aborted handshakes) are transient: back off briefly.
                tracing::debug!(%error, "gossip: accepting a push/pull connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            bump(&shared.counters.tcp_conns_refused);
            tracing::debug!(%peer, limit = TCP_CONNS_MAX, "gossip: too many push/pull connections, closing one");
            continue;
        };
        let (sealer, shared, commands) = (sealer.clone(), Arc::clone(&shared), commands.clone());
        let keyring = Arc::clone(&keyring);
        exchanges.spawn(async move {
            let deadline = Duration::from_millis(PUSH_PULL_TIMEOUT_MS);
            let answered = answer(stream, &sealer, &shared, commands, &keyring);
            if tokio::time::timeout(deadline, answered).await.is_err() {
                bump(&shared.counters.push_pulls_failed);
                tracing::debug!(%peer, "gossip: push/pull timed out");
            }
            drop(permit);
        });
    }
}

/// Serves one connection: reads its first message and answers it by kind.
async fn answer(
    mut stream: TcpStream,
    sealer: &Sealer,
    shared: &Shared,
    commands: mpsc::WeakSender<Command>,
    keyring: &LocalKeyring,
) {
    let peer = stream.peer_addr().ok();
    let opened = match read_envelope(&mut stream, PUSH_PULL_BYTES_MAX).await {
        Ok(envelope) => sealer.open_envelope(&envelope).map_err(ReadError::Refused),
        Err(error) => Err(error),
    };
    let Opened { kind, body, sealed } = match opened {
        Ok(opened) => opened,
        Err(error) => {
            error.count(&shared.counters);
            tracing::debug!(?peer, reason = %error.describe(), "gossip: request refused");
            return;
        }
    };
    match kind {
        Kind::KeyringRequest if sealed => keyring_wire::answer(&mut stream, &body, sealer, keyring, &shared.counters).await,
        Kind::KeyringRequest => {
            // Keyring operations change who may talk to the pool: only a ring key may ask.
            shared.counters.refused(Refused::Plaintext);
            tracing::warn!(?peer, "gossip: a plaintext keyring request was refused");
        }
        _ => answer_push_pull(stream, kind, &body, sealer, shared, commands).await,
    }
}

/// Serves one push/pull: lets the gossip task merge the request's state, answers with ours.
async fn answer_push_pull(
    mut stream: TcpStream,
    kind: Kind,
    body: &[u8],
    sealer: &Sealer,
    shared: &Shared,
    commands: mpsc::WeakSender<Command>,
) {
    let peer = stream.peer_addr().ok();
    let remote = match decode_state(kind, body, Kind::PushPullRequest) {
        Ok(remote) => remote,
        Err(error) => {
            error.count(&shared.counters);
            tracing::debug!(?peer, reason = %error.describe(), "gossip: push/pull request refused");
            return;
        }
    };
    let (reply, local) = oneshot::channel();
    let Some(commands) = commands.upgrade() else { return };
    if commands.send(Command::Serve { remote, reply }).await.is_err() {
        return;
    }
    drop(commands);
    let Ok(local) = local.await else { return };
    match write_message(&mut stream, sealer, Kind::PushPullResponse, &local).await {
        Ok(()) => bump(&shared.counters.push_pulls_served),
        Err(error) => {
            bump(&shared.counters.push_pulls_failed);
            tracing::debug!(?peer, %error, "gossip: writing a push/pull answer failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::{Ipv6Addr, SocketAddrV6};

    use super::*;
    use crate::gossip::TAGS_BYTES_MAX;
    use crate::gossip::identity::{NODE_NAME_BYTES_MAX, NodeName};

    /// One member's share of a push/pull state, every field at its largest.
    fn maximal_entry() -> (foca::Member<NodeId>, NodeMeta, LeaveIntent) {
        let name = NodeName::new(&"n".repeat(NODE_NAME_BYTES_MAX)).expect("a name at the limit is valid");
        let addr = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(u128::MAX), u16::MAX, 0, 0));
        let id = NodeId { name: name.clone(), addr, bump: u64::MAX };
        // One tag whose map encodes to exactly TAGS_BYTES_MAX: 1 (length) + 2 ("k") + 2 + 507.
        let tags = BTreeMap::from([("k".to_owned(), "v".repeat(TAGS_BYTES_MAX - 5))]);
        assert_eq!(postcard::to_allocvec(&tags).expect("tags encode").len(), TAGS_BYTES_MAX);
        check_tags(&tags).expect("tags at the limit are accepted");
        let member = foca::Member::new(id, u16::MAX, foca::State::Down);
        let meta = NodeMeta { name: name.clone(), version: u64::MAX, tags };
        (member, meta, LeaveIntent { name, bump: u64::MAX, prune: true })
    }

    #[test]
    fn a_full_state_of_maximal_members_fits_the_message_limit() {
        let (member, meta, leave) = maximal_entry();
        let entry_bytes = [
            postcard::to_allocvec(&member).expect("encodes").len(),
            postcard::to_allocvec(&meta).expect("encodes").len(),
            postcard::to_allocvec(&leave).expect("encodes").len(),
        ];
        assert!(entry_bytes.iter().sum::<usize>() <= PUSH_PULL_ENTRY_BYTES_MAX, "{entry_bytes:?}");
        let state = PushPullState {
            members: vec![member; PUSH_PULL_MEMBERS_MAX],
            metas: vec![meta; PUSH_PULL_MEMBERS_MAX],
            leaves: vec![leave; PUSH_PULL_MEMBERS_MAX],
            user_event_ltime: u64::MAX,
        };
        state.validate().expect("a full state is within the entry limit");
        let body_bytes = postcard::to_allocvec(&state).expect("encodes").len();
        // The sealed envelope adds a version, a kind, a nonce and a tag: well under 64 bytes.
        assert!(body_bytes + 64 <= PUSH_PULL_BYTES_MAX, "{body_bytes} bytes");
        assert!(PUSH_PULL_MEMBERS_MAX >= 5_000, "the pools we size for fit");
    }
}
