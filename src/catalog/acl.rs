//! Consul's ACL tables, replicated: tokens, policies, roles, auth methods and binding rules,
//! and the one-time bootstrap.
//!
//! This is data, not judgement: what a token may do is decided by the `acl` module (the rule
//! language and the authorizer) from what is stored here. `apply_acl` keeps the tables
//! consistent the way Consul's state store does: accessor and secret IDs are unique, names of
//! policies and roles are unique, a token links only policies and roles that exist, and the
//! builtin global-management policy keeps its rules and cannot be deleted.
//!
//! Every type here is postcard inside the versioned row codec: fields are never reordered or
//! removed; a new field needs a new row format version (see `catalog::codec`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::apply::Outcome;
use crate::catalog::{Catalog, ChangeSet, RowKey};

/// The builtin policy that allows everything (Consul's fixed ID).
pub const GLOBAL_MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
pub const GLOBAL_MANAGEMENT_POLICY_NAME: &str = "global-management";
/// The token used by requests that carry none (Consul's fixed accessor ID and secret).
pub const ANONYMOUS_TOKEN_ID: &str = "00000000-0000-0000-0000-000000000002";
pub const ANONYMOUS_TOKEN_SECRET: &str = "anonymous";
/// Longest description, name, rules text or selector accepted in one ACL object.
pub const ACL_TEXT_BYTES_MAX: usize = 128 * 1024;
/// Most policies, roles or identities linked from one token or role.
pub const ACL_LINKS_MAX: usize = 256;

/// A link from a token or role to a policy or role, by ID (the name is refreshed on read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclLink {
    pub id: String,
    pub name: String,
}

/// Consul's `ServiceIdentity`: a synthetic policy for one service (and its sidecar).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceIdentity {
    pub service_name: String,
    pub datacenters: Vec<String>,
}

/// Consul's `NodeIdentity`: a synthetic policy for one node in one datacenter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    pub node_name: String,
    pub datacenter: String,
}

