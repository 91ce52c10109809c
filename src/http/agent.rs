//! `/v1/agent/*`: this agent's own view: itself, its members, and the services and checks
//! registered with it. Reads here are local (no Raft), like Consul's agent endpoints.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::agent::local::{DefinitionSource, LocalCheck, LocalService};
use crate::gossip::Member;
use crate::catalog::model::HealthStatus;
use crate::checks::CheckStatus;
use crate::http::AppState;
use crate::http::agent_acl as acl;
use crate::http::authz::{Authz, filter_items, mark_filtered};
use crate::http::check_decode;
use crate::http::decode::{self, Fields};
use crate::http::dto::{WeightsOut, opaque, tagged_addresses_out};
use crate::http::error::ApiError;
use crate::http::query::{Params, apply_filter, check_datacenter, content_hash, hash_blocking, json_body, read_options};

use crate::agent::members::CONSUL_COMPAT_VERSION;
/// Longest check note/output accepted through the TTL endpoints.
const CHECK_NOTE_BYTES_MAX: usize = 64 * 1024;

fn json_ok(value: &Value, params: &Params) -> Response {
    ([("content-type", "application/json")], json_body(value, params.contains_key("pretty"))).into_response()
}

/// One member as `/v1/agent/members` shows it (Consul's `api.AgentMember`).
fn member_json(member: &Member, name: String) -> Value {
    json!({
        "Name": name,
        "Addr": member.addr.to_string(),
        "Port": member.port,
        "Tags": member.tags,
        "Status": member.status as u8,
        "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
    })
}

/// This agent as a member (from gossip's view of itself).
fn own_member(state: &AppState) -> Option<Member> {
    let name = &state.agent.identity().node_name;
    state.agent.members().into_iter().find(|m| m.name == *name)
}


pub(super) async fn agent_self(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    acl::agent_read(&state, &authz)?;
    let agent = &state.agent;
    let identity = agent.identity();
    let config = agent.config();
    let body = json!({
        "Config": {
            "Datacenter": identity.datacenter,
            "PrimaryDatacenter": config.primary_datacenter.clone().unwrap_or_else(|| identity.datacenter.clone()),
            "NodeName": identity.node_name,
            "NodeID": identity.node_id,
            "Server": config.server,
            "Revision": "cairn",
            "Version": CONSUL_COMPAT_VERSION,
            "BuildDate": "",
            // Consul 0.x's whole config carried this as a `time.Duration`: nanoseconds.
            "SessionTTLMin": config.session_ttl_min_ms.saturating_mul(1_000_000),
        },
        "DebugConfig": {
            "Bootstrap": config.bootstrap,
            "DataDir": agent.data_dir().display().to_string(),
            "DevMode": config.dev,
            "EnableScriptChecks": config.enable_script_checks,
            "ServerMode": config.server,
            // Consul 1.x's sanitized runtime config prints durations as Go does.
            "SessionTTLMin": crate::checks::go_duration_text(std::time::Duration::from_millis(config.session_ttl_min_ms)),
        },
        "Coord": crate::http::coordinate::own_coord_json(agent),
        "Member": own_member(&state).map(|m| member_json(&m, m.name.clone())).unwrap_or(Value::Null),
        "Stats": crate::http::agent_stats::stats(&state, params.contains_key("fsm-digest")),
        "Meta": config.node_meta,
        "xDS": {"SupportedProxies": {}, "Port": -1, "Ports": {"Plaintext": -1, "TLS": -1}},
    });
    Ok(json_ok(&body, &params))
}

