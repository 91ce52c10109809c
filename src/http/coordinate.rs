//! `/v1/coordinate/*` (Consul's network coordinates) and the `?near=` sort of catalog and
//! health results.
//!
//! - `GET /v1/coordinate/datacenters`: Consul lists each datacenter's servers with their WAN
//!   coordinates. cairn has no WAN pool, so it lists this datacenter only, with AreaID `WAN`,
//!   and its alive servers under their node names with their LAN coordinates (this server's
//!   own from gossip, the others' from the catalog; a server with none yet is left out).
//! - `GET /v1/coordinate/nodes` and `/v1/coordinate/node/:node`: blocking queries on the
//!   coordinates table, `?segment` filters (Consul's `filterCoordinates`); a node without a
//!   coordinate is a 404 with an empty body.
//! - `PUT /v1/coordinate/update`: Consul's `Coordinate.Update`: a body that does not decode is a
//!   400 `Request decode failed: ...`; an invalid coordinate (not finite, negative error or
//!   height) is Consul's 500 `invalid coordinate`, one whose dimensionality differs from this
//!   agent's its 500 `incompatible coordinate`. A client agent handles it itself and its write
//!   goes to a server through `Agent::write`, as Consul's agent forwards the RPC.
//!
//! `?near=<node>` (or `_agent`, this agent's node) sorts results by the estimated RTT from that
//! node's coordinate, stably, nodes without a coordinate last; without a coordinate for the
//! source nothing moves (Consul's `sortNodesByDistanceFrom`).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::agent::coordinates::{from_catalog, to_catalog};
use crate::catalog::Catalog;
use crate::catalog::command::Command;
use crate::catalog::coordinates::{COORDINATE_DIMENSIONS_MAX, CoordinateEntry, CoordinateUpdate, NodeCoordinate};
use crate::http::AppState;
use crate::http::authz::{Authz, filter_items, filtered_json};
use crate::http::decode::Fields;
use crate::http::error::ApiError;
use crate::http::query::{Params, blocking_read, check_datacenter, json_response, read_options};
use crate::watch::{Table, Topic};

/// The `near` value that names this agent's own node.
pub(crate) const NEAR_AGENT: &str = "_agent";

/// Serf's `Coordinate` in JSON.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct CoordOut {
    vec: Vec<f64>,
    error: f64,
    adjustment: f64,
    height: f64,
}

/// Consul's `structs.Coordinate`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct CoordinateOut {
    node: String,
    segment: String,
    coord: CoordOut,
}

/// Consul's `structs.DatacenterMap`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DatacenterMapOut {
    datacenter: String,
    #[serde(rename = "AreaID")]
    area_id: String,
    coordinates: Vec<CoordinateOut>,
}

fn coord_out(coordinate: &NodeCoordinate) -> CoordOut {
    CoordOut { vec: coordinate.vec.clone(), error: coordinate.error, adjustment: coordinate.adjustment, height: coordinate.height }
}

/// This agent's LAN coordinate in Serf's JSON (`Coord` of `/v1/agent/self`).
pub(crate) fn own_coord_json(agent: &crate::agent::Agent) -> Value {
    serde_json::to_value(coord_out(&to_catalog(&agent.lan_coordinate()))).unwrap_or(Value::Null)
}

fn entry_out(entry: &CoordinateEntry<'_>) -> CoordinateOut {
    CoordinateOut { node: entry.node.to_string(), segment: entry.segment.to_string(), coord: coord_out(entry.coord) }
}

/// Consul's `filterCoordinates`: with `?segment` (even empty), only that segment.
fn segment_matches(params: &Params, entry: &CoordinateEntry<'_>) -> bool {
    params.get("segment").is_none_or(|segment| segment == entry.segment)
}

pub(super) async fn datacenters(State(state): State<AppState>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let agent = &state.agent;
    let own_name = agent.identity().node_name.clone();
    let mut servers: Vec<String> = agent.known_servers().into_iter().map(|server| server.name).collect();
    if agent.raft().is_some() && !servers.contains(&own_name) {
        servers.push(own_name.clone());
    }
    servers.sort();
    let own = to_catalog(&agent.lan_coordinate());
    let coordinates = agent.view().read(|catalog| {
        servers
            .iter()
            .filter_map(|name| {
                let coordinate = if *name == own_name { Some(own.clone()) } else { catalog.coordinate(name, "").cloned() };
                coordinate.map(|c| CoordinateOut { node: name.clone(), segment: String::new(), coord: coord_out(&c) })
            })
            .collect::<Vec<_>>()
    });
    let body = vec![DatacenterMapOut { datacenter: agent.identity().datacenter.clone(), area_id: "WAN".into(), coordinates }];
    let json = crate::http::query::json_body(&body, params.contains_key("pretty"));
    Ok(([("content-type", "application/json")], json).into_response())
}

pub(super) async fn nodes(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let options = read_options(&state, &params, &authz)?;
    let (meta, entries) = blocking_read(&state, &options, vec![Topic::Table(Table::Coordinates)], |catalog| {
        let entries: Vec<CoordinateOut> = catalog.coordinates().filter(|e| segment_matches(&params, e)).map(|e| entry_out(&e)).collect();
        (catalog.coordinates_index(), entries)
    })
    .await?;
    let (entries, filtered) = filter_items(entries, |e| authz.authorizer().node_read(&e.node));
    Ok(filtered_json(&meta, &entries, options.pretty, filtered))
}

