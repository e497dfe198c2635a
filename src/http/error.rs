//! The one place where failures become HTTP responses.
//!
//! Every error body is `{"error": "<message>", "code": "<machine code>"}`,
//! plus fields some errors add. Failures of our own (Postgres, Redis) are
//! logged with their detail and answered with a generic message: 503 when a
//! dependency is unreachable, 500 otherwise.
//!
//! Past 400 lines only through its tests, which pin every error's status,
//! code and headers in one table.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::{
    auth::AuthError, events::EventsError, leases::LeasesError, ratelimit::RateLimit,
    redis::RedisError, store::StoreError,
};

/// The machine-readable error codes. Responses take their `code` from this
/// enum, which is also the document's list: a code cannot be sent without
/// being documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedJson,
    UnreadableBody,
    InvalidCursor,
    Unauthorized,
    Forbidden,
    TooManyFailures,
    BodyTimeout,
    NotFound,
    MethodNotAllowed,
    Duplicate,
    Conflict,
    PayloadTooLarge,
    Invalid,
    RateLimited,
    Busy,
    Unavailable,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: String },
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    /// Too many failed key verifications from this prefix or address.
    #[error("too many failed attempts, retry later")]
    TooManyFailures { retry_after: std::time::Duration },
    #[error("{0}")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("an event with this dedup_id was accepted in the last 24 hours")]
    Duplicate {
        original_id: String,
        limit: RateLimit,
    },
    /// Over the route's body limit, `limit` bytes.
    #[error("request body is larger than {}", size(*limit))]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    Unprocessable(String),
    #[error("rate limit exceeded")]
    RateLimited(RateLimit),
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    /// Our own capacity is used up (not a dependency): retry shortly.
    #[error("server busy, retry shortly")]
    Busy,
    #[error("a dependency is unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// A size as people write it: `256 KiB`, `1 MiB`, or bytes.
pub(crate) fn size(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes % KIB == 0 {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

impl ApiError {
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyFailures { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Duplicate { .. } | ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest { code, .. } => *code,
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::TooManyFailures { .. } => ErrorCode::TooManyFailures,
            ApiError::BodyTimeout => ErrorCode::BodyTimeout,
            ApiError::Busy => ErrorCode::Busy,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            ApiError::Duplicate { .. } => ErrorCode::Duplicate,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            ApiError::Unprocessable(_) => ErrorCode::Invalid,
            ApiError::RateLimited(_) => ErrorCode::RateLimited,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Unavailable(detail) => {
                tracing::error!(error = %detail, "dependency unavailable");
                "service temporarily unavailable, retry later".to_owned()
            }
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error".to_owned()
            }
            // The client's doing, not ours: worth a line, not an alert.
            ApiError::BodyTimeout => {
                tracing::info!("client too slow sending its request body");
                self.to_string()
            }
            ApiError::Busy => {
                tracing::warn!("key hashing capacity exhausted; request refused");
                self.to_string()
            }
            other => other.to_string(),
        };
        let retry_after = match &self {
            ApiError::Unavailable(_) | ApiError::Busy => Some(1),
            ApiError::TooManyFailures { retry_after } => Some(retry_after.as_secs().max(1)),
            _ => None,
        };
        let mut body = json!({ "error": message, "code": self.code() });
        if let Some(seconds) = retry_after {
            body["retry_after_seconds"] = json!(seconds);
        }
        let mut limit = None;
        match self {
            ApiError::Duplicate {
                original_id,
                limit: l,
            } => {
                body["original_id"] = Value::String(original_id);
                limit = Some(l);
            }
            ApiError::RateLimited(l) => {
                if let Some(retry) = l.retry_after {
                    body["retry_after_seconds"] = json!(retry.as_secs_f64().ceil() as u64);
                }
                limit = Some(l);
            }
            _ => {}
        }
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("ApiKey"));
        }
        match limit {
            Some(limit) => (limit, response).into_response(),
            None => response,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        (&err).into()
    }
}

impl From<&StoreError> for ApiError {
    fn from(err: &StoreError) -> Self {
        if err.is_outage() {
            ApiError::Unavailable(err.to_string())
        } else {
            ApiError::Internal(err.to_string())
        }
    }
}

impl From<RedisError> for ApiError {
    fn from(err: RedisError) -> Self {
        (&err).into()
    }
}

impl From<&RedisError> for ApiError {
    fn from(err: &RedisError) -> Self {
        if err.is_outage() {
            ApiError::Unavailable(err.to_string())
        } else {
            ApiError::Internal(err.to_string())
        }
    }
}

