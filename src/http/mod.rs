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
mod openapi;
mod routes;
mod schema;
pub mod server;

use std::{sync::Arc, time::Duration};

use axum::{Router, extract::DefaultBodyLimit};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
};

use crate::{
    auth::Authenticator, config::SignUp, domain::MAX_BODY_BYTES, events::Events, leases::Leases,
    ratelimit::RateLimiter, retention::RetentionPolicy, store::Store, streams::Intake,
};

/// Everything a handler may need, behind one `Arc`: axum clones the state
/// for every extractor of every request, so a clone must be one increment.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

pub struct Services {
    /// What this process serves, and how long a request may take.
    pub serving: Serving,
    /// Who may create organizations.
    pub sign_up: SignUp,
    /// How long each tier keeps its events, as organizations are told.
    pub retention: RetentionPolicy,
    /// Whether webhooks may point at private addresses.
    pub allow_private_webhooks: bool,
    /// The header naming the client's address, set by a trusted proxy.
    pub client_ip_header: Option<String>,
    /// Organizations, keys and webhook settings.
    pub store: Store,
    /// For readiness checks.
    pub redis: fred::prelude::Pool,
    pub intake: Intake,
    pub events: Events,
    pub auth: Authenticator,
    pub limiter: RateLimiter,
    pub leases: Leases,
    pub metrics: PrometheusHandle,
}

/// What the router serves and how long it lets a request take.
#[derive(Debug, Clone, Copy)]
pub struct Serving {
    /// The public API's routes (`/api/…`), not only the operations routes.
    pub api: bool,
    pub request_timeout: Duration,
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
    // Routes come from the OpenAPI router, so the document describes
    // exactly what is served (see `routes`).
    let mut app: Router<AppState> = routes::operations_routes().into();
    if state.serving.api {
        app = app.merge(Router::from(routes::api_routes()));
    }
    app.fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.serving.request_timeout,
            middleware::timeout,
        ))
        .layer(axum::middleware::from_fn(middleware::track_metrics))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(middleware::trace_layer())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}
