//! Watches: which blocking queries wait on which part of the catalog, so that a change wakes
//! only the queries it can affect.
//!
//! A blocking query names the [`Topic`]s its result depends on (one KV key, a KV prefix, one
//! service, one node, or a whole table for list endpoints) and parks on a [`Subscription`] to
//! each. After every applied batch, the Raft state machine hands the batch's
//! [`ChangeSet`](crate::catalog::ChangeSet) to [`Watches::publish`], which maps each changed
//! row to the topics it touches and wakes those slots only. A write to `app/x` wakes the
//! watchers of `app/x`, of the prefixes `app/`, `ap`, ..., `""`, and of the KV table; it wakes
//! nobody watching `other/`. This is what Consul's memdb watch sets fail at past 2048 watch
//! channels (hashicorp/consul#4984), where every change wakes every watcher of the table.
//!
//! **Slots.** All subscribers of one topic share one slot, which holds a `tokio::sync::watch`
//! of the index that last touched the topic. The registry keeps only weak references, and the
//! last subscription to leave removes its slot, so the registry's size is the number of
//! distinct topics being watched.
//!
//! **Coalescing.** A slot also memoizes the last result computed for it ([`Slot::memo`]),
//! stamped with the slot's version. When one write wakes 10,000 identical watchers, the first
//! to run computes the answer and the rest clone it.

mod slot;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::catalog::{ChangeSet, RowKey};
use crate::telemetry::names;

pub use slot::{Slot, Subscription};

/// Part of the catalog a query's result depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// One KV key (`GET /v1/kv/<key>`).
    Kv(String),
    /// Every KV key under a prefix (`?recurse`, `?keys`).
    KvPrefix(String),
    /// One service by name: its instances, their nodes and their checks.
    Service(String),
    /// One node: its fields, services and checks.
    Node(String),
    /// A whole table, for list endpoints.
    Table(Table),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    Nodes,
    Services,
    Checks,
    Kv,
    Sessions,
    ConfigEntries,
    /// Network coordinates (`/v1/coordinate/*`).
    Coordinates,
    /// Every ACL table: a blocking query re-checks its token when any of them changes.
    Acl,
    /// Prepared queries (`/v1/query`).
    PreparedQueries,
    /// Nodes, services and checks together: the dashboard's whole-catalog summaries
    /// (`/v1/internal/ui/*`), so that their watchers share one slot and its memoized answer.
    CatalogHealth,
}

/// The registry of watched topics.
#[derive(Default)]
pub struct Watches {
    registry: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    /// Every topic but prefixes.
    topics: HashMap<Topic, Weak<Slot>>,
    /// `Topic::KvPrefix` slots by prefix, looked up by slices of a changed key.
    prefixes: HashMap<String, Weak<Slot>>,
}

impl Registry {
    fn slot_mut(&mut self, topic: &Topic) -> Option<&mut Weak<Slot>> {
        match topic {
            Topic::KvPrefix(prefix) => self.prefixes.get_mut(prefix),
            other => self.topics.get_mut(other),
        }
    }

    fn insert(&mut self, topic: Topic, slot: Weak<Slot>) {
        match topic {
            Topic::KvPrefix(prefix) => self.prefixes.insert(prefix, slot),
            other => self.topics.insert(other, slot),
        };
    }

    fn remove(&mut self, topic: &Topic) {
        match topic {
            Topic::KvPrefix(prefix) => self.prefixes.remove(prefix),
            other => self.topics.remove(other),
        };
    }

    /// Wakes `topic`'s watchers; returns how many slots that woke (0 or 1).
    fn wake(&self, topic: &Topic, index: u64) -> u64 {
        match self.topics.get(topic).and_then(Weak::upgrade) {
            Some(slot) => {
                slot.wake(index);
                1
            }
            None => 0,
        }
    }
}

impl Watches {
    pub fn new() -> Watches {
        Watches::default()
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().expect("watch registry lock poisoned")
    }