impl From<EventsError> for ApiError {
    fn from(err: EventsError) -> Self {
        match err {
            EventsError::NotFound => ApiError::NotFound("event not found"),
            EventsError::NoWebhook | EventsError::NotReplayable(_) => {
                ApiError::Conflict(err.to_string())
            }
            EventsError::Store(e) => e.into(),
            EventsError::Redis(e) => e.into(),
        }
    }
}

impl From<LeasesError> for ApiError {
    fn from(err: LeasesError) -> Self {
        match err {
            LeasesError::UnknownLease => ApiError::NotFound("no such lease in your organization"),
            LeasesError::Store(e) => e.into(),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        (&err).into()
    }
}

impl From<&AuthError> for ApiError {
    fn from(err: &AuthError) -> Self {
        match err {
            AuthError::Missing => ApiError::Unauthorized(
                "missing API key: send it in the X-API-Key header (or Authorization: Bearer)",
            ),
            AuthError::Invalid => ApiError::Unauthorized("invalid or revoked API key"),
            AuthError::TooManyFailures(_, window) => ApiError::TooManyFailures {
                retry_after: *window,
            },
            AuthError::Busy => ApiError::Busy,
            AuthError::Store(e) => e.into(),
            AuthError::Redis(e) => e.into(),
            AuthError::Internal(e) => ApiError::Internal(e.clone()),
            AuthError::Shared(e) => e.as_ref().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::EventStatus;

    fn status_of(err: impl Into<ApiError>) -> StatusCode {
        err.into().into_response().status()
    }

    #[test]
    fn every_failure_has_its_status() {
        let unreachable = || sqlx::Error::PoolTimedOut;
        let refused = || sqlx::Error::RowNotFound;
        let redis_down = || {
            RedisError::Command(fred::error::Error::new(
                fred::error::ErrorKind::IO,
                "connection refused",
            ))
        };
        let table: Vec<(ApiError, StatusCode)> = vec![
            (EventsError::NotFound.into(), StatusCode::NOT_FOUND),
            (EventsError::NoWebhook.into(), StatusCode::CONFLICT),
            (
                EventsError::NotReplayable(EventStatus::Queued).into(),
                StatusCode::CONFLICT,
            ),
            (
                StoreError::from(unreachable()).into(),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                StoreError::from(refused()).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (redis_down().into(), StatusCode::SERVICE_UNAVAILABLE),
            (
                RedisError::Reply("garbled".into()).into(),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                RedisError::Command(fred::error::Error::new(
                    fred::error::ErrorKind::InvalidArgument,
                    "WRONGTYPE Operation against a key holding the wrong kind of value",
                ))
                .into(),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                RedisError::Command(fred::error::Error::new(
                    fred::error::ErrorKind::Unknown,
                    "ERR user_script:1: Script attempted to access nonexistent global variable",
                ))
                .into(),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                EventsError::Redis(redis_down()).into(),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (AuthError::Missing.into(), StatusCode::UNAUTHORIZED),
            (AuthError::Invalid.into(), StatusCode::UNAUTHORIZED),
            (
                AuthError::Shared(Arc::new(AuthError::Store(StoreError::from(unreachable()))))
                    .into(),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                ApiError::PayloadTooLarge { limit: 1024 },
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (AuthError::Busy.into(), StatusCode::SERVICE_UNAVAILABLE),
            (
                AuthError::TooManyFailures(
                    crate::auth::failures::Exceeded::Prefix,
                    std::time::Duration::from_secs(60),
                )
                .into(),
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (ApiError::BodyTimeout, StatusCode::REQUEST_TIMEOUT),
            (
                ApiError::Forbidden("sign-up is closed"),
                StatusCode::FORBIDDEN,
            ),
            (ApiError::MethodNotAllowed, StatusCode::METHOD_NOT_ALLOWED),
            (
                ApiError::bad_request(ErrorCode::MalformedJson, "x"),
                StatusCode::BAD_REQUEST,
            ),
            (
                ApiError::Unprocessable("x".into()),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
        ];
        for (err, expected) in table {
            let shown = format!("{err:?}");
            assert_eq!(status_of(err), expected, "{shown}");
        }
    }

    #[test]
    fn internal_details_never_reach_the_client() {
        let response =
            ApiError::Internal("password=hunter2 in a connection string".into()).into_response();
        let body = body_text(response);
        assert!(!body.contains("hunter2"), "{body}");
        assert!(body.contains(r#""code":"internal""#), "{body}");
    }

    #[test]
    fn every_503_says_when_to_retry() {
        for err in [ApiError::Unavailable("redis".into()), ApiError::Busy] {
            let response = err.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        }
    }

    fn body_text(response: Response) -> String {
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }
}
