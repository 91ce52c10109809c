//! Catalog views for client agents, which have no catalog of their own.
//!
//! A server answers `/rpc/read` with the encoded catalog rows a question needs
//! ([`Agent::serve_view`]); the client loads them into a small [`Catalog`] of its own, so the
//! pure code that works on a server's catalog (anti-entropy's diff, DNS answers) works
//! unchanged on the client:
//! - **anti-entropy**: the rows of this agent's own node ([`ViewRequest::Node`]);
//! - **DNS**: a cache of services ([`ServiceCache`], Consul's agent cache behind
//!   `dns_config.use_cache`). The first query for a service fetches it; a background task
//!   then keeps it fresh with blocking reads on that service (so a change reaches the
//!   client's answers as soon as a server applies it), and drops it once unused for
//!   `SERVICE_VIEW_IDLE_MS`. A warm query costs no server round trip. The cache holds at most
//!   `SERVICE_VIEWS_MAX` services, and an entry whose refresh keeps failing is not served
//!   once older than `SERVICE_VIEW_AGE_MS_MAX` (it is fetched again, or the query fails).
//! - **`?stale` / `?cached` reads** of `/v1/health/service/:s` and `/v1/catalog/service/:s`
//!   (non-blocking, without `?near`) are answered from the same cache (`http::forward`).
//!
//! Requests and answers are append-only postcard enums (`ViewRequest` variants are never
//! reordered); the rows inside are the state machine's own versioned row encoding.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::agent::{Agent, AgentError};
use crate::catalog::{Catalog, RowKey};
use crate::watch::Topic;

/// Longest a blocking view read waits on a server.
pub(crate) const VIEW_WAIT_MS_MAX: u64 = 60_000;
/// How long a background refresh blocks per round.
const SERVICE_VIEW_REFRESH_WAIT_MS: u64 = 30_000;
/// Services cached for DNS on one client agent.
const SERVICE_VIEWS_MAX: usize = 1024;
/// A cached service unused this long is dropped (and its refresh stops).
const SERVICE_VIEW_IDLE_MS: u64 = 10 * 60 * 1000;
/// A cached service not refreshed this long is not served.
const SERVICE_VIEW_AGE_MS_MAX: u64 = 90_000;
/// Pause after a failed refresh.
const SERVICE_VIEW_RETRY_MS: u64 = 1_000;

/// A question to a server about its catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ViewRequest {
    /// One node's row, services and checks.
    Node { node: String },
    /// Every instance of a service (names match case-insensitively, as DNS does), with
    /// their nodes and all the checks of those nodes; blocks until the service's index
    /// passes `min_index` or `wait_ms` runs out.
    Service { name: String, min_index: u64, wait_ms: u64 },
    /// What a client agent needs to resolve one ACL token (`acl_client`): the token with this
    /// secret, its roles, their and its policies, and the ACL indexes. No other token is sent.
    AclToken { secret: String },
    /// Who has this address, for a DNS PTR answer (`address_owner`): the rows of the node
    /// whose address it is, else those of one service instance registered with it.
    Address { ip: std::net::IpAddr },
    /// What a client agent executes a prepared query with (`agent::prepared_query`): the
    /// query `name_or_id` picks (its token redacted), the instances it selects with their
    /// nodes, checks and coordinates, and `near_node`'s coordinate.
    PreparedQuery { name_or_id: String, near_node: String },
}

/// Encoded catalog rows and the index they are current as of.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewRows {
    pub index: u64,
    pub rows: Vec<(Vec<u8>, Vec<u8>)>,
}

impl ViewRows {
    /// A catalog holding just these rows; rows that do not decode are refused.
    pub fn into_catalog(self) -> Result<Catalog, AgentError> {
        let mut catalog = Catalog::new();
        for (key, value) in &self.rows {
            catalog.load_row(key, value).map_err(|e| AgentError::Rejected(format!("a server sent a bad catalog row: {e}")))?;
        }
        Ok(catalog)
    }
}

fn encode_rows(catalog: &Catalog, rows: BTreeSet<RowKey>, index: u64) -> ViewRows {
    ViewRows { index, rows: rows.iter().filter_map(|row| catalog.encode_row(row)).collect() }
}

