//! The agent's own checks, keyed by check ID, plus an index by service ID, so that a
//! service's checks are found without a scan of every check on the agent (the sync after each
//! registration reads them; at a few hundred services the scan was 3% of a client's CPU).
//!
//! Reads go through `Deref` to the rows (`get`, `values`, `iter`, ...); writes only through
//! [`LocalChecks::insert`], [`LocalChecks::remove`], [`LocalChecks::update`] and
//! [`LocalChecks::clear`], which keep the index in step. The index is derived, never persisted:
//! each check is persisted on its own and loading inserts them again. The catalog's
//! `check_table` is the same shape for the catalog's checks.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

use crate::agent::local::LocalCheck;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalChecks {
    rows: BTreeMap<String, LocalCheck>,
    /// (service ID, check ID) of every check bound to a service.
    by_service: BTreeSet<(String, String)>,
}

impl Deref for LocalChecks {
    type Target = BTreeMap<String, LocalCheck>;

    fn deref(&self) -> &Self::Target {
        &self.rows
    }
}

impl LocalChecks {
    pub fn insert(&mut self, id: String, check: LocalCheck) -> Option<LocalCheck> {
        let service_id = check.registration.service_id.clone();
        let old = self.rows.insert(id.clone(), check);
        if let Some(old) = &old {
            self.unindex(&id, &old.registration.service_id);
        }
        self.index(id, service_id);
        old
    }

    pub fn remove(&mut self, id: &str) -> Option<LocalCheck> {
        let old = self.rows.remove(id)?;
        self.unindex(id, &old.registration.service_id);
        Some(old)
    }

    pub fn clear(&mut self) {
        self.rows.clear();
        self.by_service.clear();
    }

    /// Changes the check `id` in place and returns what `change` returns; `None` if there is
    /// no such check.
    pub fn update<R>(&mut self, id: &str, change: impl FnOnce(&mut LocalCheck) -> R) -> Option<R> {
        let check = self.rows.get_mut(id)?;
        let before = check.registration.service_id.clone();
        let result = change(check);
        if check.registration.service_id != before {
            let after = check.registration.service_id.clone();
            self.unindex(id, &before);
            self.index(id.to_string(), after);
        }
        Some(result)
    }

    /// The checks bound to the service `service_id`, by check ID.
    pub fn of_service<'a>(&'a self, service_id: &'a str) -> impl Iterator<Item = (&'a String, &'a LocalCheck)> + 'a {
        let from = (service_id.to_string(), String::new());
        let bound = self.by_service.range(from..).take_while(move |(s, _)| !service_id.is_empty() && s == service_id);
        bound.filter_map(|(_, check_id)| self.rows.get_key_value(check_id))
    }

    fn index(&mut self, check_id: String, service_id: String) {
        if !service_id.is_empty() {
            self.by_service.insert((service_id, check_id));
        }
    }

    fn unindex(&mut self, check_id: &str, service_id: &str) {
        if !service_id.is_empty() {
            self.by_service.remove(&(service_id.to_string(), check_id.to_string()));
        }
    }
}

impl FromIterator<(String, LocalCheck)> for LocalChecks {
    fn from_iter<I: IntoIterator<Item = (String, LocalCheck)>>(rows: I) -> Self {
        let mut checks = LocalChecks::default();
        for (id, check) in rows {
            checks.insert(id, check);
        }
        checks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn check(id: &str, service_id: &str) -> LocalCheck {
        LocalCheck::for_test(id, service_id)
    }

    fn ids_of(checks: &LocalChecks, service_id: &str) -> Vec<String> {
        checks.of_service(service_id).map(|(id, _)| id.clone()).collect()
    }

    /// The index rebuilt from the rows alone: what every write must leave behind.
    fn rebuilt(checks: &LocalChecks) -> LocalChecks {
        checks.rows.clone().into_iter().collect()
    }

    #[test]
    fn the_service_index_follows_inserts_rebindings_updates_and_removals() {
        let mut checks = LocalChecks::default();
        checks.insert("web-1".into(), check("web-1", "web"));
        checks.insert("web-2".into(), check("web-2", "web"));
        checks.insert("web2-1".into(), check("web2-1", "web2"));
        checks.insert("node".into(), check("node", ""));
        assert_eq!(ids_of(&checks, "web"), ["web-1", "web-2"]);
        assert_eq!(ids_of(&checks, "web2"), ["web2-1"]);
        assert!(ids_of(&checks, "").is_empty(), "a node check is bound to no service");
        assert_eq!(checks, rebuilt(&checks));

        // Registering a check ID again under another service rebinds it.
        checks.insert("web-2".into(), check("web-2", "web2"));
        assert_eq!(ids_of(&checks, "web"), ["web-1"]);
        assert_eq!(ids_of(&checks, "web2"), ["web-2", "web2-1"]);

        // An update that changes the binding moves it; one that does not leaves it.
        assert_eq!(checks.update("web-1", |c| c.registration.service_id = "db".into()), Some(()));
        assert_eq!(checks.update("web2-1", |c| c.registration.output = "ok".into()), Some(()));
        assert_eq!(checks.update("missing", |_| ()), None);
        assert!(ids_of(&checks, "web").is_empty());
        assert_eq!(ids_of(&checks, "db"), ["web-1"]);
        assert_eq!(checks["web2-1"].registration.output, "ok");
        assert_eq!(checks, rebuilt(&checks));

        assert!(checks.remove("web-2").is_some());
        assert!(checks.remove("web-2").is_none());
        assert_eq!(ids_of(&checks, "web2"), ["web2-1"]);
        assert_eq!(checks, rebuilt(&checks));

        checks.clear();
        assert!(checks.is_empty() && ids_of(&checks, "db").is_empty());
    }
}
