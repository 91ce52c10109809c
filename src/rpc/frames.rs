//! The hot server-port messages as length-prefixed frames on a kept-alive TCP connection, on
//! the same port as the HTTP routes of `rpc::server`: Raft's AppendEntries and Vote, and the
//! writes agents send (`/rpc/write`, `/raft/forward`).
//!
//! Measured on a 3-server loopback cluster, an AppendEntries round trip over HTTP (reqwest to
//! axum) took about 170 µs more than the follower spent handling it; that overhead sat on the
//! path of every write. Writes paid it too: a client agent's write to a server, and a
//! follower's forward of it to the leader, each cost a client agent or a server about as much
//! CPU as a whole relayed KV put (`cairn-bench --client-agents`, BENCHMARKS.md). Here a
//! connection starts with the byte [`FRAME_MAGIC`] (never the first byte of an HTTP request),
//! which the server port's accept loop sniffs. Then, in turn:
//!
//! - request: `u32` length (big-endian) of the rest, `u8` kind, `u16` length + the sender's
//!   server address (for fault injection, like `x-cairn-from`), the body (`rpc::encode`);
//! - answer: `u32` length of the rest, `u8` status ([`STATUS_OK`] or [`STATUS_REFUSED`]), the
//!   body (`rpc::encode` of the `Result`, or the refusal's text).
//!
//! Who may send what is `rpc::server`'s rule for the matching route ([`FrameCall::needs`]):
//! Raft frames and forwarded writes only servers, a write any member of the LAN pool. A
//! stranger is refused before its first frame is read; a member that sends a server's frame is
//! refused once it is read, and hung up on. A refusal means nothing was applied, so the caller
//! may send the request again over HTTP; a server older than the write frames answers them
//! `unknown frame kind`, and `rpc::client` does just that.
//!
//! One request is in flight per connection ([`FramedConn`] is called with `&mut self`; openraft
//! gives each replication stream and each election its own peer client, and `rpc::client`
//! keeps a pool of idle write connections per server). A call that fails or is cancelled
//! mid-exchange drops its connection, and the next call dials again. Snapshots, joins and
//! reads stay on HTTP. Bodies are opaque here: the [`Endpoint`] decodes them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::rpc::fault::Faults;
use crate::rpc::server::{Endpoint, Needs, RaftCall, WriteRoute, admit};
use crate::rpc::IoStream;
use crate::tls::{AgentTls, CertRole};
use crate::rpc::{RPC_BODY_BYTES_MAX, RPC_CONNECT_TIMEOUT_MS, TLS_HANDSHAKE_TIMEOUT_MS};

/// The first byte of a framed connection: not an ASCII letter, so never an HTTP method.
pub const FRAME_MAGIC: u8 = 0xCB;
const KIND_APPEND: u8 = 1;
const KIND_VOTE: u8 = 2;
/// A write to apply here or at this server's leader (`/rpc/write`).
const KIND_WRITE: u8 = 3;
/// A follower's forwarded write, applied only if this server leads (`/raft/forward`).
const KIND_FORWARD: u8 = 4;
pub(crate) const STATUS_OK: u8 = 0;
pub(crate) const STATUS_REFUSED: u8 = 1;
/// Longest wait for the next request on an idle server-side connection (peers send heartbeats
/// far more often).
const FRAME_IDLE_TIMEOUT_MS: u64 = 300_000;
/// Longest wait for the rest of a frame once its length has arrived.
const FRAME_BODY_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Builds a request frame.
pub(crate) fn request_frame(kind: u8, from: &str, body: &[u8]) -> Vec<u8> {
    let from = &from.as_bytes()[..from.len().min(u16::MAX as usize)];
    let rest = 1 + 2 + from.len() + body.len();
    let mut frame = Vec::with_capacity(4 + rest);
    frame.extend_from_slice(&(rest as u32).to_be_bytes());
    frame.push(kind);
    frame.extend_from_slice(&(from.len() as u16).to_be_bytes());
    frame.extend_from_slice(from);
    frame.extend_from_slice(body);
    frame
}

/// Splits a request frame's rest into (kind, sender, body).
pub(crate) fn parse_request(rest: &[u8]) -> Result<(u8, &str, &[u8]), FrameError> {
    let (&kind, rest) = rest.split_first().ok_or(FrameError::Malformed("no kind"))?;
    if rest.len() < 2 {
        return Err(FrameError::Malformed("no sender length"));
    }
    let from_len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
    let rest = &rest[2..];
    if rest.len() < from_len {
        return Err(FrameError::Malformed("sender cut short"));
    }
    let from = std::str::from_utf8(&rest[..from_len]).map_err(|_| FrameError::Malformed("sender is not UTF-8"))?;
    Ok((kind, from, &rest[from_len..]))
}

