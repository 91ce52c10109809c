//! `/v1/acl/*` for everything but tokens: policies, roles, templated policies, auth methods and
//! binding rules. The rules of a policy are parsed when it is written, so a stored policy
//! always means something (`crate::acl::parse_rules`; a bad one is 400).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::agent::new_uuid;
use crate::catalog::acl::{AclAuthMethod, AclBindingRule, AclOp, AclPolicy, AclRole, GLOBAL_MANAGEMENT_POLICY_ID};
use crate::http::AppState;
use crate::http::acl::{acl_read, enabled, require_read, require_write, write};
use crate::http::acl_json::{self as dto, check_uuid};
use crate::http::authz::Authz;
use crate::http::decode::Fields;
use crate::http::error::ApiError;
use crate::http::query::Params;

/// Consul's rule for policy and role names.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 256 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn read_back(state: &AppState, render: impl FnOnce(&crate::catalog::acl::AclTables) -> Option<Value>) -> Result<Response, ApiError> {
    let value = state.agent.view().read(|c| render(c.acl()));
    Ok(axum::Json(value.ok_or_else(|| ApiError::Internal("object vanished after its write".into()))?).into_response())
}

// ---- policies

async fn policy_set(state: &AppState, authz: &Authz, id: Option<String>, body: &[u8]) -> Result<Response, ApiError> {
    enabled(state)?;
    require_write(authz)?;
    let policy = decode_policy(&Fields::parse(body)?, id)?;
    let id = policy.id.clone();
    write(state, AclOp::PolicySet { policy }).await?;
    read_back(state, |acl| acl.policy(&id).map(|p| dto::policy_json(p, true)))
}

/// A policy body; `id` is the one in the URL of an update. Pure but for a new ID.
pub(crate) fn decode_policy(fields: &Fields, id: Option<String>) -> Result<AclPolicy, ApiError> {
    let id = match id {
        Some(id) => id,
        None => Some(fields.string(&["ID"])?).filter(|i| !i.is_empty()).unwrap_or_else(new_uuid),
    };
    check_uuid(&id)?;
    let name = fields.string(&["Name"])?;
    if !valid_name(&name) {
        return Err(ApiError::BadRequest(format!("Invalid Policy: invalid Name. Only alphanumeric characters, '-' and '_' are allowed: {name:?}")));
    }
    let rules = dto::text(fields, &["Rules"])?;
    crate::acl::parse_rules(&rules).map_err(|e| ApiError::BadRequest(format!("Invalid Policy: {e}")))?;
    Ok(AclPolicy {
        id,
        name,
        description: dto::text(fields, &["Description"])?,
        rules,
        datacenters: fields.strings(&["Datacenters"])?,
        create_index: 0,
        modify_index: 0,
    })
}

pub(super) async fn policy_create(State(state): State<AppState>, authz: Authz, body: Bytes) -> Result<Response, ApiError> {
    policy_set(&state, &authz, None, &body).await
}

pub(super) async fn policy_update(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let exists = state.agent.view().read(|c| c.acl().policy(&id).is_some());
    if !exists && dto::is_uuid(&id) {
        return Err(ApiError::BadRequest(format!("Cannot find policy {id:?}")));
    }
    policy_set(&state, &authz, Some(id), &body).await
}

pub(super) async fn policy_read(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_read(&authz)?;
    check_uuid(&id)?;
    acl_read(&state, &params, &authz, |acl| acl.policy(&id).map(|p| dto::policy_json(p, true))).await
}

pub(super) async fn policy_read_by_name(State(state): State<AppState>, authz: Authz, Path(name): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_read(&authz)?;
    acl_read(&state, &params, &authz, |acl| acl.policy_by_name(&name).map(|p| dto::policy_json(p, true))).await
}

