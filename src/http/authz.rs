//! The ACL token of a request and what it may do: the `Authz` extractor every handler takes.
//!
//! The token comes from `?token=`, then `X-Consul-Token`, then `Authorization: Bearer`, in
//! Consul's order; a request without one uses the agent's default token, else the anonymous
//! token (`agent::acl`). An unknown or expired secret is 403 `ACL not found` before the handler
//! runs. Handlers then ask the authorizer and answer 403 `Permission denied` (Consul's wording,
//! naming the accessor ID, never the secret), or filter lists and say so with
//! `X-Consul-Results-Filtered-By-ACLs: true`.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};

use crate::acl::Authorizer;
use crate::agent::acl::Resolved;
use crate::http::AppState;
use crate::http::error::ApiError;

/// The header that says a list answer left out what the token may not read.
pub const FILTERED_HEADER: &str = "x-consul-results-filtered-by-acls";

/// A request's resolved token.
#[derive(Clone)]
pub struct Authz {
    /// The secret the request carried (`None`: the agent's default or anonymous token).
    pub secret: Option<String>,
    pub resolved: Arc<Resolved>,
}

impl FromRequestParts<AppState> for Authz {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Authz, ApiError> {
        let secret = token_of(&parts.headers, parts.uri.query());
        let resolved = resolve(state, secret.as_deref()).await?;
        Ok(Authz { secret, resolved })
    }
}

/// Resolves `secret` where this agent's role says (`Agent::resolve_token`).
pub async fn resolve(state: &AppState, secret: Option<&str>) -> Result<Arc<Resolved>, ApiError> {
    state.agent.resolve_token(secret).await.map_err(|e| ApiError::Forbidden(e.to_string()))
}

/// The request's token, in Consul's order of precedence.
pub fn token_of(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let from_query = query.and_then(|q| {
        let uri: axum::http::Uri = format!("/?{q}").parse().ok()?;
        let axum::extract::Query(params) = axum::extract::Query::<crate::http::query::Params>::try_from_uri(&uri).ok()?;
        params.get("token").cloned()
    });
    let from_header = || headers.get("x-consul-token").and_then(|v| v.to_str().ok()).map(str::to_string);
    let from_bearer = || {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(|v| v.trim().to_string())
    };
    from_query.or_else(from_header).or_else(from_bearer).filter(|t| !t.is_empty())
}

impl Authz {
    pub fn authorizer(&self) -> &Authorizer {
        &self.resolved.authorizer
    }

    /// Whether everything is allowed (ACLs off, or a management token): nothing to filter.
    pub fn allows_everything(&self) -> bool {
        self.resolved.authorizer.is_management()
    }

    /// 403 unless `allowed`, naming the permission as Consul does (`key:write on "a/b"`).
    pub fn require(&self, allowed: bool, permission: &str, resource: Option<&str>) -> Result<(), ApiError> {
        if allowed {
            return Ok(());
        }
        let on = resource.map(|r| format!(" on {r:?}")).unwrap_or_default();
        Err(ApiError::Forbidden(format!(
            "Permission denied: token with AccessorID '{}' lacks permission '{permission}'{on}",
            self.resolved.accessor_id
        )))
    }
}

/// Marks a response as filtered when `filtered`.
pub fn mark_filtered(headers: &mut HeaderMap, filtered: bool) {
    if filtered {
        headers.insert(FILTERED_HEADER, HeaderValue::from_static("true"));
    }
}

/// Keeps the items `allowed` accepts; `true` in the second place if any was dropped.
pub fn filter_items<T>(items: Vec<T>, allowed: impl Fn(&T) -> bool) -> (Vec<T>, bool) {
    let before = items.len();
    let kept: Vec<T> = items.into_iter().filter(|item| allowed(item)).collect();
    let filtered = kept.len() != before;
    (kept, filtered)
}

/// A JSON answer with the blocking-query headers, marked filtered when `filtered`.
pub fn filtered_json<T: serde::Serialize>(meta: &crate::http::query::QueryMeta, value: &T, pretty: bool, filtered: bool) -> axum::response::Response {
    let mut response = crate::http::query::json_response(meta, value, pretty);
    mark_filtered(response.headers_mut(), filtered);
    response
}
