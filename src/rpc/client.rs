//! [`RpcClient`]: the one client of the server port, shared by everything that calls a server.
//!
//! One pooled HTTP client (reqwest) for the HTTP routes, and [`frames::FramedConn`]s for
//! the framed ones: Raft's own (one per replication stream, `raft::network`) and writes
//! ([`RpcClient::write`], from a pool of idle connections per server). Every call has a
//! timeout, refuses a target that a fault plan cuts us from, carries our own server address
//! (`x-cairn-from`) so the target can refuse us in turn, and reads at most
//! [`RPC_BODY_BYTES_MAX`] of an answer. The scheme lives here only: with TLS to servers
//! (`verify_outgoing`) both the HTTP calls and the frames go over TLS, with the agent's
//! certificate and `tls::AgentTls`'s verifier.
//!
//! Connections leave from the agent's bind address when it has one: servers admit callers by
//! their address (`rpc::server::admit`), and on a host with several addresses (or several
//! agents on loopback) the kernel would otherwise pick a source the pool does not know.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::rpc::fault::{FROM_HEADER, Faults};
use crate::rpc::server::REFUSED_HEADER;
use crate::rpc::frames::{FramedCallError, FramedConn, write_kind};
use crate::rpc::server::WriteRoute;
use crate::tls::AgentTls;
use crate::rpc::{RPC_BODY_BYTES_MAX, RPC_CONNECT_TIMEOUT_MS, RpcError, decode, encode, encode_as};

/// How long a pooled connection to a server may stay idle.
const POOL_IDLE_TIMEOUT_MS: u64 = 90_000;
/// Idle write connections kept per server; a burst beyond it dials more, closed afterwards.
const WRITE_CONNS_IDLE_PER_SERVER_MAX: usize = 16;
/// Servers whose idle write connections are kept (a datacenter has 3 or 5; addresses of
/// servers long gone are dropped beyond this).
const WRITE_POOL_SERVERS_MAX: usize = 64;
/// An idle write connection older than this is closed instead of used: well before the
/// server hangs up on it (`frames`' idle timeout, 300 s), so a write never races that.
const WRITE_CONN_IDLE_MS_MAX: u64 = 60_000;
/// Longest error body kept for an error message.
const ERROR_BODY_BYTES_MAX: usize = 1024;

/// An HTTP API answer relayed from a server (`/fwd`).
pub struct Relayed {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The client of the server port. Cheap to share behind an `Arc`.
pub struct RpcClient {
    /// Built again when a reload replaced the TLS configuration (its generation is kept).
    http: std::sync::Mutex<(u64, reqwest::Client)>,
    faults: Arc<Faults>,
    /// Our own server-port address (empty on client agents), sent as `x-cairn-from`.
    own_addr: String,
    /// The address connections leave from (`None`: the kernel's choice).
    source_ip: Option<IpAddr>,
    /// TLS to servers, if configured; `scheme` follows it.
    tls: Option<Arc<AgentTls>>,
    scheme: &'static str,
    /// Idle framed connections for writes, by server address, each with when it went idle.
    write_conns: std::sync::Mutex<HashMap<String, Vec<(Instant, FramedConn)>>>,
}

impl RpcClient {
    /// `source_ip`: the agent's bind address, unless it binds every address. `tls`: dial
    /// servers over TLS (`verify_outgoing`); `None` when its settings do not verify outgoing.
    pub fn new(faults: Arc<Faults>, own_addr: String, source_ip: Option<IpAddr>, tls: Option<Arc<AgentTls>>) -> Result<RpcClient, RpcError> {
        let tls = tls.filter(|tls| tls.client_config().is_some());
        let http = build_http(source_ip, tls.as_deref())?;
        let generation = tls.as_ref().map_or(0, |tls| tls.generation());
        let scheme = if tls.is_some() { "https" } else { "http" };
        let write_conns = std::sync::Mutex::new(HashMap::new());
        Ok(RpcClient { http: std::sync::Mutex::new((generation, http)), faults, own_addr, source_ip, tls, scheme, write_conns })
    }

    /// The pooled HTTP client, built again first if a reload replaced the TLS configuration.
    fn http(&self) -> reqwest::Client {
        let mut current = self.http.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tls) = &self.tls
            && tls.generation() != current.0
        {
            match build_http(self.source_ip, Some(tls)) {
                Ok(http) => *current = (tls.generation(), http),
                Err(error) => tracing::error!(%error, "keeping the previous TLS configuration for calls to servers"),
            }
        }
        current.1.clone()
    }

