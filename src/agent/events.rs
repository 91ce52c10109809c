//! Consul's user events (`consul event`, `/v1/event/*`) on top of LAN gossip.
//!
//! As in Consul (`agent/user_event.go`), an event is a small record — ID, name, payload, three
//! regex filters, version — encoded into the payload of a Serf-style user event whose gossip
//! name is `consul:event:<name>`. Every agent receives it once (`gossip` dedupes), decodes it,
//! applies the filters to itself, and keeps the accepted ones in a ring of the last
//! [`EVENT_RING_LEN`], oldest first, with a change counter that wakes blocking
//! `/v1/event/list` queries.
//!
//! Wire format (between agents, so append-only): `[format byte][postcard of WireEventV1]`.
//! Format 1 is frozen: a new layout takes a new format byte and decoders keep reading the
//! old ones. `tests::encoding_is_pinned` guards the bytes. The Lamport time is not encoded:
//! it comes from gossip, as Consul's (`LTime` is `codec:"-"`).
//!
//! Invariants: bytes from the network never panic: an event that does not decode, has an
//! unknown format byte, or whose filters do not compile is dropped and counted
//! ([`EventStats`]). Filters are bounded before compiling (`EVENT_FILTER_BYTES_MAX`) and
//! compiled with the regex crate's size limits (`EVENT_FILTER_REGEX_BYTES_MAX`). The ring's
//! lock is never held across an await.

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::agent::{Agent, AgentError};
use crate::gossip::{GossipError, USER_EVENT_BYTES_MAX, UserEvent as GossipUserEvent};

/// How many accepted events an agent keeps: Consul's `eventBuf` (`make([]*UserEvent, 256)`).
pub const EVENT_RING_LEN: usize = 256;
/// Consul's `userEventMaxVersion`: stamped on every event fired here.
pub const USER_EVENT_VERSION: u32 = 1;
/// The longest filter accepted, in bytes, checked before compiling: a longer one could not
/// fit in an event anyway (Serf's limit on the whole event is the same number).
pub const EVENT_FILTER_BYTES_MAX: usize = USER_EVENT_BYTES_MAX;
/// The regex crate's compiled-program and lazy-DFA budgets for one filter, in bytes.
const EVENT_FILTER_REGEX_BYTES_MAX: usize = 256 * 1024;
/// Consul's `userEventName` prefix on the gossip name (`agent/consul`); events without it are
/// not user events (Consul's client logs them as unhandled).
const GOSSIP_NAME_PREFIX: &str = "consul:event:";
/// Consul's remote-exec event: with `disable_remote_exec` (Consul's default) it is ignored,
/// never stored. cairn has no remote exec.
const REMOTE_EXEC_EVENT_NAME: &str = "_rexec";
/// The format byte of [`WireEventV1`].
const EVENT_FORMAT_V1: u8 = 1;

/// An event's ID: a random UUID, shown in Consul's textual form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventId(pub [u8; 16]);

impl EventId {
    /// A random (version 4) UUID. Consul's `uuid.GenerateUUID` is 16 random bytes.
    pub fn random() -> EventId {
        let mut bytes: [u8; 16] = rand::random();
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        EventId(bytes)
    }

