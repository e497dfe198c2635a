//! Sending events, reading them back, and acknowledging them.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, value::RawValue};
use uuid::Uuid;

use super::{rfc3339, rfc3339_opt};
use crate::{
    domain::{
        EventRecord, EventStatus, MAX_NAME_CHARS, contains_nul, json_contains_nul, mint_event_id,
    },
    http::{
        AppState,
        error::ApiError,
        extract::{ApiKey, EventId, JsonBody, Limited, QueryParams},
    },
    metrics::{EVENTS_ACCEPTED, EVENTS_REJECTED},
    queue::Admission,
    store::{EventRow, InboxQuery},
};

#[derive(Deserialize)]
pub struct NewEvent {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    dedup_id: Option<String>,
    /// Kept as the client's exact bytes: validated, never re-serialised.
    payload: Box<RawValue>,
}

impl NewEvent {
    fn validate(&self) -> Result<(), ApiError> {
        let chars = self.event_type.chars().count();
        if self.event_type.trim().is_empty() || chars > MAX_NAME_CHARS {
            return Err(ApiError::Unprocessable(format!(
                "`type` must be a non-empty string of at most {MAX_NAME_CHARS} characters"
            )));
        }
        if let Some(dedup) = &self.dedup_id {
            if dedup.is_empty() || dedup.chars().count() > MAX_NAME_CHARS {
                return Err(ApiError::Unprocessable(format!(
                    "`dedup_id` must be a non-empty string of at most {MAX_NAME_CHARS} characters"
                )));
            }
        }
        if !self.payload.get().starts_with('{') {
            return Err(ApiError::Unprocessable(
                "`payload` must be a JSON object".into(),
            ));
        }
        if contains_nul(&self.event_type)
            || self.dedup_id.as_deref().is_some_and(contains_nul)
            || json_contains_nul(self.payload.get())
        {
            return Err(ApiError::Unprocessable(
                "strings may not contain the NUL character (U+0000)".into(),
            ));
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Accepted {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    organization_id: Uuid,
    status: EventStatus,
    #[serde(serialize_with = "rfc3339")]
    created_at: DateTime<Utc>,
}

fn rejected(reason: &'static str) {
    metrics::counter!(EVENTS_REJECTED, "reason" => reason).increment(1);
}

/// `POST /api/events`: 202 once Redis holds the event, with its final id.
pub async fn ingest(
    State(state): State<AppState>,
    key: ApiKey,
    body: Result<JsonBody<NewEvent>, ApiError>,
) -> Result<Response, ApiError> {
    let org = key.org;
    let event = match body.and_then(|JsonBody(e)| e.validate().map(|()| e)) {
        Ok(event) => event,
        Err(err) => {
            rejected(match err {
                ApiError::PayloadTooLarge => "too_large",
                _ => "invalid",
            });
            // An invalid request is still a request: it counts, and says so.
            let limit = state.limiter.check(&org).await?;
            if limit.retry_after.is_some() {
                return Err(ApiError::RateLimited(limit));
            }
            return Ok((limit, err).into_response());
        }
    };
    let (id, created_at) = mint_event_id();
    tracing::Span::current().record("event_id", tracing::field::display(id));
    let record = EventRecord {
        id,
        organization_id: org.organization_id,
        event_type: event.event_type,
        dedup_id: event.dedup_id,
        payload: event.payload.get().to_owned(),
        created_at,
    };
    let (admission, limit) = state.queue.enqueue(&org, &record).await?;
    match admission {
        Admission::Accepted => {
            metrics::counter!(EVENTS_ACCEPTED).increment(1);
            let body = Accepted {
                id,
                event_type: record.event_type,
                organization_id: org.organization_id,
                status: EventStatus::Queued,
                created_at,
            };
            Ok((StatusCode::ACCEPTED, limit, Json(body)).into_response())
        }
        Admission::Duplicate { original_id } => {
            rejected("duplicate");
            Err(ApiError::Duplicate { original_id, limit })
        }
        Admission::RateLimited => {
            rejected("rate_limited");
            Err(ApiError::RateLimited(limit))
        }
    }
}

#[derive(Serialize)]
pub struct EventView {
    id: Uuid,
    organization_id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    dedup_id: Option<String>,
    payload: Value,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_opt")]
    delivered_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    acknowledged_at: Option<DateTime<Utc>>,
}

impl From<EventRow> for EventView {
    fn from(row: EventRow) -> Self {
        Self {
            id: row.id,
            organization_id: row.organization_id,
            event_type: row.event_type,
            dedup_id: row.dedup_id,
            payload: row.payload,
            status: row.status,
            attempts: row.attempts,
            last_error: row.last_error,
            created_at: row.created_at,
            delivered_at: row.delivered_at,
            acknowledged_at: row.acknowledged_at,
        }
    }
}

impl From<EventRecord> for EventView {
    fn from(record: EventRecord) -> Self {
        Self {
            id: record.id,
            organization_id: record.organization_id,
            event_type: record.event_type,
            dedup_id: record.dedup_id,
            payload: serde_json::from_str(&record.payload).unwrap_or(Value::Null),
            status: EventStatus::Queued.as_str().to_owned(),
            attempts: 0,
            last_error: None,
            created_at: record.created_at,
            delivered_at: None,
            acknowledged_at: None,
        }
    }
}

/// One of the organization's events: from the archive, or from its stream
/// when the archiver has not written it yet.
pub async fn find(
    state: &AppState,
    organization_id: Uuid,
    id: Uuid,
) -> Result<EventView, ApiError> {
    if let Some(row) = state.store.event(organization_id, id).await? {
        return Ok(row.into());
    }
    if let Some(record) = state.queue.unarchived(organization_id, id).await? {
        return Ok(record.into());
    }
    // Archived between the two looks.
    state
        .store
        .event(organization_id, id)
        .await?
        .map(EventView::from)
        .ok_or(ApiError::NotFound("event not found"))
}

/// `GET /api/events/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Limited { key, limit }: Limited,
    EventId(id): EventId,
) -> Result<impl IntoResponse, ApiError> {
    let view = find(&state, key.org.organization_id, id).await?;
    Ok((limit, Json(view)))
}

#[derive(Deserialize)]
pub struct InboxParams {
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct InboxResponse {
    events: Vec<EventView>,
    next_cursor: Option<String>,
    has_more: bool,
}

fn parse_statuses(raw: Option<&str>) -> Result<Vec<EventStatus>, ApiError> {
    match raw.map(str::trim) {
        None | Some("") | Some("undelivered") => Ok(EventStatus::UNDELIVERED.to_vec()),
        Some("all") => Ok(EventStatus::ALL.to_vec()),
        Some(list) => list
            .split(',')
            .map(|s| {
                s.trim().parse::<EventStatus>().map_err(|_| {
                    ApiError::Unprocessable(format!(
                        "unknown status `{}`: use undelivered, all, queued, delivered, failed, \
                         dead_letter or acknowledged (comma-separated)",
                        s.trim()
                    ))
                })
            })
            .collect(),
    }
}

/// `GET /api/inbox`: newest first, a page at a time.
pub async fn inbox(
    State(state): State<AppState>,
    Limited { key, limit }: Limited,
    QueryParams(params): QueryParams<InboxParams>,
) -> Result<impl IntoResponse, ApiError> {
    let statuses = parse_statuses(params.status.as_deref())?;
    let page_size = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&page_size) {
        return Err(ApiError::Unprocessable(
            "`limit` must be between 1 and 1000".into(),
        ));
    }
    let before = match params.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(cursor) => Some(
            URL_SAFE_NO_PAD
                .decode(cursor)
                .ok()
                .and_then(|bytes| Uuid::from_slice(&bytes).ok())
                .ok_or_else(|| ApiError::bad_request("invalid_cursor", "invalid cursor"))?,
        ),
    };
    let page = state
        .store
        .inbox(InboxQuery {
            organization_id: key.org.organization_id,
            statuses: &statuses,
            before,
            limit: page_size,
        })
        .await?;
    let next_cursor = page
        .has_more
        .then(|| {
            page.events
                .last()
                .map(|e| URL_SAFE_NO_PAD.encode(e.id.as_bytes()))
        })
        .flatten();
    let body = InboxResponse {
        has_more: page.has_more,
        next_cursor,
        events: page.events.into_iter().map(EventView::from).collect(),
    };
    Ok((limit, Json(body)))
}

/// `POST /api/ack/{id}`: the consumer has the event. Idempotent.
pub async fn ack(
    State(state): State<AppState>,
    Limited { key, limit }: Limited,
    EventId(id): EventId,
) -> Result<impl IntoResponse, ApiError> {
    let org_id = key.org.organization_id;
    let row = match state.store.acknowledge(org_id, id).await? {
        Some(row) => row,
        None => match state.queue.unarchived(org_id, id).await? {
            Some(record) => state.store.archive_acknowledged(&record).await?,
            None => state
                .store
                .acknowledge(org_id, id)
                .await?
                .ok_or(ApiError::NotFound("event not found"))?,
        },
    };
    Ok((limit, Json(EventView::from(row))))
}
