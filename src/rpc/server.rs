//! The server port's one route table, and the [`Endpoint`] it dispatches to.
//!
//! | route | body | who calls it |
//! |---|---|---|
//! | `POST /raft/append`, `/raft/vote`, `/raft/snapshot` | a Raft message (opaque here) | Raft peers (append and vote usually come as `frames`) |
//! | `GET /raft/info` | — | servers forming or rejoining a cluster |
//! | `POST /raft/join` | a join request | a server asking to be added |
//! | `POST /raft/forward` | a command | a follower: apply it only if this server leads (usually as a frame) |
//! | `POST /rpc/write` | a command | any agent: this server applies it or forwards it to its leader (usually as a frame) |
//! | `POST /rpc/read` | a view request | a client agent: catalog rows for its anti-entropy and DNS |
//! | `POST /raft/fault` | a fault plan (JSON) | tests, when fault injection is on |
//! | `/fwd/...` | an HTTP API request | an agent relaying a read to a server (the API router, nested) |
//!
//! Every request is bounded before a handler sees it: the body by [`RPC_BODY_BYTES_MAX`] and
//! must arrive whole within [`RPC_BODY_TIMEOUT_MS`] (a sender that stalls is cut off), and
//! the connections per peer IP by [`RPC_CONNS_PER_PEER_MAX`] (in `daemon`'s accept loop).
//! Requests from a peer that a fault plan cuts us from are refused.
//!
//! **Who may call** ([`Needs`], [`admit`]): the Raft routes (and Raft frames, and forwarded
//! writes as frames) only servers of this cluster, `/rpc/*` (and writes as frames) and `/fwd`
//! any member of the LAN pool (servers and client agents).
//! A certificate verified by the TLS handshake says who the caller is (`tls::CertRole`, put
//! in the request by the accept loop); without one the [`Endpoint`] says what the caller's
//! address is ([`PeerKind`]). Anyone else gets 403 and a
//! (rate-limited) warning in the log. The accept loop puts the caller's address in every
//! request as axum's `ConnectInfo`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::rpc::fault::{FROM_HEADER, FaultPlan, Faults};
use crate::rpc::{RPC_BODY_BYTES_MAX, RPC_BODY_TIMEOUT_MS};
use crate::tls::CertRole;

/// The Raft messages the port carries, without their types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RaftCall {
    Append,
    Vote,
    InstallSnapshot,
}

/// Where a written command may be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteRoute {
    /// Only here, and only if this server leads (a follower forwarded it; never forward again).
    LeaderOnly,
    /// Here or at this server's leader (a client agent sent it to any server).
    AnyServer,
}

/// What the server port knows of a caller's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerKind {
    /// A server of this cluster (a Raft member, or a `role=consul` member of the LAN pool).
    Server,
    /// Another member of the LAN pool (a client agent).
    Member,
    /// Nobody we know.
    Stranger,
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Raft messages, joins and forwarded writes: servers only.
    Server,
    /// A client agent's writes, reads and relayed API requests: any member.
    Member,
    /// Only the fault-injection route, which refuses by itself unless injection is on.
    Anyone,
}

impl Needs {
    /// What the route at `path` needs.
    pub fn of(path: &str) -> Needs {
        if path == "/raft/fault" {
            Needs::Anyone
        } else if path.starts_with("/rpc/") || path == "/fwd" || path.starts_with("/fwd/") {
            Needs::Member
        } else {
            Needs::Server
        }
    }

    /// True when a caller of `kind` may call a route that needs this.
    pub fn met_by(self, kind: PeerKind) -> bool {
        match self {
            Needs::Anyone => true,
            Needs::Member => kind != PeerKind::Stranger,
            Needs::Server => kind == PeerKind::Server,
        }
    }
}

/// The one admission decision for the server port (HTTP routes and frames alike): `Ok` when
/// the caller at `ip` may call a route that needs `needs`, else the refusal's text.
/// A certificate the TLS handshake verified decides; without one, the caller's address does.
pub fn admit(endpoint: &dyn Endpoint, ip: IpAddr, cert: Option<CertRole>, needs: Needs) -> Result<(), String> {
    if needs == Needs::Anyone {
        return Ok(());
    }
    let kind = match cert {
        Some(CertRole::Server) => PeerKind::Server,
        Some(CertRole::Agent) => PeerKind::Member,
        None => endpoint.peer_kind(ip.to_canonical()),
    };
    if needs.met_by(kind) {
        return Ok(());
    }
    warn_refused(ip, needs, kind);
    let who = if needs == Needs::Server { "a server of this cluster" } else { "a member of this cluster" };
    Err(format!("Permission denied: {ip} is not {who}"))
}

/// Marks a refusal by [`admit`] (403 with this header), so that the calling agent knows nothing
/// was read and may ask another server (`RpcError::NotAdmitted`).
pub const REFUSED_HEADER: &str = "x-cairn-refused";

/// Most refusal warnings logged per second; the rest are counted into the next one, so a
/// stranger hammering the port cannot flood the log.
const REFUSAL_WARNINGS_PER_S_MAX: u64 = 1;

fn warn_refused(ip: IpAddr, needs: Needs, kind: PeerKind) {
    static LAST_WARNED_S: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let last = LAST_WARNED_S.load(Ordering::Relaxed);
    if now_s.saturating_sub(last) * REFUSAL_WARNINGS_PER_S_MAX >= 1 && LAST_WARNED_S.compare_exchange(last, now_s, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
        tracing::warn!(%ip, ?needs, ?kind, suppressed, "server port: refused a caller that is not allowed to call this route");
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
    }
}

