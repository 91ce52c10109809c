//! The HTTP API's request timers, by route: Consul's `api.http` (labels `method` and `path`)
//! and, with `telemetry.disable_compat_1.9 = false`, its pre-1.9 `http.<METHOD>.<path parts>`.
//!
//! Consul names a route by its registration pattern (`/v1/kv/`, `/v1/catalog/service/`):
//! the `path` label is the pattern with `/` as `_` and no leading one (`v1_kv_`), the old name's
//! parts are its segments with `_` for a trailing slash (`http.PUT.v1.kv._`). axum's patterns
//! are mapped to Consul's by cutting at the first parameter (`/v1/kv/{*key}` is `/v1/kv/`).
//!
//! Each (route, method) gets its histograms once; a request then costs a map lookup under a
//! read lock and no allocation. Routes and methods are finite, so the map is bounded.
//! A request relayed elsewhere before routing (`forward`) is timed where it is answered: there
//! the API router is nested under the server port's `/fwd`, which the route's name leaves out.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::telemetry::names;

/// Where the server port nests the API router for relayed requests (`rpc::server::router`).
const RELAYED_PREFIX: &str = "/fwd";

/// One route's and method's timers.
#[derive(Clone)]
struct Timers {
    api: metrics::Histogram,
    compat: Option<metrics::Histogram>,
}

/// The timers made so far, by axum route pattern, then method.
pub(super) struct RouteTimers {
    compat: bool,
    by_route: RwLock<HashMap<String, Vec<(Method, Timers)>>>,
}

impl RouteTimers {
    /// `compat`: also record Consul's pre-1.9 names.
    pub(super) fn new(compat: bool) -> RouteTimers {
        RouteTimers { compat, by_route: RwLock::new(HashMap::new()) }
    }

    fn timers(&self, route: &str, method: &Method) -> Timers {
        let known = self.by_route.read().expect("route timers lock poisoned");
        if let Some((_, timers)) = known.get(route).and_then(|methods| methods.iter().find(|(m, _)| m == method)) {
            return timers.clone();
        }
        drop(known);
        let (parts, label) = consul_route(route);
        let timers = Timers {
            api: metrics::histogram!(names::API_HTTP, "method" => method.as_str().to_string(), "path" => label),
            compat: self.compat.then(|| metrics::histogram!(format!("{}{}.{parts}", names::HTTP_COMPAT_PREFIX, method.as_str()))),
        };
        let mut known = self.by_route.write().expect("route timers lock poisoned");
        known.entry(route.to_string()).or_default().push((method.clone(), timers.clone()));
        timers
    }
}

/// The route-layer middleware: times the handler of every matched route.
pub(super) async fn time_request(State(route_timers): State<Arc<RouteTimers>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    if let Some(route) = route {
        let timers = route_timers.timers(route.as_str(), &method);
        let ms = crate::telemetry::ms_since(started);
        timers.api.record(ms);
        if let Some(compat) = timers.compat {
            compat.record(ms);
        }
    }
    response
}

/// An axum route pattern as Consul's pattern would name it: `(parts, path label)`, e.g.
/// `/v1/kv/{*key}` → `("v1.kv._", "v1_kv_")`, `/v1/agent/self` → `("v1.agent.self",
/// "v1_agent_self")`.
fn consul_route(axum_pattern: &str) -> (String, String) {
    let axum_pattern = axum_pattern.strip_prefix(RELAYED_PREFIX).filter(|rest| rest.starts_with('/')).unwrap_or(axum_pattern);
    let segments: Vec<&str> = axum_pattern.trim_start_matches('/').split('/').collect();
    let pattern = match segments.iter().position(|segment| segment.starts_with('{')) {
        Some(first_parameter) => format!("/{}/", segments[..first_parameter].join("/")).replace("//", "/"),
        None => axum_pattern.to_string(),
    };
    // Consul: leading empty segment dropped, any other empty one (a trailing slash) is `_`.
    let parts: Vec<&str> = pattern.split('/').skip(1).map(|part| if part.is_empty() { "_" } else { part }).collect();
    let label = pattern.replace('/', "_");
    (parts.join("."), label.strip_prefix('_').unwrap_or(&label).to_string())
}

#[cfg(test)]
mod tests {
    use super::consul_route;

    #[test]
    fn routes_are_named_as_consul_names_its_patterns() {
        let cases = [
            ("/v1/kv/{*key}", "v1.kv._", "v1_kv_"),
            ("/v1/kv/", "v1.kv._", "v1_kv_"),
            ("/v1/agent/self", "v1.agent.self", "v1_agent_self"),
            ("/v1/acl/token/{id}/clone", "v1.acl.token._", "v1_acl_token_"),
            ("/v1/query/{id}/execute", "v1.query._", "v1_query_"),
            ("/v1/query", "v1.query", "v1_query"),
            ("/", "_", ""),
            ("/fwd/v1/kv/{*key}", "v1.kv._", "v1_kv_"),
        ];
        for (axum_pattern, parts, label) in cases {
            assert_eq!(consul_route(axum_pattern), (parts.to_string(), label.to_string()), "{axum_pattern}");
        }
    }
}
