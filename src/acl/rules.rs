//! Consul's ACL rule language: one policy's rules text (HCL or JSON of the same shape) parsed
//! and validated into [`Rules`], with Consul's error wording (`acl/policy.go`, `parseCurrent`).
//!
//! Shapes accepted, as Consul's HCL v1 decoder does:
//! - string policies at the top: `acl`, `keyring`, `mesh`, `operator`, `peering`
//!   (`"read" | "write" | "deny"`);
//! - named blocks, several per kind: `key_prefix "app/" { policy = "write" }` in HCL,
//!   `{"key_prefix": {"app/": {"policy": "write"}}}` (or a list of such objects) in JSON.
//!
//! Text that starts with `{` is JSON (Consul's HCL v1 decoder makes the same choice).

use std::fmt;

use serde_json::{Map, Value};

/// Longest rules text we parse (bytes); Consul has no limit, but a policy is a few KB.
pub const RULES_BYTES_MAX: usize = 128 * 1024;

/// An access level, in Consul's order (`acl.AccessLevel`). `List` is valid only for key rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccessLevel {
    Deny,
    Read,
    List,
    Write,
}

impl AccessLevel {
    /// Consul's `takesPrecedenceOver` when merging policies: deny wins, otherwise the higher
    /// level (write > list > read).
    pub fn merge(self, other: AccessLevel) -> AccessLevel {
        if self == AccessLevel::Deny || other == AccessLevel::Deny { AccessLevel::Deny } else { self.max(other) }
    }

    /// Consul's `enforce(rule, required)`: write grants everything, list grants read and list,
    /// read grants read, deny grants nothing.
    pub fn grants(self, required: AccessLevel) -> bool {
        match self {
            AccessLevel::Write => true,
            AccessLevel::List => matches!(required, AccessLevel::Read | AccessLevel::List),
            AccessLevel::Read => required == AccessLevel::Read,
            AccessLevel::Deny => false,
        }
    }

    /// The word Consul writes in rules.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::Deny => "deny",
            AccessLevel::Read => "read",
            AccessLevel::List => "list",
            AccessLevel::Write => "write",
        }
    }
}

impl fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resources that take named (exact or prefix) rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Agent,
    Event,
    Identity,
    Key,
    Node,
    Query,
    Service,
    Session,
}

impl Resource {
    const ALL: [Resource; 8] = [
        Resource::Agent,
        Resource::Event,
        Resource::Identity,
        Resource::Key,
        Resource::Node,
        Resource::Query,
        Resource::Service,
        Resource::Session,
    ];

    /// The block word for exact rules (`key`); prefix rules add `_prefix`.
    pub fn word(self) -> &'static str {
        match self {
            Resource::Agent => "agent",
            Resource::Event => "event",
            Resource::Identity => "identity",
            Resource::Key => "key",
            Resource::Node => "node",
            Resource::Query => "query",
            Resource::Service => "service",
            Resource::Session => "session",
        }
    }

    /// `service` and `identity` rules also carry an `intentions` level.
    fn has_intentions(self) -> bool {
        matches!(self, Resource::Service | Resource::Identity)
    }
}

/// One named rule: `key_prefix "app/" { policy = "write" }`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamedRule {
    pub resource: Resource,
    /// `true` for `*_prefix` blocks.
    pub prefix: bool,
    pub name: String,
    pub policy: AccessLevel,
    /// `service`/`identity` only; `None` when the rule does not say (Consul then derives it).
    pub intentions: Option<AccessLevel>,
}

/// One parsed policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub acl: Option<AccessLevel>,
    pub keyring: Option<AccessLevel>,
    pub mesh: Option<AccessLevel>,
    pub operator: Option<AccessLevel>,
    pub peering: Option<AccessLevel>,
    /// Every named rule, sorted (so HCL and JSON of one policy compare equal).
    pub named: Vec<NamedRule>,
}

impl Rules {
    /// True when the policy grants or denies nothing.
    pub fn is_empty(&self) -> bool {
        *self == Rules::default()
    }
}

/// Why a rules text was refused. The messages follow Consul's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("Failed to parse ACL rules: {0}")]
    Syntax(String),
    #[error("Invalid {kind} policy: {value:?}")]
    InvalidPolicy { kind: String, value: String },
    #[error("Invalid {kind} intentions policy: {value:?}")]
    InvalidIntentions { kind: String, value: String },
    #[error("Failed to parse ACL rules: rules are {len} bytes, more than the {max} allowed")]
    TooLong { len: usize, max: usize },
}

fn syntax(message: impl Into<String>) -> RulesError {
    RulesError::Syntax(message.into())
}

/// Parses one policy's rules (HCL, or JSON when the text starts with `{`). Empty text is a
/// valid policy with no rules (Consul's hot path in `NewPolicyFromSource`).
pub fn parse_rules(text: &str) -> Result<Rules, RulesError> {
    if text.len() > RULES_BYTES_MAX {
        return Err(RulesError::TooLong { len: text.len(), max: RULES_BYTES_MAX });
    }
    if text.trim().is_empty() {
        return Ok(Rules::default());
    }
    // Deep nesting is an error, not a stack overflow, in both parsers: serde_json refuses more
    // than 128 levels, hcl-edit (under hcl-rs) more than 64 (its `MAX_NESTING_DEPTH`) and long
    // operator chains. `oversized_and_deeply_nested_text_is_refused_without_a_panic` pins both.
    let value = if text.trim_start().starts_with('{') {
        serde_json::from_str::<Value>(text).map_err(|e| syntax(e.to_string()))?
    } else {
        let body = hcl::parse(text).map_err(|e| syntax(e.to_string()))?;
        super::hcl_value::body_to_value(body)?
    };
    rules_from_value(&value)
}

