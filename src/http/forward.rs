//! Relaying API requests to the server that must answer them (the decision itself is
//! `agent::role`'s `read_route`).
//!
//! On a server, Consul's consistency modes:
//! - default and `?consistent`: answered by the leader. A server that is not the leader
//!   relays the whole request to the leader over the server port (`/fwd/...`, mounted by
//!   `daemon`), so blocking queries, filters and headers behave exactly as on the leader;
//! - `?stale`: answered by whichever server receives it, with `X-Consul-LastContact` and
//!   `X-Consul-KnownLeader` saying how fresh it is.
//!
//! On a client agent, which has no catalog of its own, every request outside the agent's own
//! endpoints (`/v1/agent/`, `/v1/event/`, the dashboard) is relayed whole, body included, to a
//! server, which applies the modes above. One exception: a non-blocking `?stale` or `?cached`
//! read of `/v1/health/service/:s` or `/v1/catalog/service/:s` (without `?near` or `?peer`)
//! is answered from the client's cached view of that service (`agent::remote_view`, the one
//! DNS uses), kept fresh by blocking reads on the servers: once warm it costs no round trip.
//! `?cached` adds Consul's `X-Cache: HIT|MISS` and `Age` headers.
//!
//! With no leader, a request waits up to `rpc_hold_timeout` for one, then gets Consul's 500
//! `No cluster leader`; a client that knows no server answers 500 `No known Consul servers`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::agent::role::{Consistency, ReadRoute};
use crate::http::AppState;
use crate::rpc::client::Relayed;

/// Marks a relayed request: [`HOP_FROM_SERVER`] is never relayed again; [`HOP_FROM_CLIENT`]
/// (a client agent relayed it to some server) may be relayed once more, to the leader.
pub(crate) const FORWARDED_HEADER: &str = "x-cairn-forwarded";
const HOP_FROM_SERVER: &str = "1";
const HOP_FROM_CLIENT: &str = "client";
/// Read endpoints answered by the leader unless `?stale`. A snapshot is the leader's (Consul:
/// "taken on the leader unless ?stale"), and autopilot's health, state and configuration and
/// the usage counts are the leader's view too, as are the dashboard's summaries and Raft view.
const LEADER_READ_PREFIXES: [&str; 11] = [
    "/v1/internal/ui/",
    "/v1/catalog/",
    "/v1/health/",
    "/v1/kv",
    "/v1/session/",
    "/v1/config/",
    "/v1/coordinate/",
    "/v1/query",
    "/v1/snapshot",
    "/v1/operator/autopilot/",
    "/v1/operator/usage",
];
/// How long a forwarded request may take beyond its own blocking wait.
const FORWARD_MARGIN_S: u64 = 30;
/// Largest response relayed from the leader.
const FORWARD_RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// What a client agent answers itself; everything else goes to a server. A coordinate update
/// is one: as Consul's agent turns it into a `Coordinate.Update` RPC to a server, the handler
/// writes through `Agent::write`, which a client sends to a server.
const CLIENT_LOCAL_PREFIXES: [&str; 4] = ["/v1/agent/", "/v1/event/", "/ui", "/v1/coordinate/update"];

fn wants_leader(request: &Request) -> bool {
    let path = request.uri().path();
    let query = request.uri().query().unwrap_or("");
    // Session renewals restart a timer that only the leader keeps.
    let renew = request.method() == Method::PUT && path.starts_with("/v1/session/renew/");
    let read = request.method() == Method::GET
        && LEADER_READ_PREFIXES.iter().any(|p| path.starts_with(p))
        && !query.split('&').any(|pair| pair == "stale" || pair.starts_with("stale="));
    (read || renew) && request.headers().get(FORWARDED_HEADER).is_none_or(|hop| hop == HOP_FROM_CLIENT)
}

/// Whether the query string has the parameter `name` (with or without a value).
fn query_has(query: &str, name: &str) -> bool {
    query.split('&').any(|pair| pair.split_once('=').map_or(pair, |(key, _)| key) == name)
}

