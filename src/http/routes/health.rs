//! Liveness, readiness and metrics: served by every role, unauthenticated.

use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde_json::json;

use crate::{http::AppState, redis};

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The process is up and serving.
pub async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Redis and Postgres answer: the process can do its work.
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let (postgres, redis) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()),
        tokio::time::timeout(CHECK_TIMEOUT, redis::ping(&state.redis)),
    );
    let describe = |ok: bool| if ok { "ok" } else { "unreachable" };
    let postgres_ok = matches!(postgres, Ok(Ok(())));
    let redis_ok = matches!(redis, Ok(Ok(())));
    let status = if postgres_ok && redis_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
        "postgres": describe(postgres_ok),
        "redis": describe(redis_ok),
    });
    (status, Json(body))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::metrics::sample_process();
    crate::metrics::sample_pools(&state.store, &state.redis);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
