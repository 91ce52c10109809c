//! Consul's prepared queries, replicated: stored service queries that clients execute by ID
//! or by name (`/v1/query`, `<name>.query.consul`), and templates that match names by prefix.
//!
//! `apply_prepared_query` keeps the table consistent the way Consul's state store does
//! (`preparedQuerySetTxn`): IDs are unique, names are unique case-insensitively, at most one
//! template has the empty name (the catch-all), no name may equal another query's ID, a bound
//! session must exist, and a template must compile. A query bound to a session is deleted when
//! the session ends (Consul's `deleteSessionTxn`); `apply` calls [`remove_for_session`].
//!
//! [`resolve`] finds what a name or ID stands for (ID, then exact name, then the template with
//! the longest matching prefix, rendered for the name), and [`execute`] (in `execute.rs`) runs
//! a query's service part over the catalog.
//!
//! Every type here is postcard inside the versioned row and command codecs: fields are never
//! reordered or removed; a new field needs a new format version (see `catalog::codec`).

mod execute;
pub mod template;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use execute::execute;

use crate::catalog::apply::Outcome;
use crate::catalog::{Catalog, ChangeSet, RowKey};

/// Most prepared queries stored: a bound on the table and on every resolve's scan.
pub const PREPARED_QUERIES_MAX: usize = 10_000;
/// Longest name, service name, regexp or other text field of a query.
pub const QUERY_TEXT_BYTES_MAX: usize = 4096;
/// Most items in a query's lists (tags, check IDs, datacenters, targets) and maps (metadata).
pub const QUERY_LIST_ITEMS_MAX: usize = 256;
/// Consul's one template type: the query's `Name` is a prefix of the names it answers.
pub const TEMPLATE_TYPE_NAME_PREFIX_MATCH: &str = "name_prefix_match";

/// A stored prepared query (Consul's `structs.PreparedQuery`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedQuery {
    pub id: String,
    /// Optional; unique case-insensitively. A template's name is the prefix it matches.
    pub name: String,
    /// A session whose end deletes the query; `""` = none.
    pub session: String,
    /// The ACL token the query executes with; `""` = the caller's.
    pub token: String,
    pub template: QueryTemplate,
    pub service: ServiceQuery,
    pub dns: QueryDns,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Consul's `QueryTemplateOptions`: a non-empty `kind` makes the query a template.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryTemplate {
    /// `""` (not a template) or [`TEMPLATE_TYPE_NAME_PREFIX_MATCH`].
    pub kind: String,
    /// An RE2-syntax expression matched against the full name, for `${match(N)}`.
    pub regexp: String,
    /// Drop tags that render empty.
    pub remove_empty_tags: bool,
}

/// Consul's `ServiceQuery`: which instances of which service the query selects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceQuery {
    pub service: String,
    pub failover: QueryFailover,
    pub only_passing: bool,
    pub ignore_check_ids: Vec<String>,
    /// A node to sort near, `_agent` (the executing agent), `_ip`, or `""` (shuffle).
    pub near: String,
    /// Required tags, and `!tag` for forbidden ones (case-insensitive).
    pub tags: Vec<String>,
    pub node_meta: BTreeMap<String, String>,
    pub service_meta: BTreeMap<String, String>,
    pub peer: String,
    pub sameness_group: String,
    pub connect: bool,
}

/// Consul's `QueryFailoverOptions`: kept and shown, but cairn has no WAN federation or peers
/// to fail over to, so executing never fails over (`Failovers` is 0).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryFailover {
    pub nearest_n: u64,
    pub datacenters: Vec<String>,
    pub targets: Vec<QueryFailoverTarget>,
}

/// One failover target: a cluster peer or a datacenter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryFailoverTarget {
    pub peer: String,
    pub datacenter: String,
    pub partition: String,
    pub namespace: String,
}

/// Consul's `QueryDNSOptions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryDns {
    /// A Go duration (`"10s"`), checked by the HTTP layer; `""` = the agent's service TTL.
    pub ttl: String,
}

/// One prepared-query write (`Command::PreparedQuery`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PreparedQueryOp {
    /// Create (`create`: the ID must be new) or update (the ID must exist) a query.
    Set { query: PreparedQuery, create: bool },
    /// Delete a query; deleting one that does not exist changes nothing.
    Delete { id: String },
}

