//! The routes: which handler answers which path, and the OpenAPI document
//! built from the same list.

pub mod batch;
pub mod events;
pub mod health;
pub mod keys;
pub mod leases;
pub mod webhooks;

use std::sync::LazyLock;

use axum::{
    http::header,
    response::{Html, IntoResponse},
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{AppState, extract::with_body_limit, openapi};

/// The routes of the public API (role `api`).
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(keys::generate))
        .routes(routes!(keys::info))
        .routes(routes!(keys::rotate))
        .routes(routes!(events::ingest))
        .merge(with_body_limit(
            OpenApiRouter::new().routes(routes!(batch::ingest_batch)),
            batch::MAX_BATCH_BYTES,
        ))
        .routes(routes!(events::get))
        .routes(routes!(events::inbox))
        .routes(routes!(events::ack))
        .routes(routes!(leases::lease))
        .routes(routes!(leases::ack))
        .routes(routes!(leases::release))
        .routes(routes!(webhooks::attempts))
        .routes(routes!(webhooks::replay))
        .routes(routes!(webhooks::replay_dead_letters))
        .routes(routes!(webhooks::configure))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(spec))
        .routes(routes!(docs))
}

/// The routes every role serves.
pub fn operations_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(health::metrics))
}

/// The whole document, as JSON.
pub fn document() -> serde_json::Value {
    let (_, api) = openapi::router()
        .merge(operations_routes())
        .merge(api_routes())
        .split_for_parts();
    openapi::finish(api)
}

static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string_pretty(&document()).unwrap_or_else(|e| e.to_string()));

/// This document, OpenAPI 3.1.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object, content_type = "application/json")),
)]
pub async fn spec() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

/// A browsable page of this document; it loads nothing from elsewhere.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    responses((status = 200, description = "HTML", body = String, content_type = "text/html")),
)]
pub async fn docs() -> Html<&'static str> {
    Html(include_str!("../docs.html"))
}

/// Timestamps are RFC 3339 in UTC with milliseconds, everywhere.
pub fn rfc3339<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

pub fn rfc3339_opt<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use axum::response::Response;

    use super::*;
    use crate::{
        domain::MAX_BODY_BYTES,
        http::error::{ApiError, ErrorCode, size},
        ratelimit::RateLimit,
    };

    #[test]
    fn every_code_the_server_sends_is_documented() {
        let json = document();
        let documented: Vec<&str> = json["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("ErrorCode enum")
            .iter()
            .filter_map(|code| code.as_str())
            .collect();
        for err in one_of_each() {
            let sent = serde_json::to_value(err.code()).expect("code");
            let body = body_json(err.into_response());
            assert_eq!(body["code"], sent);
            let sent = sent.as_str().expect("a string");
            assert!(documented.contains(&sent), "`{sent}` is not documented");
        }
        for code in ["forbidden", "too_many_failures", "body_timeout", "busy"] {
            assert!(documented.contains(&code), "`{code}` is not documented");
        }
    }

    #[test]
    fn the_batch_route_documents_its_own_body_limit() {
        let json = document();
        let too_large =
            json["paths"]["/api/events/batch"]["post"]["responses"]["413"]["description"]
                .as_str()
                .expect("413");
        assert!(
            too_large.contains(&size(batch::MAX_BATCH_BYTES)),
            "{too_large}"
        );
        let single = json["paths"]["/api/events"]["post"]["responses"]["413"]["description"]
            .as_str()
            .expect("413");
        assert!(single.contains(&size(MAX_BODY_BYTES)), "{single}");
    }

    /// One error of every kind, and every code a 400 carries: what the
    /// document's list of codes must cover.
    fn one_of_each() -> Vec<ApiError> {
        let limit = || RateLimit {
            limit: 1,
            remaining: 0,
            reset_after: std::time::Duration::from_secs(1),
            retry_after: None,
        };
        let all = vec![
            ApiError::bad_request(ErrorCode::MalformedJson, "x"),
            ApiError::bad_request(ErrorCode::UnreadableBody, "x"),
            ApiError::bad_request(ErrorCode::InvalidCursor, "x"),
            ApiError::Unauthorized("x"),
            ApiError::Forbidden("x"),
            ApiError::TooManyFailures {
                retry_after: std::time::Duration::from_secs(1),
            },
            ApiError::NotFound("x"),
            ApiError::MethodNotAllowed,
            ApiError::Conflict("x".into()),
            ApiError::Duplicate {
                original_id: "x".into(),
                limit: limit(),
            },
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::Unprocessable("x".into()),
            ApiError::RateLimited(limit()),
            ApiError::BodyTimeout,
            ApiError::Busy,
            ApiError::Unavailable("x".into()),
            ApiError::Internal("x".into()),
        ];
        // Not compiled until a new kind of error is added to the list above.
        for err in &all {
            match err {
                ApiError::BadRequest { .. }
                | ApiError::Unauthorized(_)
                | ApiError::Forbidden(_)
                | ApiError::TooManyFailures { .. }
                | ApiError::NotFound(_)
                | ApiError::MethodNotAllowed
                | ApiError::Conflict(_)
                | ApiError::Duplicate { .. }
                | ApiError::PayloadTooLarge { .. }
                | ApiError::Unprocessable(_)
                | ApiError::RateLimited(_)
                | ApiError::BodyTimeout
                | ApiError::Busy
                | ApiError::Unavailable(_)
                | ApiError::Internal(_) => {}
            }
        }
        all
    }

    fn body_json(response: Response) -> serde_json::Value {
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .expect("body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[test]
    fn every_authenticated_operation_documents_its_errors_and_headers() {
        let json = document();
        assert_eq!(json["openapi"], "3.1.0");
        let ingest = &json["paths"]["/api/events"]["post"]["responses"];
        for status in [
            "202", "400", "401", "409", "413", "422", "429", "500", "503",
        ] {
            assert!(
                ingest[status].is_object(),
                "POST /api/events lacks {status}"
            );
        }
        assert!(ingest["429"]["headers"]["Retry-After"].is_object());
        assert!(ingest["202"]["headers"]["X-RateLimit-Remaining"].is_object());
        assert!(
            json["paths"]["/health"]["get"]["responses"]["200"]["headers"]["X-Request-Id"]
                .is_object()
        );
        assert!(json["paths"]["/health"]["get"]["responses"]["401"].is_null());
        assert!(json["components"]["securitySchemes"]["api_key"].is_object());
        assert!(json["components"]["schemas"]["JsonValue"].is_object());
        let links = &json["paths"]["/api/events"]["post"]["responses"]["202"]["links"];
        assert_eq!(links["GetEvent"]["operationId"], "get_api_events_id");
        let mut ids: Vec<&str> = json["paths"]
            .as_object()
            .expect("paths")
            .values()
            .flat_map(|item| item.as_object().expect("item").values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "operation ids repeat");
    }
}
