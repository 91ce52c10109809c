//! The KV table's rules, as `apply` runs them: writes, check-and-set, locks and lock-delay,
//! tombstones, and the history of earlier versions (a cairn extension).
//!
//! Every function here is pure: time comes in as `now_ms`, stamped into the command by its
//! proposer. Each write records the rows it touched in the [`ChangeSet`].
//!
//! - **Tombstones.** Deleting a key leaves a tombstone holding the delete's index, so the index
//!   of a prefix read (the highest `ModifyIndex` under the prefix, tombstones included) never
//!   goes backwards. The leader reaps old ones with `Command::KvReapTombstones`.
//! - **Lock-delay.** When a session is invalidated, the keys it held cannot be locked again by
//!   any session until `now_ms + lock_delay` (Consul's default is 15 s, at most 60 s).
//! - **History.** Before a key is overwritten or deleted, its current version is archived;
//!   each key keeps `Settings::kv_history_versions` versions, the live one included.

use crate::catalog::apply::Outcome;
use crate::catalog::model::KvEntry;
use crate::catalog::{Catalog, ChangeSet, RowKey};

/// Versions kept per key when no server set `kv_history_versions`.
pub const KV_HISTORY_VERSIONS_DEFAULT: u32 = 10;
/// Most versions a key may keep, to bound memory.
pub const KV_HISTORY_VERSIONS_MAX: u32 = 100;
/// Longest lock-delay a session may ask for (Consul's cap).
pub const KV_LOCK_DELAY_MS_MAX: u64 = 60_000;

/// Writes a key, guarded by `cas_index` (0 = create only).
pub(super) fn set(catalog: &mut Catalog, index: u64, key: &str, value: &[u8], flags: u64, cas_index: Option<u64>, changes: &mut ChangeSet) -> Outcome {
    let existing = catalog.kv.get(key);
    match (cas_index, existing) {
        (Some(0), Some(_)) => return Outcome::Bool(false),
        (Some(cas), Some(entry)) if cas != 0 && entry.modify_index != cas => return Outcome::Bool(false),
        (Some(cas), None) if cas != 0 => return Outcome::Bool(false),
        _ => {}
    }
    let (lock_index, session) = (existing.map_or(0, |e| e.lock_index), existing.and_then(|e| e.session.clone()));
    let entry = next_version(existing, index, key, value, flags, lock_index, session);
    replace(catalog, index, entry, changes);
    Outcome::Bool(true)
}

/// Deletes a key, guarded by `cas_index`.
pub(super) fn delete(catalog: &mut Catalog, index: u64, key: &str, cas_index: Option<u64>, changes: &mut ChangeSet) -> Outcome {
    if let Some(cas) = cas_index {
        match catalog.kv.get(key) {
            Some(entry) if entry.modify_index == cas => {}
            // Consul: a delete-cas of a missing key succeeds only for index 0.
            None if cas == 0 => return Outcome::Bool(true),
            _ => return Outcome::Bool(false),
        }
    }
    remove(catalog, index, key, changes);
    Outcome::Bool(true)
}

/// Deletes every key under `prefix`.
pub(super) fn delete_tree(catalog: &mut Catalog, index: u64, prefix: &str, changes: &mut ChangeSet) -> Outcome {
    let doomed: Vec<String> = catalog.kv_prefix(prefix).map(|e| e.key.clone()).collect();
    for key in doomed {
        remove(catalog, index, &key, changes);
    }
    catalog.indexes.kv = index;
    Outcome::Bool(true)
}

/// Writes a key and takes its lock for `session`. Refused while another session holds it or
/// its lock-delay runs; `now_ms` is `None` only for log entries written before lock-delay.
pub(super) fn lock(catalog: &mut Catalog, index: u64, key: &str, value: &[u8], flags: u64, session: &str, now_ms: Option<u64>, changes: &mut ChangeSet) -> Outcome {
    if !catalog.sessions.contains_key(session) {
        return Outcome::Rejected(format!("invalid session {session:?}"));
    }
    if let (Some(&until_ms), Some(now_ms)) = (catalog.lock_delays.get(key), now_ms) {
        if now_ms < until_ms {
            return Outcome::Bool(false);
        }
        catalog.lock_delays.remove(key);
        changes.touch(RowKey::LockDelay(key.to_string()));
    }
    let existing = catalog.kv.get(key);
    let lock_index = match existing.and_then(|e| e.session.as_deref()) {
        Some(holder) if holder != session => return Outcome::Bool(false),
        Some(_) => existing.map_or(0, |e| e.lock_index),
        None => existing.map_or(0, |e| e.lock_index) + 1,
    };
    let entry = next_version(existing, index, key, value, flags, lock_index, Some(session.to_string()));
    replace(catalog, index, entry, changes);
    Outcome::Bool(true)
}

