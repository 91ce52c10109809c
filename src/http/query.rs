//! Common query parameters and blocking queries: `?index`, `?wait`, `?stale`, `?consistent`,
//! `?filter`, `?dc`, `?pretty`, and the `X-Consul-*` response headers.
//!
//! A blocking query re-runs its (pure) query every time the applied Raft index moves, until the
//! result's index passes the client's `index` or the wait runs out. Each wait is bounded by
//! `max_query_time` plus Consul's jitter of up to `wait/16`.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::bexpr::Filter;
use crate::catalog::Catalog;
use crate::config::parse_go_duration;
use crate::http::AppState;
use crate::http::error::ApiError;

/// Raw query parameters. A parameter given with no value (`?recurse`) maps to `""`.
pub type Params = HashMap<String, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    Default,
    Stale,
    Consistent,
}

impl Consistency {
    fn as_str(self) -> &'static str {
        match self {
            Consistency::Default => "leader",
            Consistency::Stale => "stale",
            Consistency::Consistent => "consistent",
        }
    }
}

/// Parsed read options shared by every catalog, health and KV read.
pub struct ReadOptions {
    pub min_index: Option<u64>,
    pub wait: Duration,
    pub consistency: Consistency,
    pub filter: Option<Filter>,
    pub pretty: bool,
}

/// What a read reports in headers.
#[derive(Clone, Copy, Debug)]
pub struct QueryMeta {
    pub index: u64,
    pub known_leader: bool,
    pub last_contact_ms: u64,
    pub consistency: Consistency,
}

/// Rejects `?dc=` naming another datacenter, as a single-datacenter Consul does.
pub fn check_datacenter(state: &AppState, params: &Params) -> Result<(), ApiError> {
    match params.get("dc") {
        Some(dc) if !dc.is_empty() && *dc != state.agent.identity().datacenter => {
            Err(ApiError::Internal("No path to datacenter".into()))
        }
        _ => Ok(()),
    }
}

pub fn read_options(state: &AppState, params: &Params) -> Result<ReadOptions, ApiError> {
    check_datacenter(state, params)?;
    let min_index = match params.get("index") {
        None => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| ApiError::BadRequest("Invalid index".into()))?),
    };
    let config = state.agent.config();
    let wait_max = Duration::from_secs(config.max_query_time_s);
    let wait = match params.get("wait") {
        None => Duration::from_secs(config.default_query_time_s),
        Some(text) => parse_go_duration(text).map_err(|_| ApiError::BadRequest("Invalid wait time".into()))?,
    };
    let wait = wait.min(wait_max);
    let stale = params.contains_key("stale");
    let consistent = params.contains_key("consistent");
    let consistency = match (stale, consistent) {
        (true, true) => return Err(ApiError::BadRequest("Cannot specify ?stale with ?consistent, conflicting semantics.".into())),
        (true, false) => Consistency::Stale,
        (false, true) => Consistency::Consistent,
        (false, false) => Consistency::Default,
    };
    let filter = match params.get("filter") {
        Some(expression) if !expression.is_empty() => Some(
            Filter::parse(expression)
                .map_err(|e| ApiError::BadRequest(format!("Failed to create boolean expression evaluator: {e}")))?,
        ),
        _ => None,
    };
    Ok(ReadOptions { min_index, wait, consistency, filter, pretty: params.contains_key("pretty") })
}

/// Runs `query` against the catalog, blocking per `options`. `query` returns the result's index
/// and value; the index reported is never 0.
pub async fn blocking_read<T>(
    state: &AppState,
    options: &ReadOptions,
    query: impl Fn(&Catalog) -> (u64, T),
) -> Result<(QueryMeta, T), ApiError> {
    let agent = &state.agent;
    let planted_bug = agent.raft().is_some_and(|r| r.faults().consistent_reads_from_follower());
    if options.consistency == Consistency::Consistent && !planted_bug {
        agent.consistent_barrier().await?;
    }
    let jitter_ms = if options.wait.as_millis() >= 16 { rand::random::<u64>() % (options.wait.as_millis() as u64 / 16) } else { 0 };
    let deadline = tokio::time::Instant::now() + options.wait + Duration::from_millis(jitter_ms);
    let mut applied = agent.view().subscribe();
    let mut shutdown = agent.shutdown_requested();
    loop {
        applied.borrow_and_update();
        let (index, value) = agent.view().read(&query);
        let index = index.max(1);
        let done = match options.min_index {
            None | Some(0) => true,
            Some(min) => index > min,
        };
        if done || tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
            return Ok((meta(state, index, options.consistency), value));
        }
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return Ok((meta(state, index, options.consistency), value)) },
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}

fn meta(state: &AppState, index: u64, consistency: Consistency) -> QueryMeta {
    let (known_leader, last_contact_ms) = match state.agent.raft_status() {
        Some(status) => {
            let leads = status.leader.as_ref().is_some_and(|(id, _)| *id == status.node_id);
            let contact = if leads { 0 } else { status.millis_since_quorum_ack.unwrap_or(0) };
            (status.leader.is_some(), contact)
        }
        None => (false, 0),
    };
    QueryMeta { index, known_leader, last_contact_ms, consistency }
}

/// Serializes `value` as Consul does: compact, or indented with `?pretty`.
pub fn json_body<T: Serialize>(value: &T, pretty: bool) -> Vec<u8> {
    let encoded = if pretty { serde_json::to_vec_pretty(value) } else { serde_json::to_vec(value) };
    encoded.expect("serializing JSON values to a Vec cannot fail")
}

/// A JSON response with the blocking-query headers.
pub fn json_response<T: Serialize>(meta: &QueryMeta, value: &T, pretty: bool) -> Response {
    let mut headers = HeaderMap::new();
    set_meta_headers(&mut headers, meta);
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (headers, json_body(value, pretty)).into_response()
}

pub fn set_meta_headers(headers: &mut HeaderMap, meta: &QueryMeta) {
    headers.insert("x-consul-index", HeaderValue::from(meta.index.max(1)));
    headers.insert("x-consul-knownleader", HeaderValue::from_static(if meta.known_leader { "true" } else { "false" }));
    headers.insert("x-consul-lastcontact", HeaderValue::from(meta.last_contact_ms));
    headers.insert("x-consul-effective-consistency", HeaderValue::from_static(meta.consistency.as_str()));
}

/// The `true`/`false` body of a guarded write (KV, config entries); a rejected command is 500.
pub(crate) fn bool_response(outcome: crate::catalog::Outcome) -> Result<Response, ApiError> {
    use crate::catalog::Outcome;
    let ok = match outcome {
        Outcome::Bool(ok) => ok,
        Outcome::Done => true,
        Outcome::Rejected(reason) => return Err(ApiError::Internal(reason)),
        Outcome::Txn(_) | Outcome::TxnOps(_) => return Err(ApiError::Internal("unexpected transaction outcome".into())),
    };
    Ok(([("content-type", "application/json")], if ok { "true" } else { "false" }).into_response())
}

/// Keeps the items whose JSON form matches `filter` (all when there is none).
pub fn apply_filter<T: Serialize>(items: Vec<T>, filter: Option<&Filter>) -> Vec<T> {
    match filter {
        None => items,
        Some(filter) => items
            .into_iter()
            .filter(|item| serde_json::to_value(item).is_ok_and(|doc| filter.matches(&doc)))
            .collect(),
    }
}
