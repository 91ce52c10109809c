//! The sessions table: every session keyed by its ID, plus an index by node, so that a node's
//! sessions are found without a scan of every session: when the node is deregistered, when one
//! of its checks goes critical or disappears (both inside the Raft apply loop), and for
//! `/v1/session/node/<node>`. Consul's state store has the same index (`node` on `sessions`).
//!
//! Reads go through `Deref` to the rows (`get`, `values`, ...); writes only through
//! [`SessionTable::insert`] and [`SessionTable::remove`], which keep the index in step. The
//! index is derived, never persisted: loading rows rebuilds it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use crate::catalog::model::Session;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SessionTable {
    rows: BTreeMap<String, Session>,
    /// (node, session ID) of every session.
    by_node: BTreeSet<(String, String)>,
}

impl Deref for SessionTable {
    type Target = BTreeMap<String, Session>;

    fn deref(&self) -> &Self::Target {
        &self.rows
    }
}

impl SessionTable {
    pub(crate) fn insert(&mut self, id: String, session: Session) -> Option<Session> {
        self.by_node.insert((session.node.clone(), id.clone()));
        let old = self.rows.insert(id.clone(), session);
        if let Some(old) = &old {
            if old.node != self.rows[&id].node {
                self.by_node.remove(&(old.node.clone(), id));
            }
        }
        old
    }

    pub(crate) fn remove(&mut self, id: &str) -> Option<Session> {
        let old = self.rows.remove(id)?;
        self.by_node.remove(&(old.node.clone(), id.to_string()));
        Some(old)
    }

    /// The sessions of `node`, by ID.
    pub(crate) fn of_node<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Session> + 'a {
        let from = (node.to_string(), String::new());
        self.by_node.range(from..).take_while(move |(n, _)| n == node).map(|(_, id)| &self.rows[id])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::model::SessionBehavior;

    fn session(id: &str, node: &str) -> Session {
        Session {
            id: id.into(),
            name: String::new(),
            node: node.into(),
            node_checks: Vec::new(),
            service_checks: Vec::new(),
            lock_delay_ms: 0,
            behavior: SessionBehavior::Release,
            ttl_ms: 0,
            create_index: 1,
            modify_index: 1,
        }
    }

    fn ids<'a>(table: &'a SessionTable, node: &'a str) -> Vec<&'a str> {
        table.of_node(node).map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn the_node_index_follows_inserts_moves_and_removals() {
        let mut table = SessionTable::default();
        for (id, node) in [("s2", "n1"), ("s1", "n1"), ("s3", "n10"), ("s4", "n2")] {
            table.insert(id.into(), session(id, node));
        }
        assert_eq!(ids(&table, "n1"), ["s1", "s2"], "only this node's (not n10's), by ID");
        assert_eq!(ids(&table, "n2"), ["s4"]);
        assert!(ids(&table, "n").is_empty());
        table.insert("s2".into(), session("s2", "n1"));
        assert_eq!(ids(&table, "n1"), ["s1", "s2"], "rewriting a session keeps it");
        table.insert("s2".into(), session("s2", "n2"));
        assert_eq!(ids(&table, "n1"), ["s1"], "a session rewritten on another node leaves the old one");
        assert_eq!(ids(&table, "n2"), ["s2", "s4"]);
        table.remove("s1");
        assert!(table.remove("s9").is_none());
        assert!(ids(&table, "n1").is_empty());
        assert_eq!(table.by_node.len(), 3, "{:?}", table.by_node);
        assert_eq!(table.len(), 3);
    }
}
