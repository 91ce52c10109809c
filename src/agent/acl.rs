//! ACL tokens on this agent: resolving a secret to what it may do, the agent's own tokens
//! (`acl.tokens.*` and `PUT /v1/agent/token/*`), and the leader's ACL duties.
//!
//! A server resolves tokens from its own replicated state (`catalog::acl`), as Consul's servers
//! do, so resolution never waits on the network. The rule language and the authorizer are
//! `crate::acl`; this file only finds a token's policies, roles and identities and hands their
//! rules over. Parsed authorizers are cached per secret and ACL index, so a policy or token
//! change is seen by the very next request (`ACL_CACHE_ENTRIES_MAX` bounds the cache).
//!
//! Secrets never reach a log line or an error: errors name accessor IDs at most.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::acl::{Authorizer, DefaultPolicy, Rules};
use crate::agent::{Agent, AgentError, new_uuid, wall_clock_ms};
use crate::catalog::acl::{
    ANONYMOUS_TOKEN_ID, ANONYMOUS_TOKEN_SECRET, AclOp, AclPolicy, AclToken, AclTables, GLOBAL_MANAGEMENT_POLICY_ID,
    GLOBAL_MANAGEMENT_POLICY_NAME,
};
use crate::catalog::{Catalog, Command};
use crate::config::RuntimeConfig;

/// Most resolved secrets kept; the cache is emptied when it is full.
const ACL_CACHE_ENTRIES_MAX: usize = 4096;

/// A resolved token: who it is (by accessor ID) and what it may do.
#[derive(Debug)]
pub struct Resolved {
    pub accessor_id: String,
    pub authorizer: Authorizer,
}

#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// Consul's `acl.ErrNotFound`: an unknown, expired or deleted secret (403 "ACL not found").
    #[error("ACL not found")]
    NotFound,
}

/// The tokens this agent itself uses, changeable at run time (`PUT /v1/agent/token/<kind>`).
#[derive(Clone, Default)]
pub struct AgentTokens {
    pub default: Option<String>,
    pub agent: Option<String>,
    pub agent_recovery: Option<String>,
    pub replication: Option<String>,
    pub config_file_service_registration: Option<String>,
    pub dns: Option<String>,
}

/// The file `enable_token_persistence` keeps tokens in (Consul's name).
const TOKENS_FILE: &str = "acl-tokens.json";

/// ACL state of one agent.
pub struct AgentAcl {
    enabled: bool,
    default_policy: DefaultPolicy,
    datacenter: String,
    node_name: String,
    persist: bool,
    initial_management: Option<String>,
    tokens: Mutex<AgentTokens>,
    /// secret → (ACL index it was resolved at, the result).
    cache: Mutex<HashMap<String, (u64, Arc<Resolved>)>>,
    /// A client agent's tokens, as resolved by servers (`acl_client`).
    remote: crate::agent::acl_client::ClientTokenCache,
}