/// Builds an answer frame.
pub(crate) fn answer_frame(status: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(5 + body.len());
    frame.extend_from_slice(&((1 + body.len()) as u32).to_be_bytes());
    frame.push(status);
    frame.extend_from_slice(body);
    frame
}

/// Reads one frame's rest (after its length), within the limits. `None` on a clean EOF before
/// a new frame began.
pub(crate) async fn read_frame(stream: &mut (impl AsyncReadExt + Unpin), first_byte_timeout: Duration) -> Result<Option<Vec<u8>>, FrameError> {
    let mut length = [0u8; 4];
    match tokio::time::timeout(first_byte_timeout, stream.read_exact(&mut length[..1])).await {
        Err(_) => return Err(FrameError::Timeout),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(result) => result?,
    };
    let rest = async {
        stream.read_exact(&mut length[1..]).await?;
        let size = u32::from_be_bytes(length) as usize;
        if size > RPC_BODY_BYTES_MAX {
            return Err(FrameError::TooLarge(size));
        }
        let mut rest = vec![0u8; size];
        stream.read_exact(&mut rest).await?;
        Ok(rest)
    };
    match tokio::time::timeout(Duration::from_millis(FRAME_BODY_TIMEOUT_MS), rest).await {
        Ok(result) => result.map(Some),
        Err(_) => Err(FrameError::Timeout),
    }
}

/// Serves one framed connection whose magic byte has been peeked (not yet read). Only servers
/// of this cluster may send frames (`rpc::server::admit`, asked again for every frame: a server
/// removed from the cluster loses its connections' rights at once).
/// `cert` is what the TLS handshake verified, if the connection is TLS.
pub async fn serve(mut stream: Box<dyn IoStream>, peer: SocketAddr, cert: Option<CertRole>, endpoint: Arc<dyn Endpoint>) {
    let mut magic = [0u8; 1];
    if stream.read_exact(&mut magic).await.is_err() || magic[0] != FRAME_MAGIC {
        return;
    }
    loop {
        // Every frame needs at least a member (a server's frames need more, judged below).
        if let Err(refusal) = admit(endpoint.as_ref(), peer.ip(), cert, Needs::Member) {
            // Answer once, before the caller's frame is even read, then hang up.
            let _ = stream.write_all(&answer_frame(STATUS_REFUSED, refusal.as_bytes())).await;
            return;
        }
        let rest = match read_frame(&mut stream, Duration::from_millis(FRAME_IDLE_TIMEOUT_MS)).await {
            Ok(Some(rest)) => rest,
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(%error, "closing a framed connection");
                return;
            }
        };
        let (answer, hang_up) = answer_request(&rest, peer, cert, endpoint.as_ref()).await;
        if stream.write_all(&answer).await.is_err() || hang_up {
            return;
        }
    }
}

/// The answer to one request frame, and whether to hang up after it (the caller may not send
/// what it sent).
async fn answer_request(rest: &[u8], peer: SocketAddr, cert: Option<CertRole>, endpoint: &dyn Endpoint) -> (Vec<u8>, bool) {
    let (kind, from, body) = match parse_request(rest) {
        Ok(request) => request,
        Err(error) => return (answer_frame(STATUS_REFUSED, error.to_string().as_bytes()), false),
    };
    if !from.is_empty() && endpoint.faults().blocks(from) {
        return (answer_frame(STATUS_REFUSED, b"partitioned (fault injection)"), false);
    }
    let Some(call) = call_of(kind) else {
        return (answer_frame(STATUS_REFUSED, format!("unknown frame kind {kind}").as_bytes()), false);
    };
    if let Err(refusal) = admit(endpoint, peer.ip(), cert, call.needs()) {
        return (answer_frame(STATUS_REFUSED, refusal.as_bytes()), true);
    }
    let answered = match call {
        FrameCall::Raft(call) => endpoint.raft(call, body).await,
        FrameCall::Write(route) => {
            // Consul's `rpc.request` counts the agents' writes, as the HTTP routes do.
            metrics::counter!(crate::telemetry::names::RPC_REQUEST).increment(1);
            endpoint.write(body, route).await
        }
    };
    match answered {
        Ok(answer) => (answer_frame(STATUS_OK, &answer), false),
        Err(error) => (answer_frame(STATUS_REFUSED, error.as_bytes()), false),
    }
}

