//! `/v1/internal/ui/*`: Consul's dashboard endpoints, so that each dashboard page is one
//! blocking query instead of one per service (`docs/ui-endpoints.md` has the shapes).
//!
//! - `services`: Consul's `[]ServiceListingSummary` (`agent/ui_endpoint.go` `UIServices`);
//! - `nodes` and `node/:node`: Consul's `NodeDump` / `NodeInfo`;
//! - `catalog-overview`: Consul's `CatalogSummary`.
//!
//! The summaries are computed in one pass by `catalog::ui_summary` (pure). The list endpoints
//! park on one topic, `Table::CatalogHealth` (any node, service or check change; never KV),
//! and watchers with the same query, `?pretty`, `?filter` and token share one rendered body
//! through the slot's memo (`query::blocking_read_shared`), so 100 dashboards woken by one
//! check change cost one summary and one serialization.
//!
//! Consul's choices kept here: `?filter=` on `services` runs on each instance (its
//! `/v1/health/service` shape) *before* summarizing, as Consul's `Internal.ServiceDump` filters
//! `CheckServiceNodes`; ACLs keep an instance when the token reads its node and its service;
//! the overview needs `operator:read`. Where cairn differs: the overview blocks (Consul
//! recomputes it every few seconds and answers without an index), and `nodes` does not add
//! the `consul-version` meta Consul copies from gossip tags.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::bexpr::Filter;
use crate::catalog::Catalog;
use crate::catalog::ui_summary::{self, CatalogOverview, HealthSummary, InstanceRef, NodeInfo, ServiceSummary};
use crate::http::AppState;
use crate::http::authz::{Authz, mark_filtered};
use crate::http::catalog::readable_instance;
use crate::http::dto::{CheckOut, NodeOut, ServiceOut};
use crate::http::error::ApiError;
use crate::http::query::{Params, QueryMeta, blocking_read, blocking_read_shared, json_body, read_options, set_meta_headers};
use crate::watch::{Table, Topic};

/// A rendered answer, shared between identical watchers.
#[derive(Clone)]
struct Rendered {
    body: Bytes,
    /// ACLs left something out (`X-Consul-Results-Filtered-By-ACLs`).
    filtered: bool,
}

/// The index of anything the summaries read.
fn health_index(catalog: &Catalog) -> u64 {
    let i = catalog.indexes();
    i.nodes.max(i.services).max(i.checks)
}

fn rendered_response(meta: &QueryMeta, rendered: Rendered) -> Response {
    let mut response = (StatusCode::OK, rendered.body).into_response();
    let headers = response.headers_mut();
    set_meta_headers(headers, meta);
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    mark_filtered(headers, rendered.filtered);
    response
}

/// The memo key of a list query: everything besides the catalog that shapes its body.
fn memo_key(endpoint: &str, params: &Params) -> String {
    let filter = params.get("filter").map_or("", String::as_str);
    format!("internal-ui/{endpoint}/pretty={}/filter={filter}", params.contains_key("pretty"))
}

/// `GET /v1/internal/ui/services`.
pub(super) async fn services(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    list(&state, &authz, &params, "services", render_services).await
}

/// A list endpoint: one blocking read on the catalog's health topic, its rendered body shared
/// by identical watchers (same endpoint, parameters and token).
async fn list(
    state: &AppState,
    authz: &Authz,
    params: &Params,
    endpoint: &str,
    render: fn(&Catalog, &Authz, Option<&Filter>, bool) -> Rendered,
) -> Result<Response, ApiError> {
    let options = read_options(state, params, authz)?;
    let key = memo_key(endpoint, params);
    let topic = Topic::Table(Table::CatalogHealth);
    let (meta, rendered) = blocking_read_shared(state, &options, topic, &key, |catalog| {
        (health_index(catalog), render(catalog, authz, options.filter.as_ref(), options.pretty))
    })
    .await?;
    Ok(rendered_response(&meta, rendered))
}

