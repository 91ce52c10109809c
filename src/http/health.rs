//! `/v1/health/*`: service instances with their checks, and checks by service, node or state.

use axum::extract::{Extension, Path, Query, State};
use axum::response::Response;
use serde_json::json;

use crate::agent::remote_view::ServiceView;
use crate::catalog::Catalog;
use crate::catalog::model::HealthStatus;
use crate::http::AppState;
use crate::http::authz::{Authz, filter_items, filtered_json};
use crate::http::catalog::readable_instance;
use crate::watch::{Table, Topic};
use crate::http::coordinate::{near_node, sort_by_distance};
use crate::http::dto::{CheckOut, HealthEntryOut, NodeOut, ServiceOut};
use crate::http::error::ApiError;
use crate::http::query::{Params, apply_filter, blocking_read, json_response, read_options};

fn health_index(catalog: &Catalog) -> u64 {
    let i = catalog.indexes();
    i.nodes.max(i.services).max(i.checks)
}

pub(super) async fn service(
    State(state): State<AppState>,
    authz: Authz,
    Path(name): Path<String>,
    Query(params): Query<Params>,
    client_view: Option<Extension<ServiceView>>,
) -> Result<Response, ApiError> {
    let mut options = read_options(&state, &params, &authz)?;
    options.client_view = client_view.map(|Extension(view)| view);
    let tag = params.get("tag").cloned();
    let passing = params.get("passing").is_some_and(|v| v.is_empty() || v == "true" || v == "1");
    let node_meta = params.get("node-meta").cloned();
    let peer = params.get("peer").filter(|p| !p.is_empty()).cloned();
    let near = near_node(&state, &params);
    let (meta, entries) = blocking_read(&state, &options, vec![Topic::Service(name.clone())], |catalog| {
        let entries: Vec<HealthEntryOut> = if peer.is_some() {
            Vec::new()
        } else {
            catalog
                .health_instances(&name)
                .into_iter()
                .filter(|i| tag.as_ref().is_none_or(|t| i.service.tags.contains(t)))
                .filter(|i| {
                    node_meta.as_ref().is_none_or(|pair| {
                        let (k, v) = pair.split_once(':').unwrap_or((pair.as_str(), ""));
                        i.node.meta.get(k).is_some_and(|m| m == v)
                    })
                })
                .filter(|i| !passing || i.checks.iter().all(|c| c.status == HealthStatus::Passing))
                .map(|i| HealthEntryOut {
                    node: NodeOut::from(i.node),
                    service: ServiceOut::from(i.service),
                    checks: i.checks.iter().map(|c| CheckOut::from(*c)).collect(),
                })
                .collect()
        };
        (catalog.service_index(&name), sort_by_distance(catalog, near.as_deref(), entries, |e| &e.node.node))
    })
    .await?;
    let (entries, filtered) = filter_items(entries, |e| readable_instance(&authz, &e.node.node, &e.service.service));
    let entries = apply_filter(entries, options.filter.as_ref());
    Ok(filtered_json(&meta, &entries, options.pretty, filtered))
}

/// cairn has no service mesh yet, so no instance is connect-capable.
pub(super) async fn connect(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    let (meta, ()) = blocking_read(&state, &options, vec![Topic::Table(Table::Services)], |catalog| (health_index(catalog), ())).await?;
    Ok(json_response(&meta, &json!([]), options.pretty))
}

pub(super) async fn checks(State(state): State<AppState>, authz: Authz, Path(name): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    let near = near_node(&state, &params);
    let (meta, checks) = blocking_read(&state, &options, vec![Topic::Service(name.clone())], |catalog| {
        let checks: Vec<CheckOut> = catalog.service_name_checks(&name).into_iter().map(CheckOut::from).collect();
        (catalog.service_index(&name), sort_by_distance(catalog, near.as_deref(), checks, |c| &c.node))
    })
    .await?;
    let (checks, filtered) = filter_items(checks, |c| readable_check(&authz, c));
    let checks = apply_filter(checks, options.filter.as_ref());
    Ok(filtered_json(&meta, &checks, options.pretty, filtered))
}

pub(super) async fn node(State(state): State<AppState>, authz: Authz, Path(node): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    let (meta, checks) = blocking_read(&state, &options, vec![Topic::Node(node.clone())], |catalog| {
        let checks: Vec<CheckOut> = catalog.node_checks(&node).into_iter().map(CheckOut::from).collect();
        (health_index(catalog), checks)
    })
    .await?;
    let (checks, filtered) = filter_items(checks, |c| readable_check(&authz, c));
    let checks = apply_filter(checks, options.filter.as_ref());
    Ok(filtered_json(&meta, &checks, options.pretty, filtered))
}

pub(super) async fn state(State(app): State<AppState>, authz: Authz, Path(wanted): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let wanted = match wanted.as_str() {
        "any" => None,
        other => Some(HealthStatus::parse(other).ok_or_else(|| ApiError::BadRequest(format!("Bad state: {other}")))?),
    };
    let options = read_options(&app, &params, &authz)?;
    let near = near_node(&app, &params);
    let (meta, checks) = blocking_read(&app, &options, vec![Topic::Table(Table::Checks)], |catalog| {
        let checks: Vec<CheckOut> =
            catalog.checks().filter(|c| wanted.is_none_or(|w| c.status == w)).map(CheckOut::from).collect();
        (health_index(catalog), sort_by_distance(catalog, near.as_deref(), checks, |c| &c.node))
    })
    .await?;
    let (checks, filtered) = filter_items(checks, |c| readable_check(&authz, c));
    let checks = apply_filter(checks, options.filter.as_ref());
    Ok(filtered_json(&meta, &checks, options.pretty, filtered))
}

/// Consul's rule for a check in a list: a service check needs `service:read` on its service,
/// a node check `node:read` on its node.
fn readable_check(authz: &Authz, check: &CheckOut) -> bool {
    if authz.allows_everything() {
        return true;
    }
    if check.service_name.is_empty() {
        authz.authorizer().node_read(&check.node)
    } else {
        authz.authorizer().service_read(&check.service_name)
    }
}