pub(super) async fn members(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Response {
    // There is no WAN pool: a server is the only member of its own, named `node.dc` (Consul's
    // WAN naming); a client is in none.
    if params.contains_key("wan") {
        let identity = state.agent.identity();
        let own = own_member(&state).filter(|_| state.agent.config().server);
        return json_ok(&json!(own.iter().map(|m| member_json(m, format!("{}.{}", identity.node_name, identity.datacenter))).collect::<Vec<_>>()), &params);
    }
    let members: Vec<Value> = state.agent.members().iter().map(|m| member_json(m, m.name.clone())).collect();
    let (members, filtered) = filter_items(members, |m| acl::readable_member(&authz, m));
    let mut response = json_ok(&Value::Array(members), &params);
    mark_filtered(response.headers_mut(), filtered);
    response
}

pub(super) async fn host(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    authz.require(authz.authorizer().operator_read(), "operator:read", None)?;
    Ok(json_ok(&json!({"Host": {"hostname": state.agent.identity().node_name, "os": std::env::consts::OS}}), &params))
}

pub(super) async fn version(Query(params): Query<Params>) -> Response {
    json_ok(&json!({"SHA": "", "BuildDate": "", "HumanVersion": CONSUL_COMPAT_VERSION, "FIPS": ""}), &params)
}

/// Graceful leave and shutdown: the other members see this agent as `left`.
pub(super) async fn leave(State(state): State<AppState>, authz: Authz) -> Result<StatusCode, ApiError> {
    acl::agent_write(&state, &authz)?;
    tracing::info!("leave requested over HTTP; leaving the pool and shutting down");
    state.agent.leave().await;
    state.agent.request_shutdown();
    Ok(StatusCode::OK)
}

/// Re-reads the config files and applies them (`agent::config_defs`); the daemon runs it, so
/// SIGHUP and this endpoint take the same path. A failure changes nothing and is a 500 with
/// the reason, as in Consul.
pub(super) async fn reload(State(state): State<AppState>, authz: Authz) -> Result<StatusCode, ApiError> {
    acl::agent_write(&state, &authz)?;
    state.agent.reload().await.map_err(ApiError::Internal)?;
    Ok(StatusCode::OK)
}

fn enable_param(params: &Params) -> Result<bool, ApiError> {
    match params.get("enable").map(String::as_str) {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(ApiError::BadRequest(format!("Invalid value for enable: {other:?}"))),
        None => Err(ApiError::BadRequest("Missing value for enable".into())),
    }
}

pub(super) async fn node_maintenance(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<StatusCode, ApiError> {
    acl::node_write(&state, &authz)?;
    let enable = enable_param(&params)?;
    let reason = params.get("reason").cloned().unwrap_or_default();
    state.agent.set_node_maintenance(enable, &reason).await?;
    Ok(StatusCode::OK)
}

pub(super) async fn service_maintenance(
    State(state): State<AppState>,
    authz: Authz,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Result<StatusCode, ApiError> {
    acl::service_write_by_id(&state, &authz, &id)?;
    let enable = enable_param(&params)?;
    let reason = params.get("reason").cloned().unwrap_or_default();
    state.agent.set_service_maintenance(&id, enable, &reason).await?;
    Ok(StatusCode::OK)
}

/// `?prune` forgets the member at once instead of listing it as `left` until it is reaped.
pub(super) async fn force_leave(State(state): State<AppState>, authz: Authz, Path(node): Path<String>, Query(params): Query<Params>) -> Result<StatusCode, ApiError> {
    authz.require(authz.authorizer().operator_write(), "operator:write", None)?;
    state.agent.force_leave(&node, params.contains_key("prune")).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(StatusCode::OK)
}

/// Joins the LAN pool through the agent at `address` (a bare host means the serf LAN port).
pub(super) async fn join(State(state): State<AppState>, authz: Authz, Path(address): Path<String>, Query(params): Query<Params>) -> Result<StatusCode, ApiError> {
    acl::agent_write(&state, &authz)?;
    if params.get("wan").is_some_and(|v| v != "0" && v != "false") {
        return Err(ApiError::Internal("WAN join is not supported: cairn has no WAN gossip pool (one datacenter)".into()));
    }
    state.agent.join(&address).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(StatusCode::OK)
}

/// `PUT /v1/agent/token/<kind>` with `{"Token": "..."}`: sets one of this agent's tokens
/// (`acl:write`), kept in the data dir with `acl.enable_token_persistence`.
pub(super) async fn token(State(state): State<AppState>, authz: Authz, Path(kind): Path<String>, body: Bytes) -> Result<StatusCode, ApiError> {
    if !state.agent.config().acl_enabled {
        return Err(ApiError::Unauthorized("ACL support disabled".into()));
    }
    authz.require(authz.authorizer().acl_write(), "acl:write", None)?;
    let secret = if body.is_empty() { String::new() } else { Fields::parse(&body)?.string(&["Token"])? };
    if !state.agent.acl().set_token(&kind, secret, state.agent.data_dir())? {
        return Err(ApiError::NotFound(format!("Token {kind:?} is unknown")));
    }
    Ok(StatusCode::OK)
}

/// A locally registered service as `/v1/agent/services` shows it.
fn service_json(state: &AppState, service: &LocalService) -> Value {
    let r = &service.registration;
    let mut out = json!({
        "ID": r.id,
        "Service": r.name,
        "Tags": r.tags,
        "Meta": r.meta,
        "Port": r.port,
        "Address": r.address,
        "Weights": WeightsOut::from(r.weights),
        "EnableTagOverride": r.enable_tag_override,
        "Datacenter": state.agent.identity().datacenter,
    });
    if let Value::Object(map) = &mut out {
        if !r.tagged_addresses.is_empty() {
            map.insert("TaggedAddresses".into(), serde_json::to_value(tagged_addresses_out(&r.tagged_addresses)).unwrap_or(Value::Null));
        }
        if !r.kind.is_empty() {
            map.insert("Kind".into(), Value::from(r.kind.clone()));
        }
        for field in ["Proxy", "Connect", "Locality"] {
            if let Some(value) = opaque(&r.opaque_json, field) {
                map.insert(field.into(), value);
            }
        }
    }
    out
}

fn check_json(state: &AppState, check: &LocalCheck) -> Value {
    let r = &check.registration;
    let (service_name, service_tags) = state
        .agent
        .local_service(&r.service_id)
        .map(|s| (s.registration.name, s.registration.tags))
        .unwrap_or_default();
    let check_type = if r.definition.check_type == "maintenance" { "" } else { r.definition.check_type.as_str() };
    json!({
        "Node": state.agent.identity().node_name,
        "CheckID": r.check_id,
        "Name": r.name,
        "Status": r.status.as_str(),
        "Notes": r.notes,
        "Output": r.output,
        "ServiceID": r.service_id,
        "ServiceName": service_name,
        "ServiceTags": service_tags,
        "Type": check_type,
        "Interval": r.definition.interval,
        "Timeout": r.definition.timeout,
        "ExposedPort": 0,
        "Definition": check_decode::definition_json(check),
        "CreateIndex": 0,
        "ModifyIndex": 0,
    })
}

/// `GET /v1/agent/services`, with hash-based blocking (`?hash=`).
pub(super) async fn services(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    hash_blocking(&state, &params, || {
        let services: Vec<Value> = state.agent.local_services().iter().map(|s| service_json(&state, s)).collect();
        let services: Vec<Value> = services.into_iter().filter(|s| acl::readable_service(&authz, s)).collect();
        let services = apply_filter(services, options.filter.as_ref());
        let map: serde_json::Map<String, Value> =
            services.into_iter().filter_map(|s| s.get("ID").and_then(Value::as_str).map(str::to_string).map(|id| (id, s))).collect();
        Ok(Value::Object(map))
    })
    .await
}

/// `GET /v1/agent/service/<id>`, with hash-based blocking (`?hash=`) as in Consul. The body's
/// `ContentHash` is the hash of the service without it.
pub(super) async fn service(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    hash_blocking(&state, &params, || {
        let service = state.agent.local_service(&id).ok_or_else(|| ApiError::NotFound(format!("unknown service ID: {id}")))?;
        acl::service_read(&authz, &service.registration.name)?;
        let mut value = service_json(&state, &service);
        let hash = content_hash(value.to_string().as_bytes());
        if let Value::Object(map) = &mut value {
            map.insert("ContentHash".into(), Value::from(hash));
        }
        Ok(value)
    })
    .await
}

pub(super) async fn register_service(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>, body: Bytes) -> Result<StatusCode, ApiError> {
    check_datacenter(&state, &params)?;
    let fields = Fields::parse(&body)?;
    let (registration, checks) = decode::service_definition(&fields)?;
    acl::service_write(&authz, &registration.name)?;
    acl::service_write_by_id(&state, &authz, &registration.id)?;
    let replace = params.get("replace-existing-checks").is_some_and(|v| v.is_empty() || v == "true");
    let sidecar = sidecar_registration(&state, &fields, &registration)?;
    state.agent.register_service(registration, checks, replace, DefinitionSource::Api).await?;
    if let Some(sidecar) = sidecar {
        state.agent.register_service(sidecar, Vec::new(), replace, DefinitionSource::Api).await?;
    }
    Ok(StatusCode::OK)
}

/// First port of Consul's sidecar range (`sidecar_min_port`..=`sidecar_max_port`).
const SIDECAR_PORT_MIN: u16 = 21000;
const SIDECAR_PORT_MAX: u16 = 21255;

/// `Connect.SidecarService`: Consul registers a companion `connect-proxy` service,
/// `<id>-sidecar-proxy`, on a port from the sidecar range.
fn sidecar_registration(
    state: &AppState,
    fields: &Fields,
    parent: &crate::catalog::command::ServiceRegistration,
) -> Result<Option<crate::catalog::command::ServiceRegistration>, ApiError> {
    let Some(connect) = fields.object(&["Connect"])? else { return Ok(None) };
    let Some(sidecar) = connect.object(&["SidecarService"])? else { return Ok(None) };
    let id = format!("{}-sidecar-proxy", parent.id);
    let used: Vec<u16> = state.agent.local_services().iter().filter(|s| s.registration.id != id).map(|s| s.registration.port).collect();
    let port = match sidecar.port(&["Port"])? {
        0 => (SIDECAR_PORT_MIN..=SIDECAR_PORT_MAX)
            .find(|p| !used.contains(p))
            .ok_or_else(|| ApiError::BadRequest("no free port in the sidecar range".into()))?,
        port => port,
    };
    let mut registration = decode::service_registration(&sidecar, id, format!("{}-sidecar-proxy", parent.name))?;
    registration.port = port;
    registration.kind = "connect-proxy".into();
    let local_port = if parent.port == 0 { Value::Null } else { Value::from(parent.port) };
    let proxy = json!({
        "DestinationServiceName": parent.name,
        "DestinationServiceID": parent.id,
        "LocalServiceAddress": "127.0.0.1",
        "LocalServicePort": local_port,
    });
    registration.opaque_json.insert("Proxy".into(), proxy.to_string());
    Ok(Some(registration))
}

pub(super) async fn deregister_service(State(state): State<AppState>, authz: Authz, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    acl::service_write_by_id(&state, &authz, &id)?;
    state.agent.deregister_service(&id).await?;
    let sidecar = format!("{id}-sidecar-proxy");
    if state.agent.local_service(&sidecar).is_some_and(|s| s.registration.kind == "connect-proxy") {
        state.agent.deregister_service(&sidecar).await?;
    }
    Ok(StatusCode::OK)
}

fn aggregate(state: &AppState, service_id: &str) -> HealthStatus {
    state
        .agent
        .local_checks()
        .iter()
        .filter(|c| c.registration.service_id == service_id || c.registration.check_id == "_node_maintenance")
        .map(|c| c.registration.status)
        .max()
        .unwrap_or(HealthStatus::Passing)
}

fn health_response(state: &AppState, services: Vec<LocalService>, params: &Params, what: &str) -> Result<Response, ApiError> {
    if services.is_empty() {
        return Err(ApiError::NotFound(format!("ServiceName not found: {what}")));
    }
    let mut worst = HealthStatus::Passing;
    let mut entries = Vec::new();
    for service in &services {
        let status = aggregate(state, &service.registration.id);
        worst = worst.max(status);
        let checks: Vec<Value> = state
            .agent
            .local_checks()
            .iter()
            .filter(|c| c.registration.service_id == service.registration.id)
            .map(|c| check_json(state, c))
            .collect();
        entries.push(json!({"AggregatedStatus": status.as_str(), "Service": service_json(state, service), "Checks": checks}));
    }
    let code = match worst {
        HealthStatus::Passing => StatusCode::OK,
        HealthStatus::Warning => StatusCode::TOO_MANY_REQUESTS,
        HealthStatus::Critical => StatusCode::SERVICE_UNAVAILABLE,
    };
    if params.get("format").is_some_and(|f| f == "text") {
        return Ok((code, worst.as_str()).into_response());
    }
    let body = if services.len() == 1 && what.starts_with("id:") { entries.remove(0) } else { Value::Array(entries) };
    Ok((code, [("content-type", "application/json")], json_body(&body, params.contains_key("pretty"))).into_response())
}

pub(super) async fn health_by_name(State(state): State<AppState>, authz: Authz, Path(name): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    acl::service_read(&authz, &name)?;
    let services: Vec<LocalService> = state.agent.local_services().into_iter().filter(|s| s.registration.name == name).collect();
    health_response(&state, services, &params, &name)
}

pub(super) async fn health_by_id(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let services: Vec<LocalService> = state.agent.local_service(&id).into_iter().collect();
    for service in &services {
        acl::service_read(&authz, &service.registration.name)?;
    }
    health_response(&state, services, &params, &format!("id:{id}"))
}

/// `GET /v1/agent/checks`, with hash-based blocking (`?hash=`).
pub(super) async fn checks(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let options = read_options(&state, &params, &authz)?;
    hash_blocking(&state, &params, || {
        let checks: Vec<Value> = state.agent.local_checks().iter().map(|c| check_json(&state, c)).collect();
        let checks: Vec<Value> = checks.into_iter().filter(|c| acl::readable_check(&authz, c)).collect();
        let checks = apply_filter(checks, options.filter.as_ref());
        let map: serde_json::Map<String, Value> =
            checks.into_iter().filter_map(|c| c.get("CheckID").and_then(Value::as_str).map(str::to_string).map(|id| (id, c))).collect();
        Ok(Value::Object(map))
    })
    .await
}

pub(super) async fn register_check(State(state): State<AppState>, authz: Authz, body: Bytes) -> Result<StatusCode, ApiError> {
    let fields = Fields::parse(&body)?;
    let check = decode::check_definition(&fields, None, String::new())?;
    acl::check_write(&state, &authz, &check.registration.service_id)?;
    acl::check_write_by_id(&state, &authz, &check.registration.check_id)?;
    state.agent.register_check(check, DefinitionSource::Api).await?;
    Ok(StatusCode::OK)
}

pub(super) async fn deregister_check(State(state): State<AppState>, authz: Authz, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    acl::check_write_by_id(&state, &authz, &id)?;
    state.agent.deregister_check(&id).await?;
    Ok(StatusCode::OK)
}

async fn ttl(state: AppState, id: String, status: CheckStatus, note: String) -> Result<StatusCode, ApiError> {
    if note.len() > CHECK_NOTE_BYTES_MAX {
        return Err(ApiError::PayloadTooLarge(format!("check output exceeds {CHECK_NOTE_BYTES_MAX} byte limit")));
    }
    state.agent.update_ttl(&id, status, &note).await?;
    Ok(StatusCode::OK)
}

pub(super) async fn check_pass(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, Query(params): Query<Params>) -> Result<StatusCode, ApiError> {
    acl::check_write_by_id(&state, &authz, &id)?;
    ttl(state, id, CheckStatus::Passing, params.get("note").cloned().unwrap_or_default()).await
}

pub(super) async fn check_warn(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, Query(params): Query<Params>) -> Result<StatusCode, ApiError> {
    acl::check_write_by_id(&state, &authz, &id)?;
    ttl(state, id, CheckStatus::Warning, params.get("note").cloned().unwrap_or_default()).await
}

pub(super) async fn check_fail(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, Query(params): Query<Params>) -> Result<StatusCode, ApiError> {
    acl::check_write_by_id(&state, &authz, &id)?;
    ttl(state, id, CheckStatus::Critical, params.get("note").cloned().unwrap_or_default()).await
}

pub(super) async fn check_update(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, body: Bytes) -> Result<StatusCode, ApiError> {
    acl::check_write_by_id(&state, &authz, &id)?;
    let fields = Fields::parse(&body)?;
    let status = match fields.string(&["Status"])?.as_str() {
        "passing" => CheckStatus::Passing,
        "warning" => CheckStatus::Warning,
        "critical" => CheckStatus::Critical,
        other => return Err(ApiError::BadRequest(format!("Invalid check status: {other:?}"))),
    };
    ttl(state, id, status, fields.string(&["Output"])?).await
}
