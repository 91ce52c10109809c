//! `GET /v1/internal/ui/raft`: cairn's live Raft view for the dashboard's cluster page (Consul
//! has no such endpoint; it lives under `/v1/internal/ui/` beside Consul's dashboard
//! endpoints). The view itself is `agent::raft_view`'s; this is its JSON and its long poll.
//!
//! The leader answers (a follower or client agent relays the request, `http::forward`);
//! `?stale` makes the receiving server answer with what it knows. It needs `operator:read`,
//! as `/v1/operator/autopilot/health`.
//!
//! Long polling is hash-based, as the agent endpoints' (`?hash=` + `?wait=`, answer header
//! `X-Consul-ContentHash`): the hash covers everything but `LastContact`, which moves with
//! every heartbeat. A parked request re-renders when Raft's metrics or the gossip members
//! change, and every [`RAFT_VIEW_RECHECK_MS`] for health (it turns on time thresholds), but at
//! most once per [`RAFT_VIEW_WAKE_INTERVAL_MS`], so a busy cluster replicating entries does not
//! spin the page.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::agent::raft_view::{RaftView, ServerView};
use crate::http::AppState;
use crate::http::acl_json::rfc3339;
use crate::http::authz::Authz;
use crate::http::error::ApiError;
use crate::http::operator::raft_id;
use crate::http::query::{Params, content_hash, json_body, read_options};

/// Fewest milliseconds between two renders of one parked request.
const RAFT_VIEW_WAKE_INTERVAL_MS: u64 = 250;
/// How often a parked request re-renders without a wake-up (health turns on elapsed time).
const RAFT_VIEW_RECHECK_MS: u64 = 1_000;

pub(super) async fn raft(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    authz.require(authz.authorizer().operator_read(), "operator:read", None)?;
    let options = read_options(&state, &params, &authz)?;
    let raft = state.agent.raft().ok_or_else(|| ApiError::Internal("this agent is not a server".into()))?;
    let wanted = params.get("hash").filter(|hash| !hash.is_empty()).cloned();
    let deadline = tokio::time::Instant::now() + options.wait;
    let mut metrics = raft.leader_changes();
    let mut members = state.agent.member_changes();
    let mut shutdown = state.agent.shutdown_requested();
    loop {
        let rendered_at = tokio::time::Instant::now();
        metrics.borrow_and_update();
        members.borrow_and_update();
        let view = state.agent.raft_view().ok_or_else(|| ApiError::Internal("this agent is not a server".into()))?;
        let body = view_json(&view);
        let hash = content_hash(&json_body(&without_last_contact(&body), false));
        let unchanged = wanted.as_ref().is_some_and(|w| *w == hash);
        if !unchanged || rendered_at >= deadline || *shutdown.borrow() {
            let mut headers = HeaderMap::new();
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            headers.insert("x-consul-contenthash", HeaderValue::from_str(&hash).expect("hex is a valid header value"));
            return Ok((headers, json_body(&body, options.pretty)).into_response());
        }
        let _parked = crate::telemetry::BLOCKING_QUERIES.enter();
        let recheck = (rendered_at + Duration::from_millis(RAFT_VIEW_RECHECK_MS)).min(deadline);
        tokio::select! {
            _ = metrics.changed() => {}
            _ = members.changed() => {}
            _ = tokio::time::sleep_until(recheck) => {}
            _ = shutdown.changed() => {}
        }
        let next_render = (rendered_at + Duration::from_millis(RAFT_VIEW_WAKE_INTERVAL_MS)).min(deadline);
        tokio::time::sleep_until(next_render).await;
    }
}

fn optional<T: Into<Value>>(value: Option<T>) -> Value {
    value.map_or(Value::Null, Into::into)
}

fn view_json(view: &RaftView) -> Value {
    let servers: Vec<Value> = view.servers.iter().map(server_json).collect();
    let changes: Vec<Value> =
        view.leader_changes.iter().map(|c| json!({"Term": c.term, "Leader": c.leader, "Time": rfc3339(c.at_ms)})).collect();
    json!({
        "Leader": view.leader_name,
        "LeaderID": view.leader_id.map(raft_id).unwrap_or_default(),
        "Term": view.term,
        "CommitIndex": optional(view.commit_index),
        "Healthy": optional(view.healthy),
        "FailureTolerance": optional(view.failure_tolerance),
        "ServedBy": view.served_by,
        "Servers": servers,
        "LeaderChanges": changes,
    })
}

fn server_json(server: &ServerView) -> Value {
    json!({
        "ID": raft_id(server.id),
        "Name": server.name,
        "Address": server.address,
        "Role": server.role,
        "Term": optional(server.term),
        "LastLogIndex": optional(server.last_log_index),
        "CommitIndex": optional(server.commit_index),
        "AppliedIndex": optional(server.applied_index),
        "LastContact": optional(server.last_contact_ms),
        "Voter": server.voter,
        "Healthy": optional(server.healthy),
        "SerfStatus": server.serf_status,
    })
}

/// The body without what changes on every heartbeat, for the hash.
fn without_last_contact(body: &Value) -> Value {
    let mut body = body.clone();
    if let Some(Value::Array(servers)) = body.get_mut("Servers") {
        for server in servers {
            if let Some(fields) = server.as_object_mut() {
                fields.remove("LastContact");
            }
        }
    }
    body
}
