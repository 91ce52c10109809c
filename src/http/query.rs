//! Common query parameters and blocking queries: `?index`, `?wait`, `?stale`, `?consistent`,
//! `?filter`, `?dc`, `?pretty`, and the `X-Consul-*` response headers.
//!
//! A blocking query subscribes to the watch topics its result depends on (`crate::watch`) and
//! re-runs its (pure) query only when one of them changes, until the result's index passes the
//! client's `index` or the wait runs out. Each wait is bounded by
//! `max_query_time` plus Consul's jitter of up to `wait/16`.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::agent::remote_view::ServiceView;
use crate::bexpr::Filter;
use crate::catalog::Catalog;
use crate::config::parse_go_duration;
use crate::http::AppState;
use crate::http::authz::Authz;
use crate::http::error::ApiError;
use crate::watch::{Subscription, Topic};

/// Raw query parameters. A parameter given with no value (`?recurse`) maps to `""`.
pub type Params = HashMap<String, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    Default,
    Stale,
    Consistent,
}

impl Consistency {
    pub(crate) fn as_str(self) -> &'static str {
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
    /// On a client agent: the cached service view to answer from instead of relaying (set
    /// by `http::forward` for the reads it can serve; see `agent::remote_view`).
    pub client_view: Option<ServiceView>,
    /// With ACLs on: the request's token, re-resolved every time a blocking query wakes, so
    /// that a deleted or expired token stops getting data (403 `ACL not found`). `None` for
    /// a token that may do everything.
    pub acl: Option<AclRead>,
}

/// The token a read carries, for the re-checks of a blocking query and its shared answers.
#[derive(Clone)]
pub struct AclRead {
    pub secret: Option<String>,
    pub accessor_id: String,
}

impl ReadOptions {
    /// Whether the read may wait for a change (`?index` given and not 0).
    pub fn blocks(&self) -> bool {
        self.min_index.is_some_and(|index| index > 0)
    }
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

/// The read options of a request made with `authz`'s token.
pub fn read_options(state: &AppState, params: &Params, authz: &Authz) -> Result<ReadOptions, ApiError> {
    let mut options = parse_options(state, params)?;
    options.acl = (state.agent.acl().enabled() && !authz.allows_everything())
        .then(|| AclRead { secret: authz.secret.clone(), accessor_id: authz.resolved.accessor_id.clone() });
    Ok(options)
}

fn parse_options(state: &AppState, params: &Params) -> Result<ReadOptions, ApiError> {
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
    Ok(ReadOptions { min_index, wait, consistency, filter, pretty: params.contains_key("pretty"), client_view: None, acl: None })
}

/// Runs `query` against the catalog, blocking per `options` until a change to one of
/// `topics` moves the result's index past `?index`, or the wait runs out. `query` returns the
/// result's index and value; the index reported is never 0.
pub async fn blocking_read<T>(
    state: &AppState,
    options: &ReadOptions,
    topics: Vec<Topic>,
    query: impl Fn(&Catalog) -> (u64, T),
) -> Result<(QueryMeta, T), ApiError> {
    if let Some(client_view) = &options.client_view {
        // Never blocks: `http::forward` hands over only non-blocking reads.
        let (_, value) = query(&client_view.catalog);
        let last_contact_ms = u64::try_from(client_view.age.as_millis()).unwrap_or(u64::MAX);
        // The view was answered by a server that served it as `?stale`; a client agent knows
        // no leader of its own, and reports one known while its view is being kept fresh.
        return Ok((QueryMeta { index: client_view.index.max(1), known_leader: true, last_contact_ms, consistency: options.consistency }, value));
    }
    let view = state.agent.view();
    // A read that will not block subscribes to nothing.
    let mut topics = if options.blocks() { topics } else { Vec::new() };
    if options.blocks() && options.acl.is_some() {
        topics.push(Topic::Table(crate::watch::Table::Acl));
    }
    let mut subscriptions: Vec<Subscription<'_>> = topics.into_iter().map(|topic| view.watches().subscribe(topic)).collect();
    block(state, options, &mut subscriptions, |subscriptions| {
        for subscription in subscriptions.iter_mut() {
            subscription.mark_seen();
        }
        view.read(&query)
    })
    .await
}

/// [`blocking_read`] on one topic, with identical queries coalesced: among the watchers woken
/// by one change, those with the same `memo_key` share one computation of `query`. So
/// `query` must depend only on `topic`'s data and on what `memo_key` spells out.
pub async fn blocking_read_shared<T: Clone + Send + Sync + 'static>(
    state: &AppState,
    options: &ReadOptions,
    topic: Topic,
    memo_key: &str,
    query: impl Fn(&Catalog) -> (u64, T),
) -> Result<(QueryMeta, T), ApiError> {
    let view = state.agent.view();
    if !options.blocks() {
        // Nothing to share with: answer directly, without a subscription or the memo.
        return block(state, options, &mut [], |_| view.read(&query)).await;
    }
    let mut subscriptions = vec![view.watches().subscribe(topic)];
    if options.acl.is_some() {
        subscriptions.push(view.watches().subscribe(Topic::Table(crate::watch::Table::Acl)));
    }
    block(state, options, &mut subscriptions, |subscriptions| {
        let stamp = subscriptions[0].mark_seen();
        if subscriptions.len() > 1 {
            subscriptions[1].mark_seen();
        }
        // A filtered answer is shared only by watchers with the same token and ACL state.
        let memo_key = match &options.acl {
            None => memo_key.to_string(),
            Some(acl) => format!("{memo_key}/acl:{}:{}", acl.accessor_id, view.read(|c| c.acl().indexes().max())),
        };
        subscriptions[0].memo(stamp, &memo_key, || view.read(&query))
    })
    .await
}

