//! What the agent's own endpoints (`/v1/agent/*`) require of a token, in Consul's terms:
//! `agent:read`/`agent:write` on this agent's node for the agent itself, `service:write` on a
//! service's name to register, change or remove it (and its checks), `node:write` on this node
//! for node checks and node maintenance, `operator` for `force-leave`, `acl:write` for the
//! agent's tokens. Lists of local services, checks and members are filtered by `service:read`
//! and `node:read`.

use serde_json::Value;

use crate::http::AppState;
use crate::http::authz::Authz;
use crate::http::error::ApiError;

pub(super) fn agent_read(state: &AppState, authz: &Authz) -> Result<(), ApiError> {
    let node = &state.agent.identity().node_name;
    authz.require(authz.authorizer().agent_read(node), "agent:read", Some(node))
}

pub(super) fn agent_write(state: &AppState, authz: &Authz) -> Result<(), ApiError> {
    let node = &state.agent.identity().node_name;
    authz.require(authz.authorizer().agent_write(node), "agent:write", Some(node))
}

pub(super) fn node_write(state: &AppState, authz: &Authz) -> Result<(), ApiError> {
    let node = &state.agent.identity().node_name;
    authz.require(authz.authorizer().node_write(node), "node:write", Some(node))
}

pub(super) fn service_write(authz: &Authz, name: &str) -> Result<(), ApiError> {
    authz.require(authz.authorizer().service_write(name), "service:write", Some(name))
}

pub(super) fn service_read(authz: &Authz, name: &str) -> Result<(), ApiError> {
    authz.require(authz.authorizer().service_read(name), "service:read", Some(name))
}

/// `service:write` on the local service `id` (an unknown ID passes: the operation answers 404).
pub(super) fn service_write_by_id(state: &AppState, authz: &Authz, id: &str) -> Result<(), ApiError> {
    match state.agent.local_service(id) {
        Some(service) => service_write(authz, &service.registration.name),
        None => Ok(()),
    }
}

/// A local check: `service:write` on its service, or `node:write` on this node.
pub(super) fn check_write_by_id(state: &AppState, authz: &Authz, check_id: &str) -> Result<(), ApiError> {
    let Some(check) = state.agent.local_checks().into_iter().find(|c| c.registration.check_id == check_id) else {
        return Ok(());
    };
    check_write(state, authz, &check.registration.service_id)
}

/// Writing a check bound to `service_id` (empty: a node check).
pub(super) fn check_write(state: &AppState, authz: &Authz, service_id: &str) -> Result<(), ApiError> {
    if service_id.is_empty() {
        return node_write(state, authz);
    }
    match state.agent.local_service(service_id) {
        Some(service) => service_write(authz, &service.registration.name),
        None => node_write(state, authz),
    }
}

/// Keeps the JSON items a token may read: services by `Service`, checks by their `ServiceName`
/// (node checks by `node:read`), members by `Name`.
pub(super) fn readable_service(authz: &Authz, item: &Value) -> bool {
    let name = item.get("Service").and_then(Value::as_str).unwrap_or_default();
    authz.allows_everything() || authz.authorizer().service_read(name)
}

pub(super) fn readable_check(authz: &Authz, item: &Value) -> bool {
    if authz.allows_everything() {
        return true;
    }
    match item.get("ServiceName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        Some(service) => authz.authorizer().service_read(service),
        None => authz.authorizer().node_read(item.get("Node").and_then(Value::as_str).unwrap_or_default()),
    }
}

pub(super) fn readable_member(authz: &Authz, item: &Value) -> bool {
    authz.allows_everything() || authz.authorizer().node_read(item.get("Name").and_then(Value::as_str).unwrap_or_default())
}
