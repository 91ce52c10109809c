//! `/v1/operator/autopilot/*`: the replicated configuration (GET, and PUT with `?cas=`), the
//! servers' health and Consul's richer state, all in Consul's JSON.
//!
//! The health and the state are the leader's (`agent::autopilot`; a follower relays these
//! reads to it, `http::forward`). Consul Enterprise's fields (`RedundancyZoneTag`,
//! `DisableUpgradeMigration`, `UpgradeVersionTag`) are answered with their defaults, and a PUT
//! that sets them is refused with 400: cairn has no redundancy zones or upgrade migrations.
//! A setting cairn stores but does not act on (`CleanupDeadServers`) is named in a `Warning`
//! header (`299 cairn "..."`, the header Kubernetes uses for the same purpose) on every
//! answer that carries it.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::agent::autopilot::{AutopilotReport, ServerHealth, unhonoured};
use crate::agent::members::CONSUL_COMPAT_VERSION;
use crate::catalog::Command;
use crate::catalog::model::AutopilotSettings;
use crate::checks::go_duration_text;
use crate::http::AppState;
use crate::http::acl_json::rfc3339;
use crate::http::authz::Authz;
use crate::http::decode::Fields;
use crate::http::error::ApiError;
use crate::http::operator::raft_id;
use crate::http::query::{Params, check_datacenter, json_body};

fn json_ok(value: &Value, params: &Params, status: StatusCode) -> Response {
    (status, [("content-type", "application/json")], json_body(value, params.contains_key("pretty"))).into_response()
}

/// Adds the `Warning` header naming what of `settings` cairn does not act on.
fn with_warning(mut response: Response, settings: &AutopilotSettings) -> Response {
    if let Some(warning) = unhonoured(settings)
        && let Ok(value) = HeaderValue::from_str(&format!("299 cairn \"{}\"", warning.replace('"', "'")))
    {
        response.headers_mut().insert("warning", value);
    }
    response
}

fn go_duration_ns(nanos: u64) -> String {
    go_duration_text(Duration::from_nanos(nanos))
}

/// `GET /v1/operator/autopilot/configuration`. Until the leader has stored the cluster's
/// configuration (moments after the first election) this answers the settings it will store,
/// with index 0, rather than Consul's 500 "not initialized yet"; a `?cas=0` write then applies
/// only if none was stored meanwhile.
pub(super) async fn get_configuration(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    authz.require(authz.authorizer().operator_read(), "operator:read", None)?;
    check_datacenter(&state, &params)?;
    let stored = state.agent.view().read(|catalog| catalog.autopilot_config().cloned());
    let (settings, create_index, modify_index) = match stored {
        Some(config) => (config.settings, config.create_index, config.modify_index),
        None => (state.agent.autopilot_settings(), 0, 0),
    };
    let body = json!({
        "CleanupDeadServers": settings.cleanup_dead_servers,
        "LastContactThreshold": go_duration_ns(settings.last_contact_threshold_ns),
        "MaxTrailingLogs": settings.max_trailing_logs,
        "MinQuorum": settings.min_quorum,
        "ServerStabilizationTime": go_duration_ns(settings.server_stabilization_time_ns),
        "RedundancyZoneTag": "",
        "DisableUpgradeMigration": false,
        "UpgradeVersionTag": "",
        "CreateIndex": create_index,
        "ModifyIndex": modify_index,
    });
    Ok(with_warning(json_ok(&body, &params, StatusCode::OK), &settings))
}