/// The rows of `node`: itself, its services and its checks.
pub(crate) fn node_rows(catalog: &Catalog, node: &str) -> ViewRows {
    let mut rows = BTreeSet::new();
    if catalog.node(node).is_some() {
        rows.insert(RowKey::Node(node.to_string()));
    }
    rows.extend(catalog.node_services(node).into_iter().map(|s| RowKey::Service(node.to_string(), s.id.clone())));
    rows.extend(catalog.node_checks(node).into_iter().map(|c| RowKey::Check(node.to_string(), c.check_id.clone())));
    encode_rows(catalog, rows, catalog.last_index())
}

/// The rows DNS needs to answer for `name`, and the service's index.
pub(crate) fn service_rows(catalog: &Catalog, name: &str) -> ViewRows {
    let names = catalog.service_names_ignoring_case(name);
    let index = names.iter().map(|n| catalog.service_index(n)).max().unwrap_or_else(|| catalog.service_index(name));
    let mut rows = BTreeSet::new();
    for name in &names {
        for (node, service) in catalog.service_instances(name) {
            rows.insert(RowKey::Node(node.name.clone()));
            rows.insert(RowKey::Service(node.name.clone(), service.id.clone()));
            rows.extend(catalog.node_checks(&node.name).into_iter().map(|c| RowKey::Check(node.name.clone(), c.check_id.clone())));
        }
    }
    encode_rows(catalog, rows, index)
}

/// Who has `ip` in `catalog`, as Consul's PTR lookup decides (`FetchRecordsByIp`): the first
/// node (by name) whose address it is, else the first service instance registered with it.
/// `Ok(node)` names a node, `Err((node, service id))` a service instance. Addresses are
/// compared as IPs, so `::1` matches `0:0::1`.
pub fn address_owner(catalog: &Catalog, ip: std::net::IpAddr) -> Option<Result<String, (String, String)>> {
    match catalog.address_owner(ip)? {
        Ok(node) => Some(Ok(node.name.clone())),
        Err(service) => Some(Err((service.node.clone(), service.id.clone()))),
    }
}

/// The rows that show who has `ip`: the node, or the service instance and its node.
pub(crate) fn address_rows(catalog: &Catalog, ip: std::net::IpAddr) -> ViewRows {
    let mut rows = BTreeSet::new();
    match address_owner(catalog, ip) {
        Some(Ok(node)) => {
            rows.insert(RowKey::Node(node));
        }
        Some(Err((node, service_id))) => {
            rows.insert(RowKey::Node(node.clone()));
            rows.insert(RowKey::Service(node, service_id));
        }
        None => {}
    }
    encode_rows(catalog, rows, catalog.last_index())
}

/// The rows a client agent resolves `secret` with: nothing of other tokens.
pub(crate) fn acl_token_rows(catalog: &Catalog, secret: &str) -> ViewRows {
    let acl = catalog.acl();
    let mut rows = BTreeSet::from([RowKey::AclIndexes]);
    if let Some(token) = acl.token_by_secret(secret) {
        rows.insert(RowKey::AclToken(token.accessor_id.clone()));
        let mut policy_ids: Vec<&str> = token.policies.iter().map(|link| link.id.as_str()).collect();
        for role in token.roles.iter().filter_map(|link| acl.role(&link.id)) {
            rows.insert(RowKey::AclRole(role.id.clone()));
            policy_ids.extend(role.policies.iter().map(|link| link.id.as_str()));
        }
        rows.extend(policy_ids.into_iter().filter(|id| acl.policy(id).is_some()).map(|id| RowKey::AclPolicy(id.to_string())));
    }
    encode_rows(catalog, rows, acl.indexes().max())
}

impl Agent {
    /// On a server: answers a client's view request from the local catalog (`?stale`
    /// semantics, as Consul's agent cache reads), blocking for `Service` requests.
    pub async fn serve_view(&self, request: ViewRequest) -> ViewRows {
        match request {
            ViewRequest::Node { node } => self.view.read(|catalog| node_rows(catalog, &node)),
            ViewRequest::AclToken { secret } => self.view.read(|catalog| acl_token_rows(catalog, &secret)),
            ViewRequest::Address { ip } => self.view.read(|catalog| address_rows(catalog, ip)),
            ViewRequest::PreparedQuery { name_or_id, near_node } => {
                self.view.read(|catalog| crate::agent::prepared_query::prepared_query_rows(catalog, &name_or_id, &near_node))
            }
            ViewRequest::Service { name, min_index, wait_ms } => {
                let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms.min(VIEW_WAIT_MS_MAX));
                let mut subscription = self.view.watches().subscribe(Topic::Service(name.clone()));
                loop {
                    subscription.mark_seen();
                    let rows = self.view.read(|catalog| service_rows(catalog, &name));
                    if rows.index > min_index || tokio::time::Instant::now() >= deadline {
                        return rows;
                    }
                    let _ = tokio::time::timeout_at(deadline, subscription.changed()).await;
                }
            }
        }
    }
}

