//! Custom broadcasts piggy-backed on foca's gossip: node tags, leave intents, user events.
//!
//! foca only knows identities that are up or down. Everything else a Serf member knows
//! travels as a custom broadcast `Item`, encoded with postcard (the enum tag is the wire
//! kind: append only). foca calls `Handler::receive_item` for every item it receives and for
//! every item we add locally; the handler decides whether the item is news (then foca keeps
//! disseminating it) and records it in the shared `Tables`. Tags and intents that arrive by
//! push/pull or in a tag reply are recorded in the tables directly, without dissemination.
//! - `NodeMeta` (name, version, tags): the newest version per name wins;
//! - `LeaveIntent` (name, bump, prune): Serf's leave intent, about one identity of the node;
//!   the gossip task turns it into `Leaving`/`Left` statuses (see `view`);
//! - `UserEventItem` (Lamport time, name, payload): delivered to subscribers once per agent,
//!   deduplicated by `(ltime, digest of name and payload)` in a ring of recent Lamport times,
//!   as Serf's event buffer does; events older than the ring are dropped.
//!
//! Invariants: the tables are bounded (`MEMBERS_MAX` names, `USER_EVENT_LTIMES_KEPT` ×
//! `USER_EVENTS_PER_LTIME_MAX` digests); an item that fails to decode or breaks a limit is an
//! error, which the gossip task counts as malformed; the lock is never held across an await.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::identity::{NodeId, NodeName};
use super::{MEMBERS_MAX, TAGS_BYTES_MAX, USER_EVENT_BYTES_MAX, UserEvent};

/// The largest encoded item, in bytes (a node meta is at most about 660).
pub(super) const BROADCAST_ITEM_BYTES_MAX: usize = 1024;

/// How many consecutive Lamport times the user-event dedupe remembers (Serf's `EventBuffer`).
const USER_EVENT_LTIMES_KEPT: u64 = 512;

/// How many distinct events one Lamport time may carry before more are dropped.
const USER_EVENTS_PER_LTIME_MAX: usize = 64;

/// How long a meta or leave intent about a name that is not a member is kept, so that copies
/// still circulating are recognised as old news instead of starting over.
const ORPHAN_RETAIN: Duration = Duration::from_secs(60);

/// One custom broadcast. The variant order is on the wire: append only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) enum Item {
    Meta(NodeMeta),
    Leave(LeaveIntent),
    UserEvent(UserEventItem),
}

/// A node's tags at one version. Versions start at the node's first bump, so a restarted
/// node's tags replace those of its earlier run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct NodeMeta {
    pub(super) name: NodeName,
    pub(super) version: u64,
    pub(super) tags: BTreeMap<String, String>,
}

/// "The identity `name`/`bump` is leaving": sent by the node itself (graceful leave) or on
/// its behalf (`force_leave`); `prune` also erases it from member lists.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct LeaveIntent {
    pub(super) name: NodeName,
    pub(super) bump: u64,
    pub(super) prune: bool,
}

/// A user event on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct UserEventItem {
    pub(super) ltime: u64,
    pub(super) name: String,
    pub(super) payload: Vec<u8>,
}

/// What an item is about, so that foca drops a queued item once a newer one replaces it.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum ItemKey {
    Meta { name: NodeName, version: u64 },
    Leave { name: NodeName, bump: u64, prune: bool },
    UserEvent { ltime: u64, digest: u64 },
}

impl foca::Invalidates for ItemKey {
    fn invalidates(&self, other: &ItemKey) -> bool {
        match (self, other) {
            (ItemKey::Meta { name, version }, ItemKey::Meta { name: old, version: old_version }) => {
                name == old && version >= old_version
            }
            (ItemKey::Leave { name, bump, prune }, ItemKey::Leave { name: old, bump: old_bump, prune: old_prune }) => {
                name == old && (bump, prune) >= (old_bump, old_prune)
            }
            (ItemKey::UserEvent { .. }, ItemKey::UserEvent { .. }) => self == other,
            _ => false,
        }
    }
}

/// Why an item was refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum BroadcastError {
    #[error("broadcast item of {bytes} bytes exceeds {BROADCAST_ITEM_BYTES_MAX}")]
    TooLarge { bytes: usize },
    #[error("broadcast item does not decode: {0}")]
    Decode(#[from] postcard::Error),
    #[error("node meta of '{name}' exceeds the tag limit: {reason}")]
    Tags { name: NodeName, reason: String },
    #[error("user event refused: {0}")]
    UserEvent(String),
    #[error("too many members known ({MEMBERS_MAX}): item about '{0}' dropped")]
    TooManyNames(NodeName),
}