fn render_services(catalog: &Catalog, authz: &Authz, filter: Option<&Filter>, pretty: bool) -> Rendered {
    let mut filtered = false;
    let summaries = ui_summary::service_summaries(catalog, |instance| {
        if !readable_instance(authz, &instance.node.name, &instance.service.name) {
            filtered = true;
            return false;
        }
        filter.is_none_or(|filter| filter.matches(&instance_document(instance)))
    });
    let out: Vec<ServiceSummaryOut<'_>> = summaries.iter().map(ServiceSummaryOut::from).collect();
    Rendered { body: Bytes::from(json_body(&out, pretty)), filtered }
}

/// An instance as `/v1/health/service` shows it: what `?filter=` is written against.
fn instance_document(instance: &InstanceRef<'_>) -> Value {
    let checks: Vec<CheckOut> = instance.node_checks.iter().chain(instance.service_checks).map(|c| CheckOut::from(*c)).collect();
    json!({"Node": NodeOut::from(instance.node), "Service": ServiceOut::from(instance.service), "Checks": checks})
}

/// Consul's `ServiceListingSummary` (CE: no namespace or partition fields).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceSummaryOut<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    name: &'a str,
    datacenter: &'a str,
    /// `null` when empty, as Go's nil slices.
    tags: Option<&'a [String]>,
    nodes: Option<&'a [String]>,
    external_sources: Option<&'a [String]>,
    instance_count: usize,
    checks_passing: usize,
    checks_warning: usize,
    checks_critical: usize,
    /// cairn has no gateways: Consul's `GatewayConfig` with its empty fields omitted.
    gateway_config: Value,
    transparent_proxy: bool,
    connect_native: bool,
    connected_with_proxy: bool,
    connected_with_gateway: bool,
}

fn non_empty(items: &[String]) -> Option<&[String]> {
    (!items.is_empty()).then_some(items)
}

impl<'a> From<&'a ServiceSummary> for ServiceSummaryOut<'a> {
    fn from(summary: &'a ServiceSummary) -> ServiceSummaryOut<'a> {
        ServiceSummaryOut {
            kind: &summary.kind,
            name: &summary.name,
            datacenter: &summary.datacenter,
            tags: non_empty(&summary.tags),
            nodes: non_empty(&summary.nodes),
            external_sources: non_empty(&summary.external_sources),
            instance_count: summary.instance_count,
            checks_passing: summary.checks.passing,
            checks_warning: summary.checks.warning,
            checks_critical: summary.checks.critical,
            gateway_config: json!({}),
            transparent_proxy: summary.transparent_proxy,
            connect_native: summary.connect_native,
            connected_with_proxy: summary.connected_with_proxy,
            connected_with_gateway: false,
        }
    }
}

/// Consul's `NodeInfo`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeInfoOut {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    tagged_addresses: std::collections::BTreeMap<String, String>,
    meta: std::collections::BTreeMap<String, String>,
    services: Vec<ServiceOut>,
    checks: Vec<CheckOut>,
}

/// A node as `authz` may see it (Consul's `filterNodeDump`): `None` without `node:read`;
/// services without `service:read` left out, and the checks of services it may not read.
/// `true` in the second place when something was left out.
fn node_info_out(info: &NodeInfo<'_>, authz: &Authz) -> (Option<NodeInfoOut>, bool) {
    let everything = authz.allows_everything();
    let authorizer = authz.authorizer();
    if !everything && !authorizer.node_read(&info.node.name) {
        return (None, true);
    }
    let mut filtered = false;
    let mut readable = |service: &str| {
        let allowed = everything || service.is_empty() || authorizer.service_read(service);
        filtered |= !allowed;
        allowed
    };
    let services: Vec<ServiceOut> = info.services.iter().filter(|s| readable(&s.name)).map(|s| ServiceOut::from(*s)).collect();
    let checks: Vec<CheckOut> = info.checks.iter().filter(|c| readable(&c.service_name)).map(|c| CheckOut::from(*c)).collect();
    let node = info.node;
    let out = NodeInfoOut {
        id: node.id.clone(),
        node: node.name.clone(),
        address: node.address.clone(),
        tagged_addresses: node.tagged_addresses.clone(),
        meta: node.meta.clone(),
        services,
        checks,
    };
    (Some(out), filtered)
}

