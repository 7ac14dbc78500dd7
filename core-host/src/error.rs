//! The API's one error type and its mapping to HTTP, in one place.
//!
//! Body: `{"error":{"code":…,"message":…,"field":…}}` (the Nixo error table).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nixo_api::types::{ErrorBody, ErrorDetail};
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable machine code: `invalid_request`, `invalid_api_key`, …
    pub code: &'static str,
    pub message: Cow<'static, str>,
    /// The offending parameter, when there is one.
    pub field: Option<Cow<'static, str>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<Cow<'static, str>>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400 `invalid_request` naming the field.
    pub fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message).with_field(field)
    }

    pub fn missing(field: &'static str) -> Self {
        Self::invalid(field, format!("Missing required parameter: {field}"))
    }

    pub fn invalid_api_key(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_api_key", message)
    }

    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "resource_not_found", message)
    }

    /// 500 with a generic message; the cause goes to the log, not the
    /// client. A database that cannot be reached or written (down,
    /// restarting, out of disk) is 503 `service_unavailable` instead: a
    /// retry with the same `Idempotency-Key` later is safe and will work.
    pub fn internal(cause: &anyhow::Error) -> Self {
        if cause
            .chain()
            .filter_map(|e| e.downcast_ref::<sqlx::Error>())
            .any(crate::db::unavailable)
        {
            tracing::warn!(error = %format!("{cause:#}"), "database unavailable");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "The database is unavailable; retry with backoff (with the same Idempotency-Key)",
            );
        }
        tracing::error!(error = %format!("{cause:#}"), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "An internal error occurred; retry with backoff",
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.to_string(),
                field: self.field.as_ref().map(|f| f.to_string()),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        ApiError::internal(&err)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        ApiError::internal(&anyhow::Error::new(err))
    }
}

/// The one mapping of service failures to HTTP.
impl From<crate::services::ServiceError> for ApiError {
    fn from(err: crate::services::ServiceError) -> Self {
        use crate::services::ServiceError as E;
        match err {
            E::Invalid { field, message } => ApiError::invalid(field, message),
            E::NotFound { field, message } => {
                let err = ApiError::not_found(message);
                match field {
                    Some(field) => err.with_field(field),
                    None => err,
                }
            }
            E::InsufficientFunds { field, message } => {
                ApiError::new(StatusCode::PAYMENT_REQUIRED, "insufficient_funds", message).with_field(field)
            }
            E::IdempotencyKeyReused { message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", message)
                    .with_field("Idempotency-Key")
            }
            E::Forbidden { code, field, message } => {
                let err = ApiError::new(StatusCode::FORBIDDEN, code, message);
                match field {
                    Some(field) => err.with_field(field),
                    None => err,
                }
            }
            E::Conflict { code, message } => ApiError::new(StatusCode::CONFLICT, code, message),
            E::Provider {
                retryable: true,
                message,
            } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable", message),
            E::Provider {
                retryable: false,
                message,
            } => ApiError::new(StatusCode::BAD_GATEWAY, "provider_error", message),
            E::Internal(cause) => ApiError::internal(&cause),
        }
    }
}
