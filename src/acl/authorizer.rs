//! The authorizer: a token's policies merged (Consul's `MergePolicies`), looked up as Consul's
//! `policyAuthorizer` does, and chained to a default as Consul's `ChainedAuthorizer` chains a
//! policy authorizer to `AllowAll`/`DenyAll`/`ManageAll` (`acl/static_authorizer.go`).
//!
//! Every check first asks the merged rules; a rule's answer is final (allow or deny). Only when
//! no rule applies does the default decide: `DefaultPolicy::Allow` allows everything except
//! `acl` read/write (Consul's `AllowAll` has `allowManage = false`), `Deny` denies, and
//! [`Authorizer::management`] allows everything.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::rules::{AccessLevel, Resource, Rules};

/// What answers when no rule matches (the agent's `acl.default_policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultPolicy {
    Allow,
    Deny,
}

/// A rule decision: `None` is Consul's `Default` (no rule applies; ask the next authorizer).
type Decision = Option<bool>;

/// The exact and prefix rules stored under one name (Consul's `policyAuthorizerRadixLeaf`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Leaf {
    exact: Option<AccessLevel>,
    prefix: Option<AccessLevel>,
}

/// One resource's rules by name; a sorted map gives the prefix walks Consul does on a radix tree.
#[derive(Clone, Debug, Default)]
struct Tree(BTreeMap<String, Leaf>);

impl Tree {
    fn insert(&mut self, name: &str, prefix: bool, level: AccessLevel) {
        let leaf = self.0.entry(name.to_string()).or_default();
        let slot = if prefix { &mut leaf.prefix } else { &mut leaf.exact };
        *slot = Some(slot.map_or(level, |old| old.merge(level)));
    }

    /// Consul's `getPolicy`: the exact rule for `name`, else the longest prefix rule.
    fn lookup(&self, name: &str) -> Option<AccessLevel> {
        if let Some(level) = self.0.get(name).and_then(|leaf| leaf.exact) {
            return Some(level);
        }
        self.longest_prefix(name)
    }

    fn longest_prefix(&self, name: &str) -> Option<AccessLevel> {
        (0..=name.len())
            .rev()
            .filter(|at| name.is_char_boundary(*at))
            .find_map(|at| self.0.get(&name[..at]).and_then(|leaf| leaf.prefix))
    }

    fn enforce(&self, name: &str, required: AccessLevel) -> Decision {
        self.lookup(name).map(|level| level.grants(required))
    }

    /// The leaves whose names start with `prefix`, in order.
    fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a Leaf)> + 'a {
        self.0.range::<str, _>((Bound::Included(prefix), Bound::Unbounded)).take_while(move |(name, _)| name.starts_with(prefix))
    }

    /// Consul's `allAllowed`: deny if the catch-all prefix or any rule denies `required`;
    /// allow if the catch-all `""` prefix rule allows it; otherwise no decision.
    fn all_allowed(&self, required: AccessLevel) -> Decision {
        let mut decision = None;
        if let Some(level) = self.0.get("").and_then(|leaf| leaf.prefix) {
            if !level.grants(required) {
                return Some(false);
            }
            decision = Some(true);
        }
        for leaf in self.0.values() {
            let prefix = leaf.prefix.map(|level| level.grants(required));
            let leaf_decision = match (prefix, leaf.exact) {
                (Some(false), _) | (_, None) => prefix,
                (_, Some(exact)) => Some(exact.grants(required)),
            };
            if leaf_decision == Some(false) {
                return Some(false);
            }
        }
        decision
    }

    /// Consul's `anyAllowed`: allow if any rule allows `required`; else deny if the catch-all
    /// `""` prefix rule denies it; otherwise no decision.
    fn any_allowed(&self, required: AccessLevel) -> Decision {
        let mut decision = None;
        if let Some(level) = self.0.get("").and_then(|leaf| leaf.prefix) {
            if level.grants(required) {
                return Some(true);
            }
            decision = Some(false);
        }
        let grants = |level: Option<AccessLevel>| level.is_some_and(|l| l.grants(required));
        if self.0.values().any(|leaf| grants(leaf.prefix) || grants(leaf.exact)) {
            return Some(true);
        }
        decision
    }
}

/// A token's effective permissions. Cheap to clone behind an `Arc`; holds no references.
#[derive(Clone, Debug)]
pub struct Authorizer {
    acl: Option<AccessLevel>,
    keyring: Option<AccessLevel>,
    mesh: Option<AccessLevel>,
    operator: Option<AccessLevel>,
    peering: Option<AccessLevel>,
    agent: Tree,
    event: Tree,
    identity: Tree,
    intention: Tree,
    key: Tree,
    node: Tree,
    query: Tree,
    service: Tree,
    session: Tree,
    /// The answer when no rule applies.
    default_allow: bool,
    /// The answer for `acl` read/write when no `acl` rule applies (Consul's `allowManage`).
    default_manage: bool,
}

