//! `/v1/acl/*`: bootstrap, tokens, login and logout (policies, roles, templated policies, auth
//! methods and binding rules are in `acl_objects`).
//!
//! Reading ACL objects needs `acl:read`, changing them `acl:write` (a management token);
//! `/v1/acl/token/self` needs only a valid token, and the bootstrap none. With ACLs disabled
//! every route answers 401 `ACL support disabled`, as Consul. Writes are Raft commands
//! (`Command::Acl`); the answer is the object read back from the catalog after the write.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::agent::acl::new_token;
use crate::agent::{new_uuid, wall_clock_ms};
use crate::catalog::Outcome;
use crate::catalog::acl::{ANONYMOUS_TOKEN_ID, AclOp, AclTables, AclToken};
use crate::catalog::command::Command;
use crate::http::AppState;
use crate::http::acl_json::{self as dto, check_uuid, is_uuid};
use crate::http::authz::Authz;
use crate::http::decode::Fields;
use crate::http::error::ApiError;
use crate::http::query::{Params, QueryMeta, json_response, read_options};
use crate::watch::{Table, Topic};

/// 401 unless ACLs are enabled on this agent.
pub(super) fn enabled(state: &AppState) -> Result<(), ApiError> {
    if state.agent.acl().enabled() { Ok(()) } else { Err(ApiError::Unauthorized("ACL support disabled".into())) }
}

pub(super) fn require_read(authz: &Authz) -> Result<(), ApiError> {
    authz.require(authz.authorizer().acl_read(), "acl:read", None)
}

pub(super) fn require_write(authz: &Authz) -> Result<(), ApiError> {
    authz.require(authz.authorizer().acl_write(), "acl:write", None)
}

/// Runs an ACL write; a refusal by the data model is 400 (Consul's "Invalid ..." errors).
pub(super) async fn write(state: &AppState, op: AclOp) -> Result<(), ApiError> {
    let (_, outcome) = state.agent.write(Command::Acl(op)).await?;
    match outcome {
        Outcome::Rejected(reason) if reason.starts_with("ACL bootstrap") => {
            Err(ApiError::Forbidden(format!("Permission denied: {reason}")))
        }
        Outcome::Rejected(reason) if reason.starts_with("Cannot find") => Err(ApiError::Forbidden("ACL not found".into())),
        Outcome::Rejected(reason) => Err(ApiError::BadRequest(reason)),
        _ => Ok(()),
    }
}

/// A JSON answer read from the catalog's ACL tables, blocking like every read.
pub(super) async fn acl_read(
    state: &AppState,
    params: &Params,
    authz: &Authz,
    query: impl Fn(&crate::catalog::acl::AclTables) -> Option<Value>,
) -> Result<Response, ApiError> {
    let options = read_options(state, params, authz)?;
    let (meta, value): (QueryMeta, Option<Value>) =
        crate::http::query::blocking_read(state, &options, vec![Topic::Table(Table::Acl)], |catalog| {
            (catalog.acl().indexes().max().max(1), query(catalog.acl()))
        })
        .await?;
    match value {
        Some(value) => Ok(json_response(&meta, &value, options.pretty)),
        None => Err(ApiError::NotFound(String::new())),
    }
}

fn read_back_token(state: &AppState, accessor_id: &str) -> Result<Response, ApiError> {
    let value = state.agent.view().read(|c| c.acl().token(accessor_id).map(|t| dto::token_json(c.acl(), t)));
    let value = value.ok_or_else(|| ApiError::Internal("token vanished after its write".into()))?;
    Ok(axum::Json(value).into_response())
}

/// `PUT /v1/acl/bootstrap`: the first management token, once per cluster.
pub(super) async fn bootstrap(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    enabled(&state)?;
    let secret = if body.is_empty() { String::new() } else { Fields::parse(&body)?.string(&["BootstrapSecret"])? };
    let secret = if secret.is_empty() { new_uuid() } else { secret };
    if !is_uuid(&secret) {
        return Err(ApiError::BadRequest("BootstrapSecret must be a UUID".into()));
    }
    wait_for_initial_management(&state).await;
    let token = new_token(new_uuid(), secret, "Bootstrap Token (Global Management)", true);
    let accessor_id = token.accessor_id.clone();
    write(&state, AclOp::Bootstrap { token }).await?;
    read_back_token(&state, &accessor_id)
}

/// Longest a bootstrap waits for the leader to create this agent's configured initial
/// management token, in milliseconds.
const BOOTSTRAP_INITIAL_WAIT_MS: u64 = 10_000;