/// `GET /v1/internal/ui/nodes`.
pub(super) async fn nodes(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    list(&state, &authz, &params, "nodes", render_nodes).await
}

fn render_nodes(catalog: &Catalog, authz: &Authz, filter: Option<&Filter>, pretty: bool) -> Rendered {
    let mut filtered = false;
    let mut out = Vec::new();
    for info in ui_summary::node_infos(catalog) {
        let (node, hidden) = node_info_out(&info, authz);
        filtered |= hidden;
        let Some(node) = node else { continue };
        let keep = filter.is_none_or(|filter| serde_json::to_value(&node).is_ok_and(|doc| filter.matches(&doc)));
        if keep {
            out.push(node);
        }
    }
    Rendered { body: Bytes::from(json_body(&out, pretty)), filtered }
}

/// `GET /v1/internal/ui/node/:node`: 404 with an empty body for a node that is unknown or
/// that the token may not read, as Consul.
pub(super) async fn node(State(state): State<AppState>, authz: Authz, Path(name): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    if name.is_empty() {
        return Err(ApiError::BadRequest("Missing node name".into()));
    }
    let options = read_options(&state, &params, &authz)?;
    let (meta, found) = blocking_read(&state, &options, vec![Topic::Node(name.clone())], |catalog| {
        let found = ui_summary::node_info(catalog, &name).map(|info| node_info_out(&info, &authz));
        (health_index(catalog), found)
    })
    .await?;
    let (status, body, filtered) = match found {
        Some((Some(node), filtered)) => (StatusCode::OK, json_body(&node, options.pretty), filtered),
        Some((None, _)) | None => (StatusCode::NOT_FOUND, Vec::new(), false),
    };
    let mut response = (status, body).into_response();
    set_meta_headers(response.headers_mut(), &meta);
    if status == StatusCode::OK {
        response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    }
    mark_filtered(response.headers_mut(), filtered);
    Ok(response)
}

/// `GET /v1/internal/ui/catalog-overview`: needs `operator:read`, as Consul's
/// `Internal.CatalogOverview`.
pub(super) async fn catalog_overview(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    authz.require(authz.authorizer().operator_read(), "operator:read", None)?;
    let options = read_options(&state, &params, &authz)?;
    let key = memo_key("catalog-overview", &params);
    let topic = Topic::Table(Table::CatalogHealth);
    let (meta, rendered) = blocking_read_shared(&state, &options, topic, &key, |catalog| {
        let body = overview_json(&ui_summary::catalog_overview(catalog));
        (health_index(catalog), Rendered { body: Bytes::from(json_body(&body, options.pretty)), filtered: false })
    })
    .await?;
    Ok(rendered_response(&meta, rendered))
}

/// Consul's `CatalogSummary`: `null` for an empty list (Go's nil slice), `Name` omitted when
/// empty (the one node entry).
fn overview_json(overview: &CatalogOverview) -> Value {
    let list = |items: &[HealthSummary]| -> Value {
        if items.is_empty() {
            return Value::Null;
        }
        let entries = items.iter().map(|item| {
            let mut entry = serde_json::Map::new();
            if !item.name.is_empty() {
                entry.insert("Name".into(), Value::from(item.name.clone()));
            }
            entry.insert("Total".into(), Value::from(item.counts.total()));
            entry.insert("Passing".into(), Value::from(item.counts.passing));
            entry.insert("Warning".into(), Value::from(item.counts.warning));
            entry.insert("Critical".into(), Value::from(item.counts.critical));
            Value::Object(entry)
        });
        Value::Array(entries.collect())
    };
    json!({"Nodes": list(&overview.nodes), "Services": list(&overview.services), "Checks": list(&overview.checks)})
}