    pub fn faults(&self) -> &Arc<Faults> {
        &self.faults
    }

    pub fn own_addr(&self) -> &str {
        &self.own_addr
    }

    /// A framed connection to `addr`, dialled on its first call.
    pub fn framed(&self, addr: &str) -> FramedConn {
        FramedConn::new(addr.to_string(), self.own_addr.clone(), self.faults.clone(), self.source_ip, self.tls.clone())
    }

    fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }

    fn reachable(&self, addr: &str) -> Result<(), RpcError> {
        if self.faults.blocks(addr) {
            return Err(RpcError::Partitioned { addr: addr.to_string() });
        }
        Ok(())
    }

    /// POSTs `request` to `path` on the server at `addr` and decodes the answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(&self, addr: &str, path: &str, request: &Req, timeout: Duration) -> Result<Resp, RpcError> {
        self.call_raw(addr, path, encode(request), timeout).await.and_then(|bytes| decode(&bytes))
    }

    /// [`RpcClient::call`] with a request that needs encoding format `format` ([`encode_as`]).
    pub async fn call_as<Req: Serialize, Resp: DeserializeOwned>(&self, addr: &str, path: &str, format: u8, request: &Req, timeout: Duration) -> Result<Resp, RpcError> {
        self.call_raw(addr, path, encode_as(format, request), timeout).await.and_then(|bytes| decode(&bytes))
    }

    /// POSTs an already encoded body; returns the answer's bytes.
    pub async fn call_raw(&self, addr: &str, path: &str, body: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, RpcError> {
        self.reachable(addr)?;
        let sent = self.http().post(self.url(addr, path)).header(FROM_HEADER, &self.own_addr).timeout(timeout).body(body).send();
        let response = sent.await.map_err(|e| transport_error(addr, &e))?;
        let (status, _, bytes) = read_bounded(addr, response).await?;
        if !status.is_success() {
            return Err(status_error(addr, status, &bytes));
        }
        Ok(bytes.to_vec())
    }

    /// Sends a write (`/rpc/write` for [`WriteRoute::AnyServer`], `/raft/forward` for
    /// [`WriteRoute::LeaderOnly`]) to the server at `addr` as a frame, and decodes the answer.
    /// A server that refuses the frame has applied nothing, so the write then goes over HTTP,
    /// whose answer decides: that is how a server older than the write frames is served, and
    /// how a refusal reads exactly as it always has (`RpcError::NotAdmitted`, a 400 status).
    pub async fn write<Req: Serialize, Resp: DeserializeOwned>(&self, addr: &str, route: WriteRoute, format: u8, request: &Req, timeout: Duration) -> Result<Resp, RpcError> {
        self.reachable(addr)?;
        let body = encode_as(format, request);
        let mut conn = self.idle_write_conn(addr).unwrap_or_else(|| self.framed(addr));
        match conn.call_kind(write_kind(route), &body, timeout).await {
            Ok(answer) => {
                self.keep_write_conn(addr, conn);
                decode(&answer)
            }
            Err(FramedCallError::Refused(_)) => {
                let path = match route {
                    WriteRoute::AnyServer => "/rpc/write",
                    WriteRoute::LeaderOnly => "/raft/forward",
                };
                self.call_raw(addr, path, body, timeout).await.and_then(|bytes| decode(&bytes))
            }
            Err(FramedCallError::Unreachable { addr, reason }) => Err(RpcError::Unreachable { addr, reason }),
            Err(FramedCallError::Timeout { addr }) => Err(RpcError::Timeout { addr }),
            // Sent, and then the connection failed: the outcome is unknown, as on a timeout.
            Err(FramedCallError::Network(reason)) => Err(RpcError::Malformed(format!("{addr}: {reason}"))),
        }
    }

    /// An idle write connection to `addr` that is young enough and still open.
    fn idle_write_conn(&self, addr: &str) -> Option<FramedConn> {
        let mut pool = self.write_conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let idle = pool.get_mut(addr)?;
        while let Some((since, mut conn)) = idle.pop() {
            if since.elapsed() < Duration::from_millis(WRITE_CONN_IDLE_MS_MAX) && !conn.is_stale() {
                return Some(conn);
            }
        }
        None
    }

    /// Puts a connection that answered whole back in the pool, within the pool's limits.
    fn keep_write_conn(&self, addr: &str, conn: FramedConn) {
        let mut pool = self.write_conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !pool.contains_key(addr) && pool.len() >= WRITE_POOL_SERVERS_MAX {
            pool.retain(|_, idle| !idle.is_empty());
            if pool.len() >= WRITE_POOL_SERVERS_MAX {
                return;
            }
        }
        let idle = pool.entry(addr.to_string()).or_default();
        if idle.len() < WRITE_CONNS_IDLE_PER_SERVER_MAX {
            idle.push((Instant::now(), conn));
        }
    }

    /// GETs `path` on the server at `addr` and decodes the answer.
    pub async fn get<Resp: DeserializeOwned>(&self, addr: &str, path: &str, timeout: Duration) -> Result<Resp, RpcError> {
        self.reachable(addr)?;
        let sent = self.http().get(self.url(addr, path)).header(FROM_HEADER, &self.own_addr).timeout(timeout).send();
        let response = sent.await.map_err(|e| transport_error(addr, &e))?;
        let (status, _, bytes) = read_bounded(addr, response).await?;
        if !status.is_success() {
            return Err(status_error(addr, status, &bytes));
        }
        decode(&bytes)
    }

    /// Relays an HTTP API request to the server at `addr`, which answers it under `/fwd`.
    /// `headers` are the ones worth relaying (token, namespace, the hop marker).
    pub async fn forward_http(&self, addr: &str, method: Method, path_and_query: &str, headers: HeaderMap, body: Bytes, timeout: Duration) -> Result<Relayed, RpcError> {
        self.reachable(addr)?;
        let url = self.url(addr, &format!("/fwd{path_and_query}"));
        let request = self.http().request(method, url).headers(headers).header(FROM_HEADER, &self.own_addr).body(body);
        let response = request.timeout(timeout).send().await.map_err(|e| transport_error(addr, &e))?;
        let (status, headers, body) = read_bounded(addr, response).await?;
        Ok(Relayed { status, headers, body })
    }
}

