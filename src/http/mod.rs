//! Consul's HTTP API: the route table and the server.
//!
//! `router` is THE route table: every `/v1` path the agent serves, grouped by API family, in one
//! place. Handlers live in one file per family and turn requests into agent operations, catalog
//! queries (through `query::blocking_read`) or Raft commands. Unknown paths get 404 and known
//! paths with the wrong method 405, as in Consul.

pub(crate) mod acl;
pub(crate) mod acl_json;
pub(crate) mod acl_objects;
mod agent;
mod agent_acl;
mod agent_metrics;
mod agent_stats;
mod autopilot;
pub mod authz;
mod body_deadline;
pub(crate) mod catalog;
pub mod check_decode;
pub(crate) mod config;
pub(crate) mod coordinate;
pub mod decode;
pub mod definitions;
pub mod dto;
pub mod error;
mod event;
mod forward;
mod keyring;
mod operator;
mod prepared_query;
mod prepared_query_json;
mod route_timers;
mod health;
mod host;
mod internal_ui;
mod internal_ui_raft;
mod kv;
pub mod query;
pub mod server;
pub(crate) mod session;
mod snapshot;
mod status;
pub(crate) mod txn;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, put};

use crate::agent::Agent;

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub agent: Arc<Agent>,
}

/// The route table.
pub fn router(agent: Arc<Agent>) -> Router {
    let body_bytes_max = agent.config().limits.http_body_bytes_max;
    let host_check = host::HostCheck::for_listen_addrs(&agent.config().client_addrs);
    let route_timers = std::sync::Arc::new(route_timers::RouteTimers::new(!agent.config().telemetry.disable_compat_1_9));
    let state = AppState { agent };
    Router::new()
        // acl
        .route("/v1/acl/bootstrap", put(acl::bootstrap))
        .route("/v1/acl/login", axum::routing::post(acl::login))
        .route("/v1/acl/logout", axum::routing::post(acl::logout))
        .route("/v1/acl/token", put(acl::token_create))
        .route("/v1/acl/tokens", get(acl::token_list))
        .route("/v1/acl/token/{id}", get(acl::token_read).put(acl::token_update).delete(acl::token_delete))
        .route("/v1/acl/token/{id}/clone", put(acl::token_clone))
        .route("/v1/acl/policy", put(acl_objects::policy_create))
        .route("/v1/acl/policies", get(acl_objects::policy_list))
        .route("/v1/acl/policy/name/{name}", get(acl_objects::policy_read_by_name))
        .route("/v1/acl/policy/{id}", get(acl_objects::policy_read).put(acl_objects::policy_update).delete(acl_objects::policy_delete))
        .route("/v1/acl/role", put(acl_objects::role_create))
        .route("/v1/acl/roles", get(acl_objects::role_list))
        .route("/v1/acl/role/name/{name}", get(acl_objects::role_read_by_name))
        .route("/v1/acl/role/{id}", get(acl_objects::role_read).put(acl_objects::role_update).delete(acl_objects::role_delete))
        .route("/v1/acl/templated-policies", get(acl_objects::templated_list))
        .route("/v1/acl/templated-policy/name/{*name}", get(acl_objects::templated_read))
        .route("/v1/acl/templated-policy/preview/{*name}", axum::routing::post(acl_objects::templated_preview))
        .route("/v1/acl/auth-method", put(acl_objects::auth_method_create))
        .route("/v1/acl/auth-methods", get(acl_objects::auth_method_list))
        .route("/v1/acl/auth-method/{name}", get(acl_objects::auth_method_read).put(acl_objects::auth_method_update).delete(acl_objects::auth_method_delete))
        .route("/v1/acl/binding-rule", put(acl_objects::binding_rule_create))
        .route("/v1/acl/binding-rules", get(acl_objects::binding_rule_list))
        .route("/v1/acl/binding-rule/{id}", get(acl_objects::binding_rule_read).put(acl_objects::binding_rule_update).delete(acl_objects::binding_rule_delete))
        // agent
        .route("/v1/agent/self", get(agent::agent_self))
        .route("/v1/agent/members", get(agent::members))
        .route("/v1/agent/host", get(agent::host))
        .route("/v1/agent/version", get(agent::version))
        .route("/v1/agent/leave", put(agent::leave))
        .route("/v1/agent/reload", put(agent::reload))
        .route("/v1/agent/maintenance", put(agent::node_maintenance))
        .route("/v1/agent/metrics", get(agent_metrics::metrics))
        .route("/v1/agent/monitor", get(agent_metrics::monitor))
        .route("/v1/agent/force-leave/{node}", put(agent::force_leave))
        .route("/v1/agent/join/{address}", put(agent::join))
        .route("/v1/agent/token/{kind}", put(agent::token))
        .route("/v1/agent/services", get(agent::services))
        .route("/v1/agent/service/{*id}", get(agent::service))
        .route("/v1/agent/service/register", put(agent::register_service))
        .route("/v1/agent/service/deregister/{*id}", put(agent::deregister_service))
        .route("/v1/agent/service/maintenance/{*id}", put(agent::service_maintenance))
        .route("/v1/agent/health/service/name/{*name}", get(agent::health_by_name))
        .route("/v1/agent/health/service/id/{*id}", get(agent::health_by_id))
        .route("/v1/agent/checks", get(agent::checks))
        .route("/v1/agent/check/register", put(agent::register_check))
        .route("/v1/agent/check/deregister/{*id}", put(agent::deregister_check))
        .route("/v1/agent/check/pass/{*id}", put(agent::check_pass))
        .route("/v1/agent/check/warn/{*id}", put(agent::check_warn))
        .route("/v1/agent/check/fail/{*id}", put(agent::check_fail))
        .route("/v1/agent/check/update/{*id}", put(agent::check_update))
        // catalog
        .route("/v1/catalog/register", put(catalog::register))
        .route("/v1/catalog/deregister", put(catalog::deregister))
        .route("/v1/catalog/datacenters", get(catalog::datacenters))
        .route("/v1/catalog/nodes", get(catalog::nodes))
        .route("/v1/catalog/services", get(catalog::services))
        .route("/v1/catalog/service/{*name}", get(catalog::service))
        .route("/v1/catalog/connect/{*name}", get(catalog::connect))
        .route("/v1/catalog/node/{*node}", get(catalog::node))
        .route("/v1/catalog/node-services/{*node}", get(catalog::node_services))
        .route("/v1/catalog/gateway-services/{*name}", get(catalog::gateway_services))
        // health
        .route("/v1/health/service/{*name}", get(health::service))
        .route("/v1/health/connect/{*name}", get(health::connect))
        .route("/v1/health/ingress/{*name}", get(health::connect))
        .route("/v1/health/checks/{*name}", get(health::checks))
        .route("/v1/health/node/{*node}", get(health::node))
        .route("/v1/health/state/{state}", get(health::state))
        // the dashboard's summaries (Consul's internal UI endpoints) and cairn's Raft view
        .route("/v1/internal/ui/services", get(internal_ui::services))
        .route("/v1/internal/ui/nodes", get(internal_ui::nodes))
        .route("/v1/internal/ui/node/{node}", get(internal_ui::node))
        .route("/v1/internal/ui/catalog-overview", get(internal_ui::catalog_overview))
        .route("/v1/internal/ui/raft", get(internal_ui_raft::raft))
        // kv
        .route("/v1/kv/", get(kv::get).put(kv::put).delete(kv::delete))
        .route("/v1/kv/{*key}", get(kv::get).put(kv::put).delete(kv::delete))
        // txn
        .route("/v1/txn", put(txn::txn))
        // session
        .route("/v1/session/create", put(session::create))
        .route("/v1/session/destroy/{id}", put(session::destroy))
        .route("/v1/session/renew/{id}", put(session::renew))
        .route("/v1/session/info/{id}", get(session::info))
        .route("/v1/session/node/{node}", get(session::node))
        .route("/v1/session/list", get(session::list))
        // prepared queries
        .route("/v1/query", get(prepared_query::list).post(prepared_query::create))
        .route("/v1/query/{id}", get(prepared_query::read).put(prepared_query::update).delete(prepared_query::delete))
        .route("/v1/query/{id}/execute", get(prepared_query::execute))
        .route("/v1/query/{id}/explain", get(prepared_query::explain))
        // config entries
        .route("/v1/config", put(config::apply))
        .route("/v1/config/{kind}", get(config::list))
        .route("/v1/config/{kind}/{name}", get(config::get).delete(config::delete))
        // operator
        .route("/v1/operator/raft/configuration", get(operator::raft_configuration))
        .route("/v1/operator/raft/peer", axum::routing::delete(operator::remove_peer))
        .route("/v1/operator/raft/transfer-leader", axum::routing::post(operator::transfer_leader))
        .route("/v1/operator/autopilot/health", get(autopilot::health))
        .route("/v1/operator/autopilot/state", get(autopilot::autopilot_state))
        .route("/v1/operator/autopilot/configuration", get(autopilot::get_configuration).put(autopilot::set_configuration))
        .route("/v1/operator/usage", get(operator::usage))
        .route("/v1/operator/keyring", get(keyring::list).post(keyring::install).put(keyring::use_key).delete(keyring::remove))
        // snapshot
        .route(
            "/v1/snapshot",
            get(snapshot::save).put(snapshot::restore).layer(DefaultBodyLimit::max(snapshot::SNAPSHOT_RESTORE_BYTES_MAX + 1)),
        )
        // events (agent-local: gossip, not Raft)
        .route("/v1/event/fire/", put(event::fire))
        .route("/v1/event/fire/{*name}", put(event::fire))
        .route("/v1/event/list", get(event::list))
        // network coordinates
        .route("/v1/coordinate/datacenters", get(coordinate::datacenters))
        .route("/v1/coordinate/nodes", get(coordinate::nodes))
        .route("/v1/coordinate/node/{*node}", get(coordinate::node))
        .route("/v1/coordinate/update", put(coordinate::update))
        // status
        .route("/v1/status/leader", get(status::leader))
        .route("/v1/status/peers", get(status::peers))
        // the dashboard
        .route("/", get(ui_root))
        .route("/ui", get(ui_root))
        .route("/ui/", get(ui_asset))
        .route("/ui/{*path}", get(ui_asset))
        // Times every matched route (`api.http`); runs after routing, so it knows the route.
        .route_layer(axum::middleware::from_fn_with_state(route_timers, route_timers::time_request))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), forward::leader_reads))
        .layer(DefaultBodyLimit::max(body_bytes_max))
        .layer(axum::middleware::from_fn(body_deadline::with_deadline))
        .layer(axum::middleware::from_fn_with_state(host_check, host::check))
        .layer(axum::middleware::map_response_with_state(state.clone(), default_headers))
        .with_state(state)
}

