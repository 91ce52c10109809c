//! Resolving ACL tokens on any agent: [`Agent::resolve_token`], the one place that decides
//! where a token's policies come from.
//!
//! - A **server** reads its own replicated ACL tables (`AgentAcl::resolve`), as Consul's
//!   servers do.
//! - A **client agent** has no ACL tables. It asks a server for the token's rows
//!   (`ViewRequest::AclToken`: the token, its roles and their policies, no other token) over
//!   the cluster-authenticated server port, resolves them with the same code, and keeps the
//!   answer for `acl.token_ttl` (Consul's default 30 s), as Consul's agents cache
//!   `ACL.TokenRead`. A deleted token is therefore refused by client agents within the TTL.
//! - When no server answers, `acl.down_policy` decides, as in Consul: `extend-cache` and
//!   `async-cache` keep using a cached answer however old (and deny what was never resolved),
//!   `deny` denies everything, `allow` allows everything.
//!
//! The cache holds at most `ACL_CLIENT_CACHE_ENTRIES_MAX` secrets and is emptied when full.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::acl::{Authorizer, DefaultPolicy};
use crate::agent::acl::{AclError, Resolved, allow_all};
use crate::agent::remote_view::ViewRequest;
use crate::agent::{Agent, AgentError};

/// Most resolved secrets a client agent keeps.
const ACL_CLIENT_CACHE_ENTRIES_MAX: usize = 4096;

/// A client agent's resolved tokens: secret → (when a server answered, the result).
#[derive(Default)]
pub(crate) struct ClientTokenCache {
    entries: Mutex<HashMap<String, (Instant, Arc<Resolved>)>>,
}

impl ClientTokenCache {
    fn get(&self, secret: &str) -> Option<(Instant, Arc<Resolved>)> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(secret).cloned()
    }

    fn put(&self, secret: &str, resolved: Arc<Resolved>) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= ACL_CLIENT_CACHE_ENTRIES_MAX {
            entries.clear();
        }
        entries.insert(secret.to_string(), (Instant::now(), resolved));
    }

    fn forget(&self, secret: &str) {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(secret);
    }
}

/// What everything gets when the down policy denies: nothing is allowed.
fn deny_all() -> Arc<Resolved> {
    Arc::new(Resolved { accessor_id: String::new(), authorizer: Authorizer::from_rules(DefaultPolicy::Deny, &[]) })
}

impl Agent {
    /// What `secret` may do (`None`: the agent's default token, else the anonymous token).
    pub async fn resolve_token(&self, secret: Option<&str>) -> Result<Arc<Resolved>, AclError> {
        let acl = self.acl();
        if !acl.enabled() {
            return Ok(allow_all());
        }
        if self.raft().is_some() {
            return self.view().read(|catalog| acl.resolve(catalog, secret));
        }
        let secret = acl.effective_secret(secret);
        if let Some(local) = acl.resolve_locally(&secret) {
            return Ok(local);
        }
        let ttl = Duration::from_millis(self.config().acl_token_ttl_ms);
        let cached = acl.remote_cache().get(&secret);
        if let Some((at, resolved)) = &cached
            && at.elapsed() < ttl
        {
            return Ok(Arc::clone(resolved));
        }
        match self.fetch_token(&secret).await {
            Ok(Ok(resolved)) => {
                acl.remote_cache().put(&secret, Arc::clone(&resolved));
                Ok(resolved)
            }
            Ok(Err(AclError::NotFound)) => {
                acl.remote_cache().forget(&secret);
                Err(AclError::NotFound)
            }
            Err(error) => {
                tracing::warn!(%error, down_policy = %self.config().acl_down_policy, "no server could resolve an ACL token");
                Ok(match self.config().acl_down_policy.as_str() {
                    "allow" => allow_all(),
                    "deny" => deny_all(),
                    // extend-cache, async-cache: the last answer, however old.
                    _ => cached.map_or_else(deny_all, |(_, resolved)| resolved),
                })
            }
        }
    }

    /// Asks a server for the token's rows and resolves them. The outer error: no server
    /// answered; the inner: the servers do not know the token.
    async fn fetch_token(&self, secret: &str) -> Result<Result<Arc<Resolved>, AclError>, AgentError> {
        let rows = self.read_view(ViewRequest::AclToken { secret: secret.to_string() }).await?;
        let catalog = rows.into_catalog()?;
        Ok(self.acl().resolve_from(catalog.acl(), secret).map(Arc::new))
    }
}
