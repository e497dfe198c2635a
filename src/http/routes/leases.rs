//! Leasing inbox events: lease, acknowledge, release.

use axum::{Json, extract::State, response::IntoResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{events::EventView, rfc3339};
use crate::{
    domain::Name,
    http::{
        AppState,
        error::ApiError,
        extract::{JsonBody, Limited},
        schema::ErrorBody,
    },
    leases::{
        DEFAULT_LEASE_LIMIT, DEFAULT_LEASE_SECONDS, LEASE_SECONDS, LeaseRequest, MAX_EVENT_IDS,
        MAX_LEASE_LIMIT,
    },
};

#[derive(Deserialize, ToSchema)]
pub struct LeaseBody {
    /// Most events to lease (1–100, default 10).
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 100, default = 10)]
    #[serde(default, deserialize_with = "whole_number")]
    limit: Option<u64>,
    /// How long the lease holds, in seconds (1–3600, default 300).
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 3600, default = 300)]
    #[serde(default, deserialize_with = "whole_number")]
    lease_seconds: Option<u64>,
    /// Only events of this type.
    #[serde(rename = "type")]
    event_type: Option<Name>,
}

/// JSON Schema counts `2.0` as an integer; so do we.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(n) = number.as_u64() {
        return Ok(Some(n));
    }
    match number.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&f) => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!(
            "expected a whole number, got {number}"
        ))),
    }
}

/// A bound number, or the error saying so.
fn within(
    value: Option<u64>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
    name: &str,
) -> Result<u32, ApiError> {
    value
        .map_or(Some(default), |v| u32::try_from(v).ok())
        .filter(|v| range.contains(v))
        .ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "`{name}` must be between {} and {}",
                range.start(),
                range.end()
            ))
        })
}

impl LeaseBody {
    fn validate(self) -> Result<LeaseRequest, ApiError> {
        let limit = within(
            self.limit,
            DEFAULT_LEASE_LIMIT,
            1..=MAX_LEASE_LIMIT,
            "limit",
        )?;
        let lease_seconds = within(
            self.lease_seconds,
            DEFAULT_LEASE_SECONDS,
            LEASE_SECONDS,
            "lease_seconds",
        )?;
        Ok(LeaseRequest {
            limit,
            lease_seconds,
            event_type: self.event_type,
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct LeaseResponse {
    lease_id: Uuid,
    /// When the lease ends unless its events are acknowledged or released.
    #[serde(serialize_with = "rfc3339")]
    leased_until: DateTime<Utc>,
    /// Oldest first; empty when nothing is waiting.
    events: Vec<EventView>,
}

/// `POST /api/inbox/lease`: events no other lease gets until they are
/// acknowledged, released, or the lease expires.
#[utoipa::path(
    post,
    path = "/api/inbox/lease",
    tag = "inbox",
    request_body = LeaseBody,
    responses((status = 200, description = "The lease and its events", body = LeaseResponse)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn lease(
    State(state): State<AppState>,
    Limited { caller, limit }: Limited,
    JsonBody(body): JsonBody<LeaseBody>,
) -> Result<impl IntoResponse, ApiError> {
    let request = body.validate()?;
    let lease = state
        .leases
        .lease(caller.org.organization_id, &request)
        .await?;
    let body = LeaseResponse {
        lease_id: lease.lease_id,
        leased_until: lease.leased_until,
        events: lease.events.into_iter().map(EventView::from).collect(),
    };
    Ok((limit, Json(body)))
}

#[derive(Deserialize, ToSchema)]
pub struct LeaseAction {
    /// A lease of your organization (404 otherwise), expired or not.
    lease_id: Uuid,
    /// Only these of the lease's events (1–100); all of them when absent.
    #[schema(min_items = 1, max_items = 100)]
    event_ids: Option<Vec<Uuid>>,
}

impl LeaseAction {
    fn validate(&self) -> Result<(), ApiError> {
        match &self.event_ids {
            Some(ids) if ids.is_empty() || ids.len() > MAX_EVENT_IDS => {
                Err(ApiError::Unprocessable(format!(
                    "`event_ids` must hold 1 to {MAX_EVENT_IDS} ids, or be left out"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The named ids the lease did not hold.
    fn not_held(&self, done: &[Uuid]) -> Vec<Uuid> {
        self.event_ids
            .iter()
            .flatten()
            .filter(|id| !done.contains(id))
            .copied()
            .collect()
    }
}

#[derive(Serialize, ToSchema)]
pub struct Acknowledged {
    lease_id: Uuid,
    acknowledged: Vec<Uuid>,
    /// Named ids the lease does not hold (any more): never leased by it,
    /// acknowledged already, or leased again by another consumer after it
    /// expired. Such an event may be processed twice.
    not_held: Vec<Uuid>,
}

/// `POST /api/inbox/ack`: the consumer is done with events of its lease.
#[utoipa::path(
    post,
    path = "/api/inbox/ack",
    tag = "inbox",
    request_body = LeaseAction,
    responses(
        (status = 200, description = "What was acknowledged", body = Acknowledged),
        (status = 404, description = "Not a lease of your organization (`not_found`); an expired or finished lease of its own is 200", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn ack(
    State(state): State<AppState>,
    Limited { caller, limit }: Limited,
    JsonBody(body): JsonBody<LeaseAction>,
) -> Result<impl IntoResponse, ApiError> {
    body.validate()?;
    let acknowledged = state
        .leases
        .ack(
            caller.org.organization_id,
            body.lease_id,
            body.event_ids.as_deref(),
        )
        .await?;
    let response = Acknowledged {
        lease_id: body.lease_id,
        not_held: body.not_held(&acknowledged),
        acknowledged,
    };
    Ok((limit, Json(response)))
}

#[derive(Serialize, ToSchema)]
pub struct Released {
    lease_id: Uuid,
    released: Vec<Uuid>,
    /// Named ids the lease does not hold (any more).
    not_held: Vec<Uuid>,
}

/// `POST /api/inbox/release`: events of the lease are available again at
/// once; the lease still counts towards quarantine.
#[utoipa::path(
    post,
    path = "/api/inbox/release",
    tag = "inbox",
    request_body = LeaseAction,
    responses(
        (status = 200, description = "What was released", body = Released),
        (status = 404, description = "Not a lease of your organization (`not_found`); an expired or finished lease of its own is 200", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn release(
    State(state): State<AppState>,
    Limited { caller, limit }: Limited,
    JsonBody(body): JsonBody<LeaseAction>,
) -> Result<impl IntoResponse, ApiError> {
    body.validate()?;
    let released = state
        .leases
        .release(
            caller.org.organization_id,
            body.lease_id,
            body.event_ids.as_deref(),
        )
        .await?;
    let response = Released {
        lease_id: body.lease_id,
        not_held: body.not_held(&released),
        released,
    };
    Ok((limit, Json(response)))
}