fn transport_error(addr: &str, error: &reqwest::Error) -> RpcError {
    if error.is_timeout() {
        RpcError::Timeout { addr: addr.to_string() }
    } else if error.is_connect() {
        RpcError::Unreachable { addr: addr.to_string(), reason: error.to_string() }
    } else {
        RpcError::Malformed(format!("{addr}: {error}"))
    }
}

fn status_error(addr: &str, status: StatusCode, body: &[u8]) -> RpcError {
    let body = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_BYTES_MAX)]).into_owned();
    RpcError::Status { addr: addr.to_string(), status: status.as_u16(), body }
}

/// Reads an answer of at most [`RPC_BODY_BYTES_MAX`] bytes.
async fn read_bounded(addr: &str, mut response: reqwest::Response) -> Result<(StatusCode, HeaderMap, Bytes), RpcError> {
    let status = response.status();
    let headers = std::mem::take(response.headers_mut());
    if status == StatusCode::FORBIDDEN && headers.contains_key(REFUSED_HEADER) {
        let reason = String::from_utf8_lossy(&response.bytes().await.unwrap_or_default()[..]).chars().take(ERROR_BODY_BYTES_MAX).collect();
        return Err(RpcError::NotAdmitted { addr: addr.to_string(), reason });
    }
    if response.content_length().is_some_and(|n| n as usize > RPC_BODY_BYTES_MAX) {
        return Err(RpcError::Malformed(format!("{addr}: answer over {RPC_BODY_BYTES_MAX} bytes")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(addr, &e))? {
        if body.len() + chunk.len() > RPC_BODY_BYTES_MAX {
            return Err(RpcError::Malformed(format!("{addr}: answer over {RPC_BODY_BYTES_MAX} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, headers, Bytes::from(body)))
}

/// The pooled HTTP client for calls to servers, over TLS when `tls` verifies outgoing.
fn build_http(source_ip: Option<IpAddr>, tls: Option<&AgentTls>) -> Result<reqwest::Client, RpcError> {
    let builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(RPC_CONNECT_TIMEOUT_MS))
        .pool_idle_timeout(Duration::from_millis(POOL_IDLE_TIMEOUT_MS))
        .local_address(source_ip);
    let builder = match tls.and_then(AgentTls::client_config) {
        Some(config) => builder.use_preconfigured_tls(rustls::ClientConfig::clone(&config)),
        None => builder,
    };
    builder.build().map_err(|e| RpcError::Malformed(format!("cannot build the rpc client: {e}")))
}