/// News for the gossip task, queued by the handler in the order it learned them.
#[derive(Clone, Debug)]
pub(super) enum Learned {
    Meta(NodeMeta),
    Leave(LeaveIntent),
}

/// What the agent has learned from custom broadcasts, shared by foca's handler and the task.
#[derive(Default)]
pub(super) struct Tables {
    metas: HashMap<NodeName, (NodeMeta, Instant)>,
    leaves: HashMap<NodeName, (LeaveIntent, Instant)>,
    user_events: RecentUserEvents,
    /// Drained by the gossip task after every foca call.
    pub(super) inbox: Vec<Learned>,
}

impl Tables {
    pub(super) fn meta(&self, name: &NodeName) -> Option<&NodeMeta> {
        self.metas.get(name).map(|(meta, _)| meta)
    }

    pub(super) fn metas(&self) -> impl Iterator<Item = &NodeMeta> {
        self.metas.values().map(|(meta, _)| meta)
    }

    pub(super) fn leave(&self, name: &NodeName) -> Option<&LeaveIntent> {
        self.leaves.get(name).map(|(intent, _)| intent)
    }

    pub(super) fn leaves(&self) -> impl Iterator<Item = &LeaveIntent> {
        self.leaves.values().map(|(intent, _)| intent)
    }

    /// Ignore user events older than `ltime` (a joiner does not replay the pool's history).
    pub(super) fn ignore_user_events_before(&mut self, ltime: u64) {
        self.user_events.min_ltime = self.user_events.min_ltime.max(ltime);
    }

    /// Forgets what is known about `name` once it is no longer a member, keeping recent
    /// records (`ORPHAN_RETAIN`) so that copies still in flight are not news again.
    pub(super) fn collect_garbage(&mut self, now: Instant, is_member: impl Fn(&NodeName) -> bool) {
        let keep = |name: &NodeName, received: &Instant| {
            is_member(name) || now.saturating_duration_since(*received) < ORPHAN_RETAIN
        };
        self.metas.retain(|name, (_, received)| keep(name, received));
        self.leaves.retain(|name, (_, received)| keep(name, received));
    }

    /// Drops the tags of a reaped member at once (its leave intent stays until collected).
    pub(super) fn forget_meta(&mut self, name: &NodeName) {
        self.metas.remove(name);
    }

    /// Records `meta` if it is newer than what is known; `Some` when it is news.
    pub(super) fn receive_meta(&mut self, meta: NodeMeta, now: Instant) -> Result<Option<ItemKey>, BroadcastError> {
        check_tags(&meta.tags).map_err(|reason| BroadcastError::Tags { name: meta.name.clone(), reason })?;
        match self.metas.get(&meta.name) {
            Some((known, _)) if known.version >= meta.version => return Ok(None),
            None if self.metas.len() >= MEMBERS_MAX => {
                return Err(BroadcastError::TooManyNames(meta.name));
            }
            _ => {}
        }
        let key = ItemKey::Meta { name: meta.name.clone(), version: meta.version };
        self.metas.insert(meta.name.clone(), (meta.clone(), now));
        self.inbox.push(Learned::Meta(meta));
        Ok(Some(key))
    }

    /// Records `intent` if it is newer than what is known; `Some` when it is news.
    pub(super) fn receive_leave(
        &mut self,
        intent: LeaveIntent,
        now: Instant,
    ) -> Result<Option<ItemKey>, BroadcastError> {
        match self.leaves.get(&intent.name) {
            Some((known, _)) if (known.bump, known.prune) >= (intent.bump, intent.prune) => {
                return Ok(None);
            }
            None if self.leaves.len() >= MEMBERS_MAX => {
                return Err(BroadcastError::TooManyNames(intent.name));
            }
            _ => {}
        }
        let key = ItemKey::Leave { name: intent.name.clone(), bump: intent.bump, prune: intent.prune };
        self.leaves.insert(intent.name.clone(), (intent.clone(), now));
        self.inbox.push(Learned::Leave(intent));
        Ok(Some(key))
    }
}

/// Serf's event buffer: per Lamport time (modulo the ring size), the digests seen.
struct RecentUserEvents {
    slots: Vec<(u64, Vec<u64>)>,
    min_ltime: u64,
}