    /// Consul's `uuidToUint64` (`agent/event_endpoint.go`): the xor of the UUID's two 64-bit
    /// halves, which `/v1/event/list` reports as its `X-Consul-Index`.
    pub fn index(&self) -> u64 {
        let (high, low) = self.0.split_at(8);
        let half = |bytes: &[u8]| u64::from_be_bytes(bytes.try_into().expect("a UUID half is 8 bytes"));
        half(high) ^ half(low)
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (position, byte) in self.0.iter().enumerate() {
            if matches!(position, 4 | 6 | 8 | 10) {
                formatter.write_str("-")?;
            }
            write!(formatter, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Consul's three filters; an empty string is no filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilters {
    /// Regex on the node name.
    pub node: String,
    /// Regex on the IDs of the agent's local services.
    pub service: String,
    /// Regex on the tags of a service the service filter matched.
    pub tag: String,
}

/// A user event as Consul's API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FiredEvent {
    pub id: EventId,
    pub name: String,
    pub payload: Vec<u8>,
    pub filters: EventFilters,
    pub version: u32,
    /// The gossip Lamport time it was received at (0 until then).
    pub ltime: u64,
}

/// Counters of the events this agent received since start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventStats {
    /// Kept in the ring (fired here or received).
    pub accepted: u64,
    /// Decoded, but a filter excludes this agent (or it is a remote exec).
    pub filtered_out: u64,
    /// Gossip events without Consul's `consul:event:` prefix.
    pub dropped_foreign: u64,
    /// Payloads that do not decode or carry an unknown format byte.
    pub dropped_malformed: u64,
    /// Filters that do not compile here (or are too large).
    pub dropped_bad_filter: u64,
    /// Events gossip delivered while this agent's loop lagged behind.
    pub dropped_lagged: u64,
}

/// Why an event was refused before it was fired.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FireError {
    #[error("User event missing name")]
    MissingName,
    #[error("Cannot provide tag filter without service filter")]
    TagWithoutService,
    /// Consul's wording: `Invalid node filter: error parsing regexp: ...`.
    #[error("Invalid {kind} filter: {reason}")]
    InvalidFilter { kind: &'static str, reason: String },
    /// Serf's wording, then what this event takes.
    #[error("user event exceeds configured limit of {limit} bytes before encoding: it takes {bytes} bytes with its name, ID and filters")]
    TooLarge { bytes: usize, limit: usize },
}

/// Why bytes from the network are not an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty event payload")]
    Empty,
    #[error("unknown event format {0}")]
    UnknownFormat(u8),
    #[error("event does not decode: {0}")]
    Malformed(String),
}

/// Version 1 of the encoded event, after the format byte. Frozen: never reorder, retype or
/// remove a field; a change is a new struct behind a new format byte.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct WireEventV1 {
    id: [u8; 16],
    name: String,
    payload: Vec<u8>,
    node_filter: String,
    service_filter: String,
    tag_filter: String,
    version: u32,
}

/// Encodes `event` for gossip (its `ltime` is not encoded).
pub fn encode(event: &FiredEvent) -> Vec<u8> {
    let wire = WireEventV1 {
        id: event.id.0,
        name: event.name.clone(),
        payload: event.payload.clone(),
        node_filter: event.filters.node.clone(),
        service_filter: event.filters.service.clone(),
        tag_filter: event.filters.tag.clone(),
        version: event.version,
    };
    let mut bytes = vec![EVENT_FORMAT_V1];
    bytes.extend(postcard::to_allocvec(&wire).expect("postcard encodes strings and bytes into a Vec"));
    bytes
}

/// Decodes an event received by gossip at Lamport time `ltime`. Trailing bytes are refused.
pub fn decode(bytes: &[u8], ltime: u64) -> Result<FiredEvent, DecodeError> {
    let (format, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if *format != EVENT_FORMAT_V1 {
        return Err(DecodeError::UnknownFormat(*format));
    }
    let (wire, rest) = postcard::take_from_bytes::<WireEventV1>(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed(format!("{} trailing bytes", rest.len())));
    }
    Ok(FiredEvent {
        id: EventId(wire.id),
        name: wire.name,
        payload: wire.payload,
        filters: EventFilters { node: wire.node_filter, service: wire.service_filter, tag: wire.tag_filter },
        version: wire.version,
        ltime,
    })
}

/// The filters of one event, compiled.
#[derive(Debug)]
pub struct CompiledFilters {
    node: Option<Regex>,
    service: Option<Regex>,
    tag: Option<Regex>,
}

/// Consul's `validateUserEventParams`, minus the name: a tag filter needs a service filter,
/// and every filter must compile (Go's RE2 and the regex crate share their syntax, bar a few
/// escapes).
pub fn compile_filters(filters: &EventFilters) -> Result<CompiledFilters, FireError> {
    if !filters.tag.is_empty() && filters.service.is_empty() {
        return Err(FireError::TagWithoutService);
    }
    Ok(CompiledFilters {
        node: compile_filter("node", &filters.node)?,
        service: compile_filter("service", &filters.service)?,
        tag: compile_filter("tag", &filters.tag)?,
    })
}

fn compile_filter(kind: &'static str, pattern: &str) -> Result<Option<Regex>, FireError> {
    if pattern.is_empty() {
        return Ok(None);
    }
    if pattern.len() > EVENT_FILTER_BYTES_MAX {
        let reason = format!("longer than {EVENT_FILTER_BYTES_MAX} bytes");
        return Err(FireError::InvalidFilter { kind, reason });
    }
    let built = RegexBuilder::new(pattern).size_limit(EVENT_FILTER_REGEX_BYTES_MAX).dfa_size_limit(EVENT_FILTER_REGEX_BYTES_MAX).build();
    built.map(Some).map_err(|error| FireError::InvalidFilter { kind, reason: describe_regex_error(&error, pattern) })
}

