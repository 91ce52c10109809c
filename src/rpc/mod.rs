//! The server port's protocol (`ports.server`, 8300), with no knowledge of Raft.
//!
//! Every agent-to-server and server-to-server exchange goes through this module:
//! - [`client::RpcClient`], the one client: dials, timeouts, the sender's address for fault
//!   injection, and relaying an HTTP API request to a server (`/fwd`). Followers use it to reach
//!   the leader, client agents to reach any server, Raft to reach its peers;
//! - [`server::router`], the one route table of the server port, dispatching to an
//!   [`server::Endpoint`] that the agent implements (Raft messages travel as opaque bytes);
//! - [`frames`], length-prefixed frames on a kept-alive TCP connection, for the messages on the
//!   path of every write (AppendEntries and Vote);
//! - [`fault`], the test-only partition layer that both directions consult.
//!
//! With TLS configured (`tls::AgentTls`), the client dials TLS and the server port's accept loop
//! (`http::server`) terminates it; a verified certificate then says who the caller is
//! (`server::admit`).
//!
//! Bodies are `[format] + postcard(value)` ([`encode`], [`decode`]). The format byte is 1
//! unless the body carries a value of a newer encoding format (a format 2 command: see
//! `catalog::codec`), whose sender says so with [`encode_as`]; a release that does not read
//! that format then refuses the body as written by a newer release instead of misreading it. postcard has no
//! nesting limit of its own; the only recursive type that crosses this port is
//! `catalog::Command`, whose decoder bounds its own depth (`COMMAND_NESTING_DEPTH_MAX`).

pub mod client;
pub mod fault;
pub mod frames;
pub mod server;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A connection on the server port, plaintext or TLS.
pub trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin> IoStream for T {}

/// Longest time a TLS handshake on the server port may take, either way.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// The format byte in front of every body on the server port.
pub const RPC_FORMAT_V1: u8 = 1;
/// The newest format byte this build reads: `catalog::codec::FORMAT_NEWEST` (this layer may
/// not see `catalog`; `raft::network`'s tests check the two agree).
pub const RPC_FORMAT_NEWEST: u8 = 2;
/// Largest request or answer body (openraft's snapshot chunks are 3 MiB; a restore is 12 MB).
pub const RPC_BODY_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Longest time a whole request body may take to arrive once its headers have.
pub const RPC_BODY_TIMEOUT_MS: u64 = 10_000;
/// Most connections one peer IP may hold open to the server port (Raft streams, pooled
/// forwarding connections and parked forwarded blocking queries of one agent).
pub const RPC_CONNS_PER_PEER_MAX: usize = 512;
/// Longest wait to open a connection to a server.
pub const RPC_CONNECT_TIMEOUT_MS: u64 = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("rpc error: cannot reach {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("rpc error: {addr} did not answer in time")]
    Timeout { addr: String },
    #[error("rpc error: {addr} is partitioned from this server (fault injection)")]
    Partitioned { addr: String },
    #[error("rpc error: {addr} answered {status}: {body}")]
    Status { addr: String, status: u16, body: String },
    #[error("rpc error: malformed message: {0}")]
    Malformed(String),
    /// The server does not (yet) know this agent: gossip has not told it of us. Refused before
    /// anything was read, so another server may be asked.
    #[error("rpc error: {addr} refused us: {reason}")]
    NotAdmitted { addr: String, reason: String },
}

impl RpcError {
    /// True when the request certainly never reached the server (safe to try another).
    pub fn not_delivered(&self) -> bool {
        matches!(self, RpcError::Unreachable { .. } | RpcError::Partitioned { .. } | RpcError::NotAdmitted { .. })
    }
}

/// Encodes a value as a server-port body.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    encode_as(RPC_FORMAT_V1, value)
}

/// Encodes a value that needs encoding format `format` (1 or newer) as a server-port body.
pub fn encode_as<T: Serialize>(format: u8, value: &T) -> Vec<u8> {
    let mut out = vec![format.max(RPC_FORMAT_V1)];
    // Serializing plain structs into a Vec cannot fail (postcard only errors on unsupported
    // serde features and on full fixed buffers).
    out.extend(postcard::to_allocvec(value).expect("postcard serializes rpc messages"));
    out
}

/// Decodes a server-port body.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RpcError> {
    match bytes.split_first() {
        Some((&version, body)) if (RPC_FORMAT_V1..=RPC_FORMAT_NEWEST).contains(&version) => {
            postcard::from_bytes(body).map_err(|e| RpcError::Malformed(e.to_string()))
        }
        Some((0, _)) => Err(RpcError::Malformed("unknown rpc format version 0".into())),
        Some((version, _)) => Err(RpcError::Malformed(format!(
            "rpc format version {version} was written by a newer release of cairn (this build reads 1 to {RPC_FORMAT_NEWEST}): upgrade this agent"
        ))),
        None => Err(RpcError::Malformed("empty rpc body".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_bad_ones_are_refused() {
        let bytes = encode(&("a".to_string(), 7u64));
        assert_eq!(bytes[0], RPC_FORMAT_V1);
        assert_eq!(decode::<(String, u64)>(&bytes).unwrap(), ("a".to_string(), 7));
        assert!(matches!(decode::<u64>(&[]), Err(RpcError::Malformed(_))));
        assert!(matches!(decode::<u64>(&[9, 1]), Err(RpcError::Malformed(e)) if e.contains("newer release")));
        assert!(matches!(decode::<u64>(&[0, 1]), Err(RpcError::Malformed(_))));
        assert_eq!(decode::<u64>(&encode_as(RPC_FORMAT_NEWEST, &5u64)).unwrap(), 5);
        assert!(matches!(decode::<String>(&[RPC_FORMAT_V1, 200]), Err(RpcError::Malformed(_))));
    }
}