impl Authorizer {
    fn empty(default_allow: bool, default_manage: bool) -> Authorizer {
        Authorizer {
            acl: None,
            keyring: None,
            mesh: None,
            operator: None,
            peering: None,
            agent: Tree::default(),
            event: Tree::default(),
            identity: Tree::default(),
            intention: Tree::default(),
            key: Tree::default(),
            node: Tree::default(),
            query: Tree::default(),
            service: Tree::default(),
            session: Tree::default(),
            default_allow,
            default_manage,
        }
    }

    /// Consul's `ManageAll`: everything allowed, ACLs included.
    pub fn management() -> Authorizer {
        Authorizer::empty(true, true)
    }

    /// Consul's `AllowAll`: everything but `acl` read/write (ACLs disabled, or default allow
    /// with no rules).
    pub fn allow_all() -> Authorizer {
        Authorizer::from_rules(DefaultPolicy::Allow, &[])
    }

    /// Consul's `DenyAll`.
    pub fn deny_all() -> Authorizer {
        Authorizer::from_rules(DefaultPolicy::Deny, &[])
    }

    /// The policies merged as Consul's `MergePolicies` (for one name: deny wins, otherwise the
    /// higher level), in front of the default.
    pub fn from_rules(default: DefaultPolicy, policies: &[Rules]) -> Authorizer {
        let mut authorizer = Authorizer::empty(default == DefaultPolicy::Allow, false);
        // Intentions merge separately from the service policy (Consul merges both fields).
        let mut intentions: BTreeMap<(String, bool), (AccessLevel, Option<AccessLevel>)> = BTreeMap::new();
        for rules in policies {
            let merge = |slot: &mut Option<AccessLevel>, level: Option<AccessLevel>| {
                if let Some(level) = level {
                    *slot = Some(slot.map_or(level, |old| old.merge(level)));
                }
            };
            merge(&mut authorizer.acl, rules.acl);
            merge(&mut authorizer.keyring, rules.keyring);
            merge(&mut authorizer.mesh, rules.mesh);
            merge(&mut authorizer.operator, rules.operator);
            merge(&mut authorizer.peering, rules.peering);
            for rule in &rules.named {
                authorizer.tree_mut(rule.resource).insert(&rule.name, rule.prefix, rule.policy);
                if rule.resource == Resource::Service {
                    let entry = intentions.entry((rule.name.clone(), rule.prefix)).or_insert((rule.policy, None));
                    entry.0 = entry.0.merge(rule.policy);
                    if let Some(level) = rule.intentions {
                        entry.1 = Some(entry.1.map_or(level, |old| old.merge(level)));
                    }
                }
            }
        }
        // Consul's loadRules: unset intentions are read for a read/write service rule, else deny.
        for ((name, prefix), (policy, explicit)) in intentions {
            let derived = if policy == AccessLevel::Deny { AccessLevel::Deny } else { AccessLevel::Read };
            authorizer.intention.insert(&name, prefix, explicit.unwrap_or(derived));
        }
        authorizer
    }

    fn tree_mut(&mut self, resource: Resource) -> &mut Tree {
        match resource {
            Resource::Agent => &mut self.agent,
            Resource::Event => &mut self.event,
            Resource::Identity => &mut self.identity,
            Resource::Key => &mut self.key,
            Resource::Node => &mut self.node,
            Resource::Query => &mut self.query,
            Resource::Service => &mut self.service,
            Resource::Session => &mut self.session,
        }
    }

    fn decide(&self, decision: Decision) -> bool {
        decision.unwrap_or(self.default_allow)
    }

    fn single(&self, rule: Option<AccessLevel>, required: AccessLevel) -> bool {
        self.decide(rule.map(|level| level.grants(required)))
    }

    /// Consul's notion of a management token: it may write ACLs.
    pub fn is_management(&self) -> bool {
        self.acl_write()
    }

    pub fn acl_read(&self) -> bool {
        self.acl.map_or(self.default_manage, |level| level.grants(AccessLevel::Read))
    }
    pub fn acl_write(&self) -> bool {
        self.acl.map_or(self.default_manage, |level| level.grants(AccessLevel::Write))
    }
    /// Consul's `Snapshot`: saving and restoring snapshots needs `acl = "write"`.
    pub fn snapshot(&self) -> bool {
        self.acl_write()
    }

    pub fn key_read(&self, key: &str) -> bool {
        self.decide(self.key.enforce(key, AccessLevel::Read))
    }
    pub fn key_list(&self, prefix: &str) -> bool {
        self.decide(self.key.enforce(prefix, AccessLevel::List))
    }
    pub fn key_write(&self, key: &str) -> bool {
        self.decide(self.key.enforce(key, AccessLevel::Write))
    }