/// What serves the server port's routes; the agent implements it. Bodies in and out are
/// `rpc::encode`d; an `Err` is a refusal of a malformed request (answered with 400).
#[async_trait::async_trait]
pub trait Endpoint: Send + Sync + 'static {
    /// Hands a Raft message to Raft and returns its encoded `Result`.
    async fn raft(&self, call: RaftCall, body: &[u8]) -> Result<Vec<u8>, String>;
    /// Who this server is, for the join handshake.
    fn info(&self) -> Vec<u8>;
    /// A server asking to join the cluster.
    async fn join(&self, body: &[u8]) -> Result<Vec<u8>, String>;
    /// A command to commit; the answer is the encoded `Result<(index, outcome), reason>`.
    async fn write(&self, body: &[u8], route: WriteRoute) -> Result<Vec<u8>, String>;
    /// A client agent's read of catalog rows (may block, bounded by the request).
    async fn read(&self, body: &[u8]) -> Result<Vec<u8>, String>;
    fn faults(&self) -> &Faults;
    /// What the caller at `ip` is to this server.
    fn peer_kind(&self, ip: IpAddr) -> PeerKind;
}

type Shared = Arc<dyn Endpoint>;

/// The route table of the server port; `api` is the HTTP API router, served under `/fwd`.
pub fn router(endpoint: Shared, api: Router) -> Router {
    Router::new()
        .route("/raft/append", post(|s, b| raft(s, b, RaftCall::Append)))
        .route("/raft/vote", post(|s, b| raft(s, b, RaftCall::Vote)))
        .route("/raft/snapshot", post(|s, b| raft(s, b, RaftCall::InstallSnapshot)))
        .route("/raft/info", get(info))
        .route("/raft/join", post(join))
        .route("/raft/forward", post(|s, b| write(s, b, WriteRoute::LeaderOnly)))
        .route("/rpc/write", post(|s, b| write(s, b, WriteRoute::AnyServer)))
        .route("/rpc/read", post(read))
        .route("/raft/fault", post(set_faults))
        .with_state(endpoint.clone())
        .nest("/fwd", api)
        .layer(axum::middleware::from_fn_with_state(endpoint.clone(), refuse_partitioned))
        .layer(axum::middleware::from_fn(whole_body_in_time))
        // Outside the body's read: a caller that may not call the route costs no body buffer.
        .layer(axum::middleware::from_fn_with_state(endpoint, admit_caller))
        .layer(DefaultBodyLimit::max(RPC_BODY_BYTES_MAX))
}

fn answer(result: Result<Vec<u8>, String>) -> Response {
    match result {
        Ok(bytes) => (StatusCode::OK, bytes).into_response(),
        Err(reason) => (StatusCode::BAD_REQUEST, reason).into_response(),
    }
}

async fn raft(State(endpoint): State<Shared>, body: Bytes, call: RaftCall) -> Response {
    answer(endpoint.raft(call, &body).await)
}

async fn info(State(endpoint): State<Shared>) -> Response {
    answer(Ok(endpoint.info()))
}

async fn join(State(endpoint): State<Shared>, body: Bytes) -> Response {
    answer(endpoint.join(&body).await)
}

async fn write(State(endpoint): State<Shared>, body: Bytes, route: WriteRoute) -> Response {
    answer(endpoint.write(&body, route).await)
}

async fn read(State(endpoint): State<Shared>, body: Bytes) -> Response {
    answer(endpoint.read(&body).await)
}

async fn set_faults(State(endpoint): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<FaultPlan>(&body) {
        Ok(plan) => match endpoint.faults().set(plan) {
            Ok(()) => StatusCode::OK.into_response(),
            Err(reason) => (StatusCode::FORBIDDEN, reason).into_response(),
        },
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// Refuses a caller that may not call the route (see the module docs). Runs before the body
/// is read.
async fn admit_caller(State(endpoint): State<Shared>, request: Request, next: Next) -> Response {
    let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>().copied() else {
        return (StatusCode::FORBIDDEN, "Permission denied: the caller's address is unknown").into_response();
    };
    let cert = request.extensions().get::<CertRole>().copied();
    let path = request.uri().path();
    let needs = Needs::of(path);
    // Consul's `rpc.request` counts the agents' RPCs (writes, reads, relayed requests and a
    // follower's forwarded writes), not Raft's own messages.
    let rpc = needs == Needs::Member || path == "/raft/forward";
    match admit(endpoint.as_ref(), peer.ip(), cert, needs) {
        Ok(()) => {
            if rpc {
                metrics::counter!(crate::telemetry::names::RPC_REQUEST).increment(1);
            }
            next.run(request).await
        }
        Err(refusal) => (StatusCode::FORBIDDEN, [(REFUSED_HEADER, "not-admitted")], refusal).into_response(),
    }
}

/// Refuses requests from servers we are partitioned from (fault injection).
async fn refuse_partitioned(State(endpoint): State<Shared>, request: Request, next: Next) -> Response {
    let from = request.headers().get(FROM_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !from.is_empty() && endpoint.faults().blocks(from) {
        return (StatusCode::SERVICE_UNAVAILABLE, "partitioned (fault injection)").into_response();
    }
    next.run(request).await
}

/// Reads the whole body within [`RPC_BODY_TIMEOUT_MS`] and [`RPC_BODY_BYTES_MAX`] before any
/// handler runs, so a peer that sends a body slowly (or never finishes it) holds nothing.
async fn whole_body_in_time(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, RPC_BODY_BYTES_MAX);
    match tokio::time::timeout(Duration::from_millis(RPC_BODY_TIMEOUT_MS), read).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(error)) => (StatusCode::PAYLOAD_TOO_LARGE, format!("request body refused: {error}")).into_response(),
        Err(_) => (StatusCode::REQUEST_TIMEOUT, format!("request body not received within {RPC_BODY_TIMEOUT_MS} ms")).into_response(),
    }
}