impl Default for RecentUserEvents {
    fn default() -> RecentUserEvents {
        RecentUserEvents { slots: vec![(0, Vec::new()); USER_EVENT_LTIMES_KEPT as usize], min_ltime: 0 }
    }
}

impl RecentUserEvents {
    /// Records `(ltime, digest)`; true when it was not seen before and is recent enough.
    fn admit(&mut self, ltime: u64, digest: u64, clock_now: u64) -> bool {
        if ltime < self.min_ltime {
            return false;
        }
        if clock_now > USER_EVENT_LTIMES_KEPT && ltime < clock_now - USER_EVENT_LTIMES_KEPT {
            return false;
        }
        let slot = &mut self.slots[(ltime % USER_EVENT_LTIMES_KEPT) as usize];
        if slot.0 != ltime {
            *slot = (ltime, Vec::new());
        }
        if slot.1.contains(&digest) || slot.1.len() >= USER_EVENTS_PER_LTIME_MAX {
            return false;
        }
        slot.1.push(digest);
        true
    }
}

/// Checks the encoded size of `tags` against memberlist's 512-byte meta limit.
pub(super) fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), String> {
    let bytes = postcard::to_allocvec(tags).map_err(|error| error.to_string())?.len();
    if bytes > TAGS_BYTES_MAX {
        return Err(format!("tags encode to {bytes} bytes, the limit is {TAGS_BYTES_MAX}"));
    }
    Ok(())
}

/// Checks a user event's name and size as Serf does (name and payload together).
pub(super) fn check_user_event(name: &str, payload: &[u8]) -> Result<(), (usize, &'static str)> {
    if name.is_empty() {
        return Err((0, "empty name"));
    }
    let bytes = name.len() + payload.len();
    if bytes > USER_EVENT_BYTES_MAX {
        return Err((bytes, "too large"));
    }
    Ok(())
}

/// foca's view of our custom broadcasts: decides what is news and records it.
pub(super) struct Handler {
    pub(super) tables: Arc<Mutex<Tables>>,
    /// Subscribers of user events (`Gossip::subscribe_user_events`).
    pub(super) user_events: broadcast::Sender<UserEvent>,
    /// The user-event Lamport clock, shared with `Gossip::fire_user_event`.
    pub(super) clock: Arc<AtomicU64>,
}

impl Handler {
    fn receive_user_event(&self, tables: &mut Tables, event: UserEventItem) -> Result<Option<ItemKey>, BroadcastError> {
        if let Err((bytes, reason)) = check_user_event(&event.name, &event.payload) {
            return Err(BroadcastError::UserEvent(format!("{reason} ({bytes} bytes)")));
        }
        // Lamport witness: the clock moves past every time it sees.
        self.clock.fetch_max(event.ltime.saturating_add(1), Ordering::SeqCst);
        let digest = user_event_digest(&event.name, &event.payload);
        let clock_now = self.clock.load(Ordering::SeqCst);
        if !tables.user_events.admit(event.ltime, digest, clock_now) {
            return Ok(None);
        }
        let key = ItemKey::UserEvent { ltime: event.ltime, digest };
        // No subscriber is fine: the event is still disseminated.
        let _no_subscribers =
            self.user_events.send(UserEvent { ltime: event.ltime, name: event.name, payload: event.payload });
        Ok(Some(key))
    }
}

impl foca::BroadcastHandler<NodeId> for Handler {
    type Key = ItemKey;
    type Error = BroadcastError;

    fn receive_item(&mut self, data: &[u8], _sender: Option<&NodeId>) -> Result<Option<ItemKey>, BroadcastError> {
        if data.len() > BROADCAST_ITEM_BYTES_MAX {
            return Err(BroadcastError::TooLarge { bytes: data.len() });
        }
        let item: Item = postcard::from_bytes(data)?;
        let now = Instant::now();
        let mut tables = self.tables.lock().expect("gossip tables lock poisoned");
        match item {
            Item::Meta(meta) => tables.receive_meta(meta, now),
            Item::Leave(intent) => tables.receive_leave(intent, now),
            Item::UserEvent(event) => self.receive_user_event(&mut tables, event),
        }
    }
}

