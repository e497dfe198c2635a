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
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{rfc3339, rfc3339_opt};
use crate::{
    domain::{
        EventRecord, EventStatus, MAX_NAME_CHARS, Name, OrgContext, contains_nul,
        json_contains_nul, json_numbers_fit, mint_event_id,
    },
    http::{
        AppState,
        error::{ApiError, ErrorCode},
        extract::{Caller, EventId, JsonBody, Limited, QueryParams},
        schema::ErrorBody,
    },
    metrics::{
        EVENTS_ACCEPTED,
        labels::{CounterLabel, Rejected},
    },
    store::{EventRow, InboxQuery},
    streams::Admission,
    telemetry::TraceContext,
};

#[derive(Deserialize, ToSchema)]
pub struct NewEvent {
    /// What happened, e.g. `order.created`.
    #[serde(rename = "type")]
    event_type: Name,
    /// Refused with 409 when used by another event in the last 24 hours.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\x00]+$")]
    dedup_id: Option<String>,
    /// Any JSON object, stored and delivered exactly as sent; its strings
    /// may not contain U+0000, its numbers must fit a double.
    // Kept as the client's exact bytes: validated, never re-serialised.
    #[schema(schema_with = crate::http::schema::payload_ref)]
    payload: Box<RawValue>,
}

impl NewEvent {
    pub(super) fn validate(&self) -> Result<(), ApiError> {
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
        if !json_numbers_fit(self.payload.get()) {
            return Err(ApiError::Unprocessable(
                "`payload` numbers must be within the range of a double (about ±1.8e308)".into(),
            ));
        }
        if self.dedup_id.as_deref().is_some_and(contains_nul)
            || json_contains_nul(self.payload.get())
        {
            return Err(ApiError::Unprocessable(
                "strings may not contain the NUL character (U+0000)".into(),
            ));
        }
        Ok(())
    }

    /// The event as stored, with a new id whose time is its creation time.
    pub(super) fn into_record(self, organization_id: Uuid) -> EventRecord {
        let (id, created_at) = mint_event_id();
        EventRecord {
            id,
            organization_id,
            event_type: self.event_type.into_string(),
            dedup_id: self.dedup_id,
            payload: self.payload.get().to_owned(),
            created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    organization_id: Uuid,
    status: EventStatus,
    #[serde(serialize_with = "rfc3339")]
    created_at: DateTime<Utc>,
}

/// Answers an ingest request refused as a whole. An invalid request is
/// still a request: it counts against the limit, and says so.
pub(super) async fn refuse_request(
    state: &AppState,
    org: &OrgContext,
    err: ApiError,
) -> Result<Response, ApiError> {
    match err {
        ApiError::PayloadTooLarge { .. } => Rejected::TooLarge,
        _ => Rejected::Invalid,
    }
    .count();
    let limit = state.limiter.check(org).await?;
    if limit.retry_after.is_some() {
        return Err(ApiError::RateLimited(limit));
    }
    Ok((limit, err).into_response())
}

/// `POST /api/events`: 202 once Redis holds the event, with its final id.
#[utoipa::path(
    post,
    path = "/api/events",
    tag = "events",
    request_body = NewEvent,
    responses(
        (status = 202, description = "Stored: the id is the event's for good", body = Accepted),
        (status = 409, description = "`dedup_id` used in the last 24 hours; `original_id` is that event's", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<NewEvent>, ApiError>,
) -> Result<Response, ApiError> {
    let org = caller.org;
    let event = match body.and_then(|JsonBody(e)| e.validate().map(|()| e)) {
        Ok(event) => event,
        Err(err) => return refuse_request(&state, &org, err).await,
    };
    let record = event.into_record(org.organization_id);
    let (id, created_at) = (record.id, record.created_at);
    tracing::Span::current().record("event_id", tracing::field::display(id));
    let trace = TraceContext::current();
    let (admission, limit) = state.intake.admit(&org, &record, trace.as_ref()).await?;
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
            Rejected::Duplicate.count();
            Err(ApiError::Duplicate { original_id, limit })
        }
        Admission::RateLimited => {
            Rejected::RateLimited.count();
            Err(ApiError::RateLimited(limit))
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EventView {
    id: Uuid,
    organization_id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    dedup_id: Option<String>,
    #[schema(schema_with = crate::http::schema::payload_ref)]
    payload: Box<RawValue>,
    status: EventStatus,
    attempts: i32,
    last_error: Option<String>,
    #[serde(serialize_with = "rfc3339")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_opt")]
    delivered_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    acknowledged_at: Option<DateTime<Utc>>,
    /// How many times a lease has handed the event out.
    lease_count: i32,
}

impl From<EventRow> for EventView {
    fn from(row: EventRow) -> Self {
        Self {
            id: row.id,
            organization_id: row.organization_id,
            event_type: row.event_type,
            dedup_id: row.dedup_id,
            // Postgres and the intake only hold valid JSON; `null` rather
            // than a failed response should that ever not be so.
            payload: RawValue::from_string(row.payload)
                .unwrap_or_else(|_| RawValue::NULL.to_owned()),
            status: row.status,
            attempts: row.attempts,
            last_error: row.last_error,
            created_at: row.created_at,
            delivered_at: row.delivered_at,
            acknowledged_at: row.acknowledged_at,
            lease_count: row.lease_count,
        }
    }
}

/// `GET /api/events/{id}`.
#[utoipa::path(
    get,
    path = "/api/events/{id}",
    tag = "events",
    params(("id" = Uuid, Path, description = "The event's id")),
    responses((status = 200, description = "The event", body = EventView)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    Limited { caller, limit }: Limited,
    EventId(id): EventId,
) -> Result<impl IntoResponse, ApiError> {
    let row = state.events.find(caller.org.organization_id, id).await?;
    Ok((limit, Json(EventView::from(row))))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxParams {
    /// `undelivered` (default: queued, failed, dead_letter, quarantined),
    /// `all`, or a comma-separated list of statuses.
    #[param(
        pattern = r"^\s*(undelivered|all|(queued|delivered|failed|dead_letter|acknowledged|quarantined)\s*(,\s*(queued|delivered|failed|dead_letter|acknowledged|quarantined)\s*)*)?\s*$"
    )]
    status: Option<String>,
    /// Events per page (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^([A-Za-z0-9_-]{21}[AQgw])?$")]
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct InboxResponse {
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
                         dead_letter, acknowledged or quarantined (comma-separated)",
                        s.trim()
                    ))
                })
            })
            .collect(),
    }
}

/// `GET /api/inbox`: newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/inbox",
    tag = "inbox",
    params(InboxParams),
    responses(
        (status = 200, description = "A page of events, newest first", body = InboxResponse),
        (status = 400, description = "`invalid_cursor`: not a cursor we issued", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn inbox(
    State(state): State<AppState>,
    Limited { caller, limit }: Limited,
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
                .ok_or_else(|| ApiError::bad_request(ErrorCode::InvalidCursor, "invalid cursor"))?,
        ),
    };
    let page = state
        .events
        .inbox(InboxQuery {
            organization_id: caller.org.organization_id,
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
#[utoipa::path(
    post,
    path = "/api/ack/{id}",
    tag = "inbox",
    params(("id" = Uuid, Path, description = "The event's id")),
    responses((status = 200, description = "The event, acknowledged", body = EventView)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn ack(
    State(state): State<AppState>,
    Limited { caller, limit }: Limited,
    EventId(id): EventId,
) -> Result<impl IntoResponse, ApiError> {
    let row = state
        .events
        .acknowledge(caller.org.organization_id, id)
        .await?;
    Ok((limit, Json(EventView::from(row))))
}
