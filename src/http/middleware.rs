//! Cross-cutting request handling: metrics, timeouts, panics, tracing, and
//! JSON answers for requests no route takes.

use std::{any::Any, time::Duration};

use axum::{
    extract::{MatchedPath, Request, State},
    http::Response,
    middleware::Next,
    response::IntoResponse,
};
use tower_http::{
    classify::{ServerErrorsAsFailures, SharedClassifier},
    trace::TraceLayer,
};
use tracing::Span;

use super::error::ApiError;
use crate::metrics::{HTTP_DURATION, HTTP_REQUESTS};

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

pub fn panic_response(_panic: Box<dyn Any + Send + 'static>) -> Response<axum::body::Body> {
    ApiError::Internal("handler panicked".into()).into_response()
}

pub async fn timeout(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable("request timed out".into()).into_response(),
    }
}

/// Requests by method, route template (never the raw path: ids would make
/// the label set unbounded) and status, and their latency.
pub async fn track_metrics(request: Request, next: Next) -> axum::response::Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(HTTP_DURATION, "method" => method.clone(), "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(HTTP_REQUESTS, "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

/// One span per request with its id, method and route, and the organization
/// and event once known; headers (which carry keys) are never recorded.
pub fn trace_layer()
-> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, impl Fn(&Request) -> Span + Clone> {
    TraceLayer::new_for_http().make_span_with(|request: &Request| {
        let request_id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str)
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            request_id,
            method = %request.method(),
            route,
            organization_id = tracing::field::Empty,
            event_id = tracing::field::Empty,
        )
    })
}