/// `PUT /v1/operator/autopilot/configuration[?cas=N]`: the body replaces the configuration
/// whole (a field left out takes its zero value, as in Consul). Answers `true`, or with
/// `?cas` whether the index still matched.
pub(super) async fn set_configuration(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    authz.require(authz.authorizer().operator_write(), "operator:write", None)?;
    check_datacenter(&state, &params)?;
    let settings = decode_settings(&body).map_err(|e| ApiError::BadRequest(format!("Error parsing autopilot config: {e}")))?;
    let cas_index = match params.get("cas") {
        None => None,
        Some(text) => Some(text.parse::<u64>().map_err(|e| ApiError::BadRequest(format!("Error parsing cas value: {e}")))?),
    };
    let (_, outcome) = state.agent.write(Command::SetAutopilotConfig { settings: settings.clone(), cas_index }).await?;
    let applied = match outcome {
        crate::catalog::Outcome::Bool(applied) => applied,
        crate::catalog::Outcome::Rejected(reason) => return Err(ApiError::Internal(reason)),
        _ => true,
    };
    // Consul answers `true` unless it was a check-and-set.
    let answer = if cas_index.is_some() { applied } else { true };
    let response = ([("content-type", "application/json")], if answer { "true" } else { "false" }).into_response();
    Ok(if applied { with_warning(response, &settings) } else { response })
}