/// A templated policy attached to a token or role (`builtin/service` with `name = web`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplatedPolicyRef {
    pub template_name: String,
    /// The template's `Name` variable (`builtin/dns` has none).
    pub name: Option<String>,
    pub datacenters: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclToken {
    pub accessor_id: String,
    pub secret_id: String,
    pub description: String,
    pub policies: Vec<AclLink>,
    pub roles: Vec<AclLink>,
    pub service_identities: Vec<ServiceIdentity>,
    pub node_identities: Vec<NodeIdentity>,
    pub templated_policies: Vec<TemplatedPolicyRef>,
    pub local: bool,
    pub auth_method: String,
    /// Unix milliseconds after which the token no longer resolves (and the leader deletes it).
    pub expiration_time_ms: Option<u64>,
    pub create_time_ms: u64,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclPolicy {
    pub id: String,
    pub name: String,
    pub description: String,
    pub rules: String,
    pub datacenters: Vec<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRole {
    pub id: String,
    pub name: String,
    pub description: String,
    pub policies: Vec<AclLink>,
    pub service_identities: Vec<ServiceIdentity>,
    pub node_identities: Vec<NodeIdentity>,
    pub templated_policies: Vec<TemplatedPolicyRef>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// An auth method: stored and served, as Consul's CRUD; logging in through one is not supported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclAuthMethod {
    pub name: String,
    pub method_type: String,
    pub display_name: String,
    pub description: String,
    pub max_token_ttl_ms: u64,
    pub token_locality: String,
    /// The method's `Config` object as JSON text.
    pub config_json: String,
    pub create_index: u64,
    pub modify_index: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclBindingRule {
    pub id: String,
    pub description: String,
    pub auth_method: String,
    pub selector: String,
    pub bind_type: String,
    pub bind_name: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// The index of the last change to each ACL table, and of the bootstrap (0: not bootstrapped).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclIndexes {
    pub tokens: u64,
    pub policies: u64,
    pub roles: u64,
    pub auth_methods: u64,
    pub binding_rules: u64,
    pub bootstrap: u64,
}

impl AclIndexes {
    pub fn max(&self) -> u64 {
        [self.tokens, self.policies, self.roles, self.auth_methods, self.binding_rules, self.bootstrap]
            .into_iter()
            .max()
            .unwrap_or(0)
    }
}

/// One ACL write (`Command::Acl`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclOp {
    /// Create the first management token; refused once the ACL system was bootstrapped.
    Bootstrap { token: AclToken },
    /// Create (`create`: refused if the accessor exists) or update a token.
    TokenSet { token: AclToken, create: bool },
    TokenDelete { accessor_id: String },
    /// Create or update a policy (by ID).
    PolicySet { policy: AclPolicy },
    PolicyDelete { id: String },
    RoleSet { role: AclRole },
    RoleDelete { id: String },
    AuthMethodSet { method: AclAuthMethod },
    AuthMethodDelete { name: String },
    BindingRuleSet { rule: AclBindingRule },
    BindingRuleDelete { id: String },
}

/// The ACL tables held in memory. `by_secret` is derived (rebuilt on load), never persisted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclTables {
    pub(crate) tokens: BTreeMap<String, AclToken>,
    pub(crate) policies: BTreeMap<String, AclPolicy>,
    pub(crate) roles: BTreeMap<String, AclRole>,
    pub(crate) auth_methods: BTreeMap<String, AclAuthMethod>,
    pub(crate) binding_rules: BTreeMap<String, AclBindingRule>,
    pub(crate) indexes: AclIndexes,
    by_secret: BTreeMap<String, String>,
}

impl AclTables {
    pub fn indexes(&self) -> AclIndexes {
        self.indexes
    }

    pub fn token(&self, accessor_id: &str) -> Option<&AclToken> {
        self.tokens.get(accessor_id)
    }

    pub fn token_by_secret(&self, secret_id: &str) -> Option<&AclToken> {
        self.by_secret.get(secret_id).and_then(|accessor| self.tokens.get(accessor))
    }

    pub fn tokens(&self) -> impl Iterator<Item = &AclToken> {
        self.tokens.values()
    }

    pub fn policy(&self, id: &str) -> Option<&AclPolicy> {
        self.policies.get(id)
    }

    pub fn policy_by_name(&self, name: &str) -> Option<&AclPolicy> {
        self.policies.values().find(|p| p.name == name)
    }

    pub fn policies(&self) -> impl Iterator<Item = &AclPolicy> {
        self.policies.values()
    }

    pub fn role(&self, id: &str) -> Option<&AclRole> {
        self.roles.get(id)
    }

    pub fn role_by_name(&self, name: &str) -> Option<&AclRole> {
        self.roles.values().find(|r| r.name == name)
    }

    pub fn roles(&self) -> impl Iterator<Item = &AclRole> {
        self.roles.values()
    }

    pub fn auth_method(&self, name: &str) -> Option<&AclAuthMethod> {
        self.auth_methods.get(name)
    }

    pub fn auth_methods(&self) -> impl Iterator<Item = &AclAuthMethod> {
        self.auth_methods.values()
    }

    pub fn binding_rule(&self, id: &str) -> Option<&AclBindingRule> {
        self.binding_rules.get(id)
    }

    pub fn binding_rules(&self) -> impl Iterator<Item = &AclBindingRule> {
        self.binding_rules.values()
    }

    pub fn bootstrapped(&self) -> bool {
        self.indexes.bootstrap != 0
    }

    pub(crate) fn load_token(&mut self, token: AclToken) {
        self.by_secret.insert(token.secret_id.clone(), token.accessor_id.clone());
        self.tokens.insert(token.accessor_id.clone(), token);
    }

    fn remove_token(&mut self, accessor_id: &str) -> Option<AclToken> {
        let token = self.tokens.remove(accessor_id)?;
        self.by_secret.remove(&token.secret_id);
        Some(token)
    }
}

/// Applies one ACL write at `index`. Refusals change nothing.
pub(crate) fn apply_acl(catalog: &mut Catalog, index: u64, op: &AclOp, changes: &mut ChangeSet) -> Outcome {
    let acl = &mut catalog.acl;
    let result = match op {
        AclOp::Bootstrap { token } => {
            if acl.bootstrapped() {
                Err(format!("ACL bootstrap no longer allowed (reset index: {})", acl.indexes.bootstrap))
            } else {
                set_token(acl, index, token, true, changes).map(|()| {
                    acl.indexes.bootstrap = index;
                })
            }
        }
        AclOp::TokenSet { token, create } => set_token(acl, index, token, *create, changes),
        AclOp::TokenDelete { accessor_id } => {
            if accessor_id == ANONYMOUS_TOKEN_ID {
                Err("Delete operation not permitted on the anonymous token".into())
            } else {
                if acl.remove_token(accessor_id).is_some() {
                    acl.indexes.tokens = index;
                    changes.touch(RowKey::AclToken(accessor_id.clone()));
                }
                Ok(())
            }
        }
        AclOp::PolicySet { policy } => set_policy(acl, index, policy, changes),
        AclOp::PolicyDelete { id } => {
            if id == GLOBAL_MANAGEMENT_POLICY_ID {
                Err("Delete operation not permitted on the builtin global-management policy".into())
            } else {
                if acl.policies.remove(id).is_some() {
                    acl.indexes.policies = index;
                    changes.touch(RowKey::AclPolicy(id.clone()));
                }
                Ok(())
            }
        }
        AclOp::RoleSet { role } => set_role(acl, index, role, changes),
        AclOp::RoleDelete { id } => {
            if acl.roles.remove(id).is_some() {
                acl.indexes.roles = index;
                changes.touch(RowKey::AclRole(id.clone()));
            }
            Ok(())
        }
        AclOp::AuthMethodSet { method } => {
            let mut method = method.clone();
            method.create_index = acl.auth_methods.get(&method.name).map_or(index, |m| m.create_index);
            method.modify_index = index;
            changes.touch(RowKey::AclAuthMethod(method.name.clone()));
            acl.auth_methods.insert(method.name.clone(), method);
            acl.indexes.auth_methods = index;
            Ok(())
        }
        AclOp::AuthMethodDelete { name } => {
            if acl.auth_methods.remove(name).is_some() {
                acl.indexes.auth_methods = index;
                changes.touch(RowKey::AclAuthMethod(name.clone()));
                // Consul deletes the method's binding rules with it.
                let rules: Vec<String> =
                    acl.binding_rules.values().filter(|r| r.auth_method == *name).map(|r| r.id.clone()).collect();
                for id in rules {
                    acl.binding_rules.remove(&id);
                    acl.indexes.binding_rules = index;
                    changes.touch(RowKey::AclBindingRule(id));
                }
            }
            Ok(())
        }
        AclOp::BindingRuleSet { rule } => {
            if acl.auth_methods.contains_key(&rule.auth_method) {
                let mut rule = rule.clone();
                rule.create_index = acl.binding_rules.get(&rule.id).map_or(index, |r| r.create_index);
                rule.modify_index = index;
                changes.touch(RowKey::AclBindingRule(rule.id.clone()));
                acl.binding_rules.insert(rule.id.clone(), rule);
                acl.indexes.binding_rules = index;
                Ok(())
            } else {
                Err(format!("Invalid Binding Rule: no such auth method {:?}", rule.auth_method))
            }
        }
        AclOp::BindingRuleDelete { id } => {
            if acl.binding_rules.remove(id).is_some() {
                acl.indexes.binding_rules = index;
                changes.touch(RowKey::AclBindingRule(id.clone()));
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => {
            changes.touch(RowKey::AclIndexes);
            Outcome::Done
        }
        Err(reason) => Outcome::Rejected(reason),
    }
}

fn set_token(acl: &mut AclTables, index: u64, token: &AclToken, create: bool, changes: &mut ChangeSet) -> Result<(), String> {
    let existing = acl.tokens.get(&token.accessor_id);
    match (create, existing) {
        (true, Some(_)) => return Err("Invalid Token: AccessorID is already in use".into()),
        (false, None) => return Err(format!("Cannot find token {:?}", token.accessor_id)),
        (false, Some(old)) if old.secret_id != token.secret_id => {
            return Err("Changing a token's SecretID is not permitted".into());
        }
        _ => {}
    }
    if create && acl.by_secret.contains_key(&token.secret_id) {
        return Err("Invalid Token: SecretID is already in use".into());
    }
    if token.accessor_id.is_empty() || token.secret_id.is_empty() {
        return Err("Invalid Token: AccessorID and SecretID must be set".into());
    }
    let policies = resolve_links(&token.policies, |id| acl.policies.get(id).map(|p| p.name.clone()), "policy")?;
    let roles = resolve_links(&token.roles, |id| acl.roles.get(id).map(|r| r.name.clone()), "role")?;
    let mut token = token.clone();
    token.policies = policies;
    token.roles = roles;
    token.create_index = existing.map_or(index, |old| old.create_index);
    token.create_time_ms = existing.map_or(token.create_time_ms, |old| old.create_time_ms);
    token.modify_index = index;
    changes.touch(RowKey::AclToken(token.accessor_id.clone()));
    acl.load_token(token);
    acl.indexes.tokens = index;
    Ok(())
}

fn set_policy(acl: &mut AclTables, index: u64, policy: &AclPolicy, changes: &mut ChangeSet) -> Result<(), String> {
    if policy.id.is_empty() || policy.name.is_empty() {
        return Err("Invalid Policy: no Name is set".into());
    }
    if acl.policies.values().any(|p| p.name == policy.name && p.id != policy.id) {
        return Err(format!("Invalid Policy: A Policy with Name {:?} already exists", policy.name));
    }
    let existing = acl.policies.get(&policy.id);
    if policy.id == GLOBAL_MANAGEMENT_POLICY_ID {
        if let Some(old) = existing {
            if old.rules != policy.rules {
                return Err("Changing the Rules for the builtin global-management policy is not permitted".into());
            }
        }
    }
    let mut policy = policy.clone();
    policy.create_index = existing.map_or(index, |old| old.create_index);
    policy.modify_index = index;
    changes.touch(RowKey::AclPolicy(policy.id.clone()));
    acl.policies.insert(policy.id.clone(), policy);
    acl.indexes.policies = index;
    Ok(())
}

fn set_role(acl: &mut AclTables, index: u64, role: &AclRole, changes: &mut ChangeSet) -> Result<(), String> {
    if role.id.is_empty() || role.name.is_empty() {
        return Err("Invalid Role: no Name is set".into());
    }
    if acl.roles.values().any(|r| r.name == role.name && r.id != role.id) {
        return Err(format!("Invalid Role: A Role with Name {:?} already exists", role.name));
    }
    let policies = resolve_links(&role.policies, |id| acl.policies.get(id).map(|p| p.name.clone()), "policy")?;
    let existing = acl.roles.get(&role.id);
    let mut role = role.clone();
    role.policies = policies;
    role.create_index = existing.map_or(index, |old| old.create_index);
    role.modify_index = index;
    changes.touch(RowKey::AclRole(role.id.clone()));
    acl.roles.insert(role.id.clone(), role);
    acl.indexes.roles = index;
    Ok(())
}

/// Checks that every linked ID exists and takes its current name.
fn resolve_links(links: &[AclLink], name_of: impl Fn(&str) -> Option<String>, kind: &str) -> Result<Vec<AclLink>, String> {
    if links.len() > ACL_LINKS_MAX {
        return Err(format!("too many {kind} links: {} (max {ACL_LINKS_MAX})", links.len()));
    }
    links
        .iter()
        .map(|link| match name_of(&link.id) {
            Some(name) => Ok(AclLink { id: link.id.clone(), name }),
            None => Err(format!("No such {kind} ID: {:?}", link.id)),
        })
        .collect()
}