pub(super) async fn policy_delete(State(state): State<AppState>, authz: Authz, Path(id): Path<String>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_write(&authz)?;
    check_uuid(&id)?;
    if id == GLOBAL_MANAGEMENT_POLICY_ID {
        return Err(ApiError::BadRequest("Delete operation not permitted on the builtin global-management policy".into()));
    }
    write(&state, AclOp::PolicyDelete { id }).await?;
    Ok(axum::Json(true).into_response())
}

pub(super) async fn policy_list(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_read(&authz)?;
    acl_read(&state, &params, &authz, |acl| Some(Value::Array(acl.policies().map(|p| dto::policy_json(p, false)).collect()))).await
}

// ---- roles

async fn role_set(state: &AppState, authz: &Authz, id: Option<String>, body: &[u8]) -> Result<Response, ApiError> {
    enabled(state)?;
    require_write(authz)?;
    let acl = state.agent.view().read(|c| c.acl().clone());
    let role = decode_role(&Fields::parse(body)?, id, &acl)?;
    let id = role.id.clone();
    write(state, AclOp::RoleSet { role }).await?;
    read_back(state, |acl| acl.role(&id).map(|r| dto::role_json(acl, r)))
}

/// A role body against the ACL tables its links name; `id` is the one in the URL of an
/// update. Pure but for a new ID.
pub(crate) fn decode_role(fields: &Fields, id: Option<String>, acl: &crate::catalog::acl::AclTables) -> Result<AclRole, ApiError> {
    let id = match id {
        Some(id) => id,
        None => Some(fields.string(&["ID"])?).filter(|i| !i.is_empty()).unwrap_or_else(new_uuid),
    };
    check_uuid(&id)?;
    let name = fields.string(&["Name"])?;
    if !valid_name(&name) {
        return Err(ApiError::BadRequest(format!("Invalid Role: invalid Name. Only alphanumeric characters, '-' and '_' are allowed: {name:?}")));
    }
    Ok(AclRole {
        id,
        name,
        description: dto::text(fields, &["Description"])?,
        policies: dto::decode_links(fields, &["Policies"], acl, true)?,
        service_identities: dto::decode_service_identities(fields)?,
        node_identities: dto::decode_node_identities(fields)?,
        templated_policies: dto::decode_templated(fields)?,
        create_index: 0,
        modify_index: 0,
    })
}

pub(super) async fn role_create(State(state): State<AppState>, authz: Authz, body: Bytes) -> Result<Response, ApiError> {
    role_set(&state, &authz, None, &body).await
}

pub(super) async fn role_update(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    role_set(&state, &authz, Some(id), &body).await
}

pub(super) async fn role_read(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_read(&authz)?;
    check_uuid(&id)?;
    acl_read(&state, &params, &authz, |acl| acl.role(&id).map(|r| dto::role_json(acl, r))).await
}

pub(super) async fn role_read_by_name(State(state): State<AppState>, authz: Authz, Path(name): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_read(&authz)?;
    acl_read(&state, &params, &authz, |acl| acl.role_by_name(&name).map(|r| dto::role_json(acl, r))).await
}

pub(super) async fn role_delete(State(state): State<AppState>, authz: Authz, Path(id): Path<String>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_write(&authz)?;
    check_uuid(&id)?;
    write(&state, AclOp::RoleDelete { id }).await?;
    Ok(axum::Json(true).into_response())
}

pub(super) async fn role_list(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_read(&authz)?;
    let policy = params.get("policy").filter(|p| !p.is_empty()).cloned();
    acl_read(&state, &params, &authz, |acl| {
        let roles = acl.roles().filter(|r| policy.as_ref().is_none_or(|p| r.policies.iter().any(|l| l.id == *p)));
        Some(Value::Array(roles.map(|r| dto::role_json(acl, r)).collect()))
    })
    .await
}

// ---- templated policies (builtin, not stored)

fn template_json(template: &crate::acl::TemplatedPolicy) -> Value {
    json!({
        "TemplateName": template.name,
        "Schema": template.schema,
        "Template": template.template,
        "Description": template.description,
    })
}

