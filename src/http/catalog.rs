//! `/v1/catalog/*`: the committed catalog, read with blocking queries and written through Raft.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::agent::remote_view::ServiceView;
use crate::catalog::command::{Command, Registration};
use crate::catalog::{Catalog, Outcome};
use crate::http::AppState;
use crate::http::authz::{Authz, filter_items, filtered_json};
use crate::watch::{Table, Topic};
use crate::http::coordinate::{near_node, sort_by_distance};
use crate::http::decode::{self, Fields};
use crate::http::dto::{CatalogServiceOut, NodeOut, ServiceOut};
use crate::http::error::ApiError;
use crate::http::query::{Params, apply_filter, blocking_read, check_datacenter, json_body, json_response, read_options};

fn services_index(catalog: &Catalog) -> u64 {
    let i = catalog.indexes();
    i.services.max(i.nodes)
}

fn nodes_index(catalog: &Catalog) -> u64 {
    let i = catalog.indexes();
    i.nodes.max(i.services)
}

/// `?node-meta=key:value`, repeatable in Consul; we take the one value the map holds.
fn node_meta_matches(params: &Params, meta: &BTreeMap<String, String>) -> bool {
    match params.get("node-meta") {
        None => true,
        Some(pair) => {
            let (key, value) = pair.split_once(':').unwrap_or((pair.as_str(), ""));
            meta.get(key).is_some_and(|v| v == value)
        }
    }
}

fn ok_bool(outcome: Outcome) -> Result<Response, ApiError> {
    match outcome {
        Outcome::Rejected(reason) => Err(ApiError::Internal(reason)),
        _ => Ok(([("content-type", "application/json")], "true").into_response()),
    }
}

pub(super) async fn register(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let registration = decode_registration(&Fields::parse(&body)?, &state.agent.identity().datacenter)?;
    authorize_registration(&authz, &registration)?;
    let (_, outcome) = state.agent.write(Command::Register(registration)).await?;
    ok_bool(outcome)
}

/// The body of `PUT /v1/catalog/register` for this agent's datacenter. Pure.
pub(crate) fn decode_registration(fields: &Fields, own_datacenter: &str) -> Result<Registration, ApiError> {
    let datacenter = fields.string(&["Datacenter"])?;
    if !datacenter.is_empty() && datacenter != own_datacenter {
        return Err(ApiError::Internal("No path to datacenter".into()));
    }
    let node = fields.name(&["Node"])?;
    let address = fields.string(&["Address"])?;
    if node.is_empty() {
        return Err(ApiError::BadRequest("Must provide node".into()));
    }
    if address.is_empty() {
        return Err(ApiError::BadRequest("Must provide address if SkipNodeUpdate is not set".into()));
    }
    let service = match fields.object(&["Service"])? {
        Some(service) => {
            let name = service.name(&["Service", "Name"])?;
            if name.is_empty() {
                return Err(ApiError::BadRequest("Must provide service name".into()));
            }
            let id = match service.name(&["ID"])? {
                id if id.is_empty() => name.clone(),
                id => id,
            };
            Some(decode::service_registration(&service, id, name)?)
        }
        None => None,
    };
    let mut checks = Vec::new();
    let mut definitions = Vec::new();
    if let Some(check) = fields.object(&["Check"])? {
        definitions.push(check);
    }
    if let Some(Value::Array(items)) = fields.get(&["Checks"]) {
        for item in items {
            definitions.push(Fields::from_value(item.clone(), "Checks")?);
        }
    }
    for check in definitions {
        checks.push(decode::catalog_check(&check)?);
    }
    Ok(Registration {
        node_id: fields.string(&["ID"])?,
        node,
        address,
        datacenter: own_datacenter.to_string(),
        tagged_addresses: fields.string_map(&["TaggedAddresses"])?,
        node_meta: fields.string_map(&["NodeMeta"])?,
        skip_node_update: fields.bool(&["SkipNodeUpdate"])?,
        service,
        checks,
    })
}

pub(super) async fn deregister(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let fields = Fields::parse(&body)?;
    let datacenter = fields.string(&["Datacenter"])?;
    if !datacenter.is_empty() && datacenter != state.agent.identity().datacenter {
        return Err(ApiError::Internal("No path to datacenter".into()));
    }
    let node = fields.name(&["Node"])?;
    if node.is_empty() {
        return Err(ApiError::BadRequest("Must provide node".into()));
    }
    let service_id = fields.name(&["ServiceID"])?;
    let check_id = fields.name(&["CheckID"])?;
    authorize_deregistration(&state, &authz, &node, &service_id, &check_id)?;
    let command = if !service_id.is_empty() {
        Command::DeregisterService { node, service_id }
    } else if !check_id.is_empty() {
        Command::DeregisterCheck { node, check_id }
    } else {
        Command::DeregisterNode { node }
    };
    let (_, outcome) = state.agent.write(command).await?;
    ok_bool(outcome)
}

