//! `ApiError`: the single place where failures become HTTP status codes and bodies.
//!
//! Consul answers errors with a plain-text, one-line reason and the status code clients key
//! on: 400 bad input, 404 unknown key or ID, 405 wrong method, 409 rolled-back transaction,
//! 413 over a size limit, 429 busy, 500 server-side failures such as `No cluster leader`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::agent::AgentError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    NotImplemented(String),
    /// Busy with a request of the same kind that may run only alone (429, as Consul's
    /// per-client connection limit answers).
    #[error("{0}")]
    TooManyRequests(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        let mut body = self.to_string();
        body.retain(|c| c != '\n' && c != '\r');
        (status, [("content-type", "text/plain; charset=utf-8")], body).into_response()
    }
}

impl From<AgentError> for ApiError {
    fn from(error: AgentError) -> ApiError {
        match error {
            AgentError::Invalid(reason) => ApiError::BadRequest(reason),
            AgentError::NotFound(reason) => ApiError::NotFound(reason),
            AgentError::TooLarge(reason) => ApiError::PayloadTooLarge(reason),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
