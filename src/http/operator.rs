//! `/v1/operator/*`: the Raft configuration, removing a peer, and autopilot health.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::http::AppState;
use crate::http::authz::Authz;
use crate::http::error::ApiError;
use crate::http::query::{Params, check_datacenter, json_body};

fn json_ok(value: &Value, params: &Params, status: StatusCode) -> Response {
    (status, [("content-type", "application/json")], json_body(value, params.contains_key("pretty"))).into_response()
}

/// The Raft ID as Consul prints it: we use the node's 64-bit Raft ID in hex.
pub(crate) fn raft_id(id: u64) -> String {
    format!("{id:016x}")
}

pub(super) async fn raft_configuration(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    authz.require(authz.authorizer().operator_read(), "operator:read", None)?;
    check_datacenter(&state, &params)?;
    let raft = state.agent.raft().ok_or_else(|| ApiError::Internal("this agent is not a server".into()))?;
    let status = raft.status();
    let progress = raft.replication_progress();
    let leader = status.leader.as_ref().map(|(id, _)| *id);
    let mut servers = Vec::new();
    for (voter, members) in [(true, &status.voters), (false, &status.learners)] {
        for (id, node) in members {
            let mut server = json!({
                "ID": raft_id(*id),
                "Node": node.name,
                "Address": node.raft_addr,
                "Leader": leader == Some(*id),
                "Voter": voter,
                "ProtocolVersion": "3",
            });
            // cairn extension: the Raft state this server knows about each peer.
            let details = if *id == status.node_id {
                Some(json!({"State": status.state, "Term": status.term, "LastLogIndex": status.last_log_index,
                            "AppliedIndex": status.applied_index, "LastContactMs": if leader == Some(*id) { 0 } else { status.millis_since_quorum_ack.unwrap_or(0) }}))
            } else {
                progress.as_ref().map(|p| json!({"State": if voter { "follower" } else { "learner" }, "Term": status.term, "MatchedIndex": p.get(id).copied().unwrap_or(0)}))
            };
            if let (Value::Object(map), Some(details)) = (&mut server, details) {
                map.insert("Raft".into(), details);
            }
            servers.push(server);
        }
    }
    Ok(json_ok(&json!({"Servers": servers, "Index": status.applied_index}), &params, StatusCode::OK))
}

pub(super) async fn remove_peer(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    authz.require(authz.authorizer().operator_write(), "operator:write", None)?;
    check_datacenter(&state, &params)?;
    let raft = state.agent.raft().ok_or_else(|| ApiError::Internal("this agent is not a server".into()))?;
    let status = raft.status();
    let members = status.voters.iter().chain(status.learners.iter());
    let target = match (params.get("id"), params.get("address")) {
        (Some(id), _) => members.into_iter().find(|(i, _)| raft_id(**i) == *id || i.to_string() == *id).map(|(i, _)| *i),
        (None, Some(address)) => members.into_iter().find(|(_, n)| n.raft_addr == *address).map(|(i, _)| *i),
        (None, None) => return Err(ApiError::BadRequest("Must specify either ?id with the server's ID or ?address with IP:port of peer to remove".into())),
    };
    let Some(target) = target else {
        let what = params.get("id").or(params.get("address")).cloned().unwrap_or_default();
        return Err(ApiError::Internal(format!("id/address {what:?} was not found in the Raft configuration")));
    };
    raft.remove_server(target).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(StatusCode::OK.into_response())
}

/// Longest wait for the leader to answer a transfer relayed to it (it waits for the removal
/// to commit).
const TRANSFER_FORWARD_TIMEOUT_MS: u64 = 30_000;

/// `POST /v1/operator/raft/transfer-leader`: another voter takes over (see
/// `RaftServer::transfer_leadership`). Naming a target with `?id=` is refused: openraft 0.9
/// cannot transfer to a chosen server.
pub(super) async fn transfer_leader(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    authz.require(authz.authorizer().operator_write(), "operator:write", None)?;
    check_datacenter(&state, &params)?;
    if params.get("id").is_some_and(|id| !id.is_empty()) {
        return Err(ApiError::BadRequest("transferring leadership to a chosen server is not supported yet; omit ?id".into()));
    }
    let raft = state.agent.raft().ok_or_else(|| ApiError::Internal("this agent is not a server".into()))?;
    let status = raft.status();
    match status.leader {
        Some((id, _)) if id == status.node_id => raft.transfer_leadership().await.map_err(|e| ApiError::Internal(e.to_string()))?,
        Some((_, leader)) => {
            // Through the one server-port client, like every call to a server.
            let path = "/v1/operator/raft/transfer-leader";
            let timeout = std::time::Duration::from_millis(TRANSFER_FORWARD_TIMEOUT_MS);
            let rpc = state.agent.rpc();
            let relayed = rpc.forward_http(&leader.raft_addr, axum::http::Method::POST, path, Default::default(), Default::default(), timeout).await;
            let relayed = relayed.map_err(|e| ApiError::Internal(e.to_string()))?;
            if !relayed.status.is_success() {
                return Err(ApiError::Internal(String::from_utf8_lossy(&relayed.body).into_owned()));
            }
        }
        None => return Err(ApiError::Internal("No cluster leader".into())),
    }
    Ok(json_ok(&json!({"Success": true}), &params, StatusCode::OK))
}

pub(super) async fn autopilot_health(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    authz.require(authz.authorizer().operator_read(), "operator:read", None)?;
    check_datacenter(&state, &params)?;
    let raft = state.agent.raft().ok_or_else(|| ApiError::Internal("this agent is not a server".into()))?;
    let status = raft.status();
    let settings = state.agent.config().autopilot;
    let progress = raft.replication_progress();
    let leader = status.leader.as_ref().map(|(id, _)| *id);
    let mut servers = Vec::new();
    let mut healthy_voters = 0usize;
    for (voter, members) in [(true, &status.voters), (false, &status.learners)] {
        for (id, node) in members {
            let last_index = match (&progress, leader == Some(*id)) {
                (_, true) => status.last_log_index,
                (Some(progress), false) => progress.get(id).copied().unwrap_or(0),
                (None, false) => 0,
            };
            let healthy = progress.is_none() || last_index + settings.max_trailing_logs >= status.last_log_index;
            if voter && healthy {
                healthy_voters += 1;
            }
            servers.push(json!({
                "ID": raft_id(*id),
                "Name": node.name,
                "Address": node.raft_addr,
                "SerfStatus": "alive",
                "Version": crate::agent::members::CONSUL_COMPAT_VERSION,
                "Leader": leader == Some(*id),
                "LastContact": if leader == Some(*id) { "0s".to_string() } else { format!("{:?}", Duration::from_millis(status.millis_since_quorum_ack.unwrap_or(0))) },
                "LastTerm": status.term,
                "LastIndex": last_index,
                "Healthy": healthy,
                "Voter": voter,
                "StableSince": "",
            }));
        }
    }
    let quorum = status.voters.len() / 2 + 1;
    let failure_tolerance = healthy_voters.saturating_sub(quorum);
    let healthy = leader.is_some() && healthy_voters >= quorum;
    let body = json!({"Healthy": healthy, "FailureTolerance": failure_tolerance, "Servers": servers});
    Ok(json_ok(&body, &params, if healthy { StatusCode::OK } else { StatusCode::TOO_MANY_REQUESTS }))
}
