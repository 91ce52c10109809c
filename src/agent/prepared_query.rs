//! Executing prepared queries: what `/v1/query/:id/execute` and `<name>.query.consul` share
//! (Consul's `PreparedQuery.Execute`).
//!
//! In Consul's order: resolve the name or ID (rendering a template), run the service part over
//! the catalog (`catalog::prepared_query::execute`), keep what the query's `Token` (else the
//! caller's token) may read (`node:read` and `service:read`), shuffle, sort by network
//! distance from the `?near=` node (else the query's `Near`; `_agent` is this agent; with no
//! coordinate for it the shuffle stands), move that node first when it is among the first ten
//! results, and cut at the limit. Failover needs WAN federation, which cairn does not have:
//! `Failovers` is always 0, and an empty result stays empty.
//!
//! A server runs this on its own catalog. A client agent asks a server for the rows it needs
//! (`ViewRequest::PreparedQuery`: the query, the service's instances with their nodes and
//! checks, their coordinates) and runs the same code on them. The server redacts the query's
//! token in those rows, so that no secret leaves the servers: a client filters the results of
//! a query that has a token with the caller's token instead (cairn's choice).

use std::collections::{BTreeSet, HashMap};

use rand::seq::SliceRandom;

use crate::agent::remote_view::{ViewRequest, ViewRows};
use crate::agent::{Agent, AgentError};
use crate::catalog::model::{Check, Node, Service};
use crate::catalog::prepared_query::{PreparedQuery, ResolveError, execute, find, resolve};
use crate::catalog::{Catalog, RowKey};

/// The `Near` value meaning "the agent that executes the query".
pub const NEAR_AGENT: &str = "_agent";
/// How deep Consul looks for the `near` node to move it first.
const NEAR_NODE_SEARCH_DEPTH: usize = 10;
/// What a redacted token reads as (Consul's `redactedToken`).
pub const REDACTED_TOKEN: &str = "<hidden>";

/// One selected instance, owned.
#[derive(Clone, Debug)]
pub struct ExecutedInstance {
    pub node: Node,
    pub service: Service,
    pub checks: Vec<Check>,
}

/// The result of executing a query.
#[derive(Clone, Debug)]
pub struct Executed {
    /// The query as executed (a template rendered for the name).
    pub query: PreparedQuery,
    pub instances: Vec<ExecutedInstance>,
    /// Whether ACLs removed instances (`X-Consul-Results-Filtered-By-ACLs`).
    pub filtered: bool,
    /// The prepared-query table's index.
    pub index: u64,
}

/// How to execute: the caller's token, `?near=`, `?limit=` (0 = none).
#[derive(Clone, Debug, Default)]
pub struct ExecuteOptions {
    pub caller_secret: Option<String>,
    pub near: Option<String>,
    pub limit: usize,
}