/// The one decoder for both syntaxes: the JSON shape of a policy into [`Rules`].
fn rules_from_value(value: &Value) -> Result<Rules, RulesError> {
    let Value::Object(top) = value else {
        return Err(syntax("rules must be an object"));
    };
    let mut rules = Rules::default();
    for (key, value) in top {
        let slot = match key.as_str() {
            "acl" => &mut rules.acl,
            "keyring" => &mut rules.keyring,
            "mesh" => &mut rules.mesh,
            "operator" => &mut rules.operator,
            "peering" => &mut rules.peering,
            "partition" | "partition_prefix" | "namespace" | "namespace_prefix" => {
                // Consul CE refuses the Enterprise-only blocks.
                return Err(syntax(format!("{key:?} rules are only valid in Consul Enterprise")));
            }
            _ => {
                let (resource, prefix) = named_kind(key).ok_or_else(|| syntax(format!("invalid key {key:?}")))?;
                for (name, body) in named_entries(key, value)? {
                    rules.named.push(named_rule(resource, prefix, key, name, body)?);
                }
                continue;
            }
        };
        let Value::String(word) = value else {
            return Err(syntax(format!("{key:?} must be a string")));
        };
        if word.is_empty() {
            continue; // Consul: an empty top-level policy is unset
        }
        let level = top_level(word).ok_or_else(|| RulesError::InvalidPolicy { kind: key.clone(), value: word.clone() })?;
        // Repeated in one text (HCL allows it), the levels merge as across policies.
        *slot = Some(slot.map_or(level, |old| old.merge(level)));
    }
    rules.named.sort();
    Ok(rules)
}

fn named_kind(word: &str) -> Option<(Resource, bool)> {
    let (base, prefix) = match word.strip_suffix("_prefix") {
        Some(base) => (base, true),
        None => (word, false),
    };
    Resource::ALL.into_iter().find(|r| r.word() == base).map(|r| (r, prefix))
}

/// `{"name": {...}, ...}` or a list of such objects (HCL v1's JSON form of repeated blocks).
fn named_entries<'a>(kind: &str, value: &'a Value) -> Result<Vec<(&'a String, &'a Value)>, RulesError> {
    let mut out = Vec::new();
    let mut push_object = |object: &'a Map<String, Value>| out.extend(object.iter());
    match value {
        Value::Object(object) => push_object(object),
        Value::Array(items) => {
            for item in items {
                let Value::Object(object) = item else {
                    return Err(syntax(format!("{kind:?} must be a map of names to rules")));
                };
                push_object(object);
            }
        }
        _ => return Err(syntax(format!("{kind:?} must be a map of names to rules"))),
    }
    Ok(out)
}

fn named_rule(resource: Resource, prefix: bool, kind: &str, name: &str, body: &Value) -> Result<NamedRule, RulesError> {
    let fields = match body {
        Value::Object(fields) => fields.clone(),
        // HCL v1's JSON form may wrap a block's body in a one-element list.
        Value::Array(items) if items.len() == 1 && items[0].is_object() => items[0].as_object().cloned().unwrap_or_default(),
        _ => return Err(syntax(format!("{kind} {name:?} must be a block"))),
    };
    let mut policy_word = None;
    let mut intentions_word = None;
    for (field, value) in &fields {
        let Value::String(word) = value else {
            return Err(syntax(format!("{kind} {name:?}: {field:?} must be a string")));
        };
        match field.as_str() {
            "policy" => policy_word = Some(word.clone()),
            "intentions" if resource.has_intentions() => intentions_word = Some(word.clone()),
            _ => return Err(syntax(format!("{kind} {name:?}: invalid key {field:?}"))),
        }
    }
    // Consul: a missing policy is "" and fails `isPolicyValid`; `list` only for key rules.
    let policy_word = policy_word.unwrap_or_default();
    let invalid = || RulesError::InvalidPolicy { kind: kind.to_string(), value: policy_word.clone() };
    let policy = match (resource, policy_word.as_str()) {
        (Resource::Key, "list") => AccessLevel::List,
        (_, word) => top_level(word).ok_or_else(invalid)?,
    };
    let intentions = match intentions_word {
        // Consul treats an empty intentions string as unset.
        None => None,
        Some(word) if word.is_empty() => None,
        Some(word) => Some(top_level(&word).ok_or(RulesError::InvalidIntentions { kind: kind.to_string(), value: word })?),
    };
    Ok(NamedRule { resource, prefix, name: name.to_string(), policy, intentions })
}

/// Consul's `isPolicyValid`: read, write or deny.
fn top_level(word: &str) -> Option<AccessLevel> {
    match word {
        "read" => Some(AccessLevel::Read),
        "write" => Some(AccessLevel::Write),
        "deny" => Some(AccessLevel::Deny),
        _ => None,
    }
}