/// Go's wording (`error parsing regexp: <what>: `<pattern>``) around the regex crate's final
/// `error: ...` line; its syntax errors span several lines with a caret diagram.
fn describe_regex_error(error: &regex::Error, pattern: &str) -> String {
    match error {
        regex::Error::Syntax(text) => {
            let summary = text.lines().rev().find_map(|line| line.trim().strip_prefix("error: ")).unwrap_or(text);
            format!("error parsing regexp: {}: `{pattern}`", summary.trim())
        }
        regex::Error::CompiledTooBig(limit_bytes) => format!("compiled regexp exceeds the limit of {limit_bytes} bytes"),
        other => other.to_string(),
    }
}

/// Consul's `shouldProcessUserEvent`: the node filter must match `node_name`; a service
/// filter must match the ID of one of `services` (Consul iterates its local services by
/// `ServiceID`), and with a tag filter, one of that service's tags too.
pub fn accepts<'a>(filters: &CompiledFilters, node_name: &str, services: impl IntoIterator<Item = (&'a str, &'a [String])>) -> bool {
    if let Some(node) = &filters.node
        && !node.is_match(node_name)
    {
        return false;
    }
    let Some(service) = &filters.service else {
        return true;
    };
    services.into_iter().any(|(id, tags)| {
        service.is_match(id) && filters.tag.as_ref().is_none_or(|tag| tags.iter().any(|t| tag.is_match(t)))
    })
}

/// The accepted events, oldest first, at most [`EVENT_RING_LEN`].
#[derive(Debug, Default)]
pub struct EventRing {
    events: VecDeque<FiredEvent>,
}

impl EventRing {
    /// Keeps `event`, dropping the oldest beyond the ring's length. Returns false (and keeps
    /// nothing) when an event with the same ID is already kept: the firing agent records its
    /// own event at once and again when gossip delivers it back.
    pub fn push(&mut self, event: FiredEvent) -> bool {
        if self.events.iter().any(|kept| kept.id == event.id) {
            return false;
        }
        if self.events.len() == EVENT_RING_LEN {
            self.events.pop_front();
        }
        self.events.push_back(event);
        true
    }

    /// Every kept event, oldest first (Consul's `UserEvents`).
    pub fn list(&self) -> Vec<FiredEvent> {
        self.events.iter().cloned().collect()
    }
}

/// The agent's events: the ring, its change counter and the counters.
pub(crate) struct EventLog {
    /// Short critical sections only, never held across an await.
    ring: Mutex<EventRing>,
    /// Bumped after every event kept; wakes blocking `/v1/event/list` queries. Lives as long
    /// as the agent.
    changes: watch::Sender<u64>,
    accepted: AtomicU64,
    filtered_out: AtomicU64,
    dropped_foreign: AtomicU64,
    dropped_malformed: AtomicU64,
    dropped_bad_filter: AtomicU64,
    dropped_lagged: AtomicU64,
}

