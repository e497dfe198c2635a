//! Webhook settings, delivery history and replays.

use axum::{Json, body::Bytes, extract::State, http::StatusCode, response::IntoResponse};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{rfc3339, rfc3339_opt};
use crate::{
    domain::EventStatus,
    http::{
        AppState,
        error::ApiError,
        extract::{EventId, JsonBody, Limited, parse_json},
        schema::ErrorBody,
    },
    store::{AttemptRow, SECRET_ROTATION_GRACE_HOURS},
    webhook::{self, address},
};

/// Most dead letters one `POST /api/dlq/replay` call replays.
const DLQ_REPLAY_BATCH: usize = 1_000;

#[derive(Deserialize, ToSchema)]
pub struct WebhookConfig {
    /// An http or https URL of a public address.
    #[schema(format = "uri")]
    webhook_url: String,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookConfigured {
    webhook_url: String,
    enabled: bool,
    /// `whsec_…`: verify `webhook-signature` with it.
    secret: String,
}

/// `POST /api/webhook/config`: where to push; (re-)enables pushing.
#[utoipa::path(
    post,
    path = "/api/webhook/config",
    tag = "webhooks",
    request_body = WebhookConfig,
    responses((status = 200, description = "The webhook and its signing secret", body = WebhookConfigured)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn configure(
    State(state): State<AppState>,
    Limited { caller, limit }: Limited,
    JsonBody(config): JsonBody<WebhookConfig>,
) -> Result<impl IntoResponse, ApiError> {
    let url = address::validate(&config.webhook_url, state.allow_private_webhooks)
        .await
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let secret = state
        .store
        .set_webhook(
            caller.org.organization_id,
            url.as_str(),
            &webhook::generate_secret(),
        )
        .await?;
    tracing::info!(organization_id = %caller.org.organization_id, "webhook configured");
    let body = WebhookConfigured {
        webhook_url: url.to_string(),
        enabled: true,
        secret,
    };
    Ok((limit, Json(body)))
}

#[derive(Serialize, ToSchema)]
pub struct SecretRotated {
    secret: String,
    /// Until then messages are signed with the previous secret as well.
    #[serde(serialize_with = "rfc3339")]
    previous_secret_expires_at: DateTime<Utc>,
}

/// `POST /api/webhook/config/rotate-secret`: a new signing secret; the old
/// one keeps signing alongside it for a grace period.
#[utoipa::path(
    post,
    path = "/api/webhook/config/rotate-secret",
    tag = "webhooks",
    responses(
        (status = 200, description = "The new signing secret", body = SecretRotated),
        (status = 404, description = "No webhook is configured", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Limited { caller, limit }: Limited,
) -> Result<impl IntoResponse, ApiError> {
    let secret = webhook::generate_secret();
    let rotated_at = state
        .store
        .rotate_webhook_secret(caller.org.organization_id, &secret)
        .await?
        .ok_or(ApiError::NotFound("no webhook is configured"))?;
    let body = SecretRotated {
        secret,
        previous_secret_expires_at: rotated_at + Duration::hours(SECRET_ROTATION_GRACE_HOURS),
    };
    Ok((limit, Json(body)))
}

#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    event_id: Uuid,
    attempt: i32,
    #[serde(serialize_with = "rfc3339")]
    attempted_at: DateTime<Utc>,
    duration_ms: i32,
    response_status: Option<i32>,
    error: Option<String>,
    #[serde(serialize_with = "rfc3339_opt")]
    next_retry_at: Option<DateTime<Utc>>,
}

impl From<AttemptRow> for AttemptView {
    fn from(row: AttemptRow) -> Self {
        Self {
            event_id: row.event_id,
            attempt: row.attempt,
            attempted_at: row.attempted_at,
            duration_ms: row.duration_ms,
            response_status: row.response_status,
            error: row.error,
            next_retry_at: row.next_retry_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Attempts {
    /// Oldest first.
    attempts: Vec<AttemptView>,
}

/// `GET /api/events/{id}/attempts`: every delivery attempt, oldest first.
#[utoipa::path(
    get,
    path = "/api/events/{id}/attempts",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The event's id")),
    responses((status = 200, description = "The event's delivery attempts", body = Attempts)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn attempts(
    State(state): State<AppState>,
    Limited { caller, limit }: Limited,
    EventId(id): EventId,
) -> Result<impl IntoResponse, ApiError> {
    let attempts = state
        .events
        .attempts(caller.org.organization_id, id)
        .await?;
    let attempts: Vec<AttemptView> = attempts.into_iter().map(AttemptView::from).collect();
    Ok((limit, Json(Attempts { attempts })))
}

#[derive(Serialize, ToSchema)]
pub struct Replayed {
    id: Uuid,
    status: EventStatus,
}

/// `POST /api/events/{id}/replay`: a delivered, failed or dead-lettered event
/// goes out again, as a new series of attempts; a quarantined event goes
/// back to the inbox, to be leased again.
#[utoipa::path(
    post,
    path = "/api/events/{id}/replay",
    tag = "webhooks",
    params(("id" = Uuid, Path, description = "The event's id")),
    responses(
        (status = 202, description = "Queued again", body = Replayed),
        (status = 409, description = "No webhook is configured, or the event has nothing to replay yet", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn replay(
    State(state): State<AppState>,
    Limited { caller, limit }: Limited,
    EventId(id): EventId,
) -> Result<impl IntoResponse, ApiError> {
    state.events.replay(caller.org.organization_id, id).await?;
    let body = Replayed {
        id,
        status: EventStatus::Queued,
    };
    Ok((StatusCode::ACCEPTED, limit, Json(body)))
}

#[derive(Deserialize, ToSchema)]
pub struct DlqReplay {
    /// Only events dead-lettered at or after this time (RFC 3339).
    #[serde(default)]
    #[schema(pattern = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")]
    since: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct DlqReplayed {
    replayed: usize,
    /// More dead letters are left: call again.
    has_more: bool,
}

/// `POST /api/dlq/replay`: the organization's dead-lettered events (those
/// dead-lettered at or after `since`, if given) go out again.
#[utoipa::path(
    post,
    path = "/api/dlq/replay",
    tag = "webhooks",
    request_body(content = Option<DlqReplay>, description = "Optional: no body replays every dead letter"),
    responses(
        (status = 202, description = "Queued again", body = DlqReplayed),
        (status = 409, description = "No webhook is configured", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn replay_dead_letters(
    State(state): State<AppState>,
    Limited { caller, limit }: Limited,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    // The body is optional: none (or `null`) means every dead letter.
    let since = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        parse_json::<Option<DlqReplay>>(&body)?.and_then(|r| r.since)
    };
    let batch = state
        .events
        .replay_dead_letters(caller.org.organization_id, since, DLQ_REPLAY_BATCH)
        .await?;
    let body = DlqReplayed {
        replayed: batch.replayed,
        has_more: batch.has_more,
    };
    Ok((StatusCode::ACCEPTED, limit, Json(body)))
}
