//! The hot Raft RPCs (AppendEntries, Vote) as length-prefixed frames on a kept-alive TCP
//! connection, on the same server port as the HTTP routes of `network`.
//!
//! Measured on a 3-server loopback cluster, an AppendEntries round trip over HTTP (reqwest to
//! axum) took about 170 µs more than the follower spent handling it; that overhead sat on the
//! path of every write. Here a connection starts with the byte [`FRAME_MAGIC`] (never the first
//! byte of an HTTP request), which the server port's accept loop sniffs. Then, in turn:
//!
//! - request: `u32` length (big-endian) of the rest, `u8` kind, `u16` length + the sender's
//!   server address (for fault injection, like `x-cairn-from`), the body (`network::encode`);
//! - answer: `u32` length of the rest, `u8` status ([`STATUS_OK`] or [`STATUS_REFUSED`]), the
//!   body (`network::encode` of the `Result`, or the refusal's text).
//!
//! One request is in flight per connection; openraft calls each peer client with `&mut self`,
//! so each replication stream and each election has its own connection. A call that fails or
//! is cancelled mid-exchange drops its connection, and the next call dials again.
//! Snapshots, forwarded writes, joins and forwarded reads stay on HTTP.

use std::sync::Arc;
use std::time::Duration;

use openraft::raft::{AppendEntriesRequest, VoteRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::raft::network::{RAFT_RPC_BODY_BYTES_MAX, decode, encode};
use crate::raft::{NodeId, RaftServer, TypeConfig};

/// The first byte of a framed connection: not an ASCII letter, so never an HTTP method.
pub const FRAME_MAGIC: u8 = 0xCB;
pub(crate) const KIND_APPEND: u8 = 1;
pub(crate) const KIND_VOTE: u8 = 2;
pub(crate) const STATUS_OK: u8 = 0;
pub(crate) const STATUS_REFUSED: u8 = 1;
/// Longest wait for the next request on an idle server-side connection (peers send heartbeats
/// far more often).
const FRAME_IDLE_TIMEOUT_MS: u64 = 300_000;
/// Longest wait for the rest of a frame once its length has arrived.
const FRAME_BODY_TIMEOUT_MS: u64 = 10_000;
/// Longest wait to connect to a peer (as for the HTTP client).
pub(crate) const FRAME_CONNECT_TIMEOUT_MS: u64 = 2_000;

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
pub(crate) async fn read_frame(stream: &mut TcpStream, first_byte_timeout: Duration) -> Result<Option<Vec<u8>>, FrameError> {
    let mut length = [0u8; 4];
    match tokio::time::timeout(first_byte_timeout, stream.read_exact(&mut length[..1])).await {
        Err(_) => return Err(FrameError::Timeout),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(result) => result?,
    };
    let rest = async {
        stream.read_exact(&mut length[1..]).await?;
        let size = u32::from_be_bytes(length) as usize;
        if size > RAFT_RPC_BODY_BYTES_MAX {
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

/// Serves one framed connection whose magic byte has been peeked (not yet read).
pub async fn serve(mut stream: TcpStream, server: Arc<RaftServer>) {
    let mut magic = [0u8; 1];
    if stream.read_exact(&mut magic).await.is_err() || magic[0] != FRAME_MAGIC {
        return;
    }
    loop {
        let rest = match read_frame(&mut stream, Duration::from_millis(FRAME_IDLE_TIMEOUT_MS)).await {
            Ok(Some(rest)) => rest,
            Ok(None) => return,
            Err(error) => {
                tracing::debug!(%error, "closing a raft frame connection");
                return;
            }
        };
        let answer = match parse_request(&rest) {
            Err(error) => answer_frame(STATUS_REFUSED, error.to_string().as_bytes()),
            Ok((_, from, _)) if !from.is_empty() && server.faults.blocks(from) => {
                answer_frame(STATUS_REFUSED, b"partitioned (fault injection)")
            }
            Ok((KIND_APPEND, _, body)) => match decode::<AppendEntriesRequest<TypeConfig>>(body) {
                Ok(request) => answer_frame(STATUS_OK, &encode(&server.raft.append_entries(request).await)),
                Err(error) => answer_frame(STATUS_REFUSED, error.to_string().as_bytes()),
            },
            Ok((KIND_VOTE, _, body)) => match decode::<VoteRequest<NodeId>>(body) {
                Ok(request) => answer_frame(STATUS_OK, &encode(&server.raft.vote(request).await)),
                Err(error) => answer_frame(STATUS_REFUSED, error.to_string().as_bytes()),
            },
            Ok((kind, _, _)) => answer_frame(STATUS_REFUSED, format!("unknown frame kind {kind}").as_bytes()),
        };
        if stream.write_all(&answer).await.is_err() {
            return;
        }
    }
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
    fn answers_carry_their_status() {
        let frame = answer_frame(STATUS_REFUSED, b"no");
        assert_eq!(&frame[..4], &3u32.to_be_bytes());
        assert_eq!(&frame[4..], &[STATUS_REFUSED, b'n', b'o']);
    }
}