/// An agent configured with `acl.tokens.initial_management` belongs to a cluster the leader
/// bootstraps with that token (Consul's `initializeACLs`, as the leader takes office). A
/// bootstrap that arrives before the leader has written it would otherwise win the race and
/// succeed where Consul answers "ACL bootstrap no longer allowed"; so it waits for the token
/// (bounded), then goes on either way.
async fn wait_for_initial_management(state: &AppState) {
    // A client agent has no ACL tables to watch; its bootstrap is relayed as it is.
    let Some(secret) = state.agent.config().acl_tokens.initial_management.clone().filter(|_| state.agent.raft().is_some()) else { return };
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(BOOTSTRAP_INITIAL_WAIT_MS);
    while std::time::Instant::now() < deadline {
        if state.agent.view().read(|c| c.acl().bootstrapped() || c.acl().token_by_secret(&secret).is_some()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The token a create or update body describes (`existing`: the token being updated).
fn decode_token(state: &AppState, fields: &Fields, existing: Option<&AclToken>) -> Result<AclToken, ApiError> {
    let acl = state.agent.view().read(|c| c.acl().clone());
    decode_token_with(fields, &acl, wall_clock_ms(), existing)
}

/// A token body against the ACL tables `acl` (which its links name) at `now_ms`; `existing`
/// is the token an update replaces. Pure.
pub(crate) fn decode_token_with(fields: &Fields, acl: &AclTables, now_ms: u64, existing: Option<&AclToken>) -> Result<AclToken, ApiError> {
    let accessor_id = fields.string(&["AccessorID"])?;
    let secret_id = fields.string(&["SecretID"])?;
    for (name, id) in [("AccessorID", &accessor_id), ("SecretID", &secret_id)] {
        if !id.is_empty() && !is_uuid(id) {
            return Err(ApiError::BadRequest(format!("Invalid Token: {name} must be a valid UUID")));
        }
    }
    let now = now_ms;
    let ttl = fields.duration(&["ExpirationTTL"])?;
    let at = match fields.get(&["ExpirationTime"]) {
        Some(Value::String(text)) => {
            Some(dto::parse_rfc3339(text).ok_or_else(|| ApiError::BadRequest("Invalid Token: ExpirationTime is not RFC 3339".into()))?)
        }
        _ => None,
    };
    let expiration_time_ms = match (ttl, at) {
        (Some(_), Some(_)) => return Err(ApiError::BadRequest("Invalid Token: Expiration TTL and Expiration Time cannot both be set".into())),
        (Some(ttl), None) => Some(now + u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX / 2)),
        (None, at) => at.or(existing.and_then(|t| t.expiration_time_ms)),
    };
    let local = fields.bool(&["Local"])?;
    if let Some(old) = existing {
        if old.local != local && fields.get(&["Local"]).is_some() {
            return Err(ApiError::BadRequest("Cannot toggle local mode of a token".into()));
        }
    }
    let service_identities = dto::decode_service_identities(fields)?;
    if local && service_identities.iter().any(|s| !s.datacenters.is_empty()) {
        return Err(ApiError::BadRequest("Invalid Token: cannot specify a list of datacenters on a local token".into()));
    }
    Ok(AclToken {
        accessor_id: existing.map_or(accessor_id, |t| t.accessor_id.clone()),
        secret_id: existing.map_or(secret_id, |t| t.secret_id.clone()),
        description: dto::text(fields, &["Description"])?,
        policies: dto::decode_links(fields, &["Policies"], acl, true)?,
        roles: dto::decode_links(fields, &["Roles"], acl, false)?,
        service_identities,
        node_identities: dto::decode_node_identities(fields)?,
        templated_policies: dto::decode_templated(fields)?,
        local: existing.map_or(local, |t| t.local),
        auth_method: existing.map_or(String::new(), |t| t.auth_method.clone()),
        expiration_time_ms,
        create_time_ms: existing.map_or(now, |t| t.create_time_ms),
        create_index: 0,
        modify_index: 0,
    })
}

/// `PUT /v1/acl/token`
pub(super) async fn token_create(State(state): State<AppState>, authz: Authz, body: Bytes) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_write(&authz)?;
    let fields = Fields::parse(&body)?;
    let mut token = decode_token(&state, &fields, None)?;
    if token.accessor_id.is_empty() {
        token.accessor_id = new_uuid();
    }
    if token.secret_id.is_empty() {
        token.secret_id = new_uuid();
    }
    let accessor_id = token.accessor_id.clone();
    write(&state, AclOp::TokenSet { token, create: true }).await?;
    read_back_token(&state, &accessor_id)
}

/// `GET /v1/acl/token/:id` and `/v1/acl/token/self`.
pub(super) async fn token_read(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    enabled(&state)?;
    if id == "self" {
        // Any valid token may read itself (it was resolved by the extractor).
        let accessor_id = authz.resolved.accessor_id.clone();
        return acl_read(&state, &params, &authz, |acl| acl.token(&accessor_id).map(|t| dto::token_json(acl, t))).await
            .map_err(|e| if matches!(e, ApiError::NotFound(_)) { ApiError::Forbidden("ACL not found".into()) } else { e });
    }
    require_read(&authz)?;
    check_uuid(&id)?;
    let hide_secret = !authz.authorizer().acl_write();
    acl_read(&state, &params, &authz, |acl| {
        acl.token(&id).map(|t| {
            let mut out = dto::token_json(acl, t);
            if hide_secret {
                out["SecretID"] = json!("<hidden>");
            }
            out
        })
    })
    .await
    // Consul: an unknown accessor is `acl.ErrNotFound`, 403 "ACL not found".
    .map_err(|e| if matches!(e, ApiError::NotFound(_)) { ApiError::Forbidden("ACL not found".into()) } else { e })
}

/// `PUT /v1/acl/token/:id`
pub(super) async fn token_update(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_write(&authz)?;
    check_uuid(&id)?;
    let fields = Fields::parse(&body)?;
    let body_id = fields.string(&["AccessorID"])?;
    if !body_id.is_empty() && body_id != id {
        return Err(ApiError::BadRequest("Token Accessor ID in URL and payload do not match".into()));
    }
    let existing = state.agent.view().read(|c| c.acl().token(&id).cloned()).ok_or_else(|| ApiError::Forbidden("ACL not found".into()))?;
    let secret = fields.string(&["SecretID"])?;
    if !secret.is_empty() && secret != existing.secret_id {
        return Err(ApiError::BadRequest("Changing a token's SecretID is not permitted".into()));
    }
    let token = decode_token(&state, &fields, Some(&existing))?;
    write(&state, AclOp::TokenSet { token, create: false }).await?;
    read_back_token(&state, &id)
}

/// `PUT /v1/acl/token/:id/clone`
pub(super) async fn token_clone(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_write(&authz)?;
    check_uuid(&id)?;
    let existing = state.agent.view().read(|c| c.acl().token(&id).cloned()).ok_or_else(|| ApiError::Forbidden("ACL not found".into()))?;
    if !existing.auth_method.is_empty() {
        return Err(ApiError::BadRequest("Cannot clone a token created from an auth method".into()));
    }
    let description = if body.is_empty() { String::new() } else { dto::text(&Fields::parse(&body)?, &["Description"])? };
    let mut token = existing;
    token.accessor_id = new_uuid();
    token.secret_id = new_uuid();
    if !description.is_empty() {
        token.description = description;
    }
    token.create_time_ms = wall_clock_ms();
    let accessor_id = token.accessor_id.clone();
    write(&state, AclOp::TokenSet { token, create: true }).await?;
    read_back_token(&state, &accessor_id)
}

/// `DELETE /v1/acl/token/:id`
pub(super) async fn token_delete(State(state): State<AppState>, authz: Authz, Path(id): Path<String>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_write(&authz)?;
    check_uuid(&id)?;
    if id == ANONYMOUS_TOKEN_ID {
        return Err(ApiError::BadRequest("Delete operation not permitted on the anonymous token".into()));
    }
    write(&state, AclOp::TokenDelete { accessor_id: id }).await?;
    Ok(axum::Json(true).into_response())
}

/// `GET /v1/acl/tokens` with `?policy=`, `?role=`, `?authmethod=`, `?servicename=`.
pub(super) async fn token_list(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_read(&authz)?;
    let show_secrets = authz.authorizer().acl_write();
    let wanted = |name: &str| params.get(name).filter(|v| !v.is_empty()).cloned();
    let (policy, role, method, service) = (wanted("policy"), wanted("role"), wanted("authmethod"), wanted("servicename"));
    acl_read(&state, &params, &authz, |acl| {
        let tokens: Vec<Value> = acl
            .tokens()
            .filter(|t| policy.as_ref().is_none_or(|p| t.policies.iter().any(|l| l.id == *p)))
            .filter(|t| role.as_ref().is_none_or(|r| t.roles.iter().any(|l| l.id == *r)))
            .filter(|t| method.as_ref().is_none_or(|m| t.auth_method == *m))
            .filter(|t| service.as_ref().is_none_or(|s| t.service_identities.iter().any(|i| i.service_name == *s)))
            .map(|t| {
                let mut out = dto::token_json(acl, t);
                if !show_secrets {
                    out["SecretID"] = json!("<hidden>");
                }
                out
            })
            .collect();
        Some(Value::Array(tokens))
    })
    .await
}

/// `POST /v1/acl/login`: auth methods are stored but cairn cannot validate their credentials.
pub(super) async fn login(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    enabled(&state)?;
    let fields = Fields::parse(&body)?;
    let method = fields.string(&["AuthMethod"])?;
    let known = state.agent.view().read(|c| c.acl().auth_method(&method).is_some());
    if !known {
        return Err(ApiError::Forbidden(format!("Permission denied: auth method {method:?} not found")));
    }
    Err(ApiError::Internal(format!("cannot log in through auth method {method:?}: cairn does not validate auth method credentials yet")))
}

/// `POST /v1/acl/logout`: deletes a token that a login created.
pub(super) async fn logout(State(state): State<AppState>, authz: Authz) -> Result<Response, ApiError> {
    enabled(&state)?;
    if authz.secret.is_none() {
        return Err(ApiError::Forbidden("ACL not found".into()));
    }
    let accessor_id = authz.resolved.accessor_id.clone();
    let from_login = state.agent.view().read(|c| c.acl().token(&accessor_id).is_some_and(|t| !t.auth_method.is_empty()));
    if !from_login {
        return Err(ApiError::Forbidden("Permission denied: token wasn't created via login".into()));
    }
    write(&state, AclOp::TokenDelete { accessor_id }).await?;
    Ok(axum::Json(true).into_response())
}
