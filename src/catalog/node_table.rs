//! The nodes table: every node keyed by name, plus two derived indexes so that DNS finds a
//! node without a scan: by lowercased name (DNS names are case-insensitive) and by address
//! (PTR lookups). [`address_key`] is also what the services table indexes addresses with.
//!
//! Reads go through `Deref` to the rows; writes only through [`NodeTable::insert`] and
//! [`NodeTable::remove`], which keep the indexes in step. The indexes are never persisted:
//! loading rows rebuilds them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::ops::Deref;

use crate::catalog::model::Node;

/// The address an index files a row under: its IP in canonical form, if it is one.
pub(crate) fn address_key(address: &str) -> Option<IpAddr> {
    address.trim().parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NodeTable {
    rows: BTreeMap<String, Node>,
    /// Lowercased name → the names of the nodes that have it.
    by_lower: BTreeMap<String, BTreeSet<String>>,
    by_address: BTreeMap<IpAddr, BTreeSet<String>>,
}

impl Deref for NodeTable {
    type Target = BTreeMap<String, Node>;

    fn deref(&self) -> &Self::Target {
        &self.rows
    }
}

/// Files `name` under `key`, or takes it out (dropping keys left empty).
fn file<K: Ord + Clone>(index: &mut BTreeMap<K, BTreeSet<String>>, key: K, name: &str, present: bool) {
    if present {
        index.entry(key).or_default().insert(name.to_string());
    } else if let Some(names) = index.get_mut(&key) {
        names.remove(name);
        if names.is_empty() {
            index.remove(&key);
        }
    }
}

impl NodeTable {
    pub(crate) fn insert(&mut self, name: String, node: Node) -> Option<Node> {
        let address = address_key(&node.address);
        let old = self.rows.insert(name.clone(), node);
        if let Some(old) = &old {
            self.unindex(&name, old);
        }
        file(&mut self.by_lower, name.to_lowercase(), &name, true);
        if let Some(ip) = address {
            file(&mut self.by_address, ip, &name, true);
        }
        old
    }

    pub(crate) fn remove(&mut self, name: &str) -> Option<Node> {
        let old = self.rows.remove(name)?;
        self.unindex(name, &old);
        Some(old)
    }

    fn unindex(&mut self, name: &str, old: &Node) {
        file(&mut self.by_lower, name.to_lowercase(), name, false);
        if let Some(ip) = address_key(&old.address) {
            file(&mut self.by_address, ip, name, false);
        }
    }

    /// The node named `name` in any case (the first by exact name when several differ only
    /// in case).
    pub(crate) fn named_ignoring_case(&self, name: &str) -> Option<&Node> {
        self.by_lower.get(&name.to_lowercase())?.iter().next().and_then(|exact| self.rows.get(exact))
    }

    /// The first node (by name) whose address is `ip`.
    pub(crate) fn with_address(&self, ip: IpAddr) -> Option<&Node> {
        self.by_address.get(&ip.to_canonical())?.iter().next().and_then(|name| self.rows.get(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, address: &str) -> Node {
        let none = BTreeMap::new();
        Node { id: String::new(), name: name.into(), address: address.into(), datacenter: "dc1".into(), tagged_addresses: none.clone(), meta: none, create_index: 1, modify_index: 1 }
    }

    #[test]
    fn the_indexes_follow_inserts_moves_and_removals() {
        let mut table = NodeTable::default();
        table.insert("Web-1".into(), node("Web-1", "10.0.0.1"));
        table.insert("db".into(), node("db", "::ffff:10.0.0.2"));
        table.insert("host".into(), node("host", "host.example.org"));
        assert_eq!(table.named_ignoring_case("WEB-1").map(|n| n.name.as_str()), Some("Web-1"));
        assert_eq!(table.with_address("10.0.0.2".parse().unwrap()).map(|n| n.name.as_str()), Some("db"), "v4-mapped v6 is v4");
        table.insert("Web-1".into(), node("Web-1", "10.0.0.9"));
        assert!(table.with_address("10.0.0.1".parse().unwrap()).is_none(), "a moved node leaves its old address");
        assert_eq!(table.with_address("10.0.0.9".parse().unwrap()).map(|n| n.name.as_str()), Some("Web-1"));
        table.remove("Web-1");
        assert!(table.named_ignoring_case("web-1").is_none());
        assert_eq!(table.by_address.len(), 1, "only db's address is left");
        assert_eq!(table.by_lower.keys().collect::<Vec<_>>(), ["db", "host"]);
    }
}