/// The blocking loop shared by both reads: `run` marks the subscriptions seen and queries.
async fn block<'a, T>(
    state: &AppState,
    options: &ReadOptions,
    subscriptions: &mut [Subscription<'a>],
    mut run: impl FnMut(&mut [Subscription<'a>]) -> (u64, T),
) -> Result<(QueryMeta, T), ApiError> {
    let agent = &state.agent;
    let planted_bug = agent.raft().is_some_and(|r| r.faults().consistent_reads_from_follower());
    if options.consistency == Consistency::Consistent && !planted_bug {
        // Boxed: the barrier's future is large, and it would otherwise sit inside every parked
        // blocking query's state.
        Box::pin(agent.consistent_barrier()).await?;
    }
    let jitter_ms = if options.wait.as_millis() >= 16 { rand::random::<u64>() % (options.wait.as_millis() as u64 / 16) } else { 0 };
    let deadline = tokio::time::Instant::now() + options.wait + Duration::from_millis(jitter_ms);
    let mut shutdown = agent.shutdown_requested();
    loop {
        if let Some(acl) = &options.acl {
            // The token may have been deleted or may have expired while this query waited.
            crate::http::authz::resolve(state, acl.secret.as_deref()).await?;
        }
        let (index, value) = run(subscriptions);
        let index = index.max(1);
        let done = match options.min_index {
            None | Some(0) => true,
            Some(min) => index > min,
        };
        if done || tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
            return Ok((meta(state, index, options.consistency), value));
        }
        // Counted while parked: the agent's `rpc.queries_blocking` gauge.
        let _parked = crate::telemetry::BLOCKING_QUERIES.enter();
        tokio::select! {
            _ = any_changed(subscriptions) => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Resolves when any subscription sees a change.
async fn any_changed(subscriptions: &mut [Subscription<'_>]) {
    match subscriptions {
        [] => std::future::pending().await,
        [only] => only.changed().await,
        many => {
            futures::future::select_all(many.iter_mut().map(|s| Box::pin(s.changed()))).await;
        }
    }
}

fn meta(state: &AppState, index: u64, consistency: Consistency) -> QueryMeta {
    let (known_leader, last_contact_ms) = match state.agent.raft() {
        Some(raft) => {
            let view = raft.leader_view();
            let contact = if view.leads() { 0 } else { view.millis_since_quorum_ack.unwrap_or(0) };
            (view.leader_id.is_some(), contact)
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
        Outcome::Txn(_) | Outcome::TxnOps(_) | Outcome::Batch(_) => {
            return Err(ApiError::Internal("unexpected outcome for a single write".into()));
        }
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

/// A content hash as Consul's `X-Consul-ContentHash`: 16 hex digits, stable for equal content
/// within one agent process (clients only ever send back a hash this agent gave them).
pub fn content_hash(body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Hash-based blocking for the agent's own endpoints (`?hash=`): renders the body, and while
/// its hash still equals the client's, waits for the next change to the agent's local state
/// (or `?wait`, bounded by `max_query_time`). `render` returns the JSON body.
pub async fn hash_blocking(
    state: &AppState,
    params: &Params,
    render: impl Fn() -> Result<serde_json::Value, ApiError>,
) -> Result<Response, ApiError> {
    // The agent's own endpoints check their token before they render (`http::agent_acl`).
    let options = parse_options(state, params)?;
    let wanted = params.get("hash").filter(|h| !h.is_empty());
    let deadline = tokio::time::Instant::now() + options.wait;
    let mut changes = state.agent.local_changes();
    let mut shutdown = state.agent.shutdown_requested();
    loop {
        changes.borrow_and_update();
        let value = render()?;
        let body = json_body(&value, options.pretty);
        // A body that carries its own `ContentHash` (agent/service/<id>) reports that one.
        let hash = match value.get("ContentHash").and_then(serde_json::Value::as_str) {
            Some(own) => own.to_string(),
            None => content_hash(&body),
        };
        let unchanged = wanted.is_some_and(|w| *w == hash);
        if !unchanged || tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
            let mut headers = HeaderMap::new();
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            headers.insert("x-consul-contenthash", HeaderValue::from_str(&hash).expect("hex is a valid header value"));
            return Ok((headers, body).into_response());
        }
        let _parked = crate::telemetry::BLOCKING_QUERIES.enter();
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}