/// Consul's `api.AutopilotConfiguration` from a request body; Enterprise settings refused.
fn decode_settings(body: &[u8]) -> Result<AutopilotSettings, ApiError> {
    let fields = if body.iter().all(u8::is_ascii_whitespace) { Fields::parse(b"{}")? } else { Fields::parse(body)? };
    let enterprise = [
        ("RedundancyZoneTag", !fields.string(&["RedundancyZoneTag"])?.is_empty(), "redundancy zones"),
        ("DisableUpgradeMigration", fields.bool(&["DisableUpgradeMigration"])?, "upgrade migrations"),
        ("UpgradeVersionTag", !fields.string(&["UpgradeVersionTag"])?.is_empty(), "upgrade migrations"),
    ];
    if let Some((field, _, feature)) = enterprise.iter().find(|(_, set, _)| *set) {
        return Err(ApiError::BadRequest(format!("{field} is a Consul Enterprise setting: cairn has no {feature}")));
    }
    let nanos = |name: &str| -> Result<u64, ApiError> {
        Ok(fields.duration(&[name])?.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    };
    Ok(AutopilotSettings {
        cleanup_dead_servers: fields.bool(&["CleanupDeadServers"])?,
        last_contact_threshold_ns: nanos("LastContactThreshold")?,
        max_trailing_logs: fields.u64(&["MaxTrailingLogs"])?,
        min_quorum: fields.u64(&["MinQuorum"])?,
        server_stabilization_time_ns: nanos("ServerStabilizationTime")?,
    })
}

/// The leader's report, or why there is none here.
fn report(state: &AppState) -> Result<AutopilotReport, ApiError> {
    if state.agent.raft().is_none() {
        return Err(ApiError::Internal("this agent is not a server".into()));
    }
    // Reached only with `?stale` on a follower, or between elections: Consul's autopilot runs
    // on the leader only.
    state.agent.autopilot_report().ok_or_else(|| ApiError::Internal("Failed to get autopilot state: this server is not the leader".into()))
}

fn stable_since(server: &ServerHealth, round_to_second: bool) -> String {
    let now_ms = crate::agent::wall_clock_ms();
    let since_ms = now_ms.saturating_sub(u64::try_from(server.stable_for.as_millis()).unwrap_or(u64::MAX));
    // The health endpoint rounds to the second, as Consul's does.
    rfc3339(if round_to_second { (since_ms + 500) / 1000 * 1000 } else { since_ms })
}

fn last_contact(server: &ServerHealth) -> Value {
    server.last_contact.map_or(Value::Null, |contact| Value::String(go_duration_text(contact)))
}

/// `GET /v1/operator/autopilot/health`: 200 when every server is healthy, 429 otherwise, the
/// same body either way.
pub(super) async fn health(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    authz.require(authz.authorizer().operator_read(), "operator:read", None)?;
    check_datacenter(&state, &params)?;
    let report = report(&state)?;
    let servers: Vec<Value> = report
        .servers
        .iter()
        .map(|server| {
            json!({
                "ID": raft_id(server.id),
                "Name": server.name,
                "Address": server.address,
                "SerfStatus": server.node_status,
                "Version": CONSUL_COMPAT_VERSION,
                "Leader": server.leader,
                "LastContact": last_contact(server),
                "LastTerm": server.last_term,
                "LastIndex": server.last_index,
                "Healthy": server.healthy,
                "Voter": server.voter,
                "StableSince": stable_since(server, true),
            })
        })
        .collect();
    let body = json!({"Healthy": report.healthy, "FailureTolerance": report.failure_tolerance, "Servers": servers});
    let status = if report.healthy { StatusCode::OK } else { StatusCode::TOO_MANY_REQUESTS };
    Ok(with_warning(json_ok(&body, &params, status), &state.agent.autopilot_settings()))
}

/// `GET /v1/operator/autopilot/state`: Consul's `api.AutopilotState` (CE: every server's node
/// type is `voter`, and the optimistic failure tolerance is the failure tolerance).
pub(super) async fn autopilot_state(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    authz.require(authz.authorizer().operator_read(), "operator:read", None)?;
    check_datacenter(&state, &params)?;
    let report = report(&state)?;
    let mut servers = Map::new();
    for server in &report.servers {
        let status = if server.leader { "leader" } else if server.voter { "voter" } else { "non-voter" };
        servers.insert(
            raft_id(server.id),
            json!({
                "ID": raft_id(server.id),
                "Name": server.name,
                "Address": server.address,
                "NodeStatus": server.node_status,
                "Version": CONSUL_COMPAT_VERSION,
                "LastContact": last_contact(server),
                "LastTerm": server.last_term,
                "LastIndex": server.last_index,
                "Healthy": server.healthy,
                "StableSince": stable_since(server, false),
                "ReadReplica": false,
                "Status": status,
                "Meta": server.meta,
                "NodeType": "voter",
            }),
        );
    }
    let voters: Vec<String> = report.servers.iter().filter(|s| s.voter).map(|s| raft_id(s.id)).collect();
    let body = json!({
        "Healthy": report.healthy,
        "FailureTolerance": report.failure_tolerance,
        "OptimisticFailureTolerance": report.failure_tolerance,
        "Servers": servers,
        "Leader": raft_id(report.leader),
        "Voters": voters,
    });
    Ok(with_warning(json_ok(&body, &params, StatusCode::OK), &state.agent.autopilot_settings()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_decodes_as_consuls_and_enterprise_settings_are_refused() {
        let settings = decode_settings(br#"{"CleanupDeadServers": true, "LastContactThreshold": "7.5s", "MaxTrailingLogs": 9, "MinQuorum": 3, "ServerStabilizationTime": 1000}"#).unwrap();
        assert_eq!(
            settings,
            AutopilotSettings { cleanup_dead_servers: true, last_contact_threshold_ns: 7_500_000_000, max_trailing_logs: 9, min_quorum: 3, server_stabilization_time_ns: 1000 }
        );
        let zeroes = decode_settings(br#"{"cleanup_dead_servers": false}"#).unwrap();
        assert_eq!((zeroes.last_contact_threshold_ns, zeroes.max_trailing_logs), (0, 0), "a missing field is zero, as in Consul");
        for body in [&br#"{"RedundancyZoneTag": "zone"}"#[..], br#"{"DisableUpgradeMigration": true}"#, br#"{"UpgradeVersionTag": "v"}"#] {
            let error = decode_settings(body).unwrap_err().to_string();
            assert!(error.contains("Consul Enterprise"), "{error}");
        }
        assert!(decode_settings(br#"{"RedundancyZoneTag": "", "DisableUpgradeMigration": false}"#).is_ok(), "defaults are fine");
        assert!(decode_settings(br#"{"LastContactThreshold": "soon"}"#).is_err());
        assert_eq!(go_duration_ns(200_000_000), "200ms");
    }
}
