//! The checks table: every check keyed by (node, check ID), plus an index by (node, service
//! ID), so that a service's checks are found without a scan of its node's checks (an agent's
//! scoped anti-entropy diff, once per registration) or of every check in the catalog
//! (deregistering a service).
//!
//! Reads go through `Deref` to the rows (`get`, `values`, `range`, ...); writes only through
//! [`CheckTable::insert`], [`CheckTable::remove`] and [`CheckTable::update`], which keep the
//! index in step. The index is derived, never persisted: loading rows rebuilds it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use crate::catalog::model::Check;

type Key = (String, String);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CheckTable {
    rows: BTreeMap<Key, Check>,
    /// (node, service ID, check ID) of every check bound to a service.
    by_service: BTreeSet<(String, String, String)>,
}

impl Deref for CheckTable {
    type Target = BTreeMap<Key, Check>;

    fn deref(&self) -> &Self::Target {
        &self.rows
    }
}

impl CheckTable {
    pub(crate) fn insert(&mut self, key: Key, check: Check) -> Option<Check> {
        let service_id = check.service_id.clone();
        let old = self.rows.insert(key.clone(), check);
        if let Some(old) = &old {
            self.unindex(&key, &old.service_id);
        }
        self.index(key, service_id);
        old
    }

    pub(crate) fn remove(&mut self, key: &Key) -> Option<Check> {
        let old = self.rows.remove(key)?;
        self.unindex(key, &old.service_id);
        Some(old)
    }

    /// Changes the check at `key` in place, if there is one; `false` if there is none.
    pub(crate) fn update(&mut self, key: &Key, change: impl FnOnce(&mut Check)) -> bool {
        let Some(check) = self.rows.get_mut(key) else { return false };
        let before = check.service_id.clone();
        change(check);
        if check.service_id != before {
            let after = check.service_id.clone();
            self.unindex(key, &before);
            self.index(key.clone(), after);
        }
        true
    }

    /// The keys of the checks on `node` bound to the service `service_id`, by check ID.
    pub(crate) fn service_check_keys(&self, node: &str, service_id: &str) -> Vec<Key> {
        if service_id.is_empty() {
            return Vec::new();
        }
        let from = (node.to_string(), service_id.to_string(), String::new());
        let bound = self.by_service.range(from..).take_while(|(n, s, _)| n == node && s == service_id);
        bound.map(|(n, _, check_id)| (n.clone(), check_id.clone())).collect()
    }

    fn index(&mut self, (node, check_id): Key, service_id: String) {
        if !service_id.is_empty() {
            self.by_service.insert((node, service_id, check_id));
        }
    }

    fn unindex(&mut self, (node, check_id): &Key, service_id: &str) {
        if !service_id.is_empty() {
            self.by_service.remove(&(node.clone(), service_id.to_string(), check_id.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::model::HealthStatus;

    fn check(node: &str, id: &str, service_id: &str) -> (Key, Check) {
        let check = Check {
            node: node.into(),
            check_id: id.into(),
            name: id.into(),
            status: HealthStatus::Passing,
            notes: String::new(),
            output: String::new(),
            service_id: service_id.into(),
            service_name: service_id.into(),
            service_tags: Vec::new(),
            definition: Default::default(),
            create_index: 1,
            modify_index: 1,
        };
        ((node.into(), id.into()), check)
    }

    fn bound(table: &CheckTable, node: &str, service_id: &str) -> Vec<String> {
        table.service_check_keys(node, service_id).into_iter().map(|(n, id)| format!("{n}/{id}")).collect()
    }

    #[test]
    fn the_service_index_follows_inserts_rebindings_updates_and_removals() {
        let mut table = CheckTable::default();
        for (key, row) in [check("n1", "web-a", "web"), check("n1", "web-b", "web"), check("n2", "web-a", "web"), check("n1", "mem", "")] {
            table.insert(key, row);
        }
        assert_eq!(bound(&table, "n1", "web"), ["n1/web-a", "n1/web-b"], "only this node's, by check ID");
        assert!(bound(&table, "n1", "").is_empty(), "node checks are bound to no service");
        let (key, rebound) = check("n1", "web-b", "api");
        table.insert(key.clone(), rebound);
        assert_eq!(bound(&table, "n1", "web"), ["n1/web-a"], "a re-registered check leaves its old service");
        assert_eq!(bound(&table, "n1", "api"), ["n1/web-b"]);
        assert!(table.update(&key, |c| c.service_id = "web".into()));
        assert_eq!(bound(&table, "n1", "web"), ["n1/web-a", "n1/web-b"], "an update that rebinds moves the entry");
        assert!(table.update(&key, |c| c.output = "ok".into()));
        assert!(!table.update(&("n9".into(), "x".into()), |c| c.output = "never".into()));
        table.remove(&key);
        table.remove(&("n1".into(), "mem".into()));
        assert_eq!(bound(&table, "n1", "web"), ["n1/web-a"]);
        assert_eq!(table.by_service.len(), 2, "{:?}", table.by_service);
        assert_eq!(table.len(), 2);
    }
}