pub(super) async fn datacenters(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    ([("content-type", "application/json")], json_body(&json!([state.agent.identity().datacenter]), params.contains_key("pretty")))
        .into_response()
}

pub(super) async fn nodes(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    let near = near_node(&state, &params);
    let (meta, nodes) = blocking_read(&state, &options, vec![Topic::Table(Table::Nodes)], |catalog| {
        let nodes: Vec<NodeOut> = catalog.nodes().filter(|n| node_meta_matches(&params, &n.meta)).map(NodeOut::from).collect();
        (nodes_index(catalog), sort_by_distance(catalog, near.as_deref(), nodes, |n| &n.node))
    })
    .await?;
    let (nodes, filtered) = filter_items(nodes, |n| authz.authorizer().node_read(&n.node));
    let nodes = apply_filter(nodes, options.filter.as_ref());
    Ok(filtered_json(&meta, &nodes, options.pretty, filtered))
}

pub(super) async fn services(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    let (meta, rows) = blocking_read(&state, &options, vec![Topic::Table(Table::Services), Topic::Table(Table::Nodes)], |catalog| {
        let rows: Vec<CatalogServiceOut> = catalog
            .services()
            .filter_map(|s| catalog.node(&s.node).map(|n| (n, s)))
            .filter(|(n, _)| node_meta_matches(&params, &n.meta))
            .map(|(n, s)| CatalogServiceOut::new(n, s))
            .collect();
        (services_index(catalog), rows)
    })
    .await?;
    let (rows, filtered) = filter_items(rows, |r| authz.authorizer().service_read(&r.service_name));
    let rows = apply_filter(rows, options.filter.as_ref());
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows {
        let tags = names.entry(row.service_name).or_default();
        for tag in row.service_tags {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
    }
    for tags in names.values_mut() {
        tags.sort();
    }
    Ok(filtered_json(&meta, &names, options.pretty, filtered))
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
    let peer = params.get("peer").filter(|p| !p.is_empty()).cloned();
    let near = near_node(&state, &params);
    let (meta, rows) = blocking_read(&state, &options, vec![Topic::Service(name.clone())], |catalog| {
        let rows: Vec<CatalogServiceOut> = if peer.is_some() {
            Vec::new()
        } else {
            catalog
                .service_instances(&name)
                .into_iter()
                .filter(|(_, s)| tag.as_ref().is_none_or(|t| s.tags.contains(t)))
                .filter(|(n, _)| node_meta_matches(&params, &n.meta))
                .map(|(n, s)| CatalogServiceOut::new(n, s))
                .collect()
        };
        (catalog.service_index(&name), sort_by_distance(catalog, near.as_deref(), rows, |r| &r.node))
    })
    .await?;
    let (rows, filtered) = filter_items(rows, |r| readable_instance(&authz, &r.node, &r.service_name));
    let rows = apply_filter(rows, options.filter.as_ref());
    Ok(filtered_json(&meta, &rows, options.pretty, filtered))
}

/// Connect-capable instances: cairn has no service mesh yet, so only `connect-proxy` services
/// for the name would qualify, and there are none.
pub(super) async fn connect(State(state): State<AppState>, authz: Authz, Path(name): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    let (meta, rows) = blocking_read(&state, &options, vec![Topic::Table(Table::Services)], |catalog| {
        let rows: Vec<CatalogServiceOut> = catalog
            .services()
            .filter(|s| s.kind == "connect-proxy" && s.opaque_json.get("Proxy").is_some_and(|p| p.contains(&format!("\"{name}\""))))
            .filter_map(|s| catalog.node(&s.node).map(|n| CatalogServiceOut::new(n, s)))
            .collect();
        (services_index(catalog), rows)
    })
    .await?;
    let (rows, filtered) = filter_items(rows, |r| readable_instance(&authz, &r.node, &r.service_name));
    let rows = apply_filter(rows, options.filter.as_ref());
    Ok(filtered_json(&meta, &rows, options.pretty, filtered))
}

/// The node and its services, or `None` when the node is unknown.
/// With ACLs: a node the token may not read is reported unknown, and services it may not read
/// are left out (`true` in the last place when something was).
async fn node_with_services(state: &AppState, authz: &Authz, options: &crate::http::query::ReadOptions, node: &str) -> Result<(crate::http::query::QueryMeta, Option<(NodeOut, Vec<ServiceOut>)>, bool), ApiError> {
    let (meta, found) = node_with_all_services(state, options, node).await?;
    if !authz.authorizer().node_read(node) {
        return Ok((meta, None, found.is_some()));
    }
    Ok(match found {
        None => (meta, None, false),
        Some((node, services)) => {
            let (services, filtered) = filter_items(services, |s| authz.authorizer().service_read(&s.service));
            (meta, Some((node, services)), filtered)
        }
    })
}

async fn node_with_all_services(state: &AppState, options: &crate::http::query::ReadOptions, node: &str) -> Result<(crate::http::query::QueryMeta, Option<(NodeOut, Vec<ServiceOut>)>), ApiError> {
    blocking_read(state, options, vec![Topic::Node(node.to_string())], |catalog| {
        let found = catalog.node(node).map(|n| {
            let services: Vec<ServiceOut> = catalog.node_services(node).into_iter().map(ServiceOut::from).collect();
            (NodeOut::from(n), apply_filter(services, options.filter.as_ref()))
        });
        (nodes_index(catalog), found)
    })
    .await
}

/// `/v1/catalog/node/:node`: services as a map by ID.
pub(super) async fn node(State(state): State<AppState>, authz: Authz, Path(node): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    let (meta, found, filtered) = node_with_services(&state, &authz, &options, &node).await?;
    let body = match found {
        None => Value::Null,
        Some((node, services)) => {
            let map: serde_json::Map<String, Value> =
                services.into_iter().map(|s| (s.id.clone(), serde_json::to_value(&s).unwrap_or(Value::Null))).collect();
            json!({"Node": node, "Services": map})
        }
    };
    Ok(filtered_json(&meta, &body, options.pretty, filtered))
}

/// `/v1/catalog/node-services/:node`: services as a list.
pub(super) async fn node_services(State(state): State<AppState>, authz: Authz, Path(node): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    let (meta, found, filtered) = node_with_services(&state, &authz, &options, &node).await?;
    let body = match found {
        None => Value::Null,
        Some((node, services)) => json!({"Node": node, "Services": services}),
    };
    Ok(filtered_json(&meta, &body, options.pretty, filtered))
}

/// The services a gateway routes to, from its gateway config entry.
pub(super) async fn gateway_services(State(state): State<AppState>, authz: Authz, Path(name): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    authz.require(authz.authorizer().service_read(&name), "service:read", Some(&name))?;
    let options = read_options(&state, &params, &authz)?;
    let (meta, services) = blocking_read(&state, &options, vec![Topic::Table(Table::ConfigEntries), Topic::Table(Table::Services)], |catalog| {
        (catalog.indexes().config_entries.max(services_index(catalog)), crate::http::config::gateway_services(catalog, &name))
    })
    .await?;
    Ok(json_response(&meta, &services, options.pretty))
}

/// Consul's rule for a service instance in a list: the token reads the service and its node.
pub(super) fn readable_instance(authz: &Authz, node: &str, service: &str) -> bool {
    authz.allows_everything() || (authz.authorizer().node_read(node) && authz.authorizer().service_read(service))
}

/// `node:write` for the node (unless only its services or checks change), `service:write` for
/// the service, and for each check the write permission of what it is bound to.
fn authorize_registration(authz: &Authz, registration: &Registration) -> Result<(), ApiError> {
    let a = authz.authorizer();
    let node = registration.node.as_str();
    if !registration.skip_node_update {
        authz.require(a.node_write(node), "node:write", Some(node))?;
    }
    if let Some(service) = &registration.service {
        authz.require(a.service_write(&service.name), "service:write", Some(&service.name))?;
    }
    for check in &registration.checks {
        match registration.service.as_ref().filter(|s| !check.service_id.is_empty() && s.id == check.service_id) {
            Some(service) => authz.require(a.service_write(&service.name), "service:write", Some(&service.name))?,
            None => authz.require(a.node_write(node), "node:write", Some(node))?,
        }
    }
    Ok(())
}

/// A service needs `service:write` on its name; a node or a check `node:write`.
fn authorize_deregistration(state: &AppState, authz: &Authz, node: &str, service_id: &str, check_id: &str) -> Result<(), ApiError> {
    let a = authz.authorizer();
    if authz.allows_everything() {
        return Ok(());
    }
    if !service_id.is_empty() {
        let name = state.agent.view().read(|c| c.node_services(node).into_iter().find(|s| s.id == service_id).map(|s| s.name.clone()));
        return match name {
            Some(name) => authz.require(a.service_write(&name), "service:write", Some(&name)),
            None => authz.require(a.node_write(node), "node:write", Some(node)),
        };
    }
    let _ = check_id;
    authz.require(a.node_write(node), "node:write", Some(node))
}
