//! Executing a prepared query's service part over the catalog (Consul's
//! `PreparedQuery.execute`, local datacenter only). Pure: ACL filtering, shuffling, distance
//! sorting and the limit are the caller's, as in Consul's `Execute`.
//!
//! In Consul's order: the service's instances (matched case-insensitively, as Consul's
//! catalog indexes names; `Connect` asks for connect-capable instances, and cairn has no
//! service mesh, so there are none), then the health filter (`FilterIgnore`: an instance goes
//! when any of its checks not in `IgnoreCheckIDs` is critical, or not passing with
//! `OnlyPassing`), then `NodeMeta` and `ServiceMeta` (every pair must be present with that
//! value), then `Tags` (every tag present and no `!tag`, compared case-insensitively).

use crate::catalog::Catalog;
use crate::catalog::model::HealthStatus;
use crate::catalog::prepared_query::ServiceQuery;
use crate::catalog::query::HealthInstance;

/// The instances `query` selects, in catalog order.
pub fn execute<'a>(catalog: &'a Catalog, query: &ServiceQuery) -> Vec<HealthInstance<'a>> {
    if query.connect {
        return Vec::new();
    }
    let names: Vec<String> = catalog.service_names().into_keys().filter(|name| name.eq_ignore_ascii_case(&query.service)).collect();
    let (required, forbidden) = tag_rules(&query.tags);
    names
        .iter()
        .flat_map(|name| catalog.health_instances(name))
        .filter(|instance| healthy_enough(instance, query))
        .filter(|instance| query.node_meta.iter().all(|(key, value)| instance.node.meta.get(key) == Some(value)))
        .filter(|instance| query.service_meta.iter().all(|(key, value)| instance.service.meta.get(key) == Some(value)))
        .filter(|instance| {
            let tags: Vec<String> = instance.service.tags.iter().map(|tag| tag.to_lowercase()).collect();
            required.iter().all(|tag| tags.contains(tag)) && !forbidden.iter().any(|tag| tags.contains(tag))
        })
        .collect()
}

/// Consul's `FilterIgnore(OnlyPassing, IgnoreCheckIDs)`.
fn healthy_enough(instance: &HealthInstance<'_>, query: &ServiceQuery) -> bool {
    instance
        .checks
        .iter()
        .filter(|check| !query.ignore_check_ids.contains(&check.check_id))
        .all(|check| match check.status {
            HealthStatus::Passing => true,
            HealthStatus::Warning => !query.only_passing,
            HealthStatus::Critical => false,
        })
}

/// The required and the forbidden (`!`) tags, lower-cased.
fn tag_rules(tags: &[String]) -> (Vec<String>, Vec<String>) {
    let mut required = Vec::new();
    let mut forbidden = Vec::new();
    for tag in tags {
        let tag = tag.to_lowercase();
        match tag.strip_prefix('!') {
            Some(not) => forbidden.push(not.to_string()),
            None => required.push(tag),
        }
    }
    (required, forbidden)
}
