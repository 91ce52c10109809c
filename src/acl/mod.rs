//! PURE. Consul's ACL rule language and authorizer (Consul's `acl/` package): policies parsed
//! from HCL or JSON (`rules.rs`), merged and looked up per request (`authorizer.rs`), and the
//! builtin templated policies and identity policies (`templates.rs`).
//!
//! No IO, no clock, no other module of this crate: the token/policy/role model lives in
//! `catalog`, resolving a token to its [`Rules`] and enforcing the answers in `http`.
//!
//! ```text
//! rules text ──parse_rules──► Rules ─┐
//! rules text ──parse_rules──► Rules ─┼─ Authorizer::from_rules(default, ..) ──► key_read("app/x") …
//! templated / identity ──render──► … ┘
//! ```

mod authorizer;
mod hcl_value;
mod rules;
mod templates;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_templates;

pub use authorizer::{Authorizer, DefaultPolicy};
pub use rules::{AccessLevel, NamedRule, RULES_BYTES_MAX, Resource, Rules, RulesError, parse_rules};
pub use templates::{
    GLOBAL_MANAGEMENT_POLICY_ID, GLOBAL_MANAGEMENT_RULES, IDENTITY_NAME_BYTES_MAX, TemplateError, TemplatedPolicy,
    is_valid_identity_name, node_identity_rules, render_template, service_identity_rules, templated_policies,
    templated_policy,
};
