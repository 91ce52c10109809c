//! `/v1/event/fire/<name>` and `/v1/event/list`: Consul's user events (`agent/event_endpoint.go`).
//!
//! Both are answered by the agent that receives them, client agents included (events travel
//! by gossip, not Raft). The list is this agent's ring (`agent::events`), oldest first, and
//! blocks Consul's way: its "index" is derived from the last event's ID (`EventId::index`,
//! Consul's `uuidToUint64`), which is not monotonic, so a blocking list returns as soon as
//! the index *differs* from `?index`, or when the wait (bounded by `max_query_time`) ends.
//!
//! Status codes: Consul answers every refused fire with 500; cairn answers bad input with 400
//! (missing name, bad filters, in Consul's wording) and an event over Serf's size limit with
//! 413, so clients can tell their mistake from a server fault. `?dc=` naming another
//! datacenter is Consul's 500 `No path to datacenter`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::agent::events::{EventFilters, FiredEvent};
use crate::config::parse_go_duration;
use crate::http::AppState;
use crate::http::authz::{Authz, mark_filtered};
use crate::http::error::ApiError;
use crate::http::query::{Params, check_datacenter, json_body};

/// `PUT /v1/event/fire/<name>`: `?node=`, `?service=`, `?tag=` are the filters, the body is the
/// payload. Answers the event as Consul does.
pub(super) async fn fire(
    State(state): State<AppState>,
    authz: Authz,
    name: Option<Path<String>>,
    Query(params): Query<Params>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_datacenter(&state, &params)?;
    let name = name.map(|Path(name)| name).unwrap_or_default();
    if name.is_empty() {
        return Err(ApiError::BadRequest("Missing name".into()));
    }
    authz.require(authz.authorizer().event_write(&name), "event:write", Some(&name))?;
    let filter = |key: &str| params.get(key).cloned().unwrap_or_default();
    let filters = EventFilters { node: filter("node"), service: filter("service"), tag: filter("tag") };
    let event = state.agent.fire_event(&name, body.to_vec(), filters)?;
    // Consul's fire answers with `LTime` 0: the Lamport time is stamped by the server that
    // gossips the event, after the answer is built. Kept, so clients see what Consul shows.
    let body = event_json(&event, 0);
    Ok(([("content-type", "application/json")], json_body(&body, params.contains_key("pretty"))).into_response())
}

/// `GET /v1/event/list`: the kept events, oldest first, `?name=` keeping one name; blocking
/// with `?index=` and `?wait=`. Other parameters (`node`, `service`, `tag`) are ignored, as
/// in Consul.
pub(super) async fn list(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    let min_index = match params.get("index").filter(|text| !text.is_empty()) {
        None => 0,
        Some(text) => text.parse::<u64>().map_err(|_| ApiError::BadRequest("Invalid index".into()))?,
    };
    // Consul's `EventList`: with an index, the wait defaults to and is capped by the maximum.
    let wait_max = Duration::from_secs(state.agent.config().max_query_time_s);
    let wait = match params.get("wait").filter(|text| !text.is_empty()) {
        None => wait_max,
        Some(text) => parse_go_duration(text).map_err(|_| ApiError::BadRequest("Invalid wait time".into()))?.min(wait_max),
    };
    let name = params.get("name").filter(|name| !name.is_empty());
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = state.agent.user_event_changes();
    let mut shutdown = state.agent.shutdown_requested();
    loop {
        changes.borrow_and_update();
        let mut events = state.agent.user_events();
        if let Some(name) = name {
            events.retain(|event| event.name == *name);
        }
        let before = events.len();
        events.retain(|event| authz.authorizer().event_read(&event.name));
        let filtered = events.len() != before;
        let index = list_index(&events);
        let unchanged = min_index != 0 && index == min_index;
        if !unchanged || tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
            let body: Vec<Value> = events.iter().map(|event| event_json(event, event.ltime)).collect();
            let mut headers = HeaderMap::new();
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            headers.insert("x-consul-index", HeaderValue::from(index));
            mark_filtered(&mut headers, filtered);
            return Ok((headers, json_body(&body, params.contains_key("pretty"))).into_response());
        }
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Consul's list index: the last event's `uuidToUint64`, or 1 when there is none ("a
/// non-zero index to prevent a hot query loop").
pub(crate) fn list_index(events: &[FiredEvent]) -> u64 {
    events.last().map_or(1, |event| event.id.index())
}

/// Consul's `UserEvent` JSON: `Payload` is base64, or `null` when empty (Go's nil slice).
fn event_json(event: &FiredEvent, ltime: u64) -> Value {
    let payload = if event.payload.is_empty() {
        Value::Null
    } else {
        Value::String(base64::engine::general_purpose::STANDARD.encode(&event.payload))
    };
    json!({
        "ID": event.id.to_string(),
        "Name": event.name,
        "Payload": payload,
        "NodeFilter": event.filters.node,
        "ServiceFilter": event.filters.service,
        "TagFilter": event.filters.tag,
        "Version": event.version,
        "LTime": ltime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::events::{EventId, USER_EVENT_VERSION};

    fn event(id: [u8; 16], payload: &[u8]) -> FiredEvent {
        FiredEvent {
            id: EventId(id),
            name: "deploy".into(),
            payload: payload.to_vec(),
            filters: EventFilters { node: "web-.*".into(), service: String::new(), tag: String::new() },
            version: USER_EVENT_VERSION,
            ltime: 7,
        }
    }

    #[test]
    fn list_index_is_the_last_events_uuid_index_or_one() {
        assert_eq!(list_index(&[]), 1);
        let first = event([0x11; 16], b"");
        let mut last_id = [0u8; 16];
        last_id[7] = 0x05;
        last_id[15] = 0x03;
        let last = event(last_id, b"");
        assert_eq!(list_index(&[first, last]), 0x05 ^ 0x03);
    }

    #[test]
    fn event_json_has_consuls_fields() {
        let with_payload = event_json(&event([0xab; 16], b"hello"), 7);
        assert_eq!(
            with_payload,
            json!({
                "ID": "abababab-abab-abab-abab-abababababab",
                "Name": "deploy",
                "Payload": "aGVsbG8=",
                "NodeFilter": "web-.*",
                "ServiceFilter": "",
                "TagFilter": "",
                "Version": 1,
                "LTime": 7,
            })
        );
        assert_eq!(event_json(&event([0xab; 16], b""), 0)["Payload"], Value::Null);
    }
}
