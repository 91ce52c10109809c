//! `/v1/session/*`: sessions, the owners of KV locks.
//!
//! Sessions are created, listed, renewed and destroyed; destroying one releases or deletes its
//! locks, and the leader ends a TTL session that is not renewed (`agent::leader`).
//!
//! A TTL outside `[session_ttl_min, 24h]` is refused with Consul's 500 `Invalid Session TTL
//! '<nanoseconds>', must be between [<min>=24h0m0s]`. The TTL is kept to the millisecond
//! (`Command::SessionCreateExact`, format 2), so `12.5s` stays `12.5s`; while a server of an
//! older release remains, `Agent::write` proposes the format 1 command, rounded up to `13s`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::agent::new_uuid;
use crate::checks::go_duration_text;
use crate::catalog::command::{Command, SessionRequest};
use crate::catalog::model::SessionBehavior;
use crate::catalog::{Catalog, Outcome};
use crate::http::AppState;
use crate::http::authz::{Authz, filter_items, filtered_json};
use crate::watch::{Table, Topic};
use crate::http::decode::Fields;
use crate::http::dto::SessionOut;
use crate::http::error::ApiError;
use crate::http::query::{Params, blocking_read, check_datacenter, json_body, read_options};

/// Consul's upper bound on a session TTL (`structs.SessionTTLMax`).
pub(crate) const SESSION_TTL_MAX: Duration = Duration::from_secs(86_400);
/// Consul's default lock delay.
const LOCK_DELAY_MS_DEFAULT: u64 = 15_000;

fn sessions_index(catalog: &Catalog) -> u64 {
    catalog.indexes().sessions
}

pub(super) async fn create(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let id = new_uuid();
    let session = decode_session(&body, id.clone(), &state.agent.identity().node_name, Duration::from_millis(state.agent.config().session_ttl_min_ms))?;
    authz.require(authz.authorizer().session_write(&session.request.node), "session:write", Some(&session.request.node))?;
    // The exact TTL needs format 2: `Agent::write` rounds it up while an older server remains.
    let (_, outcome) = state.agent.write(session.into_command()).await?;
    if let Outcome::Rejected(reason) = outcome {
        return Err(ApiError::Internal(reason));
    }
    Ok(([("content-type", "application/json")], json_body(&json!({"ID": id}), params.contains_key("pretty"))).into_response())
}

/// The body of `PUT /v1/session/create` (empty: every default), as the session `id`, with
/// `own_node` as the default node and `ttl_min` as the shortest TTL. Pure.
pub(crate) fn decode_session(body: &[u8], id: String, own_node: &str, ttl_min: Duration) -> Result<NewSession, ApiError> {
    let fields = if body.iter().all(u8::is_ascii_whitespace) { Fields::parse(b"{}")? } else { Fields::parse(body)? };
    let node = match fields.name(&["Node"])? {
        node if node.is_empty() => own_node.to_string(),
        node => node,
    };
    let node_checks = match fields.get(&["NodeChecks", "Checks"]) {
        None => vec![crate::agent::LEADER_OWNED_CHECK_ID.to_string()],
        Some(_) => {
            let mut checks = fields.strings(&["NodeChecks"])?;
            checks.extend(fields.strings(&["Checks"])?);
            checks
        }
    };
    let mut service_checks = Vec::new();
    if let Some(serde_json::Value::Array(items)) = fields.get(&["ServiceChecks"]) {
        for item in items {
            service_checks.push(Fields::from_value(item.clone(), "ServiceChecks")?.name(&["ID"])?);
        }
    }
    let behavior = match fields.string(&["Behavior"])?.as_str() {
        "" | "release" => SessionBehavior::Release,
        "delete" => SessionBehavior::Delete,
        other => return Err(ApiError::BadRequest(format!("Invalid Behavior setting '{other}'"))),
    };
    let ttl_ms = session_ttl_ms(&fields, ttl_min)?;
    let lock_delay_ms = match fields.duration(&["LockDelay"])? {
        None => LOCK_DELAY_MS_DEFAULT,
        // Consul reads a bare number below one second as seconds.
        Some(delay) if delay.as_nanos() > 0 && delay.as_nanos() < 1_000_000_000 && fields.get(&["LockDelay"]).is_some_and(|v| v.is_number()) => {
            delay.as_nanos() as u64 * 1000
        }
        Some(delay) => delay.as_millis() as u64,
    };
    let ttl_s = ttl_ms.div_ceil(1000);
    let request = SessionRequest { id, name: fields.string(&["Name"])?, node, node_checks, service_checks, lock_delay_ms, behavior, ttl_s };
    Ok(NewSession { request, ttl_ms })
}