/// What a request frame asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameCall {
    Raft(RaftCall),
    Write(WriteRoute),
}

impl FrameCall {
    /// Who may send it: as the matching HTTP route (`rpc::server::Needs::of`).
    pub fn needs(self) -> Needs {
        match self {
            FrameCall::Raft(_) | FrameCall::Write(WriteRoute::LeaderOnly) => Needs::Server,
            FrameCall::Write(WriteRoute::AnyServer) => Needs::Member,
        }
    }
}

/// The call a frame kind carries (only the hot ones travel as frames).
fn call_of(kind: u8) -> Option<FrameCall> {
    match kind {
        KIND_APPEND => Some(FrameCall::Raft(RaftCall::Append)),
        KIND_VOTE => Some(FrameCall::Raft(RaftCall::Vote)),
        KIND_WRITE => Some(FrameCall::Write(WriteRoute::AnyServer)),
        KIND_FORWARD => Some(FrameCall::Write(WriteRoute::LeaderOnly)),
        _ => None,
    }
}

/// The frame kind of a Raft message, if it travels as a frame.
pub fn kind_of(call: RaftCall) -> Option<u8> {
    match call {
        RaftCall::Append => Some(KIND_APPEND),
        RaftCall::Vote => Some(KIND_VOTE),
        RaftCall::InstallSnapshot => None,
    }
}

/// The frame kind of a write sent along `route`.
pub fn write_kind(route: WriteRoute) -> u8 {
    match route {
        WriteRoute::AnyServer => KIND_WRITE,
        WriteRoute::LeaderOnly => KIND_FORWARD,
    }
}

/// Why a framed call failed: `Unreachable` means the request was never sent.
#[derive(Debug, thiserror::Error)]
pub enum FramedCallError {
    #[error("cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("{0}")]
    Network(String),
    /// Sent (maybe), and no whole answer came in time: the outcome is unknown.
    #[error("{addr} did not answer in time")]
    Timeout { addr: String },
    #[error("peer refused: {0}")]
    Refused(String),
}

/// The client side of one framed connection to one server.
pub struct FramedConn {
    addr: String,
    own_addr: String,
    faults: Arc<Faults>,
    /// The address connections leave from (see `rpc::client`).
    source_ip: Option<IpAddr>,
    /// TLS to servers (`verify_outgoing`): the configuration current when a connection is
    /// dialled, so a reload's certificates are used from the next connection on.
    tls: Option<Arc<AgentTls>>,
    /// The kept-alive connection, taken out for each exchange and put back only after a whole
    /// answer, so an error or a cancelled call never leaves a half-read connection behind.
    stream: Option<Box<dyn IoStream>>,
}

impl FramedConn {
    pub(crate) fn new(addr: String, own_addr: String, faults: Arc<Faults>, source_ip: Option<IpAddr>, tls: Option<Arc<AgentTls>>) -> FramedConn {
        FramedConn { addr, own_addr, faults, source_ip, tls, stream: None }
    }

