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
    trace::{DefaultOnRequest, DefaultOnResponse, OnResponse, TraceLayer},
};
use tracing::{Span, field::Empty};

use super::error::ApiError;
use crate::{
    metrics::{HTTP_DURATION, HTTP_REQUESTS},
    telemetry,
};

/// Probes and scrapes: frequent, uninteresting, and no span of their own.
const UNTRACED: &[&str] = &["/health", "/ready", "/metrics"];

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

/// One server span per request (but the probes) with its id, method and
/// route template, the organization and event once known, and the status;
/// a child of the caller's trace when it sends `traceparent`. Headers
/// (which carry keys) are never recorded.
pub fn trace_layer() -> TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    impl Fn(&Request) -> Span + Clone,
    DefaultOnRequest,
    impl OnResponse<axum::body::Body> + Clone,
> {
    TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let path = request.uri().path();
            if UNTRACED.contains(&path) {
                return Span::none();
            }
            let request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str);
            let method = request.method().as_str();
            let span = tracing::info_span!(
                "request",
                otel.name = match route {
                    Some(route) => format!("{method} {route}"),
                    None => method.to_owned(),
                },
                otel.kind = "server",
                otel.status_code = Empty,
                http.request.method = method,
                http.route = route,
                url.path = path,
                http.response.status_code = Empty,
                request_id,
                method,
                route = route.unwrap_or_default(),
                organization_id = Empty,
                event_id = Empty,
            );
            telemetry::continue_from_headers(&span, request.headers());
            span
        })
        .on_response(
            |response: &Response<axum::body::Body>, latency: Duration, span: &Span| {
                let status = response.status();
                span.record("http.response.status_code", status.as_u16());
                if status.is_server_error() {
                    span.record("otel.status_code", "ERROR");
                }
                DefaultOnResponse::new().on_response(response, latency, span);
            },
        )
}
