//! The API's error: an HTTP status plus the `{"error":{"code","message"}}`
//! body every endpoint returns when it refuses or fails.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};

/// A refusal or failure, as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// The HTTP status the response carries.
    pub status: StatusCode,
    /// Stable, machine-readable: `not_found`, `invalid_bundle`, ...
    pub code: &'static str,
    /// Names what is wrong and what would be accepted.
    pub message: String,
}

/// The JSON body of an error.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What was refused or failed, and why.
    pub error: ErrorDetail,
}

/// The `error` object of an error body: a code to match on and a message to read.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable reason, such as `not_found`, `invalid_bundle`
    /// or `quota_exceeded`.
    pub code: String,
    /// For a person: names what is wrong and what would be accepted.
    pub message: String,
}

impl ApiError {
    /// An error with any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// A 400 with the given code, for a request that is malformed or invalid.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A 404 `not_found`: the tenant, app or endpoint does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A 409 `conflict`: the request clashes with what is already stored.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// A 401 `unauthorized`: the request carries no bearer token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A 403 `forbidden`: the token sent may not do this (not the admin's, or
    /// not the tenant's own).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// A 500 `internal`: the server failed, through no fault of the request.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!("store: {e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the configuration store failed: {e}"),
        )
    }
}

impl From<crate::store::Rejection> for ApiError {
    fn from(rejection: crate::store::Rejection) -> Self {
        use crate::store::Rejection;
        match rejection {
            Rejection::NotFound(message) => ApiError::not_found(message),
            Rejection::Conflict(message) => ApiError::conflict(message),
            Rejection::Quota(message) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "quota_exceeded", message)
            }
            Rejection::Invalid { code, message } => ApiError::bad_request(code, message),
        }
    }
}

impl From<crate::store::UpdateError> for ApiError {
    fn from(e: crate::store::UpdateError) -> Self {
        match e {
            crate::store::UpdateError::Rejected(r) => r.into(),
            crate::store::UpdateError::Store(e) => e.into(),
        }
    }
}
