//! The server port's one route table, and the [`Endpoint`] it dispatches to.
//!
//! | route | body | who calls it |
//! |---|---|---|
//! | `POST /raft/append`, `/raft/vote`, `/raft/snapshot` | a Raft message (opaque here) | Raft peers (append and vote usually come as `frames`) |
//! | `GET /raft/info` | — | servers forming or rejoining a cluster |
//! | `POST /raft/join` | a join request | a server asking to be added |
//! | `POST /raft/forward` | a command | a follower: apply it only if this server leads |
//! | `POST /rpc/write` | a command | any agent: this server applies it or forwards it to its leader |
//! | `POST /rpc/read` | a view request | a client agent: catalog rows for its anti-entropy and DNS |
//! | `POST /raft/fault` | a fault plan (JSON) | tests, when fault injection is on |
//! | `/fwd/...` | an HTTP API request | an agent relaying a read to a server (the API router, nested) |
//!
//! Every request is bounded before a handler sees it: the body by [`RPC_BODY_BYTES_MAX`] and
//! must arrive whole within [`RPC_BODY_TIMEOUT_MS`] (a sender that stalls is cut off), and
//! the connections per peer IP by [`RPC_CONNS_PER_PEER_MAX`] (in `daemon`'s accept loop).
//! Requests from a peer that a fault plan cuts us from are refused.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::rpc::fault::{FROM_HEADER, FaultPlan, Faults};
use crate::rpc::{RPC_BODY_BYTES_MAX, RPC_BODY_TIMEOUT_MS};

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
        .layer(axum::middleware::from_fn_with_state(endpoint, refuse_partitioned))
        .layer(axum::middleware::from_fn(whole_body_in_time))
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
