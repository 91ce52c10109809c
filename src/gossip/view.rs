//! The member list as Serf reports it, derived from foca's up/down notifications, leave
//! intents and tags. Pure: time is an argument, nothing here does IO.
//!
//! Status rules (Serf's):
//! - foca up → `Alive` (`Leaving` if a leave intent names this identity); `Join` is emitted
//!   once the member's tags are known, or after `JOIN_EVENT_WAIT` without them;
//! - foca down → `Left` when the identity announced its leave (or was force-left), otherwise
//!   `Failed`;
//! - a leave intent turns `Alive` into `Leaving` (no event) and `Failed` into `Left`; with
//!   `prune`, a `Left` member is reaped at once;
//! - `Failed` members are reaped after the reconnect timeout, `Left` ones after the tombstone
//!   timeout (event `Reap`);
//! - a renamed member (same name, newer identity: a restart or a rejoin) keeps its entry.
//!
//! Invariants: at most `MEMBERS_MAX` entries; the local node's entry is never reaped and
//! never changed by foca notifications; every status change marks the view changed, so the
//! published snapshot follows.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::broadcasts::LeaveIntent;
use super::identity::{NodeId, NodeName};
use super::{MEMBERS_MAX, Member, MemberEvent, MemberStatus};

/// How long a member that came up without known tags waits for them before `Join` is emitted
/// with empty tags (they are requested at once; this only covers a lost request).
pub(super) const JOIN_EVENT_WAIT: Duration = Duration::from_secs(3);

/// Tags per member, as the foca identity does not carry them.
type Tags = BTreeMap<String, String>;

struct Entry {
    id: NodeId,
    status: MemberStatus,
    tags: Option<Tags>,
    /// When `status` last changed.
    since: Instant,
    /// Whether `Join` was emitted for the current run of this member.
    announced: bool,
}

impl Entry {
    fn member(&self) -> Member {
        Member {
            name: self.id.name.as_str().to_owned(),
            addr: self.id.addr.ip(),
            port: self.id.addr.port(),
            tags: self.tags.clone().unwrap_or_default(),
            status: self.status,
        }
    }

    fn is_active(&self) -> bool {
        matches!(self.status, MemberStatus::Alive | MemberStatus::Leaving)
    }
}

/// The members this agent knows, itself included.
pub(super) struct MemberView {
    local: NodeName,
    entries: BTreeMap<NodeName, Entry>,
    /// Set by every change; cleared by `take_changed`.
    changed: bool,
}

impl MemberView {
    pub(super) fn new(local: &NodeId, tags: Tags, now: Instant) -> MemberView {
        let entry =
            Entry { id: local.clone(), status: MemberStatus::Alive, tags: Some(tags), since: now, announced: true };
        let entries = BTreeMap::from([(local.name.clone(), entry)]);
        MemberView { local: local.name.clone(), entries, changed: true }
    }

    pub(super) fn members(&self) -> Vec<Member> {
        self.entries.values().map(Entry::member).collect()
    }

    pub(super) fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    pub(super) fn contains(&self, name: &NodeName) -> bool {
        self.entries.contains_key(name)
    }

    /// The current identity and status of `name`.
    pub(super) fn get(&self, name: &NodeName) -> Option<(&NodeId, MemberStatus)> {
        self.entries.get(name).map(|entry| (&entry.id, entry.status))
    }

    pub(super) fn has_tags(&self, name: &NodeName) -> bool {
        self.entries.get(name).is_some_and(|entry| entry.tags.is_some())
    }

    /// Alive or leaving peers (not the local node), for RTT probes.
    pub(super) fn active_peers(&self) -> Vec<&NodeId> {
        let peers = self.entries.values().filter(|entry| entry.is_active() && entry.id.name != self.local);
        peers.map(|entry| &entry.id).collect()
    }

    /// The local node's identity changed (renewed after being declared down).
    pub(super) fn set_local_id(&mut self, id: &NodeId) {
        if let Some(entry) = self.entries.get_mut(&self.local) {
            entry.id = id.clone();
            self.changed = true;
        }
    }