/// Writes a key and releases its lock, if `session` holds it.
pub(super) fn unlock(catalog: &mut Catalog, index: u64, key: &str, value: &[u8], flags: u64, session: &str, changes: &mut ChangeSet) -> Outcome {
    let Some(existing) = catalog.kv.get(key) else {
        return Outcome::Bool(false);
    };
    if existing.session.as_deref() != Some(session) {
        return Outcome::Bool(false);
    }
    let entry = KvEntry { value: value.to_vec(), flags, session: None, modify_index: index, ..existing.clone() };
    replace(catalog, index, entry, changes);
    Outcome::Bool(true)
}

/// What an invalidated session leaves behind on the keys it held: each lock released (or the
/// key deleted), and a lock-delay on each if the session asked for one and the time is known.
/// Lock-delays already over are dropped once, before: not once per key, which made ending a
/// session that held many keys quadratic. A session that held nothing changes nothing (every
/// server, of any version, must leave the same rows).
pub(super) fn lose_locks(catalog: &mut Catalog, index: u64, keys: &[String], delete_keys: bool, lock_delay_ms: u64, now_ms: Option<u64>, changes: &mut ChangeSet) {
    let delayed_until_ms = match (now_ms, lock_delay_ms > 0 && !keys.is_empty()) {
        (Some(now_ms), true) => {
            catalog.lock_delays.retain(|k, until_ms| {
                let keep = *until_ms > now_ms;
                if !keep {
                    changes.touch(RowKey::LockDelay(k.clone()));
                }
                keep
            });
            Some(now_ms + lock_delay_ms.min(KV_LOCK_DELAY_MS_MAX))
        }
        _ => None,
    };
    for key in keys {
        if delete_keys {
            remove(catalog, index, key, changes);
        } else if let Some(existing) = catalog.kv.get(key) {
            let entry = KvEntry { session: None, modify_index: index, ..existing.clone() };
            replace(catalog, index, entry, changes);
        }
        if let Some(until_ms) = delayed_until_ms {
            catalog.lock_delays.insert(key.clone(), until_ms);
            changes.touch(RowKey::LockDelay(key.clone()));
        }
    }
}

/// Drops tombstones (and the history of keys that stayed deleted) at or below `up_to_index`.
pub(super) fn reap_tombstones(catalog: &mut Catalog, up_to_index: u64, changes: &mut ChangeSet) -> Outcome {
    let reaped: Vec<String> = catalog.tombstones.iter().filter(|(_, at)| **at <= up_to_index).map(|(k, _)| k.clone()).collect();
    for key in reaped {
        catalog.tombstones.remove(&key);
        changes.touch(RowKey::Tombstone(key.clone()));
        if !catalog.kv.contains_key(&key) {
            let versions: Vec<u64> = versions_of(catalog, &key).map(|e| e.modify_index).collect();
            for version in versions {
                catalog.kv_history.remove(&(key.clone(), version));
                changes.touch(RowKey::KvVersion(key.clone(), version));
            }
        }
    }
    Outcome::Done
}

/// Sets how many versions each key keeps; fewer take effect as keys are next written.
pub(super) fn set_history_versions(catalog: &mut Catalog, versions: u32, changes: &mut ChangeSet) -> Outcome {
    if versions > KV_HISTORY_VERSIONS_MAX {
        return Outcome::Rejected(format!("kv_history_versions {versions} is above the maximum {KV_HISTORY_VERSIONS_MAX}"));
    }
    if catalog.settings.kv_history_versions != versions {
        catalog.settings.kv_history_versions = versions;
        changes.touch(RowKey::Settings);
    }
    Outcome::Done
}

/// Archived versions of `key`, oldest first (the live entry is not among them).
fn versions_of<'a>(catalog: &'a Catalog, key: &str) -> impl Iterator<Item = &'a KvEntry> + 'a {
    catalog.kv_history.range((key.to_string(), 0)..=(key.to_string(), u64::MAX)).map(|(_, e)| e)
}

/// The version of `key` a write at `index` makes: it keeps the key's `CreateIndex`.
fn next_version(existing: Option<&KvEntry>, index: u64, key: &str, value: &[u8], flags: u64, lock_index: u64, session: Option<String>) -> KvEntry {
    KvEntry {
        key: key.to_string(),
        value: value.to_vec(),
        flags,
        create_index: existing.map_or(index, |e| e.create_index),
        modify_index: index,
        lock_index,
        session,
    }
}

/// Installs `entry` as the live version of its key, archiving the one it replaces.
fn replace(catalog: &mut Catalog, index: u64, entry: KvEntry, changes: &mut ChangeSet) {
    let key = entry.key.clone();
    archive(catalog, &key, changes);
    catalog.kv.insert(key.clone(), entry);
    catalog.indexes.kv = index;
    changes.touch(RowKey::Kv(key));
}

