//! `/v1/snapshot`: a point-in-time backup of the state machine, and restoring one
//! cluster-wide through Raft.
//!
//! The file is cairn's snapshot format (`raft::snapshot`: magic, version, header, rows,
//! CRC-32), not Consul's tar.gz. A restore verifies the whole file first; a corrupt or
//! truncated file is rejected with 400 and changes nothing. The restore is one Raft entry, so it
//! is bounded by `SNAPSHOT_RESTORE_BYTES_MAX` (below the Raft RPC body limit).

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::catalog::{Command, Outcome};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::query::{Params, check_datacenter};
use crate::raft::snapshot;

/// Largest snapshot a restore accepts: it travels as one Raft entry.
pub(crate) const SNAPSHOT_RESTORE_BYTES_MAX: usize = 12 * 1024 * 1024;

pub(super) async fn save(State(state): State<AppState>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let raft = state.agent.raft().ok_or_else(|| ApiError::Internal("this agent is not a server".into()))?;
    let (bytes, index) = raft.export_snapshot().await.map_err(|e| ApiError::Internal(format!("snapshot failed: {e}")))?;
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/octet-stream"));
    headers.insert("x-consul-index", HeaderValue::from(index.max(1)));
    Ok((headers, bytes).into_response())
}

pub(super) async fn restore(State(state): State<AppState>, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    if body.len() > SNAPSHOT_RESTORE_BYTES_MAX {
        return Err(ApiError::PayloadTooLarge(format!("snapshot of {} bytes exceeds the {SNAPSHOT_RESTORE_BYTES_MAX} byte restore limit", body.len())));
    }
    let (_, rows) = snapshot::decode(&body).map_err(|e| ApiError::BadRequest(format!("invalid snapshot: {e}")))?;
    let (_, outcome) = state.agent.write(Command::Restore { rows }).await?;
    match outcome {
        Outcome::Rejected(reason) => Err(ApiError::BadRequest(format!("invalid snapshot: {reason}"))),
        _ => Ok(StatusCode::OK.into_response()),
    }
}