    /// The local node's status (`Leaving`, then `Left`, on a graceful leave).
    pub(super) fn set_local_status(&mut self, status: MemberStatus, now: Instant) {
        if let Some(entry) = self.entries.get_mut(&self.local) {
            entry.status = status;
            entry.since = now;
            self.changed = true;
        }
    }

    /// foca reports `id` up. `tags` and `leave` are what the tables know about its name.
    pub(super) fn member_up(
        &mut self,
        id: &NodeId,
        tags: Option<&Tags>,
        leave: Option<&LeaveIntent>,
        now: Instant,
    ) -> Vec<MemberEvent> {
        if id.name == self.local {
            return Vec::new();
        }
        if !self.entries.contains_key(&id.name) && self.entries.len() >= MEMBERS_MAX {
            tracing::warn!(node = %id.name, limit = MEMBERS_MAX, "gossip: member list full, ignoring a new member");
            return Vec::new();
        }
        let status = if leave.is_some_and(|intent| intent.bump == id.bump) {
            MemberStatus::Leaving
        } else {
            MemberStatus::Alive
        };
        let entry = self.entries.entry(id.name.clone()).or_insert_with(|| Entry {
            id: id.clone(),
            status: MemberStatus::None,
            tags: None,
            since: now,
            announced: false,
        });
        let rejoined = matches!(entry.status, MemberStatus::Failed | MemberStatus::Left | MemberStatus::None);
        entry.id = id.clone();
        if let Some(tags) = tags {
            entry.tags = Some(tags.clone());
        }
        if entry.status != status {
            entry.status = status;
            entry.since = now;
        }
        if rejoined {
            entry.announced = false;
        }
        self.changed = true;
        if !entry.announced && entry.tags.is_some() {
            entry.announced = true;
            return vec![MemberEvent::Join(entry.member())];
        }
        Vec::new()
    }

    /// foca reports `id` down.
    pub(super) fn member_down(&mut self, id: &NodeId, leave: Option<&LeaveIntent>, now: Instant) -> Vec<MemberEvent> {
        let Some(entry) = self.entries.get_mut(&id.name) else { return Vec::new() };
        if entry.id != *id || id.name == self.local || !entry.is_active() {
            return Vec::new();
        }
        let left = entry.status == MemberStatus::Leaving || leave.is_some_and(|intent| intent.bump == id.bump);
        entry.status = if left { MemberStatus::Left } else { MemberStatus::Failed };
        entry.since = now;
        entry.announced = true;
        self.changed = true;
        let member = entry.member();
        vec![if left { MemberEvent::Left(member) } else { MemberEvent::Failed(member) }]
    }

    /// foca replaced `old` by the newer identity `new` of the same name.
    pub(super) fn renamed(&mut self, new: &NodeId, leave: Option<&LeaveIntent>) -> Vec<MemberEvent> {
        let Some(entry) = self.entries.get_mut(&new.name) else { return Vec::new() };
        if new.name == self.local {
            return Vec::new();
        }
        let moved = entry.id.addr != new.addr;
        entry.id = new.clone();
        self.changed = true;
        let intent_is_old = leave.is_none_or(|intent| intent.bump != new.bump);
        let mut events = Vec::new();
        if entry.status == MemberStatus::Leaving && intent_is_old {
            entry.status = MemberStatus::Alive;
            events.push(MemberEvent::Update(entry.member()));
        } else if moved && entry.is_active() && entry.announced {
            events.push(MemberEvent::Update(entry.member()));
        }
        events
    }

    /// New tags for `name` (the local node included).
    pub(super) fn tags_changed(&mut self, name: &NodeName, tags: &Tags) -> Vec<MemberEvent> {
        let Some(entry) = self.entries.get_mut(name) else { return Vec::new() };
        if entry.tags.as_ref() == Some(tags) {
            return Vec::new();
        }
        entry.tags = Some(tags.clone());
        self.changed = true;
        if !entry.announced && entry.is_active() {
            entry.announced = true;
            return vec![MemberEvent::Join(entry.member())];
        }
        vec![MemberEvent::Update(entry.member())]
    }