impl PreparedQuery {
    pub fn is_template(&self) -> bool {
        !self.template.kind.is_empty()
    }

    /// The name ACL rules apply to (Consul's `GetACLPrefix`): a query with a name, or any
    /// template, is governed by `query` rules on its name; an unnamed query by none.
    pub fn acl_prefix(&self) -> Option<&str> {
        (!self.name.is_empty() || self.is_template()).then_some(self.name.as_str())
    }
}

impl Catalog {
    /// Every prepared query, by ID.
    pub fn prepared_queries(&self) -> impl Iterator<Item = &PreparedQuery> {
        self.prepared_queries.values()
    }

    pub fn prepared_query(&self, id: &str) -> Option<&PreparedQuery> {
        self.prepared_queries.get(id)
    }

    /// The prepared-query table's index (`X-Consul-Index` of its reads).
    pub fn prepared_queries_index(&self) -> u64 {
        self.prepared_queries_index.max(self.restore_floor)
    }
}

/// Applies one prepared-query write, refusing (unchanged) what Consul's state store refuses.
pub(crate) fn apply_prepared_query(catalog: &mut Catalog, index: u64, op: &PreparedQueryOp, changes: &mut ChangeSet) -> Outcome {
    match op {
        PreparedQueryOp::Set { query, create } => set(catalog, index, query, *create, changes),
        PreparedQueryOp::Delete { id } => {
            if catalog.prepared_queries.remove(id).is_some() {
                catalog.prepared_queries_index = index;
                changes.touch(RowKey::PreparedQuery(id.clone()));
                changes.touch(RowKey::PreparedQueriesIndex);
            }
            Outcome::Done
        }
    }
}

fn set(catalog: &mut Catalog, index: u64, query: &PreparedQuery, create: bool, changes: &mut ChangeSet) -> Outcome {
    if let Err(reason) = check_set(catalog, query, create) {
        return Outcome::Rejected(reason);
    }
    let existing = catalog.prepared_queries.get(&query.id);
    let mut row = query.clone();
    row.create_index = existing.map_or(index, |q| q.create_index);
    row.modify_index = index;
    catalog.prepared_queries.insert(row.id.clone(), row);
    catalog.prepared_queries_index = index;
    changes.touch(RowKey::PreparedQuery(query.id.clone()));
    changes.touch(RowKey::PreparedQueriesIndex);
    Outcome::Done
}

/// Consul's integrity checks, with its messages, plus cairn's limits.
fn check_set(catalog: &Catalog, query: &PreparedQuery, create: bool) -> Result<(), String> {
    if query.id.is_empty() {
        return Err("Missing prepared query ID".into());
    }
    check_limits(query)?;
    let existing = catalog.prepared_queries.get(&query.id);
    match (create, existing) {
        (true, Some(_)) => return Err(format!("prepared query {:?} already exists", query.id)),
        (false, None) => return Err(format!("Cannot modify non-existent prepared query: '{}'", query.id)),
        (true, None) if catalog.prepared_queries.len() >= PREPARED_QUERIES_MAX => {
            return Err(format!("too many prepared queries (at most {PREPARED_QUERIES_MAX})"));
        }
        _ => {}
    }
    let others = || catalog.prepared_queries.values().filter(|other| other.id != query.id);
    if !query.name.is_empty() {
        if others().any(|other| other.name.eq_ignore_ascii_case(&query.name)) {
            return Err(format!("name '{}' aliases an existing query name", query.name));
        }
    } else if query.is_template() && others().any(|other| other.is_template() && other.name.is_empty()) {
        return Err("a query template with an empty name already exists".into());
    }
    if is_uuid(&query.name) && catalog.prepared_queries.keys().any(|id| id.eq_ignore_ascii_case(&query.name)) {
        return Err(format!("name '{}' aliases an existing query ID", query.name));
    }
    if !query.session.is_empty() && catalog.session(&query.session).is_none() {
        return Err(format!("invalid session {:?}", query.session));
    }
    if query.is_template() {
        template::Compiled::new(query).map_err(|error| format!("failed compiling template: {error}"))?;
    }
    Ok(())
}

