//! `/v1/config`: configuration entries, JSON documents keyed by kind and name, with CAS.
//!
//! cairn stores entries of every kind Consul knows and serves them back; it interprets only
//! what its own features need (ingress and terminating gateways for
//! `/v1/catalog/gateway-services`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::catalog::command::Command;
use crate::catalog::model::ConfigEntry;
use crate::catalog::Catalog;
use crate::http::AppState;
use crate::http::authz::{Authz, filter_items};
use crate::watch::{Table, Topic};
use crate::http::error::ApiError;
use crate::http::query::{Params, blocking_read, bool_response, check_datacenter, json_response, read_options};

/// The kinds Consul accepts.
const CONFIG_KINDS: [&str; 18] = [
    "service-defaults", "proxy-defaults", "service-router", "service-splitter", "service-resolver",
    "ingress-gateway", "terminating-gateway", "service-intentions", "mesh", "exported-services",
    "api-gateway", "http-route", "tcp-route", "inline-certificate", "bound-api-gateway",
    "jwt-provider", "sameness-group", "file-system-certificate",
];
/// Largest config entry accepted, in bytes of JSON.
const CONFIG_ENTRY_BYTES_MAX: usize = 256 * 1024;

fn config_index(catalog: &Catalog) -> u64 {
    catalog.indexes().config_entries
}

/// An entry as Consul returns it: `Kind`, `Name`, the body's fields, then the indexes.
pub(crate) fn entry_json(entry: &ConfigEntry) -> Value {
    let mut map = Map::new();
    map.insert("Kind".into(), Value::from(entry.kind.clone()));
    map.insert("Name".into(), Value::from(entry.name.clone()));
    if let Ok(Value::Object(body)) = serde_json::from_str::<Value>(&entry.body_json) {
        map.extend(body);
    }
    map.insert("CreateIndex".into(), Value::from(entry.create_index));
    map.insert("ModifyIndex".into(), Value::from(entry.modify_index));
    Value::Object(map)
}

fn check_kind(kind: &str) -> Result<(), ApiError> {
    if CONFIG_KINDS.contains(&kind) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!("invalid config entry kind: {kind}")))
    }
}

fn parse_cas(params: &Params) -> Result<Option<u64>, ApiError> {
    params.get("cas").map(|v| v.parse().map_err(|_| ApiError::BadRequest("Invalid cas index".into()))).transpose()
}

pub(super) async fn apply(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    if body.len() > CONFIG_ENTRY_BYTES_MAX {
        return Err(ApiError::PayloadTooLarge(format!("config entry exceeds {CONFIG_ENTRY_BYTES_MAX} bytes")));
    }
    let (kind, name, body_json) = decode_entry(&body)?;
    authorize(&authz, &kind, &name, true)?;
    let command = Command::ConfigSet { kind, name, body_json, cas_index: parse_cas(&params)? };
    let (_, outcome) = state.agent.write(command).await?;
    bool_response(outcome)
}

/// A config entry body: its kind, its name, and the rest of it as JSON text. Pure.
pub(crate) fn decode_entry(body: &[u8]) -> Result<(String, String, String), ApiError> {
    let Value::Object(mut map) = serde_json::from_slice::<Value>(body).map_err(|e| ApiError::BadRequest(format!("Request decode failed: {e}")))? else {
        return Err(ApiError::BadRequest("Request decode failed: config entry must be a JSON object".into()));
    };
    let mut take = |field: &str| -> Result<String, ApiError> {
        let key = map.keys().find(|k| k.eq_ignore_ascii_case(field)).cloned();
        match key.and_then(|k| map.remove(&k)) {
            Some(Value::String(text)) => Ok(text),
            Some(_) => Err(ApiError::BadRequest(format!("Request decode failed: {field} must be a string"))),
            None => Ok(String::new()),
        }
    };
    let kind = take("Kind")?;
    let name = take("Name")?;
    check_kind(&kind)?;
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest("config entry must have a valid Name".into()));
    }
    for index_field in ["CreateIndex", "ModifyIndex"] {
        map.remove(index_field);
    }
    Ok((kind, name, Value::Object(map).to_string()))
}