    /// A leave intent for another node. Returns the events and whether the member was reaped.
    pub(super) fn leave_intent(&mut self, intent: &LeaveIntent, now: Instant) -> (Vec<MemberEvent>, bool) {
        let Some(entry) = self.entries.get_mut(&intent.name) else { return (Vec::new(), false) };
        if intent.name == self.local || entry.id.bump != intent.bump {
            return (Vec::new(), false);
        }
        let mut events = Vec::new();
        match entry.status {
            MemberStatus::Alive => entry.status = MemberStatus::Leaving,
            MemberStatus::Failed => {
                entry.status = MemberStatus::Left;
                events.push(MemberEvent::Left(entry.member()));
            }
            _ => {}
        }
        entry.since = now;
        self.changed = true;
        if intent.prune && entry.status == MemberStatus::Left {
            events.push(MemberEvent::Reap(entry.member()));
            self.entries.remove(&intent.name);
            return (events, true);
        }
        (events, false)
    }

    /// Reaps failed and left members past their timeouts and emits overdue joins. Returns the
    /// events and the names reaped.
    pub(super) fn tick(
        &mut self,
        now: Instant,
        reconnect: Duration,
        tombstone: Duration,
    ) -> (Vec<MemberEvent>, Vec<NodeName>) {
        let mut events = Vec::new();
        let mut reaped = Vec::new();
        for (name, entry) in &mut self.entries {
            let age = now.saturating_duration_since(entry.since);
            let expired = match entry.status {
                MemberStatus::Failed => age >= reconnect,
                MemberStatus::Left => age >= tombstone,
                _ => false,
            };
            if expired && *name != self.local {
                events.push(MemberEvent::Reap(entry.member()));
                reaped.push(name.clone());
            } else if !entry.announced && entry.is_active() && age >= JOIN_EVENT_WAIT {
                entry.announced = true;
                events.push(MemberEvent::Join(entry.member()));
            }
        }
        for name in &reaped {
            self.entries.remove(name);
            self.changed = true;
        }
        (events, reaped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, bump: u64) -> NodeId {
        NodeId { name: NodeName::new(name).expect("valid"), addr: "127.0.0.1:8301".parse().expect("valid"), bump }
    }

    fn tags(role: &str) -> Tags {
        BTreeMap::from([("role".to_owned(), role.to_owned())])
    }

    fn intent(name: &str, bump: u64, prune: bool) -> LeaveIntent {
        LeaveIntent { name: NodeName::new(name).expect("valid"), bump, prune }
    }

    fn status(view: &MemberView, name: &str) -> Option<MemberStatus> {
        view.get(&NodeName::new(name).expect("valid")).map(|(_, status)| status)
    }

    #[test]
    fn join_waits_for_tags() {
        let now = Instant::now();
        let mut view = MemberView::new(&id("self", 1), tags("local"), now);
        assert!(view.member_up(&id("b", 1), None, None, now).is_empty());
        assert_eq!(status(&view, "b"), Some(MemberStatus::Alive));
        let events = view.tags_changed(&NodeName::new("b").expect("valid"), &tags("node"));
        assert!(matches!(&events[..], [MemberEvent::Join(member)] if member.tags == tags("node")));
        let events = view.tags_changed(&NodeName::new("b").expect("valid"), &tags("consul"));
        assert!(matches!(&events[..], [MemberEvent::Update(_)]));
        assert_eq!(view.members().len(), 2);
    }

    #[test]
    fn join_without_tags_is_emitted_after_the_wait() {
        let now = Instant::now();
        let mut view = MemberView::new(&id("self", 1), tags("local"), now);
        view.member_up(&id("b", 1), None, None, now);
        let (events, _) = view.tick(now + JOIN_EVENT_WAIT, Duration::from_secs(60), Duration::from_secs(60));
        assert!(matches!(&events[..], [MemberEvent::Join(_)]));
    }

    #[test]
    fn failure_then_reap_and_rejoin() {
        let now = Instant::now();
        let mut view = MemberView::new(&id("self", 1), tags("local"), now);
        view.member_up(&id("b", 1), Some(&tags("node")), None, now);
        let events = view.member_down(&id("b", 1), None, now);
        assert!(matches!(&events[..], [MemberEvent::Failed(m)] if m.status == MemberStatus::Failed));
        // A restarted b (newer identity) rejoins: rename then up.
        assert!(view.renamed(&id("b", 2), None).is_empty());
        let events = view.member_up(&id("b", 2), Some(&tags("node")), None, now);
        assert!(matches!(&events[..], [MemberEvent::Join(_)]));
        view.member_down(&id("b", 2), None, now);
        let (events, reaped) =
            view.tick(now + Duration::from_secs(10), Duration::from_secs(10), Duration::from_secs(99));
        assert!(matches!(&events[..], [MemberEvent::Reap(_)]));
        assert_eq!(reaped.len(), 1);
        assert_eq!(status(&view, "b"), None);
    }

    #[test]
    fn left_members_are_reaped_after_the_tombstone_timeout() {
        let now = Instant::now();
        let mut view = MemberView::new(&id("self", 1), tags("local"), now);
        view.member_up(&id("b", 1), Some(&tags("node")), None, now);
        view.member_down(&id("b", 1), Some(&intent("b", 1, false)), now);
        assert_eq!(status(&view, "b"), Some(MemberStatus::Left));
        let (reconnect, tombstone) = (Duration::from_secs(1), Duration::from_secs(10));
        assert!(view.tick(now + Duration::from_secs(5), reconnect, tombstone).0.is_empty());
        let (events, reaped) = view.tick(now + tombstone, reconnect, tombstone);
        assert!(matches!(&events[..], [MemberEvent::Reap(m)] if m.status == MemberStatus::Left));
        assert_eq!(reaped, [NodeName::new("b").expect("valid")]);
    }

    #[test]
    fn leave_intent_makes_down_left() {
        let now = Instant::now();
        let mut view = MemberView::new(&id("self", 1), tags("local"), now);
        view.member_up(&id("b", 1), Some(&tags("node")), None, now);
        let (events, reaped) = view.leave_intent(&intent("b", 1, false), now);
        assert!(events.is_empty() && !reaped);
        assert_eq!(status(&view, "b"), Some(MemberStatus::Leaving));
        let events = view.member_down(&id("b", 1), Some(&intent("b", 1, false)), now);
        assert!(matches!(&events[..], [MemberEvent::Left(_)]));
        // A stale intent (older bump) changes nothing for a newer run.
        view.renamed(&id("b", 2), Some(&intent("b", 1, false)));
        view.member_up(&id("b", 2), Some(&tags("node")), Some(&intent("b", 1, false)), now);
        assert_eq!(status(&view, "b"), Some(MemberStatus::Alive));
    }

    #[test]
    fn force_leave_of_failed_member_and_prune() {
        let now = Instant::now();
        let mut view = MemberView::new(&id("self", 1), tags("local"), now);
        view.member_up(&id("b", 1), Some(&tags("node")), None, now);
        view.member_down(&id("b", 1), None, now);
        let (events, _) = view.leave_intent(&intent("b", 1, false), now);
        assert!(matches!(&events[..], [MemberEvent::Left(_)]));
        let (events, reaped) = view.leave_intent(&intent("b", 1, true), now);
        assert!(matches!(&events[..], [MemberEvent::Reap(_)]) && reaped);
        assert!(!view.contains(&NodeName::new("b").expect("valid")));
    }

    #[test]
    fn the_local_node_is_never_touched_by_peers_news() {
        let now = Instant::now();
        let mut view = MemberView::new(&id("self", 1), tags("local"), now);
        assert!(view.member_down(&id("self", 1), None, now).is_empty());
        assert!(view.leave_intent(&intent("self", 1, true), now).0.is_empty());
        let (events, _) = view.tick(now + Duration::from_secs(3600), Duration::ZERO, Duration::ZERO);
        assert!(events.is_empty());
        assert_eq!(status(&view, "self"), Some(MemberStatus::Alive));
    }
}