/// Every text at most [`QUERY_TEXT_BYTES_MAX`], every list at most [`QUERY_LIST_ITEMS_MAX`].
fn check_limits(query: &PreparedQuery) -> Result<(), String> {
    let service = &query.service;
    let lists = [
        service.tags.len(),
        service.ignore_check_ids.len(),
        service.failover.datacenters.len(),
        service.failover.targets.len(),
        service.node_meta.len(),
        service.service_meta.len(),
    ];
    if lists.iter().any(|len| *len > QUERY_LIST_ITEMS_MAX) {
        return Err(format!("a prepared query list or map holds more than {QUERY_LIST_ITEMS_MAX} items"));
    }
    let mut texts: Vec<&str> = vec![&query.id, &query.name, &query.session, &query.token, &query.template.kind, &query.template.regexp, &query.dns.ttl];
    texts.extend([service.service.as_str(), &service.near, &service.peer, &service.sameness_group]);
    texts.extend(service.tags.iter().chain(&service.ignore_check_ids).chain(&service.failover.datacenters).map(String::as_str));
    texts.extend(service.node_meta.iter().chain(&service.service_meta).flat_map(|(k, v)| [k.as_str(), v.as_str()]));
    let targets = &service.failover.targets;
    texts.extend(targets.iter().flat_map(|t| [t.peer.as_str(), &t.datacenter, &t.partition, &t.namespace]));
    if texts.iter().any(|text| text.len() > QUERY_TEXT_BYTES_MAX) {
        return Err(format!("a prepared query field is longer than {QUERY_TEXT_BYTES_MAX} bytes"));
    }
    Ok(())
}

/// Deletes the queries bound to `session`, which just ended (Consul's `deleteSessionTxn`).
pub(crate) fn remove_for_session(catalog: &mut Catalog, index: u64, session: &str, changes: &mut ChangeSet) {
    let doomed: Vec<String> = catalog.prepared_queries.values().filter(|q| q.session == session).map(|q| q.id.clone()).collect();
    for id in doomed {
        catalog.prepared_queries.remove(&id);
        catalog.prepared_queries_index = index;
        changes.touch(RowKey::PreparedQuery(id));
        changes.touch(RowKey::PreparedQueriesIndex);
    }
}

/// Why a name or ID resolves to no query that can run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Consul's `ErrQueryNotFound` (HTTP 404, DNS NXDOMAIN).
    #[error("Query not found")]
    NotFound,
    #[error("Missing query ID")]
    MissingId,
    #[error("prepared query templates can only be resolved up by name, not by ID")]
    TemplateById,
    /// The template failed to render for this name.
    #[error("{0}")]
    Render(String),
}

/// What `name_or_id` stands for, as Consul's `PreparedQueryResolve` decides: a query with that
/// ID (a UUID), else one with that name (case-insensitively), else the template whose name is
/// the longest prefix of it (case-insensitively), rendered for `name_or_id`. Pure.
pub fn resolve(catalog: &Catalog, name_or_id: &str) -> Result<PreparedQuery, ResolveError> {
    let (query, by_id) = find(catalog, name_or_id)?;
    if !query.is_template() {
        return Ok(query.clone());
    }
    if by_id {
        return Err(ResolveError::TemplateById);
    }
    let compiled = template::Compiled::new(query).map_err(ResolveError::Render)?;
    compiled.render(name_or_id).map_err(ResolveError::Render)
}

/// The stored query `name_or_id` picks, unrendered, and whether it was picked by its ID.
pub fn find<'a>(catalog: &'a Catalog, name_or_id: &str) -> Result<(&'a PreparedQuery, bool), ResolveError> {
    if name_or_id.is_empty() {
        return Err(ResolveError::MissingId);
    }
    if is_uuid(name_or_id) {
        let by_id = catalog.prepared_queries.values().find(|q| q.id.eq_ignore_ascii_case(name_or_id));
        if let Some(query) = by_id {
            return Ok((query, true));
        }
    }
    let by_name = catalog.prepared_queries.values().find(|q| !q.name.is_empty() && q.name.eq_ignore_ascii_case(name_or_id));
    let found = by_name.or_else(|| {
        let lowered = name_or_id.to_lowercase();
        catalog
            .prepared_queries
            .values()
            .filter(|q| q.is_template() && lowered.starts_with(&q.name.to_lowercase()))
            .max_by_key(|q| q.name.len())
    });
    found.map(|query| (query, false)).ok_or(ResolveError::NotFound)
}

/// Consul's `isUUID`: 8-4-4-4-12 hex digits, any case.
pub fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    groups.len() == lengths.len()
        && groups.iter().zip(lengths).all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}
