//! Consul's consistency modes for reads on a multi-server cluster.
//!
//! - default and `?consistent`: answered by the leader. A server that is not the leader
//!   forwards the whole request to the leader over the server port (`/fwd/...`, mounted by
//!   `daemon`), so blocking queries, filters and headers behave exactly as on the leader;
//! - `?stale`: answered by whichever server receives it, with `X-Consul-LastContact` and
//!   `X-Consul-KnownLeader` saying how fresh it is.
//!
//! With no leader, a request waits up to `rpc_hold_timeout` for one, then gets Consul's 500
//! `No cluster leader`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::agent::RPC_HOLD_TIMEOUT_MS;
use crate::http::AppState;

/// Marks a request already forwarded once, so it is never forwarded again.
pub(crate) const FORWARDED_HEADER: &str = "x-cairn-forwarded";
/// Read endpoints answered by the leader unless `?stale`.
const LEADER_READ_PREFIXES: [&str; 5] = ["/v1/catalog/", "/v1/health/", "/v1/kv", "/v1/session/", "/v1/config/"];
/// How long a forwarded request may take beyond its own blocking wait.
const FORWARD_MARGIN_S: u64 = 30;
/// Largest response relayed from the leader.
const FORWARD_RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

fn wants_leader(request: &Request) -> bool {
    let path = request.uri().path();
    let query = request.uri().query().unwrap_or("");
    // Session renewals restart a timer that only the leader keeps.
    let renew = request.method() == Method::PUT && path.starts_with("/v1/session/renew/");
    let read = request.method() == Method::GET
        && LEADER_READ_PREFIXES.iter().any(|p| path.starts_with(p))
        && !query.split('&').any(|pair| pair == "stale" || pair.starts_with("stale="));
    (read || renew) && request.headers().get(FORWARDED_HEADER).is_none()
}

pub(super) async fn leader_reads(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !wants_leader(&request) {
        return next.run(request).await;
    }
    let Some(raft) = state.agent.raft() else { return next.run(request).await };
    let consistent = request.uri().query().unwrap_or("").split('&').any(|pair| pair == "consistent" || pair.starts_with("consistent="));
    if consistent && raft.faults().consistent_reads_from_follower() {
        // A bug planted on purpose (fault injection only): see `raft::fault`.
        return next.run(request).await;
    }
    // Decide first, holding nothing across the wait below: a parked blocking query keeps
    // this future alive, so its size is per-watcher memory.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(RPC_HOLD_TIMEOUT_MS);
    let leader_addr = loop {
        let view = raft.leader_view();
        match (view.leads(), view.other_leader_addr) {
            (true, _) => break None,
            (false, Some(addr)) if raft.faults().blocks(&addr) => {
                return (StatusCode::INTERNAL_SERVER_ERROR, "rpc error: the leader is unreachable").into_response();
            }
            (false, Some(addr)) => break Some(addr),
            (false, None) if tokio::time::Instant::now() >= deadline => {
                return (StatusCode::INTERNAL_SERVER_ERROR, "No cluster leader").into_response();
            }
            (false, None) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    match leader_addr {
        None => next.run(request).await,
        // Boxed: the forwarding future (an HTTP client call) is large and rarely needed.
        Some(addr) => Box::pin(forward(&state, &addr, request)).await,
    }
}

async fn forward(state: &AppState, leader_raft_addr: &str, request: Request) -> Response {
    let path_and_query = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let url = format!("http://{leader_raft_addr}/fwd{path_and_query}");
    let wait_s = state.agent.config().max_query_time_s;
    let mut outgoing = state.client.request(request.method().clone(), url).timeout(Duration::from_secs(wait_s + FORWARD_MARGIN_S)).header(FORWARDED_HEADER, "1");
    for (name, value) in request.headers() {
        if name == "x-consul-token" || name == "authorization" || name == "x-consul-namespace" {
            outgoing = outgoing.header(name, value);
        }
    }
    let response = match outgoing.send().await {
        Ok(response) => response,
        Err(error) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("rpc error: forwarding to the leader failed: {error}")).into_response(),
    };
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = match response.bytes().await {
        Ok(bytes) if bytes.len() <= FORWARD_RESPONSE_BYTES_MAX => bytes,
        Ok(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "leader response too large").into_response(),
        Err(error) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("rpc error: {error}")).into_response(),
    };
    let mut relayed = Response::new(Body::from(bytes));
    *relayed.status_mut() = status;
    for (name, value) in headers.iter() {
        if name.as_str().starts_with("x-consul-") || name == "content-type" {
            relayed.headers_mut().insert(name.clone(), value.clone());
        }
    }
    relayed.headers_mut().insert(FORWARDED_HEADER, HeaderValue::from_static("1"));
    relayed
}
