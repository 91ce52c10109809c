//! `/v1/operator/*`: the Raft configuration, removing a peer, leadership transfer, and the
//! usage counts (autopilot is `autopilot`, the keyring `keyring`).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::http::AppState;
use crate::http::authz::Authz;
use crate::http::error::ApiError;
use crate::http::query::{Params, blocking_read, check_datacenter, json_body, read_options, set_meta_headers};
use crate::watch::{Table, Topic};

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
    // Consul 1.20-1.22 answer `"Index": 0` here; the applied index is in this server's own
    // `Raft` object above.
    Ok(json_ok(&json!({"Servers": servers, "Index": 0}), &params, StatusCode::OK))
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

/// The service kinds Consul counts in `ConnectServiceInstances`.
const CONNECT_KINDS: [&str; 6] = ["api-gateway", "connect-native", "connect-proxy", "ingress-gateway", "mesh-gateway", "terminating-gateway"];

/// `GET /v1/operator/usage[?global]`: Consul's usage counts for this datacenter (the only one,
/// so `?global` answers the same), a blocking read on the nodes and services tables.
pub(super) async fn usage(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    authz.require(authz.authorizer().operator_read(), "operator:read", None)?;
    let options = read_options(&state, &params, &authz)?;
    let topics = vec![Topic::Table(Table::Nodes), Topic::Table(Table::Services)];
    let (meta, usage) = blocking_read(&state, &options, topics, |catalog| {
        let indexes = catalog.indexes();
        let mut connect: BTreeMap<&str, u64> = CONNECT_KINDS.iter().map(|kind| (*kind, 0)).collect();
        let (mut instances, mut billable) = (0u64, 0u64);
        for service in catalog.services() {
            instances += 1;
            let native = service.opaque_json.get("Connect").is_some_and(|text| {
                serde_json::from_str::<Value>(text).ok().and_then(|v| v.get("Native").and_then(Value::as_bool)).unwrap_or(false)
            });
            let kind = if native { "connect-native" } else { service.kind.as_str() };
            if let Some(count) = connect.get_mut(kind) {
                *count += 1;
            }
            // Consul's billable instances: typical services (connect-native included), not `consul`.
            if service.kind.is_empty() && service.name != "consul" {
                billable += 1;
            }
        }
        let usage = json!({
            "Nodes": catalog.nodes().count(),
            "Services": catalog.service_names().len(),
            "ServiceInstances": instances,
            "ConnectServiceInstances": connect,
            "BillableServiceInstances": billable,
        });
        (indexes.nodes.max(indexes.services), usage)
    })
    .await?;
    let datacenter = state.agent.identity().datacenter.clone();
    let body = json!({
        "Usage": {datacenter: usage},
        "Index": meta.index.max(1),
        "LastContact": meta.last_contact_ms,
        "KnownLeader": meta.known_leader,
        "ConsistencyLevel": meta.consistency.as_str(),
        "NotModified": false,
        "Backend": 0,
        "ResultsFilteredByACLs": false,
    });
    let mut response = json_ok(&body, &params, StatusCode::OK);
    set_meta_headers(response.headers_mut(), &meta);
    Ok(response)
}