    /// Consul's `KeyWritePrefix` (a recursive delete): the longest prefix rule covering
    /// `prefix` must grant write, and no exact or prefix rule under `prefix` may grant less.
    /// With no rule either way, the default decides.
    pub fn key_write_prefix(&self, prefix: &str) -> bool {
        let base = self.key.longest_prefix(prefix).map(|level| level == AccessLevel::Write);
        if base == Some(false) {
            return false;
        }
        let below_write = |level: Option<AccessLevel>| level.is_some_and(|l| l != AccessLevel::Write);
        if self.key.under(prefix).any(|(_, leaf)| below_write(leaf.prefix) || below_write(leaf.exact)) {
            return false;
        }
        self.decide(base)
    }

    pub fn service_read(&self, name: &str) -> bool {
        self.decide(self.service.enforce(name, AccessLevel::Read))
    }
    pub fn service_write(&self, name: &str) -> bool {
        self.decide(self.service.enforce(name, AccessLevel::Write))
    }
    /// Consul's `ServiceReadAll`: no service rule denies read.
    pub fn service_read_all(&self) -> bool {
        self.decide(self.service.all_allowed(AccessLevel::Read))
    }
    /// Consul's `ServiceWriteAny`: some service rule grants write.
    pub fn service_write_any(&self) -> bool {
        self.decide(self.service.any_allowed(AccessLevel::Write))
    }

    pub fn node_read(&self, name: &str) -> bool {
        self.decide(self.node.enforce(name, AccessLevel::Read))
    }
    pub fn node_write(&self, name: &str) -> bool {
        self.decide(self.node.enforce(name, AccessLevel::Write))
    }
    /// Consul's `NodeReadAll`: no node rule denies read.
    pub fn node_read_all(&self) -> bool {
        self.decide(self.node.all_allowed(AccessLevel::Read))
    }

    pub fn session_read(&self, node: &str) -> bool {
        self.decide(self.session.enforce(node, AccessLevel::Read))
    }
    pub fn session_write(&self, node: &str) -> bool {
        self.decide(self.session.enforce(node, AccessLevel::Write))
    }

    pub fn agent_read(&self, node: &str) -> bool {
        self.decide(self.agent.enforce(node, AccessLevel::Read))
    }
    pub fn agent_write(&self, node: &str) -> bool {
        self.decide(self.agent.enforce(node, AccessLevel::Write))
    }

    pub fn event_read(&self, name: &str) -> bool {
        self.decide(self.event.enforce(name, AccessLevel::Read))
    }
    pub fn event_write(&self, name: &str) -> bool {
        self.decide(self.event.enforce(name, AccessLevel::Write))
    }

    pub fn query_read(&self, name: &str) -> bool {
        self.decide(self.query.enforce(name, AccessLevel::Read))
    }
    pub fn query_write(&self, name: &str) -> bool {
        self.decide(self.query.enforce(name, AccessLevel::Write))
    }

    pub fn identity_read(&self, name: &str) -> bool {
        self.decide(self.identity.enforce(name, AccessLevel::Read))
    }
    pub fn identity_write(&self, name: &str) -> bool {
        self.decide(self.identity.enforce(name, AccessLevel::Write))
    }

    pub fn operator_read(&self) -> bool {
        self.single(self.operator, AccessLevel::Read)
    }
    pub fn operator_write(&self) -> bool {
        self.single(self.operator, AccessLevel::Write)
    }

    pub fn keyring_read(&self) -> bool {
        self.single(self.keyring, AccessLevel::Read)
    }
    pub fn keyring_write(&self) -> bool {
        self.single(self.keyring, AccessLevel::Write)
    }

    /// Consul's `MeshRead`: the `mesh` rule, else the `operator` rule, else the default.
    pub fn mesh_read(&self) -> bool {
        self.single(self.mesh.or(self.operator), AccessLevel::Read)
    }
    pub fn mesh_write(&self) -> bool {
        self.single(self.mesh.or(self.operator), AccessLevel::Write)
    }

    /// Consul's `PeeringRead`: the `peering` rule, else the `operator` rule, else the default.
    pub fn peering_read(&self) -> bool {
        self.single(self.peering.or(self.operator), AccessLevel::Read)
    }
    pub fn peering_write(&self) -> bool {
        self.single(self.peering.or(self.operator), AccessLevel::Write)
    }

    /// Consul's `IntentionRead`: the service rule's `intentions` level (or the one it implies);
    /// `"*"` asks whether ANY intention rule grants read.
    pub fn intention_read(&self, service: &str) -> bool {
        if service == "*" {
            return self.decide(self.intention.any_allowed(AccessLevel::Read));
        }
        self.decide(self.intention.enforce(service, AccessLevel::Read))
    }
    /// Consul's `IntentionWrite`; `"*"` needs EVERY intention rule to grant write.
    pub fn intention_write(&self, service: &str) -> bool {
        if service == "*" {
            return self.decide(self.intention.all_allowed(AccessLevel::Write));
        }
        self.decide(self.intention.enforce(service, AccessLevel::Write))
    }
}