/// Read paths a client agent may answer from its service view: `/v1/<prefix><service>`.
const CLIENT_VIEW_PREFIXES: [&str; 2] = ["/v1/health/service/", "/v1/catalog/service/"];

/// The service a client agent answers this request for from its cached view, if it may: a
/// non-blocking `GET` with `?stale` or `?cached`, no `?near` (the view has no coordinates) and
/// no `?peer`, for a plain service name (anything percent-encoded is relayed).
fn client_view_service(request: &Request) -> Option<String> {
    let query = request.uri().query().unwrap_or("");
    let blocking = query.split('&').any(|pair| pair.strip_prefix("index=").is_some_and(|index| index != "0"));
    let wanted = query_has(query, "stale") || query_has(query, "cached");
    if request.method() != Method::GET || !wanted || blocking || query_has(query, "near") || query_has(query, "peer") || query_has(query, "consistent") {
        return None;
    }
    let path = request.uri().path();
    let name = CLIENT_VIEW_PREFIXES.iter().find_map(|prefix| path.strip_prefix(prefix))?;
    let plain = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    plain.then(|| name.to_string())
}

/// True when a client agent must relay the request to a server.
fn client_relays(request: &Request) -> bool {
    let path = request.uri().path();
    path != "/" && !CLIENT_LOCAL_PREFIXES.iter().any(|p| path.starts_with(p)) && request.headers().get(FORWARDED_HEADER).is_none()
}

