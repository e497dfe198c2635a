//! The HTTP surface: routes, extractors, and the layers around them.
//!
//! Layer order, outermost first: request id (taken from `X-Request-Id` or
//! minted) → copy of it onto the response → trace span → panic to JSON 500 →
//! metrics → timeout → body limit → handler. Rate limiting is not a layer: it
//! needs the organization, which only the auth extractor knows, and ingestion
//! folds it into the enqueue script to keep one Redis round trip per event.

pub mod error;
mod extract;
mod headers;
mod middleware;
mod routes;
pub mod server;

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
};

use crate::{
    auth::Authenticator, config::Config, domain::MAX_BODY_BYTES, events::Events,
    ratelimit::RateLimiter, store::Store, streams::Intake,
};

/// Everything a handler may need, behind one `Arc`: axum clones the state
/// for every extractor of every request, so a clone must be one increment.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

pub struct Services {
    pub config: Arc<Config>,
    /// Organizations, keys and webhook settings.
    pub store: Store,
    /// For readiness checks.
    pub redis: fred::prelude::Pool,
    pub intake: Intake,
    pub events: Events,
    pub auth: Authenticator,
    pub limiter: RateLimiter,
    pub metrics: PrometheusHandle,
}

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub fn router(state: AppState) -> Router {
    let mut app = Router::new()
        .route("/health", get(routes::health::health))
        .route("/ready", get(routes::health::ready))
        .route("/metrics", get(routes::health::metrics));
    if state.config.role.runs_api() {
        app = app
            .route("/api/keys/generate", post(routes::keys::generate))
            .route("/api/keys", get(routes::keys::info))
            .route("/api/keys/rotate", post(routes::keys::rotate))
            .route("/api/events", post(routes::events::ingest))
            .route(
                "/api/events/batch",
                post(routes::batch::ingest_batch)
                    .layer(DefaultBodyLimit::max(routes::batch::MAX_BATCH_BYTES)),
            )
            .route("/api/events/{id}", get(routes::events::get))
            .route("/api/inbox", get(routes::events::inbox))
            .route("/api/ack/{id}", post(routes::events::ack))
            .route("/api/events/{id}/attempts", get(routes::webhooks::attempts))
            .route("/api/events/{id}/replay", post(routes::webhooks::replay))
            .route(
                "/api/dlq/replay",
                post(routes::webhooks::replay_dead_letters),
            )
            .route("/api/webhook/config", post(routes::webhooks::configure))
            .route(
                "/api/webhook/config/rotate-secret",
                post(routes::webhooks::rotate_secret),
            );
    }
    app.fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.config.request_timeout,
            middleware::timeout,
        ))
        .layer(axum::middleware::from_fn(middleware::track_metrics))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(middleware::trace_layer())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}
