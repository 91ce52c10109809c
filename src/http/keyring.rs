//! `/v1/operator/keyring`: Consul's gossip keyring API (`OperatorKeyringEndpoint`). `GET` lists
//! the keys every alive member holds, `POST` installs a key, `PUT` makes it primary, `DELETE`
//! removes it; the three take `{"Key": "<base64>"}`.
//!
//! The operation runs through `Gossip::keyring_cluster` on the agent that receives it (client
//! agents relay it to a server, as every non-agent endpoint). The answer is Consul's: a JSON
//! array of one `KeyringResponse` per pool (cairn has the LAN pool only: no WAN entry), with
//! `NumResp` and `NumErr` added from serf's response. When a member failed or did not answer,
//! Consul's 500 with its multierror (`dc1 (LAN) error: 1/3 nodes reported failure`, then one
//! line per member).
//!
//! Status codes: Consul's 400 for a body that does not decode and for bad `?relay-factor` or
//! `?local-only`, in its words; cairn also answers 400 for a key that is not base64 or not
//! 16, 24 or 32 bytes (Consul lets every member refuse it and answers 500). `?relay-factor`
//! (0 to 5) is accepted and has nothing to do: members are dialed directly, not reached by a
//! relayed serf query. `?local-only` (lists only) changes nothing either: there is no WAN pool.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::gossip::keyring_ops::{GossipKey, KeyringOp, KeyringSummary};
use crate::http::AppState;
use crate::http::authz::Authz;
use crate::http::decode::Fields;
use crate::http::error::ApiError;
use crate::http::query::{Params, json_body};

/// Consul's largest `?relay-factor` (`agent.ParseRelayFactor`).
const RELAY_FACTOR_MAX: i64 = 5;

/// Consul's `structs.KeyringResponse`, plus serf's counts.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyringResponse {
    #[serde(rename = "WAN")]
    wan: bool,
    datacenter: String,
    segment: String,
    messages: BTreeMap<String, String>,
    keys: BTreeMap<String, usize>,
    primary_keys: BTreeMap<String, usize>,
    num_nodes: usize,
    /// cairn extension: serf's count of members that answered.
    num_resp: usize,
    /// cairn extension: serf's count of members that answered with an error.
    num_err: usize,
    error: String,
}

/// `GET /v1/operator/keyring`: every key with how many members hold it, and every primary.
pub(super) async fn list(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    check_params(&params, true)?;
    authz.require(authz.authorizer().keyring_read(), "keyring:read", None)?;
    let summary = state.agent.gossip().keyring_cluster(&KeyringOp::List).await.summary();
    let datacenter = state.agent.identity().datacenter.clone();
    fail_on_errors(&datacenter, &summary)?;
    let response = KeyringResponse {
        wan: false,
        datacenter,
        segment: String::new(),
        messages: summary.messages,
        keys: summary.keys,
        primary_keys: summary.primary_keys,
        num_nodes: summary.num_nodes,
        num_resp: summary.num_resp,
        num_err: summary.num_err,
        error: String::new(),
    };
    let body = json_body(&[response], params.contains_key("pretty"));
    Ok((StatusCode::OK, [("content-type", "application/json")], body).into_response())
}

/// `POST /v1/operator/keyring`: installs a key on every member (not primary).
pub(super) async fn install(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    modify(&state, &authz, &params, &body, KeyringOp::Install).await
}

/// `PUT /v1/operator/keyring`: makes an installed key the primary on every member.
pub(super) async fn use_key(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    modify(&state, &authz, &params, &body, KeyringOp::Use).await
}

/// `DELETE /v1/operator/keyring`: removes a key that is not primary from every member.
pub(super) async fn remove(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>, body: Bytes) -> Result<Response, ApiError> {
    modify(&state, &authz, &params, &body, KeyringOp::Remove).await
}