/// A local digest of a user event's content, for dedupe only (never sent).
fn user_event_digest(name: &str, payload: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    payload.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use foca::BroadcastHandler as _;

    use super::*;

    fn handler() -> (Handler, broadcast::Receiver<UserEvent>) {
        let (user_events, receiver) = broadcast::channel(16);
        let tables = Arc::new(Mutex::new(Tables::default()));
        (Handler { tables, user_events, clock: Arc::new(AtomicU64::new(0)) }, receiver)
    }

    fn encode(item: &Item) -> Vec<u8> {
        postcard::to_allocvec(item).expect("encodes")
    }

    fn meta(version: u64, tags: &[(&str, &str)]) -> Item {
        let tags = tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Item::Meta(NodeMeta { name: NodeName::new("a").expect("valid"), version, tags })
    }

    #[test]
    fn newer_meta_wins_and_older_is_old_news() {
        let (mut handler, _events) = handler();
        assert!(handler.receive_item(&encode(&meta(2, &[("role", "node")])), None).expect("ok").is_some());
        assert!(handler.receive_item(&encode(&meta(1, &[("role", "x")])), None).expect("ok").is_none());
        assert!(handler.receive_item(&encode(&meta(2, &[("role", "node")])), None).expect("ok").is_none());
        assert!(handler.receive_item(&encode(&meta(3, &[("role", "consul")])), None).expect("ok").is_some());
        let tables = handler.tables.lock().expect("lock");
        assert_eq!(tables.meta(&NodeName::new("a").expect("valid")).map(|m| m.version), Some(3));
        assert_eq!(tables.inbox.len(), 2);
    }

    #[test]
    fn oversized_tags_and_garbage_are_errors() {
        let (mut handler, _events) = handler();
        let big = "x".repeat(600);
        assert!(handler.receive_item(&encode(&meta(1, &[("k", &big)])), None).is_err());
        assert!(handler.receive_item(&[0xff, 0xff, 0xff], None).is_err());
        assert!(handler.receive_item(&vec![0; BROADCAST_ITEM_BYTES_MAX + 1], None).is_err());
    }

    #[test]
    fn user_events_are_delivered_once_and_witness_the_clock() {
        let (mut handler, mut events) = handler();
        let event = Item::UserEvent(UserEventItem { ltime: 7, name: "deploy".to_owned(), payload: b"v2".to_vec() });
        assert!(handler.receive_item(&encode(&event), None).expect("ok").is_some());
        assert!(handler.receive_item(&encode(&event), None).expect("ok").is_none());
        assert_eq!(handler.clock.load(Ordering::SeqCst), 8);
        assert_eq!(events.try_recv().expect("one event").name, "deploy");
        assert!(events.try_recv().is_err());
        // Same time, other content: a different event.
        let other = Item::UserEvent(UserEventItem { ltime: 7, name: "deploy".to_owned(), payload: b"v3".to_vec() });
        assert!(handler.receive_item(&encode(&other), None).expect("ok").is_some());
    }

    #[test]
    fn old_user_events_are_dropped() {
        let (mut handler, _events) = handler();
        handler.clock.store(10_000, Ordering::SeqCst);
        let old = Item::UserEvent(UserEventItem { ltime: 5, name: "e".to_owned(), payload: Vec::new() });
        assert!(handler.receive_item(&encode(&old), None).expect("ok").is_none());
        handler.tables.lock().expect("lock").ignore_user_events_before(20_000);
        let before_join = Item::UserEvent(UserEventItem { ltime: 19_999, name: "e".to_owned(), payload: Vec::new() });
        assert!(handler.receive_item(&encode(&before_join), None).expect("ok").is_none());
    }

    #[test]
    fn leave_intents_order_by_bump_then_prune() {
        let (mut handler, _events) = handler();
        let name = NodeName::new("b").expect("valid");
        let intent = |bump, prune| encode(&Item::Leave(LeaveIntent { name: name.clone(), bump, prune }));
        assert!(handler.receive_item(&intent(5, false), None).expect("ok").is_some());
        assert!(handler.receive_item(&intent(5, false), None).expect("ok").is_none());
        assert!(handler.receive_item(&intent(5, true), None).expect("ok").is_some());
        assert!(handler.receive_item(&intent(4, true), None).expect("ok").is_none());
    }

    #[test]
    fn user_event_limits() {
        assert!(check_user_event("", b"").is_err());
        assert!(check_user_event("e", &[0; USER_EVENT_BYTES_MAX - 1]).is_ok());
        assert_eq!(check_user_event("e", &[0; USER_EVENT_BYTES_MAX]), Err((USER_EVENT_BYTES_MAX + 1, "too large")));
    }
}