/// `/` and `/ui` redirect to the dashboard, as Consul's agent does; with the dashboard off,
/// `/` says so in Consul's words and `/ui` is a 404.
async fn ui_root(State(state): State<AppState>, uri: axum::http::Uri) -> axum::response::Response {
    match (state.agent.config().ui, uri.path()) {
        (true, _) => axum::response::Redirect::permanent("/ui/").into_response(),
        (false, "/") => "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart.".into_response(),
        (false, _) => not_found().await.into_response(),
    }
}

/// The dashboard's files. With `ui_config.enabled = false` there is no dashboard: `/ui/`
/// answers 404 and `/` says so, as Consul's `Index` handler does.
async fn ui_asset(State(state): State<AppState>, path: Option<axum::extract::Path<String>>) -> axum::response::Response {
    let config = state.agent.config();
    if !config.ui {
        return not_found().await.into_response();
    }
    let path = path.map(|axum::extract::Path(p)| p).unwrap_or_default();
    match crate::ui::asset(&path, config.ui_dir.as_deref()) {
        Some(asset) => ([("content-type", asset.mime)], asset.bytes.into_owned()).into_response(),
        None => (StatusCode::NOT_FOUND, "404 page not found").into_response(),
    }
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "404 page not found")
}

/// Headers every Consul response carries: `X-Consul-Default-ACL-Policy` is this agent's
/// `acl.default_policy` (`allow` with ACLs off, as Consul).
async fn default_headers(State(state): State<AppState>, mut response: axum::response::Response) -> axum::response::Response {
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        response = (StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into_response();
    }
    let deny = state.agent.acl().enabled() && state.agent.acl().default_policy() == crate::acl::DefaultPolicy::Deny;
    let policy = HeaderValue::from_static(if deny { "deny" } else { "allow" });
    response.headers_mut().insert("x-consul-default-acl-policy", policy);
    response
}