    async fn dial(&self) -> Result<Box<dyn IoStream>, FramedCallError> {
        let unreachable = |reason: String| FramedCallError::Unreachable { addr: self.addr.clone(), reason };
        let dial = tokio::time::timeout(Duration::from_millis(RPC_CONNECT_TIMEOUT_MS), connect_from(&self.addr, self.source_ip));
        let stream = match dial.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable("connect timed out".into())),
        };
        let _ = stream.set_nodelay(true);
        let client_tls = self.tls.as_ref().and_then(|tls| Some((tls.client_config()?, tls.server_name())));
        let mut stream: Box<dyn IoStream> = match client_tls {
            None => Box::new(stream),
            Some((config, server_name)) => {
                let connector = tokio_rustls::TlsConnector::from(config);
                let handshake = connector.connect(server_name, stream);
                match tokio::time::timeout(Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS), handshake).await {
                    Ok(Ok(stream)) => Box::new(stream),
                    Ok(Err(e)) => return Err(unreachable(format!("TLS handshake failed: {e}"))),
                    Err(_) => return Err(unreachable("TLS handshake timed out".into())),
                }
            }
        };
        stream.write_all(&[FRAME_MAGIC]).await.map_err(|e| unreachable(e.to_string()))?;
        Ok(stream)
    }

    /// One Raft request and its answer's body (an encoded `Result` of the peer's handler).
    pub async fn call(&mut self, call: RaftCall, body: &[u8], timeout: Duration) -> Result<Vec<u8>, FramedCallError> {
        let Some(kind) = kind_of(call) else { return Err(FramedCallError::Network(format!("{call:?} is not framed"))) };
        self.call_kind(kind, body, timeout).await
    }

    /// True when the kept connection is known to be dead (the server hung up, or sent bytes
    /// nobody asked for): checked without waiting, before an idle connection is used again,
    /// so that a write is not sent into a connection the server already closed.
    pub(crate) fn is_stale(&mut self) -> bool {
        use futures::FutureExt;
        let Some(stream) = self.stream.as_mut() else { return false };
        let mut probe = [0u8; 1];
        // Pending: nothing to read and no hang-up, the healthy case.
        stream.read(&mut probe).now_or_never().is_some()
    }

    /// One request of frame kind `kind` and its answer's body.
    pub(crate) async fn call_kind(&mut self, kind: u8, body: &[u8], timeout: Duration) -> Result<Vec<u8>, FramedCallError> {
        if self.faults.blocks(&self.addr) {
            return Err(FramedCallError::Unreachable { addr: self.addr.clone(), reason: "partitioned (fault injection)".into() });
        }
        let stream = match self.stream.take() {
            Some(stream) => stream,
            None => self.dial().await?,
        };
        let frame = request_frame(kind, &self.own_addr, body);
        let exchange = async move {
            let mut stream = stream;
            stream.write_all(&frame).await?;
            let answer = read_frame(&mut stream, timeout).await?;
            Ok::<_, FrameError>((stream, answer))
        };
        let (stream, answer) = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok((stream, Some(answer)))) => (stream, answer),
            Ok(Ok((_, None))) => return Err(FramedCallError::Network("connection closed".into())),
            Ok(Err(e)) => return Err(FramedCallError::Network(e.to_string())),
            Err(_) => return Err(FramedCallError::Timeout { addr: self.addr.clone() }),
        };
        let Some((&status, body)) = answer.split_first() else {
            return Err(FramedCallError::Network(FrameError::Malformed("empty answer").to_string()));
        };
        if status != STATUS_OK {
            return Err(FramedCallError::Refused(String::from_utf8_lossy(body).into_owned()));
        }
        let body = body.to_vec();
        self.stream = Some(stream);
        Ok(body)
    }
}

/// Connects to `addr` (a `host:port`), leaving from `source_ip` when given.
async fn connect_from(addr: &str, source_ip: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(source_ip) = source_ip else { return TcpStream::connect(addr).await };
    let mut last_error = std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, format!("{addr} has no address of the source's family"));
    for target in tokio::net::lookup_host(addr).await? {
        if target.is_ipv4() != source_ip.is_ipv4() {
            continue;
        }
        let socket = if target.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.bind(std::net::SocketAddr::new(source_ip, 0))?;
        match socket.connect(target).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = error,
        }
    }
    Err(last_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frames_round_trip() {
        let frame = request_frame(KIND_VOTE, "127.0.0.1:8300", b"body");
        let size = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(size, frame.len() - 4);
        let (kind, from, body) = parse_request(&frame[4..]).unwrap();
        assert_eq!((kind, from, body), (KIND_VOTE, "127.0.0.1:8300", &b"body"[..]));
    }

    #[test]
    fn malformed_requests_are_refused_not_panicked_on() {
        for bad in [&[][..], &[1][..], &[1, 0][..], &[1, 0, 9, b'a'][..], &[1, 0, 1, 0xff][..]] {
            assert!(parse_request(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_frame_kind_needs_what_its_http_route_needs() {
        use crate::rpc::server::Needs;
        for (call, route) in [(RaftCall::Append, "/raft/append"), (RaftCall::Vote, "/raft/vote")] {
            let kind = kind_of(call).unwrap();
            assert_eq!(call_of(kind), Some(FrameCall::Raft(call)));
            assert_eq!(FrameCall::Raft(call).needs(), Needs::of(route));
        }
        for (route, path) in [(WriteRoute::AnyServer, "/rpc/write"), (WriteRoute::LeaderOnly, "/raft/forward")] {
            assert_eq!(call_of(write_kind(route)), Some(FrameCall::Write(route)));
            assert_eq!(FrameCall::Write(route).needs(), Needs::of(path), "{path}");
        }
        assert_eq!(call_of(0), None);
        assert_eq!(call_of(9), None);
    }

    #[test]
    fn answers_carry_their_status() {
        let frame = answer_frame(STATUS_REFUSED, b"no");
        assert_eq!(&frame[..4], &3u32.to_be_bytes());
        assert_eq!(&frame[4..], &[STATUS_REFUSED, b'n', b'o']);
    }
}