impl Default for EventLog {
    fn default() -> EventLog {
        EventLog {
            ring: Mutex::new(EventRing::default()),
            changes: watch::channel(0).0,
            accepted: AtomicU64::new(0),
            filtered_out: AtomicU64::new(0),
            dropped_foreign: AtomicU64::new(0),
            dropped_malformed: AtomicU64::new(0),
            dropped_bad_filter: AtomicU64::new(0),
            dropped_lagged: AtomicU64::new(0),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Agent {
    /// Consul's `UserEvent` (`consul event`, `PUT /v1/event/fire/<name>`): validates, encodes
    /// and fires `name` with `payload` on gossip, and records it here at once when this agent
    /// passes its filters. The returned event carries its Lamport time.
    ///
    /// Consul relays the fire to a server (for ACLs) which gossips it; cairn has no ACLs, so
    /// the agent that is asked gossips it itself: the same event reaches the same agents.
    pub fn fire_event(&self, name: &str, payload: Vec<u8>, filters: EventFilters) -> Result<FiredEvent, AgentError> {
        if name.is_empty() {
            return Err(AgentError::Invalid(FireError::MissingName.to_string()));
        }
        let compiled = compile_filters(&filters).map_err(|e| AgentError::Invalid(e.to_string()))?;
        let mut event = FiredEvent { id: EventId::random(), name: name.to_owned(), payload, filters, version: USER_EVENT_VERSION, ltime: 0 };
        let encoded = encode(&event);
        let gossip_name = format!("{GOSSIP_NAME_PREFIX}{name}");
        // Serf's check, on what Consul hands to Serf: the prefixed name plus the encoded event.
        let bytes = gossip_name.len() + encoded.len();
        if bytes > USER_EVENT_BYTES_MAX {
            return Err(AgentError::TooLarge(FireError::TooLarge { bytes, limit: USER_EVENT_BYTES_MAX }.to_string()));
        }
        let fired = self.gossip.fire_user_event(&gossip_name, encoded).map_err(|error| match error {
            GossipError::UserEventTooLarge { .. } => AgentError::TooLarge(error.to_string()),
            other => AgentError::Gossip(other.to_string()),
        })?;
        event.ltime = fired.ltime;
        self.ingest_event(event.clone(), &compiled);
        Ok(event)
    }

    /// The kept events, oldest first.
    pub fn user_events(&self) -> Vec<FiredEvent> {
        self.events.ring.lock().expect("event ring lock poisoned").list()
    }

    /// Changes after every event kept (blocking `/v1/event/list`).
    pub fn user_event_changes(&self) -> watch::Receiver<u64> {
        self.events.changes.subscribe()
    }

    pub fn event_stats(&self) -> EventStats {
        let log = &self.events;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        EventStats {
            accepted: read(&log.accepted),
            filtered_out: read(&log.filtered_out),
            dropped_foreign: read(&log.dropped_foreign),
            dropped_malformed: read(&log.dropped_malformed),
            dropped_bad_filter: read(&log.dropped_bad_filter),
            dropped_lagged: read(&log.dropped_lagged),
        }
    }

    /// Consul's `handleEvents` for one event from gossip: decode, filter, keep.
    fn receive_event(&self, received: GossipUserEvent) {
        let log = &self.events;
        if !received.name.starts_with(GOSSIP_NAME_PREFIX) {
            bump(&log.dropped_foreign);
            tracing::debug!(name = %received.name, "ignoring a gossip user event that is not a Consul user event");
            return;
        }
        let event = match decode(&received.payload, received.ltime) {
            Ok(event) => event,
            Err(error) => {
                bump(&log.dropped_malformed);
                tracing::warn!(%error, name = %received.name, ltime = received.ltime, "dropping an event that does not decode");
                return;
            }
        };
        if event.version > USER_EVENT_VERSION {
            tracing::warn!(version = event.version, event = %event.name, "event version may have unsupported features");
        }
        match compile_filters(&event.filters) {
            Ok(compiled) => self.ingest_event(event, &compiled),
            Err(error) => {
                bump(&log.dropped_bad_filter);
                tracing::warn!(%error, event = %event.name, id = %event.id, "dropping an event whose filters do not compile");
            }
        }
    }

    /// Consul's filter-then-`ingestUserEvent`: keeps `event` if this agent passes `filters`.
    fn ingest_event(&self, event: FiredEvent, filters: &CompiledFilters) {
        let log = &self.events;
        let services = self.local_services();
        let service_tags = services.iter().map(|s| (s.registration.id.as_str(), s.registration.tags.as_slice()));
        if !accepts(filters, &self.identity.node_name, service_tags) || event.name == REMOTE_EXEC_EVENT_NAME {
            bump(&log.filtered_out);
            tracing::debug!(event = %event.name, id = %event.id, "event filtered out on this agent");
            return;
        }
        let (id, name) = (event.id, event.name.clone());
        let kept = log.ring.lock().expect("event ring lock poisoned").push(event);
        if kept {
            bump(&log.accepted);
            log.changes.send_modify(|n| *n = n.wrapping_add(1));
            tracing::debug!(event = %name, %id, "new event");
        }
    }
}

/// Receives user events from gossip until shutdown (Consul's `handleEvents`).
pub(super) async fn user_events_loop(agent: Arc<Agent>) {
    let mut events = agent.gossip.subscribe_user_events();
    let mut shutdown = agent.shutdown_requested();
    loop {
        tokio::select! {
            received = events.recv() => match received {
                Ok(event) => agent.receive_event(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    agent.events.dropped_lagged.fetch_add(missed, Ordering::Relaxed);
                    tracing::warn!(missed, "the user-event loop fell behind; events were missed");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}
