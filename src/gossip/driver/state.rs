//! The gossip task's membership state: foca notifications and broadcast news applied to
//! the member view, tags, force-leave, and the push/pull state exchange.
//!
//! Invariant: everything here runs inside the gossip task between two awaits, so the tables
//! lock is only ever held briefly and never across an await.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use foca::OwnedNotification;
use rand010::RngExt as _;
use tokio::sync::oneshot;

use super::super::broadcasts::{Item, Learned, LeaveIntent};
use super::super::envelope::Kind;
use super::super::identity::{NodeId, NodeName};
use super::super::push_pull::{self, PUSH_PULL_MEMBERS_MAX, PushPullState};
use super::super::timing;
use super::super::{GossipError, MemberEvent};
use crate::telemetry::names;
use super::{Command, Driver, META_REQUEST_BYTES};

impl Driver {
    pub(super) fn set_tags(&mut self, tags: std::collections::BTreeMap<String, String>) {
        self.local_meta.version += 1;
        self.local_meta.tags = tags;
        let meta = Item::Meta(self.local_meta.clone());
        self.add_item(&meta);
        let events = self.view.tags_changed(&self.local_meta.name, &self.local_meta.tags);
        self.emit(events);
    }

    pub(super) fn force_leave(&mut self, node: &str, prune: bool) -> Result<(), GossipError> {
        let no_such_member = || GossipError::NoSuchMember { node: node.to_owned() };
        let name = NodeName::new(node).map_err(|_| no_such_member())?;
        let (id, _) = self.view.get(&name).ok_or_else(no_such_member)?;
        if name == self.local_meta.name {
            // Consul's force-leave of the local agent does nothing either: it is alive.
            return Ok(());
        }
        let intent = LeaveIntent { name, bump: id.bump, prune };
        self.add_item(&Item::Leave(intent));
        self.foca_call(|foca, runtime| foca.gossip(runtime));
        Ok(())
    }

    /// A push/pull with a random peer, off the task; the answer comes back as `Merge`.
    pub(super) fn spawn_push_pull(&mut self) {
        let peers = self.view.active_peers();
        if peers.is_empty() {
            return;
        }
        let addr = peers[rand010::rng().random_range(0..peers.len())].addr;
        let local = self.local_state();
        let (sealer, shared, commands) = (self.sealer.clone(), Arc::clone(&self.shared), self.commands_weak.clone());
        tokio::spawn(async move {
            match push_pull::exchange(addr, &sealer, &shared.counters, &local).await {
                Ok(remote) => {
                    let Some(commands) = commands.upgrade() else { return };
                    let (done, _) = oneshot::channel();
                    let _shut_down = commands.send(Command::Merge { remote, join: false, done }).await;
                }
                Err(reason) => tracing::debug!(%addr, %reason, "gossip: periodic push/pull failed"),
            }
        });
    }

    /// What we know, for a push/pull: foca's members (ourselves included), tags, intents.
    pub(super) fn local_state(&self) -> PushPullState {
        let mut members: Vec<foca::Member<NodeId>> =
            self.foca.iter_membership_state().take(PUSH_PULL_MEMBERS_MAX - 1).cloned().collect();
        if !self.leaving {
            members.push(foca::Member::alive(self.foca.identity().clone()));
        }
        let tables = self.tables.lock().expect("gossip tables lock poisoned");
        PushPullState {
            members,
            metas: tables.metas().take(PUSH_PULL_MEMBERS_MAX).cloned().collect(),
            leaves: tables.leaves().take(PUSH_PULL_MEMBERS_MAX).cloned().collect(),
            user_event_ltime: self.shared.user_event_clock.load(Ordering::SeqCst),
        }
    }

    /// Merges a remote state: tags and intents first, so that members come up with them.
    /// They are recorded, not re-disseminated (the pool has them; our own periodic
    /// push/pulls repair what gossip missed). Entries about our own name are skipped: the
    /// remote may still list an earlier run of ours, which foca would otherwise declare
    /// down to everyone, making a clean restart flap.
    pub(in crate::gossip) fn merge(&mut self, remote: PushPullState, join: bool) {
        let now = Instant::now();
        {
            let mut tables = self.tables.lock().expect("gossip tables lock poisoned");
            for meta in remote.metas {
                if let Err(error) = tables.receive_meta(meta, now) {
                    tracing::debug!(%error, "gossip: push/pull meta ignored");
                }
            }
            for intent in remote.leaves {
                if let Err(error) = tables.receive_leave(intent, now) {
                    tracing::debug!(%error, "gossip: push/pull leave intent ignored");
                }
            }
            if join {
                tables.ignore_user_events_before(remote.user_event_ltime);
            }
        }
        self.shared.user_event_clock.fetch_max(remote.user_event_ltime, Ordering::SeqCst);
        let local = self.local_meta.name.clone();
        let members = remote.members.into_iter().filter(|member| member.id().name != local);
        self.foca_call(|foca, runtime| foca.apply_many(members, true, runtime));
    }