/// Install, use and remove: the body's key, the parameters, `keyring:write`, then the pool.
/// Consul answers success with an empty 200.
async fn modify(state: &AppState, authz: &Authz, params: &Params, body: &[u8], op: fn(GossipKey) -> KeyringOp) -> Result<Response, ApiError> {
    let key = Fields::parse(body)?.string(&["Key"])?;
    check_params(params, false)?;
    authz.require(authz.authorizer().keyring_write(), "keyring:write", None)?;
    let key = GossipKey::from_base64(&key).map_err(|error| ApiError::BadRequest(error.to_string()))?;
    let summary = state.agent.gossip().keyring_cluster(&op(key)).await.summary();
    fail_on_errors(&state.agent.identity().datacenter, &summary)?;
    Ok(StatusCode::OK.into_response())
}

/// `?relay-factor` and `?local-only` as Consul's `OperatorKeyringEndpoint` checks them.
fn check_params(params: &Params, list: bool) -> Result<(), ApiError> {
    if let Some(relay_factor) = params.get("relay-factor").filter(|text| !text.is_empty()) {
        let factor: i64 = relay_factor.parse().map_err(|_| {
            ApiError::BadRequest(format!("Error parsing relay factor: strconv.Atoi: parsing {relay_factor:?}: invalid syntax"))
        })?;
        if !(0..=RELAY_FACTOR_MAX).contains(&factor) {
            return Err(ApiError::BadRequest(format!("Invalid relay-factor: Relay factor must be in range: [0, {RELAY_FACTOR_MAX}]")));
        }
    }
    if let Some(local_only) = params.get("local-only").filter(|text| !text.is_empty()) {
        let local_only = parse_go_bool(local_only).ok_or_else(|| {
            ApiError::BadRequest(format!("Error parsing local-only: strconv.ParseBool: parsing {local_only:?}: invalid syntax"))
        })?;
        if local_only && !list {
            return Err(ApiError::BadRequest("Invalid use of local-only: local-only can only be set for list requests".into()));
        }
    }
    Ok(())
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Consul's `keyringErrorsOrNil`: a 500 listing the pool's error and each member's message.
fn fail_on_errors(datacenter: &str, summary: &KeyringSummary) -> Result<(), ApiError> {
    let Some(error) = &summary.error else { return Ok(()) };
    let mut errors = vec![format!("{datacenter} (LAN) error: {error}")];
    errors.extend(summary.messages.iter().map(|(node, message)| format!("{node}: {message}")));
    Err(ApiError::Internal(multierror(&errors)))
}

/// go-multierror's list format, which Consul's HTTP errors carry.
fn multierror(errors: &[String]) -> String {
    let points: Vec<String> = errors.iter().map(|error| format!("* {error}")).collect();
    let plural = if errors.len() == 1 { "" } else { "s" };
    format!("{} error{plural} occurred:\n\t{}\n\n", errors.len(), points.join("\n\t"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn relay_factor_and_local_only_are_checked_as_consul() {
        assert!(check_params(&params(&[("relay-factor", "5"), ("local-only", "true")]), true).is_ok());
        assert!(check_params(&params(&[("local-only", "false")]), false).is_ok());
        let refused = |pairs: &[(&str, &str)], list| check_params(&params(pairs), list).err().expect("refused").to_string();
        assert_eq!(refused(&[("relay-factor", "6")], true), "Invalid relay-factor: Relay factor must be in range: [0, 5]");
        assert_eq!(refused(&[("relay-factor", "-1")], true), "Invalid relay-factor: Relay factor must be in range: [0, 5]");
        assert!(refused(&[("relay-factor", "x")], true).starts_with("Error parsing relay factor"));
        assert!(refused(&[("local-only", "yes")], true).starts_with("Error parsing local-only"));
        assert_eq!(refused(&[("local-only", "1")], false), "Invalid use of local-only: local-only can only be set for list requests");
    }

    #[test]
    fn member_failures_become_consuls_multierror() {
        let summary = KeyringSummary {
            messages: BTreeMap::from([("b".to_owned(), "Requested key is not in the keyring".to_owned())]),
            error: Some("1/3 nodes reported failure".to_owned()),
            ..KeyringSummary::default()
        };
        let error = fail_on_errors("dc1", &summary).err().expect("an error").to_string();
        assert_eq!(error, "2 errors occurred:\n\t* dc1 (LAN) error: 1/3 nodes reported failure\n\t* b: Requested key is not in the keyring\n\n");
        assert!(fail_on_errors("dc1", &KeyringSummary::default()).is_ok());
    }
}
