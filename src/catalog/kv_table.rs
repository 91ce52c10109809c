//! The KV table: every live entry keyed by its key, plus an index of the keys each session
//! holds, so that ending a session (destroyed, expired, or its check critical: all inside the
//! Raft apply loop) releases its locks without a scan of the whole store. Consul's state store
//! has the same index (the `session` index of its `kvs` table).
//!
//! Reads go through `Deref` to the rows (`get`, `range`, `keys`, ...); writes only through
//! [`KvTable::insert`] and [`KvTable::remove`], which keep the index in step. The index is
//! derived, never persisted: loading rows rebuilds it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use crate::catalog::model::KvEntry;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct KvTable {
    rows: BTreeMap<String, KvEntry>,
    /// (session ID, key) of every entry locked by a session.
    by_session: BTreeSet<(String, String)>,
}

impl Deref for KvTable {
    type Target = BTreeMap<String, KvEntry>;

    fn deref(&self) -> &Self::Target {
        &self.rows
    }
}

impl KvTable {
    pub(crate) fn insert(&mut self, key: String, entry: KvEntry) -> Option<KvEntry> {
        if let Some(session) = &entry.session {
            self.by_session.insert((session.clone(), key.clone()));
        }
        let old = self.rows.insert(key.clone(), entry);
        self.unindex_replaced(&key, old.as_ref());
        old
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<KvEntry> {
        let old = self.rows.remove(key)?;
        if let Some(session) = &old.session {
            self.by_session.remove(&(session.clone(), key.to_string()));
        }
        Some(old)
    }

    /// The keys `session` holds, in key order.
    pub(crate) fn held_by(&self, session: &str) -> Vec<String> {
        let from = (session.to_string(), String::new());
        self.by_session.range(from..).take_while(|(s, _)| s == session).map(|(_, key)| key.clone()).collect()
    }

    /// Drops the index entry of `old`, the version `key` had before an insert, unless the new
    /// version is held by the same session.
    fn unindex_replaced(&mut self, key: &str, old: Option<&KvEntry>) {
        let Some(old_session) = old.and_then(|e| e.session.as_ref()) else { return };
        if self.rows[key].session.as_ref() != Some(old_session) {
            self.by_session.remove(&(old_session.clone(), key.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, session: Option<&str>) -> (String, KvEntry) {
        let entry = KvEntry {
            key: key.into(),
            value: b"v".to_vec(),
            flags: 0,
            create_index: 1,
            modify_index: 1,
            lock_index: u64::from(session.is_some()),
            session: session.map(String::from),
        };
        (key.into(), entry)
    }

    #[test]
    fn the_session_index_follows_locks_releases_handovers_and_deletes() {
        let mut table = KvTable::default();
        for (key, row) in [entry("a", Some("s1")), entry("b", Some("s1")), entry("c", Some("s2")), entry("d", None)] {
            table.insert(key, row);
        }
        assert_eq!(table.held_by("s1"), ["a", "b"]);
        assert_eq!(table.held_by("s2"), ["c"]);
        assert!(table.held_by("s").is_empty(), "a session ID that is a prefix of another holds nothing");
        let (key, rewritten) = entry("a", Some("s1"));
        table.insert(key, rewritten);
        assert_eq!(table.held_by("s1"), ["a", "b"], "a write by the holder keeps the lock");
        let (key, released) = entry("b", None);
        table.insert(key, released);
        assert_eq!(table.held_by("s1"), ["a"], "an unlock leaves the index");
        let (key, handed_over) = entry("c", Some("s1"));
        table.insert(key, handed_over);
        assert_eq!(table.held_by("s1"), ["a", "c"]);
        assert!(table.held_by("s2").is_empty(), "a key held by another session leaves the old one");
        table.remove("a");
        assert!(table.remove("zz").is_none());
        assert_eq!(table.held_by("s1"), ["c"]);
        assert_eq!(table.by_session.len(), 1, "{:?}", table.by_session);
        assert_eq!(table.len(), 3);
    }
}
