//! `/v1/status/*`: the Raft leader and peers, as server RPC addresses (`ip:8300`).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::http::AppState;
use crate::http::query::{Params, check_datacenter, json_body};
use crate::http::error::ApiError;

pub(super) async fn leader(State(state): State<AppState>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let leader = state.agent.raft_status().and_then(|s| s.leader.map(|(_, node)| node.raft_addr)).unwrap_or_default();
    Ok(([("content-type", "application/json")], json_body(&Value::from(leader), params.contains_key("pretty"))).into_response())
}

pub(super) async fn peers(State(state): State<AppState>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let peers: Vec<String> = state.agent.raft_status().map(|s| s.voters.values().map(|n| n.raft_addr.clone()).collect()).unwrap_or_default();
    Ok(([("content-type", "application/json")], json_body(&peers, params.contains_key("pretty"))).into_response())
}
