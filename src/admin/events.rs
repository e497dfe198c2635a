//! `admin events`: one archived event, of any organization.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{
    Admin, AdminError, EventsCommand,
    output::{Report, field_rows},
};
use crate::store::EventRow;

pub(super) async fn run(admin: &Admin, command: EventsCommand) -> Result<(), AdminError> {
    match command {
        EventsCommand::Get { event_id } => event(admin, event_id).await,
    }
}

/// An event as the operator sees it. The fields are in alphabetical order,
/// the order this command has always printed them in.
#[derive(Serialize)]
struct EventView {
    acknowledged_at: Option<DateTime<Utc>>,
    attempts: i32,
    created_at: DateTime<Utc>,
    dedup_id: Option<String>,
    delivered_at: Option<DateTime<Utc>>,
    id: Uuid,
    last_error: Option<String>,
    lease_count: i32,
    organization_id: Uuid,
    payload: serde_json::Value,
    status: crate::domain::EventStatus,
    #[serde(rename = "type")]
    event_type: String,
}

impl From<EventRow> for EventView {
    fn from(event: EventRow) -> Self {
        Self {
            payload: serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null),
            acknowledged_at: event.acknowledged_at,
            attempts: event.attempts,
            created_at: event.created_at,
            dedup_id: event.dedup_id,
            delivered_at: event.delivered_at,
            id: event.id,
            last_error: event.last_error,
            lease_count: event.lease_count,
            organization_id: event.organization_id,
            status: event.status,
            event_type: event.event_type,
        }
    }
}

impl Report for EventView {
    const HEADERS: &'static [&'static str] = &["field", "value"];

    fn rows(&self) -> Vec<Vec<String>> {
        field_rows(self)
    }
}

async fn event(admin: &Admin, id: Uuid) -> Result<(), AdminError> {
    let event = admin
        .store
        .event_by_id(id)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no archived event {id}")))?;
    admin.print(&EventView::from(event))
}