pub(super) async fn list(State(state): State<AppState>, authz: Authz, Path(kind): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    check_kind(&kind)?;
    let options = read_options(&state, &params, &authz)?;
    let (meta, entries) = blocking_read(&state, &options, vec![Topic::Table(Table::ConfigEntries)], |catalog| {
        (config_index(catalog), catalog.config_entries_of(&kind).into_iter().map(entry_json).collect::<Vec<_>>())
    })
    .await?;
    let (entries, filtered) = filter_items(entries, |entry| {
        let name = entry.get("Name").and_then(Value::as_str).unwrap_or_default();
        authorize(&authz, &kind, name, false).is_ok()
    });
    Ok(crate::http::authz::filtered_json(&meta, &entries, options.pretty, filtered))
}

pub(super) async fn get(State(state): State<AppState>, authz: Authz, Path((kind, name)): Path<(String, String)>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    check_kind(&kind)?;
    authorize(&authz, &kind, &name, false)?;
    let options = read_options(&state, &params, &authz)?;
    let (meta, entry) = blocking_read(&state, &options, vec![Topic::Table(Table::ConfigEntries)], |catalog| (config_index(catalog), catalog.config_entry(&kind, &name).map(entry_json))).await?;
    match entry {
        Some(entry) => Ok(json_response(&meta, &entry, options.pretty)),
        None => Ok((StatusCode::NOT_FOUND, format!("Config entry not found for {kind:?} / {name:?}")).into_response()),
    }
}

pub(super) async fn delete(State(state): State<AppState>, authz: Authz, Path((kind, name)): Path<(String, String)>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    check_kind(&kind)?;
    authorize(&authz, &kind, &name, true)?;
    let (_, outcome) = state.agent.write(Command::ConfigDelete { kind, name, cas_index: parse_cas(&params)? }).await?;
    bool_response(outcome)
}

/// The services a gateway routes to, from its `ingress-gateway` or `terminating-gateway` entry.
pub(super) fn gateway_services(catalog: &Catalog, gateway: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for kind in ["ingress-gateway", "terminating-gateway"] {
        let Some(entry) = catalog.config_entry(kind, gateway) else { continue };
        let body: Value = serde_json::from_str(&entry.body_json).unwrap_or(Value::Null);
        let mut push = |service: &Value, port: Value, protocol: Value| {
            let Some(name) = service.get("Name").and_then(Value::as_str) else { return };
            out.push(serde_json::json!({
                "Gateway": {"Name": gateway}, "Service": {"Name": name}, "GatewayKind": kind,
                "Port": port, "Protocol": protocol, "Hosts": service.get("Hosts").cloned().unwrap_or(Value::Null),
                "CAFile": "", "CertFile": "", "KeyFile": "", "SNI": "", "FromWildcard": false,
                "CreateIndex": entry.create_index, "ModifyIndex": entry.modify_index,
            }));
        };
        if kind == "ingress-gateway" {
            for listener in body.get("Listeners").and_then(Value::as_array).into_iter().flatten() {
                for service in listener.get("Services").and_then(Value::as_array).into_iter().flatten() {
                    push(service, listener.get("Port").cloned().unwrap_or(Value::Null), listener.get("Protocol").cloned().unwrap_or(Value::from("tcp")));
                }
            }
        } else {
            for service in body.get("Services").and_then(Value::as_array).into_iter().flatten() {
                push(service, Value::from(0), Value::from(""));
            }
        }
    }
    out
}

/// Consul's rule for config entries: the per-service kinds need `service:read`/`service:write`
/// on the entry's name; every other kind (proxy-defaults, mesh, gateways...) needs `mesh`
/// (which falls back to `operator`).
fn authorize(authz: &Authz, kind: &str, name: &str, write: bool) -> Result<(), ApiError> {
    const PER_SERVICE: [&str; 5] = ["service-defaults", "service-router", "service-splitter", "service-resolver", "service-intentions"];
    let a = authz.authorizer();
    match (PER_SERVICE.contains(&kind), write) {
        (true, false) => authz.require(a.service_read(name), "service:read", Some(name)),
        (true, true) => authz.require(a.service_write(name), "service:write", Some(name)),
        (false, false) => authz.require(a.mesh_read(), "mesh:read", None),
        (false, true) => authz.require(a.mesh_write(), "mesh:write", None),
    }
}
