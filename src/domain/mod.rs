//! Types shared by every layer, free of HTTP, Redis and SQL.

mod name;
mod time_ids;

use std::{fmt, str::FromStr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest accepted request body (an event with its payload).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// Longest event type, organization name and dedup id, in characters.
pub const MAX_NAME_CHARS: usize = 255;

pub use name::{InvalidName, Name};
pub use time_ids::{first_id_at, mint_event_id, time_of};
/// How long a `dedup_id` is remembered.
pub const DEDUP_WINDOW_SECS: u64 = 24 * 60 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    Pro,
    Business,
    Enterprise,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Free, Tier::Pro, Tier::Business, Tier::Enterprise];

    /// Requests a minute an organization of this tier may make.
    pub fn requests_per_minute(self) -> u32 {
        match self {
            Tier::Free => 100,
            Tier::Pro => 1_000,
            Tier::Business => 10_000,
            Tier::Enterprise => 100_000,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Pro => "pro",
            Tier::Business => "business",
            Tier::Enterprise => "enterprise",
        }
    }
}

impl FromStr for Tier {
    type Err = UnknownTier;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTier(s.to_owned()))
    }
}

/// A tier name that is none of [`Tier::ALL`]; says which ones there are.
#[derive(Debug, thiserror::Error)]
#[error("unknown tier `{0}`: use {choices}", choices = Tier::choices())]
pub struct UnknownTier(pub String);

impl Tier {
    /// `free, pro, business or enterprise`.
    fn choices() -> String {
        let names = Tier::ALL.map(Tier::as_str);
        match names.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Accepted and waiting for its consumer.
    Queued,
    /// Pushed to the organization's webhook, which answered 2xx.
    Delivered,
    /// A delivery attempt failed; another is scheduled.
    Failed,
    /// Every delivery attempt failed.
    DeadLetter,
    /// Pulled from the inbox and acknowledged by the consumer.
    Acknowledged,
    /// Leased more times than allowed without being acknowledged: no longer
    /// leased, until it is replayed.
    Quarantined,
}

impl EventStatus {
    pub const ALL: [EventStatus; 6] = [
        EventStatus::Queued,
        EventStatus::Delivered,
        EventStatus::Failed,
        EventStatus::DeadLetter,
        EventStatus::Acknowledged,
        EventStatus::Quarantined,
    ];

    /// What the inbox shows by default: events their consumer has not had yet.
    pub const UNDELIVERED: [EventStatus; 4] = [
        EventStatus::Queued,
        EventStatus::Failed,
        EventStatus::DeadLetter,
        EventStatus::Quarantined,
    ];

    /// The states in which a lease may hand an event out: not consumed yet
    /// and not quarantined.
    pub const LEASABLE: [EventStatus; 3] = [
        EventStatus::Queued,
        EventStatus::Failed,
        EventStatus::DeadLetter,
    ];

    /// The states from which an event can be replayed: it has been pushed,
    /// or pushing it has failed.
    pub const REPLAYABLE: [EventStatus; 3] = [
        EventStatus::Delivered,
        EventStatus::Failed,
        EventStatus::DeadLetter,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Queued => "queued",
            EventStatus::Delivered => "delivered",
            EventStatus::Failed => "failed",
            EventStatus::DeadLetter => "dead_letter",
            EventStatus::Acknowledged => "acknowledged",
            EventStatus::Quarantined => "quarantined",
        }
    }
}

impl FromStr for EventStatus {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventStatus::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownValue(s.to_owned()))
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown value `{0}`")]
pub struct UnknownValue(pub String);

/// The organization an authenticated request acts for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgContext {
    pub organization_id: Uuid,
    pub key_id: Uuid,
    pub tier: Tier,
    pub rate_limit_per_minute: u32,
}

/// An accepted event as it travels through the stream to the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub event_type: String,
    pub dedup_id: Option<String>,
    /// The payload exactly as the client sent it (a JSON object).
    pub payload: String,
    pub created_at: DateTime<Utc>,
}

/// Postgres text and JSONB cannot hold U+0000, so input carrying it is
/// refused at the door rather than accepted and then impossible to archive.
pub fn contains_nul(text: &str) -> bool {
    text.contains('\0')
}

/// Whether `text` has the shape every event type must have: not blank and
/// at most [`MAX_NAME_CHARS`] characters. Event types and the patterns that
/// select them share it (NUL is refused separately, with other strings).
pub fn is_event_type(text: &str) -> bool {
    !text.trim().is_empty() && text.chars().count() <= MAX_NAME_CHARS
}

/// Whether a JSON document holds U+0000 in a string or a key. JSON can only
/// spell it `\u0000`, so documents without that sequence (nearly all) are
/// cleared without being parsed.
pub fn json_contains_nul(raw: &str) -> bool {
    fn walk(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(s) => contains_nul(s),
            serde_json::Value::Array(items) => items.iter().any(walk),
            serde_json::Value::Object(map) => map.iter().any(|(k, v)| contains_nul(k) || walk(v)),
            _ => false,
        }
    }
    raw.contains("\\u0000")
        && serde_json::from_str::<serde_json::Value>(raw).is_ok_and(|value| walk(&value))
}

/// Whether every number of a JSON document fits a double. Postgres stores
/// JSON numbers as `numeric`, which refuses exponents beyond about ±16,000
/// — an event accepted with one could never be archived — and a reader
/// parsing JSON into doubles could not read it. Documents without a long
/// digit run or an exponent (nearly all) are cleared without being parsed.
pub fn json_numbers_fit(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    let suspicious = bytes
        .windows(2)
        .any(|w| w[0].is_ascii_digit() && matches!(w[1], b'e' | b'E'))
        || bytes
            .split(|b| !b.is_ascii_digit())
            .any(|run| run.len() > 300);
    !suspicious || serde_json::from_str::<serde_json::Value>(raw).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_parse_and_carry_their_limits() {
        assert_eq!("free".parse::<Tier>().ok(), Some(Tier::Free));
        assert_eq!(Tier::Enterprise.requests_per_minute(), 100_000);
        let unknown = "gold".parse::<Tier>().expect_err("not a tier");
        assert_eq!(
            unknown.to_string(),
            "unknown tier `gold`: use free, pro, business or enterprise"
        );
    }

    #[test]
    fn nul_characters_are_found_wherever_they_hide() {
        assert!(json_contains_nul(r#"{"a":"x\u0000y"}"#));
        assert!(json_contains_nul(r#"{"a":[{"\u0000":1}]}"#));
        // An escaped backslash followed by "u0000" is plain text.
        assert!(!json_contains_nul(r#"{"a":"\\u0000"}"#));
        assert!(!json_contains_nul(r#"{"a":"plain"}"#));
        assert!(contains_nul("a\0b"));
    }

    #[test]
    fn numbers_beyond_a_double_are_found() {
        assert!(json_numbers_fit(
            r#"{"a":1.5e10,"b":"3e999999 in a string"}"#
        ));
        assert!(json_numbers_fit(r#"{"a":12345678901234567890123}"#));
        assert!(!json_numbers_fit(r#"{"a":1e400}"#));
        assert!(!json_numbers_fit(r#"{"a":[1E200000]}"#));
    }
}
