//! `/v1/query`: prepared queries (Consul's `agent/prepared_query_endpoint.go` and the
//! `PreparedQuery` RPC endpoint behind it).
//!
//! ACLs as Consul: a write needs `query:write` on the query's name when it has one or is a
//! template (and, for an update or delete, on the stored query's name too); a list shows only
//! the queries whose name the token may `query:read` (unnamed ones only to a management
//! token), and hides every `Token` (`<hidden>`) unless the token has `acl:write`. Reading one
//! query by ID that has no name needs nothing beyond knowing its ID. Executing needs no
//! `query` permission: the results are what the query's `Token` (else the caller's) may read.
//!
//! Status codes as Consul: 404 `Query not found`; errors from the RPC side (validation, a
//! state-store rule, an unknown ID on update or delete) are 500 with Consul's text; a body
//! that does not decode is 400 `Request decode failed: ...`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::agent::new_uuid;
use crate::agent::prepared_query::{ExecuteError, ExecuteOptions, Executed};
use crate::catalog::command::Command;
use crate::catalog::prepared_query::{PreparedQuery, PreparedQueryOp, ResolveError};
use crate::catalog::{Catalog, Outcome};
use crate::http::AppState;
use crate::http::authz::{Authz, mark_filtered};
use crate::http::dto::{CheckOut, HealthEntryOut, NodeOut, ServiceOut};
use crate::http::error::ApiError;
use crate::http::prepared_query_json::{decode_query, query_json, validate};
use crate::http::query::{Params, QueryMeta, blocking_read, check_datacenter, json_body, json_response, read_options};
use crate::watch::{Table, Topic};

/// Consul's text for an unknown query (`ErrQueryNotFound`).
const QUERY_NOT_FOUND: &str = "Query not found";

fn not_found() -> ApiError {
    ApiError::NotFound(QUERY_NOT_FOUND.into())
}

fn json_ok(value: &Value, params: &Params) -> Response {
    ([("content-type", "application/json")], json_body(value, params.contains_key("pretty"))).into_response()
}

/// `POST /v1/query`: creates a query and answers its new ID.
pub(super) async fn create(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let mut query = decode_query(&body, String::new())?;
    if !query.id.is_empty() {
        return Err(ApiError::Internal("ID must be empty when creating a new prepared query".into()));
    }
    validate(&query)?;
    require_write(&authz, &query)?;
    query.id = state.agent.view().read(|catalog| loop {
        let id = new_uuid();
        if catalog.prepared_query(&id).is_none() {
            break id;
        }
    });
    let id = query.id.clone();
    commit(&state, PreparedQueryOp::Set { query, create: true }).await?;
    Ok(json_ok(&json!({"ID": id}), &params))
}

/// `PUT /v1/query/:id`: replaces a query (the ID comes from the path, not the body).
pub(super) async fn update(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let query = decode_query(&body, id.clone())?;
    require_write(&authz, &query)?;
    require_write_existing(&state, &authz, &id)?;
    validate(&query)?;
    commit(&state, PreparedQueryOp::Set { query, create: false }).await?;
    Ok(StatusCode::OK.into_response())
}

/// `DELETE /v1/query/:id`.
pub(super) async fn delete(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    require_write_existing(&state, &authz, &id)?;
    commit(&state, PreparedQueryOp::Delete { id }).await?;
    Ok(StatusCode::OK.into_response())
}

async fn commit(state: &AppState, op: PreparedQueryOp) -> Result<(), ApiError> {
    match state.agent.write(Command::PreparedQuery(op)).await? {
        (_, Outcome::Rejected(reason)) => Err(ApiError::Internal(reason)),
        _ => Ok(()),
    }
}

/// `query:write` on the query's name, when ACL rules govern it.
fn require_write(authz: &Authz, query: &PreparedQuery) -> Result<(), ApiError> {
    match query.acl_prefix() {
        Some(prefix) => authz.require(authz.authorizer().query_write(prefix), "query:write", Some(prefix)),
        None => Ok(()),
    }
}

/// The stored query must exist, and its name be writable (Consul checks both).
fn require_write_existing(state: &AppState, authz: &Authz, id: &str) -> Result<(), ApiError> {
    let existing = state.agent.view().read(|catalog| catalog.prepared_query(id).cloned());
    let Some(existing) = existing else {
        return Err(ApiError::Internal(format!("Cannot modify non-existent prepared query: '{id}'")));
    };
    require_write(authz, &existing)
}

/// Whether the token may see `query` in a list (Consul's `filterPreparedQueries`).
fn listable(authz: &Authz, query: &PreparedQuery) -> bool {
    authz.authorizer().acl_write() || query.acl_prefix().is_some_and(|prefix| authz.authorizer().query_read(prefix))
}

fn shown(authz: &Authz, query: &PreparedQuery) -> Value {
    query_json(query, !authz.authorizer().acl_write())
}