/// A client's view of one service: the rows, the index they are current as of, and how long
/// ago a server last answered for them.
#[derive(Clone)]
pub struct ServiceView {
    pub catalog: Arc<Catalog>,
    pub index: u64,
    pub age: Duration,
    /// Whether it came from the cache (`X-Cache: HIT`) rather than a fetch just now.
    pub hit: bool,
}

/// One cached service.
struct CachedService {
    catalog: Arc<Catalog>,
    index: u64,
    last_used: Instant,
    refreshed: Instant,
}

/// A client agent's cache of services for DNS (see the module docs).
#[derive(Default)]
pub struct ServiceCache {
    /// Keyed by the lowercased service name. Short critical sections only.
    entries: Mutex<HashMap<String, CachedService>>,
    /// Bumped on every change to `entries` (a fetch, a refresh, a drop): DNS shares encoded
    /// answers while it holds ([`Agent::service_cache_generation`]).
    changes: AtomicU64,
}

impl ServiceCache {
    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::Release);
    }

    fn fresh(&self, key: &str) -> Option<ServiceView> {
        let mut entries = self.entries.lock().expect("service cache lock poisoned");
        let entry = entries.get_mut(key)?;
        entry.last_used = Instant::now();
        let age = entry.refreshed.elapsed();
        (age < Duration::from_millis(SERVICE_VIEW_AGE_MS_MAX)).then(|| ServiceView { catalog: entry.catalog.clone(), index: entry.index, age, hit: true })
    }

    /// Stores a fetched view; returns true when the service was not cached before.
    fn store(&self, key: &str, catalog: Arc<Catalog>, index: u64) -> bool {
        let mut entries = self.entries.lock().expect("service cache lock poisoned");
        let now = Instant::now();
        let new = !entries.contains_key(key);
        if new && entries.len() >= SERVICE_VIEWS_MAX {
            let oldest = entries.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        let last_used = entries.get(key).map_or(now, |e| e.last_used);
        entries.insert(key.to_string(), CachedService { catalog, index, last_used, refreshed: now });
        self.changed();
        new
    }

    /// Replaces a cached entry after a refresh; false when it is no longer cached.
    fn update(&self, key: &str, catalog: Arc<Catalog>, index: u64) -> bool {
        let mut entries = self.entries.lock().expect("service cache lock poisoned");
        let Some(entry) = entries.get_mut(key) else { return false };
        (entry.catalog, entry.index, entry.refreshed) = (catalog, index, Instant::now());
        self.changed();
        true
    }

    /// The index to block on, or `None` once the entry is gone or idle (then it is dropped).
    fn refresh_from(&self, key: &str) -> Option<u64> {
        let mut entries = self.entries.lock().expect("service cache lock poisoned");
        let entry = entries.get(key)?;
        if entry.last_used.elapsed() >= Duration::from_millis(SERVICE_VIEW_IDLE_MS) {
            entries.remove(key);
            self.changed();
            return None;
        }
        Some(entry.index)
    }
}

impl Agent {
    /// On a client: a number that changes whenever a cached service changes, and at least
    /// every second (so an entry that grows too old to serve stops being shared within a
    /// second of it); DNS shares encoded service answers while it holds. `None` on a server.
    pub fn service_cache_generation(&self) -> Option<u64> {
        let cache = self.service_cache.as_ref()?;
        let second = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Some((cache.changes.load(Ordering::Acquire) << 32) | (second & 0xffff_ffff))
    }