    pub(super) fn on_notification(&mut self, notification: OwnedNotification<NodeId>, now: Instant) {
        let (tags, leave) = match &notification {
            OwnedNotification::MemberUp(id) | OwnedNotification::MemberDown(id) | OwnedNotification::Rename(_, id) => {
                let tables = self.tables.lock().expect("gossip tables lock poisoned");
                (tables.meta(&id.name).map(|meta| meta.tags.clone()), tables.leave(&id.name).cloned())
            }
            _ => (None, None),
        };
        let events = match notification {
            OwnedNotification::MemberUp(id) => {
                if tags.is_none() {
                    self.send(id.addr, Kind::MetaRequest, &[0; META_REQUEST_BYTES]);
                }
                self.view.member_up(&id, tags.as_ref(), leave.as_ref(), now)
            }
            OwnedNotification::MemberDown(id) => self.view.member_down(&id, leave.as_ref(), now),
            OwnedNotification::Rename(_, id) => self.view.renamed(&id, leave.as_ref()),
            OwnedNotification::Rejoin(id) => {
                tracing::info!(identity = ?id, "gossip: declared down by the pool, rejoined with a renewed identity");
                self.view.set_local_id(&id);
                Vec::new()
            }
            other => {
                tracing::debug!(notification = ?other, "gossip: foca state");
                Vec::new()
            }
        };
        self.emit(events);
    }

    pub(super) fn on_learned(&mut self, news: Learned, now: Instant) {
        match news {
            Learned::Meta(meta) if meta.name == self.local_meta.name => {
                if meta != self.local_meta {
                    // Someone spreads other tags for our name (an earlier run): outbid them.
                    self.local_meta.version = meta.version + 1;
                    let ours = Item::Meta(self.local_meta.clone());
                    self.add_item(&ours);
                }
            }
            Learned::Meta(meta) => {
                let events = self.view.tags_changed(&meta.name, &meta.tags);
                self.emit(events);
            }
            Learned::Leave(intent) if intent.name == self.local_meta.name => {
                let current = self.foca.identity().clone();
                if !self.leaving && intent.bump == current.bump {
                    // Force-left while alive: refute by renewing our identity (Serf refutes
                    // with a join intent; with foca a new identity is the equivalent).
                    let renewed = NodeId { bump: current.bump.wrapping_add(1), ..current };
                    self.view.set_local_id(&renewed);
                    self.foca_call(|foca, runtime| foca.change_identity(renewed, runtime));
                }
            }
            Learned::Leave(intent) => {
                let (events, reaped) = self.view.leave_intent(&intent, now);
                if reaped {
                    self.tables.lock().expect("gossip tables lock poisoned").forget_meta(&intent.name);
                }
                self.emit(events);
            }
        }
    }

    /// Re-applies `foca_config` when the number of active members changed.
    pub(super) fn rescale(&mut self) {
        let size = self.foca.num_members() + 1;
        if size == self.configured_size {
            return;
        }
        match self.foca.set_config(timing::foca_config(size, &self.timing)) {
            Ok(()) => self.configured_size = size,
            Err(error) => tracing::warn!(%error, size, "gossip: foca refused a rescaled configuration"),
        }
    }

    /// Sends member events to subscribers. The member list is published first: a subscriber
    /// woken by an event re-reads `Gossip::members` at once (a client's server pool does), and
    /// a list published only at the end of the flush could still lack the member the event
    /// announced; no further event would come to correct it.
    pub(super) fn emit(&mut self, events: Vec<MemberEvent>) {
        if events.is_empty() {
            return;
        }
        self.publish_members();
        for event in events {
            tracing::debug!(?event, "gossip: member event");
            // Serf's member counters (`serf.member.*`); a reap is not one of them.
            let counter = match &event {
                MemberEvent::Join(_) => Some(names::SERF_MEMBER_JOIN),
                MemberEvent::Update(_) => Some(names::SERF_MEMBER_UPDATE),
                MemberEvent::Failed(_) => Some(names::SERF_MEMBER_FAILED),
                MemberEvent::Left(_) => Some(names::SERF_MEMBER_LEFT),
                MemberEvent::Reap(_) => None,
            };
            if let Some(counter) = counter {
                metrics::counter!(counter).increment(1);
            }
            let _no_subscribers = self.shared.member_events.send(event);
        }
    }
}
