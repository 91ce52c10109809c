//! Consul's JSON for ACL objects: tokens, policies, roles, identities, templated policies, auth
//! methods and binding rules, out (from `catalog::acl`) and in (request bodies, loosely decoded).
//!
//! Links are shown with the linked object's current name; links to objects deleted since are
//! left out, as Consul does when it resolves a token.

use serde_json::{Map, Value, json};

use crate::catalog::acl::{
    ACL_LINKS_MAX, ACL_TEXT_BYTES_MAX, AclAuthMethod, AclBindingRule, AclLink, AclPolicy, AclRole, AclTables, AclToken,
    NodeIdentity, ServiceIdentity, TemplatedPolicyRef,
};
use crate::http::decode::Fields;
use crate::http::error::ApiError;

/// RFC 3339 with nanoseconds, as Go prints a `time.Time`.
pub(super) fn rfc3339(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Parses an RFC 3339 time to unix milliseconds.
pub(super) fn parse_rfc3339(text: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

fn links(acl: &AclTables, links: &[AclLink], policies: bool) -> Vec<Value> {
    links
        .iter()
        .filter_map(|link| {
            let name = if policies { acl.policy(&link.id).map(|p| p.name.clone()) } else { acl.role(&link.id).map(|r| r.name.clone()) };
            name.map(|name| json!({"ID": link.id, "Name": name}))
        })
        .collect()
}

fn service_identities(items: &[ServiceIdentity]) -> Vec<Value> {
    items
        .iter()
        .map(|s| {
            let mut out = json!({"ServiceName": s.service_name});
            if !s.datacenters.is_empty() {
                out["Datacenters"] = json!(s.datacenters);
            }
            out
        })
        .collect()
}

fn node_identities(items: &[NodeIdentity]) -> Vec<Value> {
    items.iter().map(|n| json!({"NodeName": n.node_name, "Datacenter": n.datacenter})).collect()
}

fn templated(items: &[TemplatedPolicyRef]) -> Vec<Value> {
    items
        .iter()
        .map(|t| {
            let mut out = json!({"TemplateName": t.template_name});
            if let Some(name) = &t.name {
                out["TemplateVariables"] = json!({"name": name});
            }
            if !t.datacenters.is_empty() {
                out["Datacenters"] = json!(t.datacenters);
            }
            out
        })
        .collect()
}

/// Inserts `value` under `key` unless it is an empty list (Go's `omitempty`).
fn put_list(out: &mut Map<String, Value>, key: &str, value: Vec<Value>) {
    if !value.is_empty() {
        out.insert(key.into(), Value::Array(value));
    }
}

/// A content hash of an object's JSON, as Consul's `Hash` (base64).
fn hash_of(value: &Value) -> String {
    use base64::Engine;
    let digest = crc32fast::hash(value.to_string().as_bytes()).to_be_bytes();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

pub(crate) fn token_json(acl: &AclTables, token: &AclToken) -> Value {
    let mut out = Map::new();
    out.insert("AccessorID".into(), json!(token.accessor_id));
    out.insert("SecretID".into(), json!(token.secret_id));
    out.insert("Description".into(), json!(token.description));
    put_list(&mut out, "Policies", links(acl, &token.policies, true));
    put_list(&mut out, "Roles", links(acl, &token.roles, false));
    put_list(&mut out, "ServiceIdentities", service_identities(&token.service_identities));
    put_list(&mut out, "NodeIdentities", node_identities(&token.node_identities));
    put_list(&mut out, "TemplatedPolicies", templated(&token.templated_policies));
    out.insert("Local".into(), json!(token.local));
    if !token.auth_method.is_empty() {
        out.insert("AuthMethod".into(), json!(token.auth_method));
    }
    if let Some(at) = token.expiration_time_ms {
        out.insert("ExpirationTime".into(), json!(rfc3339(at)));
    }
    out.insert("CreateTime".into(), json!(rfc3339(token.create_time_ms)));
    let hash = hash_of(&Value::Object(out.clone()));
    out.insert("Hash".into(), json!(hash));
    out.insert("CreateIndex".into(), json!(token.create_index));
    out.insert("ModifyIndex".into(), json!(token.modify_index));
    Value::Object(out)
}

/// A policy; the list form (`/v1/acl/policies`) leaves out the rules, as Consul's stub.
pub(crate) fn policy_json(policy: &AclPolicy, with_rules: bool) -> Value {
    let mut out = Map::new();
    out.insert("ID".into(), json!(policy.id));
    out.insert("Name".into(), json!(policy.name));
    out.insert("Description".into(), json!(policy.description));
    if with_rules {
        out.insert("Rules".into(), json!(policy.rules));
    }
    if !policy.datacenters.is_empty() {
        out.insert("Datacenters".into(), json!(policy.datacenters));
    }
    out.insert("Hash".into(), json!(hash_of(&json!([policy.name, policy.description, policy.rules, policy.datacenters]))));
    out.insert("CreateIndex".into(), json!(policy.create_index));
    out.insert("ModifyIndex".into(), json!(policy.modify_index));
    Value::Object(out)
}

pub(crate) fn role_json(acl: &AclTables, role: &AclRole) -> Value {
    let mut out = Map::new();
    out.insert("ID".into(), json!(role.id));
    out.insert("Name".into(), json!(role.name));
    out.insert("Description".into(), json!(role.description));
    put_list(&mut out, "Policies", links(acl, &role.policies, true));
    put_list(&mut out, "ServiceIdentities", service_identities(&role.service_identities));
    put_list(&mut out, "NodeIdentities", node_identities(&role.node_identities));
    put_list(&mut out, "TemplatedPolicies", templated(&role.templated_policies));
    let hash = hash_of(&Value::Object(out.clone()));
    out.insert("Hash".into(), json!(hash));
    out.insert("CreateIndex".into(), json!(role.create_index));
    out.insert("ModifyIndex".into(), json!(role.modify_index));
    Value::Object(out)
}

pub(crate) fn auth_method_json(method: &AclAuthMethod) -> Value {
    let config: Value = serde_json::from_str(&method.config_json).unwrap_or(Value::Null);
    let mut out = json!({
        "Name": method.name,
        "Type": method.method_type,
        "Description": method.description,
        "Config": config,
        "CreateIndex": method.create_index,
        "ModifyIndex": method.modify_index,
    });
    if !method.display_name.is_empty() {
        out["DisplayName"] = json!(method.display_name);
    }
    if method.max_token_ttl_ms != 0 {
        out["MaxTokenTTL"] = json!(format!("{}ms", method.max_token_ttl_ms));
    }
    if !method.token_locality.is_empty() {
        out["TokenLocality"] = json!(method.token_locality);
    }
    out
}

pub(crate) fn binding_rule_json(rule: &AclBindingRule) -> Value {
    json!({
        "ID": rule.id,
        "Description": rule.description,
        "AuthMethod": rule.auth_method,
        "Selector": rule.selector,
        "BindType": rule.bind_type,
        "BindName": rule.bind_name,
        "CreateIndex": rule.create_index,
        "ModifyIndex": rule.modify_index,
    })
}

/// A bounded free-text field.
pub(super) fn text(fields: &Fields, names: &[&str]) -> Result<String, ApiError> {
    let value = fields.string(names)?;
    if value.len() > ACL_TEXT_BYTES_MAX {
        return Err(ApiError::BadRequest(format!("{} is longer than {ACL_TEXT_BYTES_MAX} bytes", names[0])));
    }
    Ok(value)
}

fn objects(fields: &Fields, names: &[&str]) -> Result<Vec<Fields>, ApiError> {
    match fields.get(names) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= ACL_LINKS_MAX => {
            items.iter().map(|item| Fields::from_value(item.clone(), names[0])).collect()
        }
        Some(Value::Array(_)) => Err(ApiError::BadRequest(format!("{}: at most {ACL_LINKS_MAX} entries", names[0]))),
        Some(_) => Err(ApiError::BadRequest(format!("Request decode failed: field {:?} must be a list", names[0]))),
    }
}

/// Policy or role links by ID or by name; names are looked up now (Consul stores IDs).
pub(super) fn decode_links(fields: &Fields, names: &[&str], acl: &AclTables, policies: bool) -> Result<Vec<AclLink>, ApiError> {
    let kind = if policies { "Policy" } else { "Role" };
    let mut out: Vec<AclLink> = Vec::new();
    for link in objects(fields, names)? {
        let id = link.string(&["ID"])?;
        let name = link.string(&["Name"])?;
        let found = match (id.is_empty(), policies) {
            (false, true) => acl.policy(&id).map(|p| (p.id.clone(), p.name.clone())),
            (false, false) => acl.role(&id).map(|r| (r.id.clone(), r.name.clone())),
            (true, true) => acl.policy_by_name(&name).map(|p| (p.id.clone(), p.name.clone())),
            (true, false) => acl.role_by_name(&name).map(|r| (r.id.clone(), r.name.clone())),
        };
        let Some((id, name)) = found else {
            let what = if id.is_empty() { name } else { id };
            return Err(ApiError::BadRequest(format!("No such ACL {} with ID or Name {what:?}", kind.to_lowercase())));
        };
        if !out.iter().any(|l| l.id == id) {
            out.push(AclLink { id, name });
        }
    }
    Ok(out)
}

pub(super) fn decode_service_identities(fields: &Fields) -> Result<Vec<ServiceIdentity>, ApiError> {
    objects(fields, &["ServiceIdentities"])?
        .iter()
        .map(|item| {
            let service_name = item.string(&["ServiceName"])?;
            if !crate::acl::is_valid_identity_name(&service_name) {
                return Err(ApiError::BadRequest(format!("Service identity {service_name:?} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed")));
            }
            Ok(ServiceIdentity { service_name, datacenters: item.strings(&["Datacenters"])? })
        })
        .collect()
}

pub(super) fn decode_node_identities(fields: &Fields) -> Result<Vec<NodeIdentity>, ApiError> {
    objects(fields, &["NodeIdentities"])?
        .iter()
        .map(|item| {
            let node_name = item.string(&["NodeName"])?;
            let datacenter = item.string(&["Datacenter"])?;
            if !crate::acl::is_valid_identity_name(&node_name) {
                return Err(ApiError::BadRequest(format!("Node identity {node_name:?} has an invalid name. Only lowercase alphanumeric characters, '-' and '_' are allowed")));
            }
            if datacenter.is_empty() {
                return Err(ApiError::BadRequest(format!("Node identity {node_name:?} is missing the datacenter field")));
            }
            Ok(NodeIdentity { node_name, datacenter })
        })
        .collect()
}

pub(super) fn decode_templated(fields: &Fields) -> Result<Vec<TemplatedPolicyRef>, ApiError> {
    objects(fields, &["TemplatedPolicies"])?
        .iter()
        .map(|item| {
            let template_name = item.string(&["TemplateName"])?;
            let name = match item.object(&["TemplateVariables"])? {
                Some(vars) => Some(vars.string(&["Name"])?).filter(|n| !n.is_empty()),
                None => None,
            };
            // Renders once now so that a bad template or name is a 400 here, not a token
            // that silently grants nothing.
            crate::acl::render_template(&template_name, name.as_deref())
                .map_err(|e| ApiError::BadRequest(format!("Invalid templated policy {template_name:?}: {e}")))?;
            Ok(TemplatedPolicyRef { template_name, name, datacenters: item.strings(&["Datacenters"])? })
        })
        .collect()
}

/// Consul's UUID check for IDs given by clients (accessor, secret, policy and role IDs).
pub(super) fn is_uuid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    parts.len() == 5 && parts.iter().zip(lengths).all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// An ID in a URL must look like one (Consul's state store answers 500 for anything else).
pub(super) fn check_uuid(id: &str) -> Result<(), ApiError> {
    if is_uuid(id) { Ok(()) } else { Err(ApiError::Internal("UUID must be 36 characters".into())) }
}