pub(super) async fn leader_reads(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let client = state.agent.raft().is_none();
    if client && let Some(service) = client_view_service(&request) {
        if let Some(Ok(view)) = state.agent.service_view(&service).await {
            let cached = query_has(request.uri().query().unwrap_or(""), "cached");
            let (hit, age_s) = (view.hit, view.age.as_secs());
            request.extensions_mut().insert(view);
            let mut response = next.run(request).await;
            if cached {
                let headers = response.headers_mut();
                headers.insert("x-cache", HeaderValue::from_static(if hit { "HIT" } else { "MISS" }));
                headers.insert("age", HeaderValue::from(age_s));
            }
            return response;
        }
        // No view (no server answered): relay, which fails over or reports the error.
    }
    if !(if client { client_relays(&request) } else { wants_leader(&request) }) {
        return next.run(request).await;
    }
    let query = request.uri().query().unwrap_or("");
    let consistency = if query_has(query, "stale") {
        Consistency::Stale
    } else if query_has(query, "consistent") {
        Consistency::Consistent
    } else {
        Consistency::Default
    };
    if consistency == Consistency::Consistent && state.agent.raft().is_some_and(|raft| raft.faults().consistent_reads_from_follower()) {
        // A bug planted on purpose (fault injection only): see `rpc::fault`.
        return next.run(request).await;
    }
    // Decide first, holding nothing across the wait: a parked blocking query keeps this
    // future alive, so its size is per-watcher memory.
    match state.agent.read_route(consistency).await {
        Ok(ReadRoute::Local) => next.run(request).await,
        // Boxed: the relaying future (an HTTP client call) is large and rarely needed.
        Ok(ReadRoute::Relay(addr)) => Box::pin(relay(&state, addr, request)).await,
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

/// Relays the request to a server's `/fwd`; a client agent fails over to another server
/// while the chosen one cannot be reached (the request never arrived there).
async fn relay(state: &AppState, addr: String, request: Request) -> Response {
    let mut path_and_query = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    if state.agent.raft().is_none() {
        // `?near=_agent` means this client's node, not the server's that answers.
        path_and_query = resolve_near_agent(&path_and_query, &state.agent.identity().node_name);
    }
    let wait_s = state.agent.config().max_query_time_s;
    let timeout = Duration::from_secs(wait_s + FORWARD_MARGIN_S);
    let mut headers = HeaderMap::new();
    for (name, value) in request.headers() {
        if name == "x-consul-token" || name == "authorization" || name == "x-consul-namespace" || name == "content-type" {
            headers.insert(name.clone(), value.clone());
        }
    }
    // A client's relay may be relayed once more, by a follower to its leader; a server's never.
    let hop = if state.agent.raft().is_some() { HOP_FROM_SERVER } else { HOP_FROM_CLIENT };
    headers.insert(FORWARDED_HEADER, HeaderValue::from_static(hop));
    let method = request.method().clone();
    let body_bytes_max = state.agent.config().limits.http_body_bytes_max;
    let body = match axum::body::to_bytes(request.into_body(), body_bytes_max).await {
        Ok(body) => body,
        Err(error) => return (StatusCode::PAYLOAD_TOO_LARGE, format!("request body refused: {error}")).into_response(),
    };
    let mut targets = vec![addr.clone()];
    targets.extend(state.agent.other_servers(&addr));
    let mut last_error = None;
    for target in targets {
        match state.agent.rpc().forward_http(&target, method.clone(), &path_and_query, headers.clone(), body.clone(), timeout).await {
            Ok(relayed) => return relayed_response(relayed),
            Err(error) if error.not_delivered() => last_error = Some(error),
            Err(error) => return (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
        }
    }
    let error = last_error.map_or_else(|| "No known Consul servers".to_string(), |e| e.to_string());
    (StatusCode::INTERNAL_SERVER_ERROR, error).into_response()
}

/// `path_and_query` with a `near=_agent` pair naming `node` instead (percent-encoded).
fn resolve_near_agent(path_and_query: &str, node: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else { return path_and_query.to_string() };
    let wanted = format!("near={}", crate::http::coordinate::NEAR_AGENT);
    if !query.split('&').any(|pair| pair == wanted) {
        return path_and_query.to_string();
    }
    let encoded: String = node
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    let pairs: Vec<String> =
        query.split('&').map(|pair| if pair == wanted { format!("near={encoded}") } else { pair.to_string() }).collect();
    format!("{path}?{}", pairs.join("&"))
}

fn relayed_response(relayed: Relayed) -> Response {
    if relayed.body.len() > FORWARD_RESPONSE_BYTES_MAX {
        return (StatusCode::INTERNAL_SERVER_ERROR, "leader response too large").into_response();
    }
    let mut response = Response::new(Body::from(relayed.body));
    *response.status_mut() = relayed.status;
    for (name, value) in relayed.headers.iter() {
        if name.as_str().starts_with("x-consul-") || name == "content-type" {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response.headers_mut().insert(FORWARDED_HEADER, HeaderValue::from_static(HOP_FROM_SERVER));
    response
}

#[cfg(test)]
mod tests {
    use super::{client_view_service, resolve_near_agent};

    fn get(uri: &str) -> axum::extract::Request {
        axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn only_non_blocking_stale_service_reads_come_from_a_clients_view() {
        for (uri, answered) in [
            ("/v1/health/service/web?stale", Some("web")),
            ("/v1/catalog/service/web-1?cached&passing", Some("web-1")),
            ("/v1/health/service/web?stale&index=0", Some("web")),
            ("/v1/health/service/web", None),
            ("/v1/health/service/web?stale&index=12", None),
            ("/v1/health/service/web?stale&near=_agent", None),
            ("/v1/health/service/web?stale&peer=p", None),
            ("/v1/health/service/we%20b?stale", None),
            ("/v1/health/checks/web?stale", None),
            ("/v1/health/service/?stale", None),
            ("/v1/health/service/web?stalemate", None),
        ] {
            assert_eq!(client_view_service(&get(uri)).as_deref(), answered, "{uri}");
        }
        let put = axum::http::Request::put("/v1/health/service/web?stale").body(axum::body::Body::empty()).unwrap();
        assert_eq!(client_view_service(&put), None);
    }

    #[test]
    fn near_agent_names_the_relaying_client() {
        assert_eq!(resolve_near_agent("/v1/catalog/nodes?near=_agent&stale", "c 1"), "/v1/catalog/nodes?near=c%201&stale");
        assert_eq!(resolve_near_agent("/v1/catalog/nodes?near=other", "c1"), "/v1/catalog/nodes?near=other");
        assert_eq!(resolve_near_agent("/v1/catalog/nodes", "c1"), "/v1/catalog/nodes");
    }
}