pub(super) async fn templated_list(State(state): State<AppState>, authz: Authz) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_read(&authz)?;
    let all: serde_json::Map<String, Value> =
        crate::acl::templated_policies().iter().map(|t| (t.name.to_string(), template_json(t))).collect();
    Ok(axum::Json(Value::Object(all)).into_response())
}

pub(super) async fn templated_read(State(state): State<AppState>, authz: Authz, Path(name): Path<String>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_read(&authz)?;
    let template = crate::acl::templated_policy(&name).ok_or_else(|| ApiError::NotFound(format!("Invalid templated policy Name: {name}")))?;
    Ok(axum::Json(template_json(template)).into_response())
}

/// `POST /v1/acl/templated-policy/preview/:name`: the synthetic policy a template renders to.
pub(super) async fn templated_preview(State(state): State<AppState>, authz: Authz, Path(name): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_read(&authz)?;
    let template = crate::acl::templated_policy(&name).ok_or_else(|| ApiError::NotFound(format!("Invalid templated policy Name: {name}")))?;
    let variable = if body.is_empty() { None } else { Some(Fields::parse(&body)?.string(&["Name"])?).filter(|n| !n.is_empty()) };
    let rules = crate::acl::render_template(&name, variable.as_deref()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let digest = format!("{:08x}", crc32fast::hash(rules.as_bytes()));
    Ok(axum::Json(json!({
        "ID": template.id,
        "Name": format!("synthetic-policy-{digest}"),
        "Description": format!("synthetic policy generated from templated policy: {name}"),
        "Rules": rules,
    }))
    .into_response())
}

// ---- auth methods

const AUTH_METHOD_TYPES: [&str; 4] = ["kubernetes", "jwt", "oidc", "aws-iam"];

async fn auth_method_set(state: &AppState, authz: &Authz, name: Option<String>, body: &[u8]) -> Result<Response, ApiError> {
    enabled(state)?;
    require_write(authz)?;
    let method = decode_auth_method(&Fields::parse(body)?, name)?;
    let name = method.name.clone();
    write(state, AclOp::AuthMethodSet { method }).await?;
    read_back(state, |acl| acl.auth_method(&name).map(dto::auth_method_json))
}

/// An auth method body; `name` is the one in the URL of an update. Pure.
pub(crate) fn decode_auth_method(fields: &Fields, name: Option<String>) -> Result<AclAuthMethod, ApiError> {
    let body_name = fields.string(&["Name"])?;
    let name = name.unwrap_or_else(|| body_name.clone());
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::BadRequest("Auth method name in URL and payload do not match".into()));
    }
    if !valid_name(&name) {
        return Err(ApiError::BadRequest(format!("Invalid Auth Method: invalid Name {name:?}")));
    }
    let method_type = fields.string(&["Type"])?;
    if !AUTH_METHOD_TYPES.contains(&method_type.as_str()) {
        return Err(ApiError::BadRequest(format!("Invalid Auth Method: Type should be one of: {AUTH_METHOD_TYPES:?}")));
    }
    let config_json = fields.raw_json(&["Config"]).unwrap_or_else(|| "{}".into());
    if config_json.len() > crate::catalog::acl::ACL_TEXT_BYTES_MAX {
        return Err(ApiError::BadRequest("Invalid Auth Method: Config is too large".into()));
    }
    Ok(AclAuthMethod {
        name,
        method_type,
        display_name: dto::text(fields, &["DisplayName"])?,
        description: dto::text(fields, &["Description"])?,
        max_token_ttl_ms: fields.duration(&["MaxTokenTTL"])?.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        token_locality: fields.string(&["TokenLocality"])?,
        config_json,
        create_index: 0,
        modify_index: 0,
    })
}

pub(super) async fn auth_method_create(State(state): State<AppState>, authz: Authz, body: Bytes) -> Result<Response, ApiError> {
    auth_method_set(&state, &authz, None, &body).await
}

pub(super) async fn auth_method_update(State(state): State<AppState>, authz: Authz, Path(name): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    auth_method_set(&state, &authz, Some(name), &body).await
}

