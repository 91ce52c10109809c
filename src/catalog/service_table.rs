//! The services table: every instance keyed by (node, service ID), plus an index by service
//! name, lowercased, so that a service's instances are found without a scan of every service
//! (DNS, `/v1/health/service/:s`, `/v1/catalog/service/:s`, and `apply`'s per-service index),
//! and one by address (DNS PTR lookups).
//!
//! Reads go through `Deref` to the rows (`get`, `values`, `range`, ...); writes only through
//! [`ServiceTable::insert`] and [`ServiceTable::remove`], which keep the index in step. The
//! index is derived, never persisted: loading rows rebuilds it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use std::net::IpAddr;

use crate::catalog::model::Service;
use crate::catalog::node_table::address_key;

type Key = (String, String);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ServiceTable {
    rows: BTreeMap<Key, Service>,
    /// Lowercased service name → the keys of its instances (Consul's service-name index is
    /// case-insensitive too).
    by_name: BTreeMap<String, BTreeSet<Key>>,
    /// The instance's own address (when it is an IP) → the keys of the instances with it.
    by_address: BTreeMap<IpAddr, BTreeSet<Key>>,
}

impl Deref for ServiceTable {
    type Target = BTreeMap<Key, Service>;

    fn deref(&self) -> &Self::Target {
        &self.rows
    }
}

impl ServiceTable {
    pub(crate) fn insert(&mut self, key: Key, service: Service) -> Option<Service> {
        let lower = service.name.to_lowercase();
        let address = address_key(&service.address);
        let old = self.rows.insert(key.clone(), service);
        if let Some(old) = &old {
            self.unindex(old, &key);
        }
        self.by_name.entry(lower).or_default().insert(key.clone());
        if let Some(ip) = address {
            self.by_address.entry(ip).or_default().insert(key);
        }
        old
    }

    pub(crate) fn remove(&mut self, key: &Key) -> Option<Service> {
        let old = self.rows.remove(key)?;
        self.unindex(&old, key);
        Some(old)
    }

    fn unindex(&mut self, old: &Service, key: &Key) {
        unfile(&mut self.by_name, old.name.to_lowercase(), key);
        if let Some(ip) = address_key(&old.address) {
            unfile(&mut self.by_address, ip, key);
        }
    }

    /// The first instance (by node, then ID) whose own address is `ip`.
    pub(crate) fn with_address(&self, ip: IpAddr) -> Option<&Service> {
        self.by_address.get(&ip.to_canonical())?.iter().next().and_then(|key| self.rows.get(key))
    }

    /// Every instance whose name is `name` exactly.
    pub(crate) fn named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Service> + use<'a> {
        let name = name.to_string();
        self.named_ignoring_case(&name).filter(move |service| service.name == name)
    }

    /// Every instance whose name is `name` in any case.
    pub(crate) fn named_ignoring_case<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Service> + use<'a> {
        self.by_name.get(&name.to_lowercase()).into_iter().flatten().filter_map(|key| self.rows.get(key))
    }

    /// True when some instance is named `name` exactly.
    pub(crate) fn has_name(&self, name: &str) -> bool {
        self.named(name).next().is_some()
    }
}

/// Takes `key` out of `index[at]`, dropping the entry once empty.
fn unfile<K: Ord>(index: &mut BTreeMap<K, BTreeSet<Key>>, at: K, key: &Key) {
    if let Some(keys) = index.get_mut(&at) {
        keys.remove(key);
        if keys.is_empty() {
            index.remove(&at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(node: &str, id: &str, name: &str) -> (Key, Service) {
        let service = Service {
            node: node.into(),
            id: id.into(),
            name: name.into(),
            tags: Vec::new(),
            address: String::new(),
            tagged_addresses: Default::default(),
            meta: Default::default(),
            port: 80,
            kind: String::new(),
            enable_tag_override: false,
            weights: Default::default(),
            opaque_json: Default::default(),
            create_index: 1,
            modify_index: 1,
        };
        ((node.into(), id.into()), service)
    }

    fn ids<'a>(services: impl Iterator<Item = &'a Service>) -> Vec<String> {
        services.map(|s| format!("{}/{}", s.node, s.id)).collect()
    }

    #[test]
    fn the_name_index_follows_inserts_renames_and_removals() {
        let mut table = ServiceTable::default();
        for (key, row) in [service("n1", "web-1", "web"), service("n2", "web-1", "Web"), service("n1", "db", "db")] {
            table.insert(key, row);
        }
        assert_eq!(ids(table.named("web")), ["n1/web-1"]);
        assert_eq!(ids(table.named_ignoring_case("WEB")), ["n1/web-1", "n2/web-1"]);
        let (key, renamed) = service("n1", "web-1", "api");
        table.insert(key.clone(), renamed);
        assert_eq!(ids(table.named_ignoring_case("web")), ["n2/web-1"], "a renamed instance leaves its old name");
        assert!(table.has_name("api") && !table.has_name("web"));
        table.remove(&key);
        table.remove(&("n2".into(), "web-1".into()));
        assert!(!table.has_name("api"));
        assert_eq!(table.by_name.keys().collect::<Vec<_>>(), ["db"], "empty names are dropped");
        let (key, mut addressed) = service("n3", "api-1", "api");
        addressed.address = "10.0.0.7".into();
        table.insert(key.clone(), addressed.clone());
        assert_eq!(table.with_address("10.0.0.7".parse().unwrap()).map(|s| s.id.as_str()), Some("api-1"));
        addressed.address = "10.0.0.8".into();
        table.insert(key, addressed);
        assert!(table.with_address("10.0.0.7".parse().unwrap()).is_none(), "a moved instance leaves its old address");
        assert_eq!(table.by_address.len(), 1);
        assert_eq!(table.len(), 2);
    }
}