    /// Subscribes to `topic`. Subscribe *before* reading the catalog: a change published after
    /// this call is never missed.
    pub fn subscribe(&self, topic: Topic) -> Subscription<'_> {
        let mut registry = self.registry();
        let slot = match registry.slot_mut(&topic).and_then(|weak| weak.upgrade()) {
            Some(slot) => slot,
            None => {
                let slot = Arc::new(Slot::new());
                registry.insert(topic.clone(), Arc::downgrade(&slot));
                slot
            }
        };
        Subscription::new(self, topic, slot)
    }

    /// Called by a dropped subscription: removes the topic's slot if nobody holds it anymore.
    fn release(&self, topic: &Topic) {
        let mut registry = self.registry();
        if registry.slot_mut(topic).is_some_and(|weak| weak.strong_count() == 0) {
            registry.remove(topic);
        }
    }

    /// The number of topics being watched (for metrics and tests).
    pub fn topics_watched(&self) -> usize {
        let registry = self.registry();
        registry.topics.len() + registry.prefixes.len()
    }

    /// Wakes the watchers of every topic `changes` touched, at Raft `index`.
    pub fn publish(&self, index: u64, changes: &ChangeSet) {
        let registry = self.registry();
        let mut woken = 0;
        if changes.everything() {
            for slot in registry.topics.values().chain(registry.prefixes.values()).filter_map(Weak::upgrade) {
                slot.wake(index);
                woken += 1;
            }
            count_woken(woken);
            return;
        }
        for row in changes.rows() {
            match row {
                RowKey::Kv(key) => {
                    woken += registry.wake(&Topic::Kv(key.clone()), index);
                    if !registry.prefixes.is_empty() {
                        let prefixes = (0..=key.len()).filter(|&end| key.is_char_boundary(end)).map(|end| &key[..end]);
                        for slot in prefixes.filter_map(|prefix| registry.prefixes.get(prefix)).filter_map(Weak::upgrade) {
                            slot.wake(index);
                            woken += 1;
                        }
                    }
                    woken += registry.wake(&Topic::Table(Table::Kv), index);
                }
                RowKey::Node(node) => {
                    woken += registry.wake(&Topic::Node(node.clone()), index);
                    woken += registry.wake(&Topic::Table(Table::Nodes), index);
                    woken += registry.wake(&Topic::Table(Table::CatalogHealth), index);
                }
                RowKey::Service(node, _) => {
                    woken += registry.wake(&Topic::Node(node.clone()), index);
                    woken += registry.wake(&Topic::Table(Table::Services), index);
                    woken += registry.wake(&Topic::Table(Table::CatalogHealth), index);
                }
                RowKey::Check(node, _) => {
                    woken += registry.wake(&Topic::Node(node.clone()), index);
                    woken += registry.wake(&Topic::Table(Table::Checks), index);
                    woken += registry.wake(&Topic::Table(Table::CatalogHealth), index);
                }
                RowKey::Session(_) => woken += registry.wake(&Topic::Table(Table::Sessions), index),
                RowKey::ConfigEntry(..) => woken += registry.wake(&Topic::Table(Table::ConfigEntries), index),
                RowKey::Coordinate(..) => woken += registry.wake(&Topic::Table(Table::Coordinates), index),
                RowKey::AclToken(_)
                | RowKey::AclPolicy(_)
                | RowKey::AclRole(_)
                | RowKey::AclAuthMethod(_)
                | RowKey::AclBindingRule(_) => woken += registry.wake(&Topic::Table(Table::Acl), index),
                RowKey::PreparedQuery(_) => woken += registry.wake(&Topic::Table(Table::PreparedQueries), index),
                // History versions change only with their key's live row; tombstones, lock
                // delays, settings and table indexes are not query results on their own; the
                // autopilot configuration is read without blocking, as in Consul.
                RowKey::KvVersion(..)
                | RowKey::Tombstone(_)
                | RowKey::LockDelay(_)
                | RowKey::Settings
                | RowKey::ServiceIndex(_)
                | RowKey::RestoreFloor
                | RowKey::CoordinatesIndex
                | RowKey::PreparedQueriesIndex
                | RowKey::AclIndexes
                | RowKey::AutopilotConfig
                | RowKey::Indexes => {}
            }
        }
        for name in changes.services() {
            woken += registry.wake(&Topic::Service(name.to_string()), index);
        }
        count_woken(woken);
    }
}

fn count_woken(woken: u64) {
    if woken > 0 {
        metrics::counter!(names::WATCH_SLOTS_WOKEN).increment(woken);
    }
}
