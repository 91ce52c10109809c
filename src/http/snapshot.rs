//! `/v1/snapshot`: a point-in-time backup of the state machine, and restoring one
//! cluster-wide through Raft.
//!
//! The file is Consul's archive (`raft::archive`: a gzipped tar of `meta.json`, `state.bin`
//! and `SHA256SUMS`), with cairn's own state inside. A restore also takes a bare cairn
//! snapshot, the format saved before. It verifies the whole file first (checksums, every
//! limit while unpacking): a damaged file gets 400, one over a limit (a gzip bomb included)
//! 413, and either changes nothing. The restore is one Raft entry, so the body is bounded by
//! `SNAPSHOT_RESTORE_BYTES_MAX` and the state it unpacks to by `SNAPSHOT_STATE_BYTES_MAX`.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::catalog::{Command, Outcome};
use crate::http::AppState;
use crate::http::authz::Authz;
use crate::http::error::ApiError;
use crate::http::query::{Params, check_datacenter};
use crate::raft::archive::{self, ArchiveError};

/// Largest snapshot body a restore accepts (packed); what it unpacks to is bounded by
/// `archive::SNAPSHOT_STATE_BYTES_MAX`, as it travels as one Raft entry.
pub(crate) const SNAPSHOT_RESTORE_BYTES_MAX: usize = archive::SNAPSHOT_STATE_BYTES_MAX;

/// Saving or restoring a snapshot needs a management token (`acl:write`), as in Consul.
pub(super) async fn save(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    authz.require(authz.authorizer().snapshot(), "acl:write", None)?;
    let raft = state.agent.raft().ok_or_else(|| ApiError::Internal("this agent is not a server".into()))?;
    let (bytes, index) = raft.export_snapshot(crate::agent::wall_clock_ms()).await.map_err(|e| ApiError::Internal(format!("snapshot failed: {e}")))?;
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/octet-stream"));
    headers.insert("x-consul-index", HeaderValue::from(index.max(1)));
    Ok((headers, bytes).into_response())
}

/// Restores at once on this agent: the body of each is buffered whole, so only this many
/// bodies of up to [`SNAPSHOT_RESTORE_BYTES_MAX`] are ever held; another restore meanwhile gets
/// 429 before its body is read.
const SNAPSHOT_RESTORES_IN_FLIGHT_MAX: usize = 1;
static RESTORES_IN_FLIGHT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(SNAPSHOT_RESTORES_IN_FLIGHT_MAX);

pub(super) async fn restore(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>, body: axum::body::Body) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    authz.require(authz.authorizer().snapshot(), "acl:write", None)?;
    let Ok(_turn) = RESTORES_IN_FLIGHT.try_acquire() else {
        return Err(ApiError::TooManyRequests("another snapshot restore is in progress on this agent; retry when it is done".into()));
    };
    let body = axum::body::to_bytes(body, SNAPSHOT_RESTORE_BYTES_MAX + 1).await.map_err(|e| ApiError::BadRequest(format!("snapshot body: {e}")))?;
    if body.len() > SNAPSHOT_RESTORE_BYTES_MAX {
        return Err(ApiError::PayloadTooLarge(format!("snapshot of {} bytes exceeds the {SNAPSHOT_RESTORE_BYTES_MAX} byte restore limit", body.len())));
    }
    // Unpacking and hashing up to the limits takes tens of milliseconds: off the runtime.
    let opened = tokio::task::spawn_blocking(move || archive::open(&body))
        .await
        .map_err(|e| ApiError::Internal(format!("snapshot verification stopped: {e}")))?
        .map_err(|error| match error {
            ArchiveError::TooLarge { .. } => ApiError::PayloadTooLarge(format!("invalid snapshot: {error}")),
            other => ApiError::BadRequest(format!("invalid snapshot: {other}")),
        })?;
    let (_, outcome) = state.agent.write(Command::Restore { rows: opened.rows }).await?;
    match outcome {
        Outcome::Rejected(reason) => Err(ApiError::BadRequest(format!("invalid snapshot: {reason}"))),
        _ => Ok(StatusCode::OK.into_response()),
    }
}