/// `GET /v1/query`: every query the token may read.
pub(super) async fn list(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    let (meta, queries) = blocking_read(&state, &options, vec![Topic::Table(Table::PreparedQueries)], |catalog: &Catalog| {
        (catalog.prepared_queries_index(), catalog.prepared_queries().cloned().collect::<Vec<_>>())
    })
    .await?;
    let before = queries.len();
    let shown_queries: Vec<Value> = queries.iter().filter(|q| listable(&authz, q)).map(|q| shown(&authz, q)).collect();
    let mut response = json_response(&meta, &shown_queries, options.pretty);
    mark_filtered(response.headers_mut(), shown_queries.len() != before);
    Ok(response)
}

/// `GET /v1/query/:id`: one query by ID, as a one-item list.
pub(super) async fn read(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    let (meta, query) = blocking_read(&state, &options, vec![Topic::Table(Table::PreparedQueries)], |catalog: &Catalog| {
        (catalog.prepared_queries_index(), catalog.prepared_query(&id).cloned())
    })
    .await?;
    let query = query.ok_or_else(not_found)?;
    // With no name, knowing the ID is enough (Consul only redacts the token then).
    if query.acl_prefix().is_some() && !listable(&authz, &query) {
        return Err(ApiError::Forbidden("Permission denied".into()));
    }
    Ok(json_response(&meta, &vec![shown(&authz, &query)], options.pretty))
}

/// `GET /v1/query/:id_or_name/explain`: the query a name resolves to, rendered.
pub(super) async fn explain(State(state): State<AppState>, authz: Authz, Path(name_or_id): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    parse_limit(&params)?;
    let (meta, resolved) = blocking_read(&state, &options, Vec::new(), |catalog: &Catalog| {
        (catalog.prepared_queries_index(), crate::catalog::prepared_query::resolve(catalog, &name_or_id))
    })
    .await?;
    let query = resolved.map_err(resolve_error)?;
    if !listable(&authz, &query) {
        return Err(ApiError::Forbidden("Permission denied".into()));
    }
    let mut body = query_meta_json(&meta, false);
    body["Query"] = shown(&authz, &query);
    Ok(json_response(&meta, &body, options.pretty))
}

/// `GET /v1/query/:id_or_name/execute?near=&limit=`.
pub(super) async fn execute(State(state): State<AppState>, authz: Authz, Path(name_or_id): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    let limit = parse_limit(&params)?;
    let execute_options = ExecuteOptions { caller_secret: authz.secret.clone(), near: params.get("near").cloned(), limit };
    let executed = match state.agent.execute_prepared_query(&name_or_id, &execute_options).await {
        Ok(executed) => executed,
        Err(ExecuteError::Resolve(error)) => return Err(resolve_error(error)),
        Err(ExecuteError::Agent(error)) => return Err(error.into()),
    };
    let meta = QueryMeta { index: executed.index, known_leader: true, last_contact_ms: 0, consistency: options.consistency };
    let body = execute_json(&state, &executed, &meta);
    let mut response = json_response(&meta, &body, options.pretty);
    mark_filtered(response.headers_mut(), executed.filtered);
    Ok(response)
}

/// Consul's `PreparedQueryExecuteResponse`, its `QueryMeta` fields included (Go embeds them).
fn execute_json(state: &AppState, executed: &Executed, meta: &QueryMeta) -> Value {
    let nodes: Vec<HealthEntryOut> = executed
        .instances
        .iter()
        .map(|i| HealthEntryOut { node: NodeOut::from(&i.node), service: ServiceOut::from(&i.service), checks: i.checks.iter().map(CheckOut::from).collect() })
        .collect();
    let mut body = query_meta_json(meta, executed.filtered);
    body["Service"] = json!(executed.query.service.service);
    body["Nodes"] = json!(nodes);
    body["DNS"] = json!({"TTL": executed.query.dns.ttl});
    body["Datacenter"] = json!(state.agent.identity().datacenter);
    // Failover needs WAN federation, which cairn does not have.
    body["Failovers"] = json!(0);
    body
}

fn query_meta_json(meta: &QueryMeta, filtered: bool) -> Value {
    json!({
        "Index": meta.index,
        "LastContact": meta.last_contact_ms * 1_000_000,
        "KnownLeader": meta.known_leader,
        "ConsistencyLevel": meta.consistency.as_str(),
        "NotModified": false,
        "Backend": 0,
        "ResultsFilteredByACLs": filtered,
    })
}

/// `?limit=`: Consul's `strconv.Atoi`, an error answered as 500 `Bad limit: ...`.
fn parse_limit(params: &Params) -> Result<usize, ApiError> {
    match params.get("limit").map(String::as_str) {
        None | Some("") => Ok(0),
        Some(text) => match text.parse::<i64>() {
            Ok(limit) => Ok(usize::try_from(limit).unwrap_or(0)),
            Err(_) => Err(ApiError::Internal(format!("Bad limit: strconv.Atoi: parsing {text:?}: invalid syntax"))),
        },
    }
}

fn resolve_error(error: ResolveError) -> ApiError {
    match error {
        ResolveError::NotFound => not_found(),
        other => ApiError::Internal(other.to_string()),
    }
}