pub(super) async fn node(State(state): State<AppState>, authz: Authz, Path(node): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    authz.require(authz.authorizer().node_read(&node), "node:read", Some(&node))?;
    let options = read_options(&state, &params, &authz)?;
    let (meta, entries) = blocking_read(&state, &options, vec![Topic::Table(Table::Coordinates)], |catalog| {
        let entries: Vec<CoordinateOut> =
            catalog.node_coordinates(&node).filter(|e| segment_matches(&params, e)).map(|e| entry_out(&e)).collect();
        (catalog.coordinates_index(), entries)
    })
    .await?;
    if entries.is_empty() {
        let mut response = StatusCode::NOT_FOUND.into_response();
        crate::http::query::set_meta_headers(response.headers_mut(), &meta);
        return Ok(response);
    }
    Ok(json_response(&meta, &entries, options.pretty))
}

pub(super) async fn update(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let update = decode_update(&Fields::parse(&body)?)?;
    authz.require(authz.authorizer().node_write(&update.node), "node:write", Some(&update.node))?;
    // Consul's `Coordinate.Update`: validity first (in `decode_update`), then the
    // dimensionality of this agent's.
    if update.coord.vec.len() != state.agent.lan_coordinate().vec.len() {
        return Err(ApiError::Internal("incompatible coordinate".into()));
    }
    let (_, outcome) = state.agent.write(Command::CoordinateBatchUpdate(vec![update])).await?;
    if let crate::catalog::Outcome::Rejected(reason) = outcome {
        return Err(ApiError::Internal(reason));
    }
    Ok(StatusCode::OK.into_response())
}

/// The body of `PUT /v1/coordinate/update`, with a valid coordinate. Pure.
pub(crate) fn decode_update(fields: &Fields) -> Result<CoordinateUpdate, ApiError> {
    let node = fields.name(&["Node"])?;
    let segment = fields.name(&["Segment"])?;
    let coord = fields.object(&["Coord"])?.ok_or_else(|| ApiError::BadRequest("Request decode failed: missing Coord".into()))?;
    let coordinate = decode_coordinate(&coord)?;
    let scalars = [coordinate.error, coordinate.adjustment, coordinate.height];
    let values_valid = coordinate.vec.iter().chain(&scalars).all(|v| v.is_finite()) && coordinate.error >= 0.0 && coordinate.height >= 0.0;
    if !values_valid {
        return Err(ApiError::Internal("invalid coordinate".into()));
    }
    Ok(CoordinateUpdate { node, segment, coord: coordinate })
}

/// Serf's `Coordinate` from JSON; missing numbers are 0 (Go's zero values).
fn decode_coordinate(coord: &Fields) -> Result<NodeCoordinate, ApiError> {
    let bad = |field: &str, expected: &str| ApiError::BadRequest(format!("Request decode failed: field \"Coord.{field}\" must be {expected}"));
    let number = |field: &str| match coord.get(&[field]) {
        None => Ok(0.0),
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| bad(field, "a number")),
        Some(_) => Err(bad(field, "a number")),
    };
    let vec = match coord.get(&["Vec"]) {
        None => Vec::new(),
        Some(Value::Array(items)) if items.len() > COORDINATE_DIMENSIONS_MAX => {
            return Err(bad("Vec", &format!("at most {COORDINATE_DIMENSIONS_MAX} numbers")));
        }
        Some(Value::Array(items)) => {
            items.iter().map(|item| item.as_f64().ok_or_else(|| bad("Vec", "an array of numbers"))).collect::<Result<_, _>>()?
        }
        Some(_) => return Err(bad("Vec", "an array of numbers")),
    };
    Ok(NodeCoordinate { vec, error: number("Error")?, adjustment: number("Adjustment")?, height: number("Height")? })
}

/// The node `?near=` names: `_agent` is this agent's node. A client agent has already
/// replaced `_agent` with its own node when it relayed the request (`forward`).
pub(crate) fn near_node(state: &AppState, params: &Params) -> Option<String> {
    match params.get("near").map(String::as_str) {
        None | Some("") => None,
        Some(NEAR_AGENT) => Some(state.agent.identity().node_name.clone()),
        Some(node) => Some(node.to_string()),
    }
}

/// Sorts `items` by the estimated RTT from `source`'s coordinate to each item's node: stable,
/// nodes without a coordinate last; unchanged when `source` has no coordinate. Pure.
pub(crate) fn sort_by_distance<T>(catalog: &Catalog, source: Option<&str>, items: Vec<T>, node_of: impl Fn(&T) -> &str) -> Vec<T> {
    let Some(origin) = source.and_then(|node| catalog.coordinate(node, "")).map(from_catalog) else { return items };
    let distance = |node: &str| -> Duration {
        catalog.coordinate(node, "").map_or(Duration::MAX, |other| origin.distance_to(&from_catalog(other)))
    };
    // Each distance once: a sort calls its key O(n log n) times. `sort_by_key` is stable.
    let mut keyed: Vec<(Duration, T)> = items.into_iter().map(|item| (distance(node_of(&item)), item)).collect();
    keyed.sort_by_key(|(distance, _)| *distance);
    keyed.into_iter().map(|(_, item)| item).collect()
}

#[cfg(test)]
mod tests;