pub(super) async fn auth_method_read(State(state): State<AppState>, authz: Authz, Path(name): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_read(&authz)?;
    acl_read(&state, &params, &authz, |acl| acl.auth_method(&name).map(dto::auth_method_json)).await
}

pub(super) async fn auth_method_delete(State(state): State<AppState>, authz: Authz, Path(name): Path<String>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_write(&authz)?;
    write(&state, AclOp::AuthMethodDelete { name }).await?;
    Ok(axum::Json(true).into_response())
}

pub(super) async fn auth_method_list(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_read(&authz)?;
    acl_read(&state, &params, &authz, |acl| Some(Value::Array(acl.auth_methods().map(dto::auth_method_json).collect()))).await
}

// ---- binding rules

const BIND_TYPES: [&str; 5] = ["service", "node", "role", "policy", "templated-policy"];

async fn binding_rule_set(state: &AppState, authz: &Authz, id: Option<String>, body: &[u8]) -> Result<Response, ApiError> {
    enabled(state)?;
    require_write(authz)?;
    let rule = decode_binding_rule(&Fields::parse(body)?, id)?;
    let id = rule.id.clone();
    write(state, AclOp::BindingRuleSet { rule }).await?;
    read_back(state, |acl| acl.binding_rule(&id).map(dto::binding_rule_json))
}

/// A binding rule body; `id` is the one in the URL of an update. Pure but for a new ID.
pub(crate) fn decode_binding_rule(fields: &Fields, id: Option<String>) -> Result<AclBindingRule, ApiError> {
    let id = id.unwrap_or_else(new_uuid);
    check_uuid(&id)?;
    let bind_type = fields.string(&["BindType"])?;
    if !BIND_TYPES.contains(&bind_type.as_str()) {
        return Err(ApiError::BadRequest(format!("Invalid Binding Rule: unknown BindType {bind_type:?}")));
    }
    let bind_name = dto::text(fields, &["BindName"])?;
    if bind_name.is_empty() {
        return Err(ApiError::BadRequest("Invalid Binding Rule: no BindName is set".into()));
    }
    Ok(AclBindingRule {
        id,
        description: dto::text(fields, &["Description"])?,
        auth_method: fields.string(&["AuthMethod"])?,
        selector: dto::text(fields, &["Selector"])?,
        bind_type,
        bind_name,
        create_index: 0,
        modify_index: 0,
    })
}

pub(super) async fn binding_rule_create(State(state): State<AppState>, authz: Authz, body: Bytes) -> Result<Response, ApiError> {
    binding_rule_set(&state, &authz, None, &body).await
}

pub(super) async fn binding_rule_update(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    binding_rule_set(&state, &authz, Some(id), &body).await
}

pub(super) async fn binding_rule_read(State(state): State<AppState>, authz: Authz, Path(id): Path<String>, Query(params): Query<Params>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_read(&authz)?;
    check_uuid(&id)?;
    acl_read(&state, &params, &authz, |acl| acl.binding_rule(&id).map(dto::binding_rule_json)).await
}

pub(super) async fn binding_rule_delete(State(state): State<AppState>, authz: Authz, Path(id): Path<String>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_write(&authz)?;
    check_uuid(&id)?;
    write(&state, AclOp::BindingRuleDelete { id }).await?;
    Ok(axum::Json(true).into_response())
}

pub(super) async fn binding_rule_list(State(state): State<AppState>, authz: Authz, Query(params): Query<Params>) -> Result<Response, ApiError> {
    enabled(&state)?;
    require_read(&authz)?;
    let method = params.get("authmethod").filter(|m| !m.is_empty()).cloned();
    acl_read(&state, &params, &authz, |acl| {
        let rules = acl.binding_rules().filter(|r| method.as_ref().is_none_or(|m| r.auth_method == *m));
        Some(Value::Array(rules.map(dto::binding_rule_json).collect()))
    })
    .await
}
