//! `/v1/kv/*`: the KV store. Reads block like every catalog read; writes are Raft commands.
//!
//! Keys are validated here (no control characters such as `%0a`, bounded length) and values
//! are bounded by `limits.kv_max_value_size`, answered with Consul's 413 message.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::catalog::command::Command;
use crate::http::AppState;
use crate::http::authz::{Authz, filter_items, mark_filtered};
use crate::http::dto::KvOut;
use crate::http::error::ApiError;
use crate::http::query::{Params, QueryMeta, blocking_read_shared, bool_response, check_datacenter, json_body, read_options, set_meta_headers};
use crate::watch::Topic;

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

fn not_found(meta: &QueryMeta) -> Response {
    let mut headers = HeaderMap::new();
    set_meta_headers(&mut headers, meta);
    (StatusCode::NOT_FOUND, headers).into_response()
}

/// `GET /v1/kv/<key>`: one key, `?recurse`, `?keys`, `?raw`, or `?history` (a cairn
/// extension). Every form blocks on exactly the key or prefix it reads, and identical
/// watchers share one rendering of the answer (`blocking_read_shared`).
///
/// ACLs: one key needs `key:read` on it (403 otherwise, as Consul); `?recurse` and `?keys`
/// leave out the keys the token may not read and say so in `X-Consul-Results-Filtered-By-ACLs`
/// (with `acl.enable_key_list_policy`, they first need `key:list` on the prefix).
pub(super) async fn get(State(state): State<AppState>, authz: Authz, path: Option<Path<String>>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let key = key_of(path);
    validate_key(&key)?;
    let listing = params.contains_key("keys") || params.contains_key("recurse");
    // Consul's KVSGet: only a listing may leave out the key, and this is answered at once, so
    // a watcher asking for nothing is not parked for its whole wait.
    if key.is_empty() && !listing {
        return Err(ApiError::BadRequest("Missing key name".into()));
    }
    let options = read_options(&state, &params, &authz)?;
    let pretty = options.pretty;
    if listing && state.agent.config().acl_enable_key_list_policy {
        authz.require(authz.authorizer().key_list(&key), "key:list", Some(&key))?;
    } else if !listing {
        authz.require(authz.authorizer().key_read(&key), "key:read", Some(&key))?;
    }
    let everything = authz.allows_everything();
    let authorizer = authz.authorizer();
    let readable = |k: &str| everything || authorizer.key_read(k);
    let (meta, (body, filtered)) = if params.contains_key("keys") {
        let separator = params.get("separator").cloned().unwrap_or_default();
        let memo_key = format!("keys/{pretty}/{separator}");
        blocking_read_shared(&state, &options, Topic::KvPrefix(key.clone()), &memo_key, |catalog| {
            let (keys, filtered) = filter_items(catalog.kv_keys(&key, Some(separator.as_str())), |k| readable(k));
            (catalog.kv_prefix_index(&key), ((!keys.is_empty()).then(|| Bytes::from(json_body(&keys, pretty))), filtered))
        })
        .await?
    } else if params.contains_key("recurse") {
        blocking_read_shared(&state, &options, Topic::KvPrefix(key.clone()), &format!("recurse/{pretty}"), |catalog| {
            let entries: Vec<KvOut> = catalog.kv_prefix(&key).map(KvOut::from).collect();
            let (entries, filtered) = filter_items(entries, |e| readable(&e.key));
            (catalog.kv_prefix_index(&key), ((!entries.is_empty()).then(|| Bytes::from(json_body(&entries, pretty))), filtered))
        })
        .await?
    } else if params.contains_key("history") {
        blocking_read_shared(&state, &options, Topic::Kv(key.clone()), &format!("history/{pretty}"), |catalog| {
            let versions: Vec<KvOut> = catalog.kv_history(&key).into_iter().map(KvOut::from).collect();
            (catalog.kv_key_index(&key), ((!versions.is_empty()).then(|| Bytes::from(json_body(&versions, pretty))), false))
        })
        .await?
    } else if params.contains_key("raw") {
        blocking_read_shared(&state, &options, Topic::Kv(key.clone()), "raw", |catalog| {
            (catalog.kv_key_index(&key), (catalog.kv_get(&key).map(|e| Bytes::copy_from_slice(&e.value)), false))
        })
        .await?
    } else {
        blocking_read_shared(&state, &options, Topic::Kv(key.clone()), &format!("json/{pretty}"), |catalog| {
            let entry = catalog.kv_get(&key).map(|e| Bytes::from(json_body(&[KvOut::from(e)], pretty)));
            (catalog.kv_key_index(&key), (entry, false))
        })
        .await?
    };
    let Some(body) = body else {
        let mut response = not_found(&meta);
        mark_filtered(response.headers_mut(), filtered);
        return Ok(response);
    };
    let mut headers = HeaderMap::new();
    set_meta_headers(&mut headers, &meta);
    mark_filtered(&mut headers, filtered);
    if params.contains_key("raw") && !params.contains_key("recurse") && !params.contains_key("keys") && !params.contains_key("history") {
        headers.insert("content-type", HeaderValue::from_static("application/octet-stream"));
        headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    } else {
        headers.insert("content-type", HeaderValue::from_static("application/json"));
    }
    Ok((headers, body).into_response())
}

fn parse_u64(params: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| ApiError::BadRequest(format!("Invalid {name} index"))),
    }
}

pub(super) async fn put(State(state): State<AppState>, authz: Authz, path: Option<Path<String>>, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let key = key_of(path);
    if key.is_empty() {
        return Err(ApiError::BadRequest("Missing key name".into()));
    }
    validate_key(&key)?;
    authz.require(authz.authorizer().key_write(&key), "key:write", Some(&key))?;
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

pub(super) async fn delete(State(state): State<AppState>, authz: Authz, path: Option<Path<String>>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let key = key_of(path);
    validate_key(&key)?;
    if params.contains_key("recurse") {
        authz.require(authz.authorizer().key_write_prefix(&key), "key:write", Some(&key))?;
    } else {
        authz.require(authz.authorizer().key_write(&key), "key:write", Some(&key))?;
    }
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