    /// On a client: the catalog rows for `service`, from the cache (fetched and then kept
    /// fresh in the background on first use). `None` on a server, which reads its own view.
    pub async fn service_view(self: &Arc<Self>, service: &str) -> Option<Result<ServiceView, AgentError>> {
        let cache = self.service_cache.as_ref()?;
        let key = service.to_ascii_lowercase();
        if let Some(view) = cache.fresh(&key) {
            return Some(Ok(view));
        }
        let fetched = self.read_view(ViewRequest::Service { name: key.clone(), min_index: 0, wait_ms: 0 }).await;
        Some(fetched.and_then(|rows| {
            let index = rows.index;
            let catalog = Arc::new(rows.into_catalog()?);
            if cache.store(&key, catalog.clone(), index) {
                tokio::spawn(refresh_service(self.clone(), key));
            }
            Ok(ServiceView { catalog, index, age: Duration::ZERO, hit: false })
        }))
    }

    /// On a client: this node's rows as the servers have them (for anti-entropy).
    pub(crate) async fn own_node_view(&self) -> Result<Catalog, AgentError> {
        self.node_view(&self.identity.node_name).await
    }

    /// On a client: the rows that show who has `ip` (for DNS PTR answers; not cached).
    pub async fn address_view(&self, ip: std::net::IpAddr) -> Result<Catalog, AgentError> {
        self.read_view(ViewRequest::Address { ip }).await?.into_catalog()
    }

    /// On a client: one node's rows as the servers have them (not cached).
    pub async fn node_view(&self, node: &str) -> Result<Catalog, AgentError> {
        self.read_view(ViewRequest::Node { node: node.to_string() }).await?.into_catalog()
    }
}

/// Keeps one cached service fresh with blocking reads until it goes idle or the agent stops.
async fn refresh_service(agent: Arc<Agent>, key: String) {
    let Some(cache) = agent.service_cache.as_ref() else { return };
    let mut shutdown = agent.shutdown_requested();
    while let Some(index) = cache.refresh_from(&key) {
        let request = ViewRequest::Service { name: key.clone(), min_index: index, wait_ms: SERVICE_VIEW_REFRESH_WAIT_MS };
        let fetched = tokio::select! {
            fetched = agent.read_view(request) => fetched,
            _ = shutdown.changed() => return,
        };
        match fetched.and_then(|rows| Ok((rows.index, rows.into_catalog()?))) {
            Ok((index, catalog)) => {
                if !cache.update(&key, Arc::new(catalog), index) {
                    return;
                }
            }
            Err(error) => {
                tracing::debug!(service = %key, %error, "service view refresh failed; will retry");
                tokio::time::sleep(Duration::from_millis(SERVICE_VIEW_RETRY_MS)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ViewRequest` and `ViewRows` cross the server port between agents of different
    /// releases: their postcard bytes are pinned (variants are append-only).
    #[test]
    fn view_messages_encoding_is_pinned() {
        let node = crate::rpc::encode(&ViewRequest::Node { node: "n".into() });
        assert_eq!(node, [1, 0, 1, b'n']);
        let service = crate::rpc::encode(&ViewRequest::Service { name: "w".into(), min_index: 300, wait_ms: 2 });
        assert_eq!(service, [1, 1, 1, b'w', 0xac, 0x02, 2]);
        let acl_token = crate::rpc::encode(&ViewRequest::AclToken { secret: "s".into() });
        assert_eq!(acl_token, [1, 2, 1, b's']);
        let query = crate::rpc::encode(&ViewRequest::PreparedQuery { name_or_id: "q".into(), near_node: "n".into() });
        assert_eq!(query, [1, 4, 1, b'q', 1, b'n']);
        let rows = crate::rpc::encode(&ViewRows { index: 7, rows: vec![(vec![1], vec![2, 3])] });
        assert_eq!(rows, [1, 7, 1, 1, 1, 2, 2, 3]);
        let decoded: ViewRequest = crate::rpc::decode(&service).unwrap();
        assert_eq!(decoded, ViewRequest::Service { name: "w".into(), min_index: 300, wait_ms: 2 });
    }

    /// Rows that do not decode are refused, not loaded half-way.
    #[test]
    fn bad_rows_from_a_server_are_refused() {
        let rows = ViewRows { index: 1, rows: vec![(vec![b'n', 0, 0, 0, 1, b'x'], vec![9, 9, 9])] };
        assert!(rows.into_catalog().is_err());
    }
}
