//! Liveness, readiness and metrics: served by every role, unauthenticated.

use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{http::AppState, redis};

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    NotReady,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reachability {
    Ok,
    Unreachable,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    status: ReadyStatus,
    postgres: Reachability,
    redis: Reachability,
}

/// The process is up and serving.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses((status = 200, description = "Alive", body = Health)),
)]
pub async fn health() -> impl IntoResponse {
    Json(Health { status: "ok" })
}

/// Redis and Postgres answer: the process can do its work.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Redis and Postgres answer", body = Readiness),
        (status = 503, description = "Redis or Postgres does not answer", body = Readiness),
    ),
)]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let (postgres, redis) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()),
        tokio::time::timeout(CHECK_TIMEOUT, redis::ping(&state.redis)),
    );
    let describe = |ok: bool| {
        if ok {
            Reachability::Ok
        } else {
            Reachability::Unreachable
        }
    };
    let postgres_ok = matches!(postgres, Ok(Ok(())));
    let redis_ok = matches!(redis, Ok(Ok(())));
    let status = if postgres_ok && redis_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if status == StatusCode::OK {
            ReadyStatus::Ready
        } else {
            ReadyStatus::NotReady
        },
        postgres: describe(postgres_ok),
        redis: describe(redis_ok),
    };
    (status, Json(body))
}

/// Prometheus metrics of this process.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")),
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    crate::metrics::sample_process();
    crate::metrics::sample_pools(&state.store, &state.redis);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