/// Why an execution gave no result.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("{0}")]
    Resolve(#[from] ResolveError),
    #[error("{0}")]
    Agent(#[from] AgentError),
}

/// The query `name_or_id` stands for, rendered, with the instances it selects. Pure.
pub fn run_query(catalog: &Catalog, name_or_id: &str) -> Result<(PreparedQuery, Vec<ExecutedInstance>), ResolveError> {
    let query = resolve(catalog, name_or_id)?;
    let instances = execute(catalog, &query.service)
        .into_iter()
        .map(|i| ExecutedInstance { node: i.node.clone(), service: i.service.clone(), checks: i.checks.into_iter().cloned().collect() })
        .collect();
    Ok((query, instances))
}

/// The rows a client agent executes `name_or_id` with (see the module docs): the stored query
/// (its token redacted), the rendered service's instances, nodes, checks and coordinates, and
/// `near_node`'s coordinate.
pub(crate) fn prepared_query_rows(catalog: &Catalog, name_or_id: &str, near_node: &str) -> ViewRows {
    let index = catalog.prepared_queries_index();
    let Ok((stored, _)) = find(catalog, name_or_id) else {
        return ViewRows { index, rows: Vec::new() };
    };
    let mut redacted = stored.clone();
    if !redacted.token.is_empty() {
        redacted.token = REDACTED_TOKEN.to_string();
    }
    let key = Catalog::row_key_bytes(&RowKey::PreparedQuery(stored.id.clone()));
    let mut rows = vec![(key, crate::catalog::codec::encode_row_value(&redacted))];
    if let Ok((_, instances)) = run_query(catalog, name_or_id) {
        let mut keys = BTreeSet::new();
        let nodes: BTreeSet<&str> = instances.iter().map(|i| i.node.name.as_str()).chain([near_node]).collect();
        for instance in &instances {
            keys.insert(RowKey::Node(instance.node.name.clone()));
            keys.insert(RowKey::Service(instance.node.name.clone(), instance.service.id.clone()));
            keys.extend(instance.checks.iter().map(|c| RowKey::Check(c.node.clone(), c.check_id.clone())));
        }
        keys.extend(nodes.into_iter().filter(|n| catalog.coordinate(n, "").is_some()).map(|n| RowKey::Coordinate(n.to_string(), String::new())));
        rows.extend(keys.iter().filter_map(|key| catalog.encode_row(key)));
    }
    ViewRows { index, rows }
}

impl Agent {
    /// Executes a prepared query here (a server) or with a server's rows (a client agent).
    pub async fn execute_prepared_query(&self, name_or_id: &str, options: &ExecuteOptions) -> Result<Executed, ExecuteError> {
        let own_node = self.identity().node_name.clone();
        let ran = if self.raft().is_some() {
            self.view().read(|catalog| run_query(catalog, name_or_id).map(|(query, instances)| (query, instances, catalog.prepared_queries_index(), near_order(catalog))))
        } else {
            let request = ViewRequest::PreparedQuery { name_or_id: name_or_id.to_string(), near_node: own_node.clone() };
            let rows = self.read_view(request).await?;
            let index = rows.index;
            let catalog = rows.into_catalog()?;
            run_query(&catalog, name_or_id).map(|(query, instances)| (query, instances, index, near_order(&catalog)))
        };
        let (query, instances, index, order) = ran?;
        let secret = match query.token.as_str() {
            "" | REDACTED_TOKEN => options.caller_secret.clone(),
            token => Some(token.to_string()),
        };
        let resolved = self.resolve_token(secret.as_deref()).await.map_err(|e| AgentError::Rejected(e.to_string()))?;
        let before = instances.len();
        let mut instances: Vec<ExecutedInstance> = instances
            .into_iter()
            .filter(|i| resolved.authorizer.node_read(&i.node.name) && resolved.authorizer.service_read(&i.service.name))
            .collect();
        let filtered = instances.len() != before;
        instances.shuffle(&mut rand::thread_rng());
        let near = options.near.clone().filter(|n| !n.is_empty()).or_else(|| Some(query.service.near.clone()).filter(|n| !n.is_empty()));
        // `_ip` needs the request's source address, which cairn does not pass down: no sort.
        let near = near.filter(|n| n != "_ip").map(|n| if n == NEAR_AGENT { own_node } else { n });
        if let Some(near) = &near {
            instances = order(near, instances);
            if let Some(position) = instances.iter().take(NEAR_NODE_SEARCH_DEPTH).position(|i| i.node.name == *near) {
                instances.swap(0, position);
            }
        }
        if options.limit > 0 {
            instances.truncate(options.limit);
        }
        Ok(Executed { query, instances, filtered, index })
    }
}

/// A sort by estimated round-trip time from a node, stable, nodes without a coordinate last;
/// unchanged when the origin has none (Consul's `sortNodesByDistanceFrom`).
type NearOrder = Box<dyn FnOnce(&str, Vec<ExecutedInstance>) -> Vec<ExecutedInstance> + Send>;

/// Captures the (default-segment) coordinates the sort needs, so that it runs outside the
/// catalog read.
fn near_order(catalog: &Catalog) -> NearOrder {
    use crate::agent::coordinates::from_catalog;
    let coordinates: HashMap<String, crate::gossip::coordinate::Coordinate> =
        catalog.coordinates().filter(|c| c.segment.is_empty()).map(|c| (c.node.to_string(), from_catalog(c.coord))).collect();
    Box::new(move |origin: &str, instances: Vec<ExecutedInstance>| {
        let Some(origin) = coordinates.get(origin) else { return instances };
        let mut keyed: Vec<(std::time::Duration, ExecutedInstance)> = instances
            .into_iter()
            .map(|i| (coordinates.get(&i.node.name).map_or(std::time::Duration::MAX, |c| origin.distance_to(c)), i))
            .collect();
        keyed.sort_by_key(|(distance, _)| *distance);
        keyed.into_iter().map(|(_, i)| i).collect()
    })
}
