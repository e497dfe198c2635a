//! `POST /api/events/batch`: up to a thousand events in one request and one
//! Redis round trip, each admitted or refused on its own.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    events::{NewEvent, refuse_request},
    rfc3339_opt,
};
use crate::{
    domain::EventRecord,
    http::{
        AppState,
        error::{ApiError, ErrorCode},
        extract::{Caller, JsonBody, parse_json},
        schema::ErrorBody,
    },
    metrics::EVENTS_ACCEPTED,
    metrics::labels::{CounterLabel, Rejected},
    ratelimit::RateLimit,
    streams::Admission,
    telemetry::TraceContext,
};

/// Most events in one batch.
pub const MAX_BATCH_EVENTS: usize = 1_000;
/// Largest batch body.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

#[derive(Deserialize, ToSchema)]
pub struct Batch {
    /// Parsed one by one, so one malformed event refuses only itself.
    #[schema(value_type = Vec<NewEvent>, min_items = 1, max_items = 1000)]
    events: Vec<Box<RawValue>>,
}

/// What became of one event of the batch: the status and body that
/// `POST /api/events` would have answered for it alone.
#[derive(Serialize, ToSchema)]
pub struct ItemResult {
    /// 202, 409, 422 or 429.
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Uuid>,
    #[serde(
        serialize_with = "rfc3339_opt",
        skip_serializing_if = "Option::is_none"
    )]
    created_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    original_id: Option<String>,
}

impl ItemResult {
    fn refused(status: StatusCode, code: ErrorCode, error: String) -> Self {
        Self {
            status: status.as_u16(),
            id: None,
            created_at: None,
            code: Some(code),
            error: Some(error),
            original_id: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BatchResult {
    accepted: usize,
    refused: usize,
    /// One per event, in the order sent.
    results: Vec<ItemResult>,
}

/// A refused batch: the results of its events, or the request's error.
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum BatchRefused {
    Results(BatchResult),
    Error(ErrorBody),
}

/// Answers 200 with a result per event; 429 (with the same body) only when
/// the limit refused every event, so a client backs off without reading it.
#[utoipa::path(
    post,
    path = "/api/events/batch",
    tag = "events",
    request_body = Batch,
    responses(
        (status = 200, description = "A result per event, in order", body = BatchResult),
        (status = 413, description = "The body is over 1 MiB (`payload_too_large`)", body = ErrorBody),
        (status = 429, description = "The rate limit refused every event (the results), or the request itself", body = BatchRefused),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn ingest_batch(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<Batch>, ApiError>,
) -> Result<Response, ApiError> {
    let org = caller.org;
    let batch = body.and_then(|JsonBody(batch)| {
        if (1..=MAX_BATCH_EVENTS).contains(&batch.events.len()) {
            Ok(batch)
        } else {
            Err(ApiError::Unprocessable(format!(
                "`events` must hold 1 to {MAX_BATCH_EVENTS} events"
            )))
        }
    });
    let batch = match batch {
        Ok(batch) => batch,
        Err(err) => return refuse_request(&state, &org, err).await,
    };
    // Invalid events keep their place (and count against the limit).
    let parsed: Vec<Result<NewEvent, ApiError>> = batch
        .events
        .iter()
        .map(|raw| {
            parse_json::<NewEvent>(raw.get().as_bytes()).and_then(|e| e.validate().map(|()| e))
        })
        .collect();
    let mut invalid: Vec<Option<ApiError>> = Vec::with_capacity(parsed.len());
    let mut records = Vec::with_capacity(parsed.len());
    for item in parsed {
        match item {
            Ok(event) => {
                invalid.push(None);
                records.push(Some(event.into_record(org.organization_id)));
            }
            Err(err) => {
                invalid.push(Some(err));
                records.push(None);
            }
        }
    }
    let trace = TraceContext::current();
    let (admissions, limit) = state
        .intake
        .admit_batch(&org, &records, trace.as_ref())
        .await?;

    let mut results = Vec::with_capacity(records.len());
    for ((record, invalid), admission) in records.into_iter().zip(invalid).zip(admissions) {
        // A valid event always gets an admission, and an invalid one never
        // an acceptance: anything else is a broken script reply.
        let result = item_result(record, invalid, admission, limit)
            .ok_or_else(|| ApiError::Internal("batch intake answered out of order".into()))?;
        results.push(result);
    }
    let accepted = results
        .iter()
        .filter(|r| r.status == StatusCode::ACCEPTED.as_u16())
        .count();
    metrics::counter!(EVENTS_ACCEPTED).increment(accepted as u64);
    let all_limited = results
        .iter()
        .all(|r| r.status == StatusCode::TOO_MANY_REQUESTS.as_u16());
    let status = if all_limited {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::OK
    };
    let body = BatchResult {
        accepted,
        refused: results.len() - accepted,
        results,
    };
    Ok((status, limit, Json(body)).into_response())
}

/// What became of one event: refused as invalid, or by the intake's
/// admission. `None` when the two do not fit together.
fn item_result(
    record: Option<EventRecord>,
    invalid: Option<ApiError>,
    admission: Option<Admission>,
    limit: RateLimit,
) -> Option<ItemResult> {
    let result = match (record, invalid, admission) {
        (_, _, Some(Admission::RateLimited)) => {
            Rejected::RateLimited.count();
            ItemResult::refused(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "rate limit exceeded".into(),
            )
        }
        (_, Some(err), _) => {
            Rejected::Invalid.count();
            ItemResult::refused(err.status(), err.code(), err.to_string())
        }
        (Some(record), None, Some(Admission::Accepted)) => ItemResult {
            status: StatusCode::ACCEPTED.as_u16(),
            id: Some(record.id),
            created_at: Some(record.created_at),
            code: None,
            error: None,
            original_id: None,
        },
        (_, None, Some(Admission::Duplicate { original_id })) => {
            Rejected::Duplicate.count();
            let err = ApiError::Duplicate {
                original_id: original_id.clone(),
                limit,
            };
            ItemResult {
                original_id: Some(original_id),
                ..ItemResult::refused(err.status(), err.code(), err.to_string())
            }
        }
        _ => return None,
    };
    Some(result)
}
