pub mod batch;
pub mod events;
pub mod health;
pub mod keys;
pub mod leases;
pub mod webhooks;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

/// Timestamps are RFC 3339 in UTC with milliseconds, everywhere.
pub fn rfc3339<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

pub fn rfc3339_opt<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, s),
        None => s.serialize_none(),
    }
}