/// A decoded `session/create`: the request (its `ttl_s` rounded up, for format 1) and the
/// exact TTL.
pub(crate) struct NewSession {
    pub request: SessionRequest,
    pub ttl_ms: u64,
}

impl NewSession {
    pub(crate) fn into_command(self) -> Command {
        Command::SessionCreateExact { request: self.request, ttl_ms: self.ttl_ms }
    }
}

/// The session's TTL in whole seconds (0: none), checked as Consul's `Session.Apply` does:
/// a TTL that does not parse or lies outside `[ttl_min, SESSION_TTL_MAX]` is a 500 with
/// Consul's words. A fractional second is rounded up (see the module docs).
/// The TTL in milliseconds (0: none), rounded up to the next millisecond.
fn session_ttl_ms(fields: &Fields, ttl_min: Duration) -> Result<u64, ApiError> {
    let ttl = match fields.get(&["TTL"]) {
        None | Some(serde_json::Value::Null) => return Ok(0),
        Some(serde_json::Value::String(text)) if text.is_empty() => return Ok(0),
        Some(serde_json::Value::String(text)) => crate::config::parse_go_duration(text)
            .map_err(|_| ApiError::Internal(format!("Session TTL '{text}' invalid: time: invalid duration \"{text}\"")))?,
        // Consul's `TTL` is a string: anything else fails to decode.
        Some(_) => return Err(ApiError::BadRequest("Request decode failed: field \"TTL\" must be a duration such as \"10s\"".into())),
    };
    if !ttl.is_zero() && (ttl < ttl_min || ttl > SESSION_TTL_MAX) {
        let (min, max) = (go_duration_text(ttl_min), go_duration_text(SESSION_TTL_MAX));
        return Err(ApiError::Internal(format!("Invalid Session TTL '{}', must be between [{min}={max}]", ttl.as_nanos())));
    }
    Ok(ttl.as_nanos().div_ceil(1_000_000) as u64)
}

pub(super) async fn destroy(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    require_session_write(&state, &authz, &id)?;
    state.agent.write(Command::SessionDestroy { session: id, now_ms: crate::agent::wall_clock_ms() }).await?;
    Ok(([("content-type", "application/json")], "true").into_response())
}

pub(super) async fn renew(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    require_session_write(&state, &authz, &id)?;
    if !state.agent.renew_session(&id) {
        return Ok((StatusCode::NOT_FOUND, format!("Session id '{id}' not found")).into_response());
    }
    let session = state.agent.view().read(|catalog| catalog.session(&id).map(SessionOut::from));
    match session {
        Some(session) => Ok(([("content-type", "application/json")], json_body(&[session], params.contains_key("pretty"))).into_response()),
        None => Ok((StatusCode::NOT_FOUND, format!("Session id '{id}' not found")).into_response()),
    }
}

pub(super) async fn info(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    let (meta, sessions) = blocking_read(&state, &options, vec![Topic::Table(Table::Sessions)], |catalog| {
        (sessions_index(catalog), catalog.session(&id).map(SessionOut::from).into_iter().collect::<Vec<_>>())
    })
    .await?;
    let (sessions, filtered) = filter_items(sessions, |s| authz.authorizer().session_read(&s.node));
    Ok(filtered_json(&meta, &sessions, options.pretty, filtered))
}

pub(super) async fn node(State(state): State<AppState>, authz: Authz, Path(node): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    let (meta, sessions) = blocking_read(&state, &options, vec![Topic::Table(Table::Sessions)], |catalog| {
        let sessions: Vec<SessionOut> = catalog.node_sessions(&node).map(SessionOut::from).collect();
        (sessions_index(catalog), sessions)
    })
    .await?;
    let (sessions, filtered) = filter_items(sessions, |s| authz.authorizer().session_read(&s.node));
    Ok(filtered_json(&meta, &sessions, options.pretty, filtered))
}

pub(super) async fn list(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    let (meta, sessions) = blocking_read(&state, &options, vec![Topic::Table(Table::Sessions)], |catalog| {
        (sessions_index(catalog), catalog.sessions().map(SessionOut::from).collect::<Vec<_>>())
    })
    .await?;
    let (sessions, filtered) = filter_items(sessions, |s| authz.authorizer().session_read(&s.node));
    Ok(filtered_json(&meta, &sessions, options.pretty, filtered))
}

/// Destroying or renewing a session needs `session:write` on its node (an unknown session
/// passes, and the operation reports it as Consul does).
fn require_session_write(state: &AppState, authz: &Authz, id: &str) -> Result<(), ApiError> {
    let node = state.agent.view().read(|catalog| catalog.session(id).map(|s| s.node.clone()));
    match node {
        Some(node) => authz.require(authz.authorizer().session_write(&node), "session:write", Some(&node)),
        None => Ok(()),
    }
}
