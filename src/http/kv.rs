//! `/v1/kv/*`: the KV store. Reads block like every catalog read; writes are Raft commands.
//!
//! Keys are validated here (no control characters such as `%0a`, bounded length) and values
//! are bounded by `limits.kv_max_value_size`, answered with Consul's 413 message.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::catalog::command::Command;
use crate::catalog::Catalog;
use crate::http::AppState;
use crate::http::dto::KvOut;
use crate::http::error::ApiError;
use crate::http::query::{Params, QueryMeta, blocking_read, bool_response, check_datacenter, json_response, read_options, set_meta_headers};

/// Longest key accepted.
pub(crate) const KV_KEY_BYTES_MAX: usize = 4096;

pub(super) fn validate_key(key: &str) -> Result<(), ApiError> {
    if key.len() > KV_KEY_BYTES_MAX {
        return Err(ApiError::BadRequest(format!("Key too long: {} bytes, max {KV_KEY_BYTES_MAX}", key.len())));
    }
    if key.chars().any(char::is_control) {
        return Err(ApiError::BadRequest("Invalid key: keys may not contain control characters".into()));
    }
    Ok(())
}

fn key_of(path: Option<Path<String>>) -> String {
    path.map(|Path(key)| key).unwrap_or_default()
}

fn kv_index(catalog: &Catalog) -> u64 {
    catalog.indexes().kv
}

fn not_found(meta: &QueryMeta) -> Response {
    let mut headers = HeaderMap::new();
    set_meta_headers(&mut headers, meta);
    (StatusCode::NOT_FOUND, headers).into_response()
}

pub(super) async fn get(State(state): State<AppState>, path: Option<Path<String>>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let key = key_of(path);
    validate_key(&key)?;
    let options = read_options(&state, &params)?;
    if params.contains_key("keys") {
        let separator = params.get("separator").cloned();
        let (meta, keys) = blocking_read(&state, &options, |catalog| (kv_index(catalog), catalog.kv_keys(&key, separator.as_deref()))).await?;
        if keys.is_empty() {
            return Ok(not_found(&meta));
        }
        return Ok(json_response(&meta, &keys, options.pretty));
    }
    if params.contains_key("recurse") {
        let (meta, entries) = blocking_read(&state, &options, |catalog| {
            let entries: Vec<KvOut> = catalog.kv_prefix(&key).map(KvOut::from).collect();
            (kv_index(catalog), entries)
        })
        .await?;
        if entries.is_empty() {
            return Ok(not_found(&meta));
        }
        return Ok(json_response(&meta, &entries, options.pretty));
    }
    let (meta, entry) = blocking_read(&state, &options, |catalog| {
        let entry = catalog.kv_get(&key).cloned();
        let index = entry.as_ref().map_or_else(|| kv_index(catalog), |e| e.modify_index);
        (index, entry)
    })
    .await?;
    let Some(entry) = entry else { return Ok(not_found(&meta)) };
    if params.contains_key("raw") {
        let mut headers = HeaderMap::new();
        set_meta_headers(&mut headers, &meta);
        headers.insert("content-type", HeaderValue::from_static("application/octet-stream"));
        headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        return Ok((headers, entry.value).into_response());
    }
    Ok(json_response(&meta, &[KvOut::from(&entry)], options.pretty))
}

fn parse_u64(params: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| ApiError::BadRequest(format!("Invalid {name} index"))),
    }
}

pub(super) async fn put(State(state): State<AppState>, path: Option<Path<String>>, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let key = key_of(path);
    if key.is_empty() {
        return Err(ApiError::BadRequest("Missing key name".into()));
    }
    validate_key(&key)?;
    let limit = state.agent.config().limits.kv_max_value_size_bytes;
    if body.len() > limit {
        return Err(ApiError::PayloadTooLarge(format!(
            "Request body({} bytes) too large, max size: {limit} bytes. See https://developer.hashicorp.com/consul/docs/agent/config/config-files#kv_max_value_size.",
            body.len()
        )));
    }
    let flags = match params.get("flags") {
        None => 0,
        Some(text) => text.parse().map_err(|_| ApiError::BadRequest("Invalid flags".into()))?,
    };
    let cas_index = parse_u64(&params, "cas")?;
    let value = body.to_vec();
    let command = match (params.get("acquire"), params.get("release")) {
        (Some(_), Some(_)) => return Err(ApiError::BadRequest("Conflicting flags: acquire and release".into())),
        (Some(session), None) => Command::KvLock { key, value, flags, session: session.clone(), now_ms: crate::agent::wall_clock_ms() },
        (None, Some(session)) => Command::KvUnlock { key, value, flags, session: session.clone() },
        (None, None) => Command::KvSet { key, value, flags, cas_index },
    };
    let (_, outcome) = state.agent.write(command).await?;
    bool_response(outcome)
}

pub(super) async fn delete(State(state): State<AppState>, path: Option<Path<String>>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let key = key_of(path);
    validate_key(&key)?;
    let command = if params.contains_key("recurse") {
        Command::KvDeleteTree { prefix: key }
    } else {
        if key.is_empty() {
            return Err(ApiError::BadRequest("Missing key name".into()));
        }
        Command::KvDelete { key, cas_index: parse_u64(&params, "cas")? }
    };
    let (_, outcome) = state.agent.write(command).await?;
    bool_response(outcome)
}