/// Deletes the live version of `key`, archiving it and leaving a tombstone.
fn remove(catalog: &mut Catalog, index: u64, key: &str, changes: &mut ChangeSet) {
    if !catalog.kv.contains_key(key) {
        return;
    }
    archive(catalog, key, changes);
    catalog.kv.remove(key);
    catalog.tombstones.insert(key.to_string(), index);
    catalog.indexes.kv = index;
    changes.touch(RowKey::Kv(key.to_string()));
    changes.touch(RowKey::Tombstone(key.to_string()));
}

/// Moves the live version of `key` (if any) into the history and trims the history so that,
/// with a new live version, the key keeps `kv_history_versions` versions.
fn archive(catalog: &mut Catalog, key: &str, changes: &mut ChangeSet) {
    let Some(live) = catalog.kv.get(key) else { return };
    let keep = catalog.settings.kv_history_versions.saturating_sub(1) as usize;
    if keep > 0 {
        catalog.kv_history.insert((key.to_string(), live.modify_index), live.clone());
        changes.touch(RowKey::KvVersion(key.to_string(), live.modify_index));
    }
    let versions: Vec<u64> = versions_of(catalog, key).map(|e| e.modify_index).collect();
    for &version in versions.iter().take(versions.len().saturating_sub(keep)) {
        catalog.kv_history.remove(&(key.to_string(), version));
        changes.touch(RowKey::KvVersion(key.to_string(), version));
    }
}

impl Catalog {
    /// The index of a prefix read: the highest `ModifyIndex` under `prefix`, tombstones
    /// included, or the KV table's index when the prefix has never held a key.
    pub fn kv_prefix_index(&self, prefix: &str) -> u64 {
        let live = self.kv_prefix(prefix).map(|e| e.modify_index).max().unwrap_or(0);
        let dead = self
            .tombstones
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, &at)| at)
            .max()
            .unwrap_or(0);
        match live.max(dead) {
            0 => self.indexes.kv,
            index => index.max(self.restore_floor),
        }
    }

    /// The index of a single-key read: the key's `ModifyIndex`, else its tombstone's, else the
    /// KV table's.
    pub fn kv_key_index(&self, key: &str) -> u64 {
        match (self.kv.get(key), self.tombstones.get(key)) {
            (Some(entry), _) => entry.modify_index.max(self.restore_floor),
            (None, Some(&at)) => at.max(self.restore_floor),
            (None, None) => self.indexes.kv,
        }
    }

    /// Every version of `key` still kept, newest first: the live entry, then the archive.
    pub fn kv_history(&self, key: &str) -> Vec<&KvEntry> {
        let mut versions: Vec<&KvEntry> = self.kv.get(key).into_iter().collect();
        let archived: Vec<&KvEntry> = versions_of(self, key).collect();
        versions.extend(archived.into_iter().rev());
        versions
    }

    /// The tombstone count, for tests and metrics.
    pub fn kv_tombstones(&self) -> usize {
        self.tombstones.len()
    }

    /// Replicated settings in force.
    pub fn settings(&self) -> crate::catalog::model::Settings {
        self.settings
    }
}

/// Everything the catalog holds about one key: what a transaction's undo log saves before it
/// first touches the key, and puts back if the transaction rolls back.
pub(super) struct KeyState {
    key: String,
    live: Option<KvEntry>,
    tombstone: Option<u64>,
    lock_delay: Option<u64>,
    versions: Vec<KvEntry>,
}

impl KeyState {
    pub(super) fn capture(catalog: &Catalog, key: &str) -> KeyState {
        KeyState {
            key: key.to_string(),
            live: catalog.kv.get(key).cloned(),
            tombstone: catalog.tombstones.get(key).copied(),
            lock_delay: catalog.lock_delays.get(key).copied(),
            versions: versions_of(catalog, key).cloned().collect(),
        }
    }

    /// Puts the key back as captured. Rows touched since stay in the change set; they are
    /// persisted with the restored values.
    pub(super) fn restore(self, catalog: &mut Catalog) {
        let key = self.key;
        match self.live {
            Some(entry) => catalog.kv.insert(key.clone(), entry),
            None => catalog.kv.remove(&key),
        };
        match self.tombstone {
            Some(at) => catalog.tombstones.insert(key.clone(), at),
            None => catalog.tombstones.remove(&key),
        };
        match self.lock_delay {
            Some(until_ms) => catalog.lock_delays.insert(key.clone(), until_ms),
            None => catalog.lock_delays.remove(&key),
        };
        let stale: Vec<u64> = versions_of(catalog, &key).map(|e| e.modify_index).collect();
        for version in stale {
            catalog.kv_history.remove(&(key.clone(), version));
        }
        for entry in self.versions {
            catalog.kv_history.insert((key.clone(), entry.modify_index), entry);
        }
    }
}