impl AgentAcl {
    pub fn new(config: &RuntimeConfig, data_dir: &std::path::Path) -> AgentAcl {
        let from_config = &config.acl_tokens;
        let mut tokens = AgentTokens {
            default: from_config.default.clone(),
            agent: from_config.agent.clone(),
            agent_recovery: from_config.agent_recovery.clone(),
            replication: from_config.replication.clone(),
            config_file_service_registration: from_config.config_file_service_registration.clone(),
            dns: from_config.dns.clone(),
        };
        if config.acl_enable_token_persistence {
            // Consul: tokens set through the API win over the config's.
            if let Ok(text) = std::fs::read_to_string(data_dir.join(TOKENS_FILE)) {
                if let Ok(saved) = serde_json::from_str::<serde_json::Value>(&text) {
                    apply_saved(&mut tokens, &saved);
                }
            }
        }
        AgentAcl {
            enabled: config.acl_enabled,
            default_policy: if config.acl_default_policy == "deny" { DefaultPolicy::Deny } else { DefaultPolicy::Allow },
            datacenter: config.datacenter.clone(),
            node_name: config.node_name.clone(),
            persist: config.acl_enable_token_persistence,
            initial_management: config.acl_tokens.initial_management.clone(),
            tokens: Mutex::new(tokens),
            cache: Mutex::new(HashMap::new()),
            remote: Default::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn default_policy(&self) -> DefaultPolicy {
        self.default_policy
    }

    pub fn tokens(&self) -> AgentTokens {
        self.tokens.lock().expect("agent tokens lock poisoned").clone()
    }

    /// Sets one of the agent's tokens by Consul's kind name; `false` for an unknown kind.
    pub fn set_token(&self, kind: &str, secret: String, data_dir: &std::path::Path) -> Result<bool, AgentError> {
        let mut tokens = self.tokens.lock().expect("agent tokens lock poisoned");
        let slot = match kind {
            "default" | "acl_token" => &mut tokens.default,
            "agent" | "acl_agent_token" => &mut tokens.agent,
            "agent_recovery" | "agent_master" | "acl_agent_master_token" => &mut tokens.agent_recovery,
            "replication" | "acl_replication_token" => &mut tokens.replication,
            "config_file_service_registration" => &mut tokens.config_file_service_registration,
            "dns" => &mut tokens.dns,
            _ => return Ok(false),
        };
        *slot = Some(secret).filter(|s| !s.is_empty());
        if self.persist {
            let saved = serde_json::json!({
                "default": tokens.default, "agent": tokens.agent, "agent_recovery": tokens.agent_recovery,
                "replication": tokens.replication,
                "config_file_service_registration": tokens.config_file_service_registration, "dns": tokens.dns,
            });
            let path = data_dir.join(TOKENS_FILE);
            let tmp = data_dir.join(format!("{TOKENS_FILE}.tmp"));
            std::fs::write(&tmp, saved.to_string())
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| AgentError::Internal(format!("persisting ACL tokens: {e}")))?;
        }
        Ok(true)
    }

    /// What `secret` may do, read from `catalog`. `None` means the request carried no token:
    /// the agent's default token is used, else the anonymous token.
    pub fn resolve(&self, catalog: &Catalog, secret: Option<&str>) -> Result<Arc<Resolved>, AclError> {
        if !self.enabled {
            return Ok(allow_all());
        }
        let secret = self.effective_secret(secret);
        let acl = catalog.acl();
        let index = acl.indexes().max();
        if let Some((at, resolved)) = self.cache.lock().expect("acl cache lock poisoned").get(&secret) {
            if *at == index && !expired(acl, &secret) {
                return Ok(Arc::clone(resolved));
            }
        }
        let resolved = Arc::new(self.resolve_uncached(acl, &secret)?);
        let mut cache = self.cache.lock().expect("acl cache lock poisoned");
        if cache.len() >= ACL_CACHE_ENTRIES_MAX {
            cache.clear();
        }
        cache.insert(secret, (index, Arc::clone(&resolved)));
        Ok(resolved)
    }

    /// The secret a request stands for: its own, else the agent's default token, else the
    /// anonymous token.
    pub(crate) fn effective_secret(&self, secret: Option<&str>) -> String {
        match secret.filter(|s| !s.is_empty()) {
            Some(secret) => secret.to_string(),
            None => self.tokens().default.unwrap_or_else(|| ANONYMOUS_TOKEN_SECRET.to_string()),
        }
    }

    /// The tokens only this agent knows: its agent recovery token (Consul's: this agent's
    /// endpoints, and reading nodes). `None` for every other secret.
    pub(crate) fn resolve_locally(&self, secret: &str) -> Option<Arc<Resolved>> {
        if self.tokens().agent_recovery.as_deref() != Some(secret) {
            return None;
        }
        let rules = format!("agent {:?} {{ policy = \"write\" }}\nnode_prefix \"\" {{ policy = \"read\" }}", self.node_name);
        let parsed = crate::acl::parse_rules(&rules).map(|r| vec![r]).unwrap_or_default();
        Some(Arc::new(Resolved { accessor_id: "agent-recovery".into(), authorizer: Authorizer::from_rules(DefaultPolicy::Deny, &parsed) }))
    }

    pub(crate) fn remote_cache(&self) -> &crate::agent::acl_client::ClientTokenCache {
        &self.remote
    }

    /// Resolves `secret` against ACL tables: a server's own, or the rows a server sent a
    /// client agent.
    pub(crate) fn resolve_from(&self, acl: &AclTables, secret: &str) -> Result<Resolved, AclError> {
        self.resolve_uncached(acl, secret)
    }

    fn resolve_uncached(&self, acl: &AclTables, secret: &str) -> Result<Resolved, AclError> {
        if let Some(local) = self.resolve_locally(secret) {
            return Ok(Resolved { accessor_id: local.accessor_id.clone(), authorizer: local.authorizer.clone() });
        }
        let token = match acl.token_by_secret(secret) {
            Some(token) => token,
            // The configured initial management token, in the moment before the leader has
            // stored it (a client that starts the agent and calls at once).
            None if self.initial_management.as_deref() == Some(secret) => {
                return Ok(Resolved { accessor_id: String::new(), authorizer: Authorizer::management() });
            }
            // Before the leader creates it, the anonymous token has no policies.
            None if secret == ANONYMOUS_TOKEN_SECRET => {
                return Ok(Resolved { accessor_id: ANONYMOUS_TOKEN_ID.into(), authorizer: Authorizer::from_rules(self.default_policy, &[]) });
            }
            None => return Err(AclError::NotFound),
        };
        if token.expiration_time_ms.is_some_and(|at| at <= wall_clock_ms()) {
            return Err(AclError::NotFound);
        }
        let (management, rules) = self.token_rules(acl, token);
        let authorizer = if management { Authorizer::management() } else { Authorizer::from_rules(self.default_policy, &rules) };
        Ok(Resolved { accessor_id: token.accessor_id.clone(), authorizer })
    }

    /// The parsed rules of everything a token links: its policies, its roles' policies, and
    /// the synthetic policies of identities and templates. `true` if one is global-management.
    fn token_rules(&self, acl: &AclTables, token: &AclToken) -> (bool, Vec<Rules>) {
        let mut texts: Vec<String> = Vec::new();
        let mut management = false;
        let mut policy_ids: Vec<&str> = token.policies.iter().map(|l| l.id.as_str()).collect();
        let mut service_ids = token.service_identities.clone();
        let mut node_ids = token.node_identities.clone();
        let mut templated = token.templated_policies.clone();
        for role in token.roles.iter().filter_map(|link| acl.role(&link.id)) {
            policy_ids.extend(role.policies.iter().map(|l| l.id.as_str()));
            service_ids.extend(role.service_identities.iter().cloned());
            node_ids.extend(role.node_identities.iter().cloned());
            templated.extend(role.templated_policies.iter().cloned());
        }
        for policy in policy_ids.into_iter().filter_map(|id| acl.policy(id)) {
            if !policy.datacenters.is_empty() && !policy.datacenters.contains(&self.datacenter) {
                continue;
            }
            if policy.id == GLOBAL_MANAGEMENT_POLICY_ID {
                management = true;
            }
            texts.push(policy.rules.clone());
        }
        for identity in service_ids {
            if identity.datacenters.is_empty() || identity.datacenters.contains(&self.datacenter) {
                texts.push(crate::acl::service_identity_rules(&identity.service_name));
            }
        }
        for identity in node_ids.into_iter().filter(|n| n.datacenter == self.datacenter) {
            texts.push(crate::acl::node_identity_rules(&identity.node_name));
        }
        for template in templated {
            if template.datacenters.is_empty() || template.datacenters.contains(&self.datacenter) {
                if let Ok(text) = crate::acl::render_template(&template.template_name, template.name.as_deref()) {
                    texts.push(text);
                }
            }
        }
        // A stored policy always parsed when it was written; one that no longer does (a rule
        // this build does not know) grants nothing rather than failing every request.
        let rules = texts.iter().filter_map(|text| crate::acl::parse_rules(text).ok()).collect();
        (management, rules)
    }
}

fn expired(acl: &AclTables, secret: &str) -> bool {
    acl.token_by_secret(secret).and_then(|t| t.expiration_time_ms).is_some_and(|at| at <= wall_clock_ms())
}

fn apply_saved(tokens: &mut AgentTokens, saved: &serde_json::Value) {
    let take = |name: &str| saved.get(name).and_then(serde_json::Value::as_str).map(str::to_string);
    let slots: [(&str, &mut Option<String>); 6] = [
        ("default", &mut tokens.default),
        ("agent", &mut tokens.agent),
        ("agent_recovery", &mut tokens.agent_recovery),
        ("replication", &mut tokens.replication),
        ("config_file_service_registration", &mut tokens.config_file_service_registration),
        ("dns", &mut tokens.dns),
    ];
    for (name, slot) in slots {
        if let Some(value) = take(name) {
            *slot = Some(value);
        }
    }
}

/// The answer when ACLs are disabled: everything is allowed.
pub fn allow_all() -> Arc<Resolved> {
    static ALLOW: std::sync::OnceLock<Arc<Resolved>> = std::sync::OnceLock::new();
    Arc::clone(ALLOW.get_or_init(|| Arc::new(Resolved { accessor_id: String::new(), authorizer: Authorizer::management() })))
}

/// The leader's ACL duty (Consul's `initializeACLs`): the builtin global-management policy, the
/// anonymous token and the configured initial management token exist, and expired tokens are
/// deleted. Each step is a Raft write only when something is missing.
pub(super) async fn leader_duty(agent: &Agent) -> Result<(), AgentError> {
    if !agent.config().acl_enabled {
        return Ok(());
    }
    let now = wall_clock_ms();
    let (has_policy, has_anonymous, bootstrapped, has_initial, expired) = agent.view().read(|catalog| {
        let acl = catalog.acl();
        let initial = agent.config().acl_tokens.initial_management.as_deref();
        let expired: Vec<String> = acl
            .tokens()
            .filter(|t| t.expiration_time_ms.is_some_and(|at| at <= now))
            .map(|t| t.accessor_id.clone())
            .collect();
        (
            acl.policy(GLOBAL_MANAGEMENT_POLICY_ID).is_some(),
            acl.token(ANONYMOUS_TOKEN_ID).is_some(),
            acl.bootstrapped(),
            initial.is_none_or(|secret| acl.token_by_secret(secret).is_some()),
            expired,
        )
    });
    if !has_policy {
        let policy = AclPolicy {
            id: GLOBAL_MANAGEMENT_POLICY_ID.into(),
            name: GLOBAL_MANAGEMENT_POLICY_NAME.into(),
            description: "Builtin Policy that grants unlimited access".into(),
            rules: crate::acl::GLOBAL_MANAGEMENT_RULES.into(),
            datacenters: Vec::new(),
            create_index: 0,
            modify_index: 0,
        };
        agent.write(Command::Acl(AclOp::PolicySet { policy })).await?;
    }
    if !has_anonymous {
        let token = new_token(ANONYMOUS_TOKEN_ID.into(), ANONYMOUS_TOKEN_SECRET.into(), "Anonymous Token", false);
        agent.write(Command::Acl(AclOp::TokenSet { token, create: true })).await?;
    }
    if !has_initial {
        if let Some(secret) = agent.config().acl_tokens.initial_management.clone() {
            let token = new_token(new_uuid(), secret, "Initial Management Token", true);
            // Consul creates it through the bootstrap, which then counts as done.
            let op = if bootstrapped { AclOp::TokenSet { token, create: true } } else { AclOp::Bootstrap { token } };
            agent.write(Command::Acl(op)).await?;
        }
    }
    for accessor_id in expired {
        agent.write(Command::Acl(AclOp::TokenDelete { accessor_id })).await?;
    }
    Ok(())
}

/// A token as the leader or the bootstrap creates it; `management` links global-management.
pub fn new_token(accessor_id: String, secret_id: String, description: &str, management: bool) -> AclToken {
    let policies = if management {
        vec![crate::catalog::acl::AclLink { id: GLOBAL_MANAGEMENT_POLICY_ID.into(), name: GLOBAL_MANAGEMENT_POLICY_NAME.into() }]
    } else {
        Vec::new()
    };
    AclToken {
        accessor_id,
        secret_id,
        description: description.into(),
        policies,
        roles: Vec::new(),
        service_identities: Vec::new(),
        node_identities: Vec::new(),
        templated_policies: Vec::new(),
        local: false,
        auth_method: String::new(),
        expiration_time_ms: None,
        create_time_ms: wall_clock_ms(),
        create_index: 0,
        modify_index: 0,
    }
}
