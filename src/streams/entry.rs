//! The one codec of stream entries: what every writer puts in a stream
//! (event, redelivery and dead-letter streams alike) and every reader gets back.
//!
//! An entry is a flat list of field/value pairs, one field per event
//! attribute. Attributes with their usual value are left out (no `dedup` for
//! an event without one, no `attempt` on a first attempt), so the hot path
//! writes only what it must, and entries written before a field existed read
//! back with its default.
//!
//! An entry also carries the trace context of the request that accepted
//! (or replayed) the event, when traces are on, so its delivery and archive
//! spans join that request's trace wherever and whenever they run.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use uuid::Uuid;

use crate::{domain::EventRecord, redis::RedisError, telemetry::TraceContext};

const ID: &str = "id";
const ORGANIZATION: &str = "org";
const TYPE: &str = "type";
const CREATED_MS: &str = "ts";
const PAYLOAD: &str = "payload";
const DEDUP: &str = "dedup";
const ATTEMPT: &str = "attempt";
const SERIES_TRY: &str = "try";
const ERROR: &str = "error";
const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// An event as a stream carries it, with where it is in its delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    pub event: EventRecord,
    /// Which delivery attempt of the event this entry is, counting every
    /// series (1 for a new event).
    pub attempt: u32,
    /// The entry's position in the current retry series (0: its first try).
    pub series_try: u32,
    /// On dead-letter entries: why delivery was given up.
    pub error: Option<String>,
    /// The request the event's delivery belongs to (traces on only).
    pub trace: Option<TraceContext>,
}

impl StreamEntry {
    /// A newly accepted event: its first attempt.
    pub fn new(event: EventRecord) -> Self {
        Self {
            event,
            attempt: 1,
            series_try: 0,
            error: None,
            trace: None,
        }
    }

    /// The entry of the retry that follows this attempt.
    pub fn next_try(&self) -> Self {
        Self {
            event: self.event.clone(),
            attempt: self.attempt.saturating_add(1),
            series_try: self.series_try.saturating_add(1),
            error: None,
            // Every attempt belongs to the request that accepted the event.
            trace: self.trace.clone(),
        }
    }

    /// The field/value pairs, as `XADD` takes them.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        encode(
            &self.event,
            self.attempt,
            self.series_try,
            self.error.as_deref(),
            self.trace.as_ref(),
        )
    }

    /// The fields of a new event's entry, without building an entry (and
    /// copying the event) around it: the ingest path.
    pub fn new_event_fields(
        event: &EventRecord,
        trace: Option<&TraceContext>,
    ) -> Vec<(&'static str, String)> {
        encode(event, 1, 0, None, trace)
    }

    pub fn decode(fields: &HashMap<String, String>) -> Result<Self, RedisError> {
        let get = |name: &str| {
            fields
                .get(name)
                .ok_or_else(|| RedisError::Reply(format!("stream entry without `{name}`")))
        };
        let parse_err = |name: &str, err: &dyn std::fmt::Display| {
            RedisError::Reply(format!("stream entry `{name}`: {err}"))
        };
        let uuid = |name: &str| get(name)?.parse::<Uuid>().map_err(|e| parse_err(name, &e));
        let number = |name: &str, default: u32| match fields.get(name) {
            None => Ok(default),
            Some(raw) => raw.parse::<u32>().map_err(|e| parse_err(name, &e)),
        };
        let millis: i64 = get(CREATED_MS)?
            .parse()
            .map_err(|e| parse_err(CREATED_MS, &e))?;
        let created_at = Utc.timestamp_millis_opt(millis).single().ok_or_else(|| {
            RedisError::Reply(format!(
                "stream entry `{CREATED_MS}` out of range: {millis}"
            ))
        })?;
        Ok(Self {
            event: EventRecord {
                id: uuid(ID)?,
                organization_id: uuid(ORGANIZATION)?,
                event_type: get(TYPE)?.clone(),
                dedup_id: fields.get(DEDUP).cloned(),
                payload: get(PAYLOAD)?.clone(),
                created_at,
            },
            attempt: number(ATTEMPT, 1)?,
            series_try: number(SERIES_TRY, 0)?,
            error: fields.get(ERROR).cloned(),
            trace: fields.get(TRACEPARENT).map(|traceparent| TraceContext {
                traceparent: traceparent.clone(),
                tracestate: fields.get(TRACESTATE).cloned(),
            }),
        })
    }
}

/// Pairs flattened to `[name, value, name, value, ...]`, as scripts take them.
pub fn flatten(pairs: Vec<(&'static str, String)>) -> Vec<String> {
    pairs
        .into_iter()
        .flat_map(|(name, value)| [name.to_owned(), value])
        .collect()
}

fn encode(
    event: &EventRecord,
    attempt: u32,
    series_try: u32,
    error: Option<&str>,
    trace: Option<&TraceContext>,
) -> Vec<(&'static str, String)> {
    let mut pairs = vec![
        (ID, event.id.to_string()),
        (ORGANIZATION, event.organization_id.to_string()),
        (TYPE, event.event_type.clone()),
        (CREATED_MS, event.created_at.timestamp_millis().to_string()),
        (PAYLOAD, event.payload.clone()),
    ];
    if let Some(dedup) = &event.dedup_id {
        pairs.push((DEDUP, dedup.clone()));
    }
    if attempt != 1 || series_try != 0 {
        pairs.push((ATTEMPT, attempt.to_string()));
        pairs.push((SERIES_TRY, series_try.to_string()));
    }
    if let Some(error) = error {
        pairs.push((ERROR, error.to_owned()));
    }
    if let Some(trace) = trace {
        pairs.push((TRACEPARENT, trace.traceparent.clone()));
        if let Some(state) = &trace.tracestate {
            pairs.push((TRACESTATE, state.clone()));
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::mint_event_id;

    fn event(dedup: Option<&str>) -> EventRecord {
        let (id, created_at) = mint_event_id();
        EventRecord {
            id,
            organization_id: Uuid::now_v7(),
            event_type: "order.created".into(),
            dedup_id: dedup.map(str::to_owned),
            payload: r#"{"a":[1,2,{"b":"ü"}]}"#.into(),
            // Entries keep milliseconds.
            created_at: Utc
                .timestamp_millis_opt(created_at.timestamp_millis())
                .unwrap(),
        }
    }

    fn trace() -> TraceContext {
        TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: Some("vendor=1".into()),
        }
    }

    #[test]
    fn the_trace_context_stays_with_the_event_through_its_retries() {
        let first = StreamEntry {
            trace: Some(trace()),
            ..StreamEntry::new(event(None))
        };
        let third = first.next_try().next_try();
        assert_eq!(third.trace, Some(trace()));
        let read = StreamEntry::decode(&as_map(&third)).unwrap();
        assert_eq!(read.trace, Some(trace()));
        assert_eq!(read.attempt, 3);
        // The ingest path writes the same fields.
        assert_eq!(
            StreamEntry::new_event_fields(&first.event, first.trace.as_ref()),
            first.fields()
        );
    }

    fn as_map(entry: &StreamEntry) -> HashMap<String, String> {
        entry
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    #[test]
    fn every_kind_of_entry_survives_the_round_trip() {
        let fresh = StreamEntry::new(event(Some("o-1")));
        let retry = fresh.next_try().next_try();
        let replay = StreamEntry {
            series_try: 0,
            ..retry.clone()
        };
        let dead = StreamEntry {
            error: Some("HTTP 503".into()),
            ..StreamEntry::new(event(None))
        };
        let traced = StreamEntry {
            trace: Some(trace()),
            ..StreamEntry::new(event(None))
        };
        for entry in [fresh, retry, replay, dead, traced] {
            assert_eq!(StreamEntry::decode(&as_map(&entry)).unwrap(), entry);
        }
    }

    #[test]
    fn a_new_event_writes_only_its_own_fields() {
        let new = event(None);
        assert_eq!(
            StreamEntry::new_event_fields(&new, None),
            StreamEntry::new(new.clone()).fields()
        );
        let fields = as_map(&StreamEntry::new(new));
        let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["id", "org", "payload", "ts", "type"]);
    }

    #[test]
    fn entries_in_the_format_already_in_streams_are_read() {
        // Literally what earlier releases wrote: an accepted event, and a
        // redelivery entry of its third attempt.
        let accepted: HashMap<String, String> = [
            ("id", "0192f0a4-6c1e-7a3b-9c2d-4e5f60718293"),
            ("org", "0192f0a4-0000-7000-8000-000000000001"),
            ("type", "user.signup"),
            ("ts", "1730000000123"),
            ("payload", r#"{"n":1}"#),
            ("dedup", "d-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let entry = StreamEntry::decode(&accepted).unwrap();
        assert_eq!(entry.event.event_type, "user.signup");
        assert_eq!(entry.event.dedup_id.as_deref(), Some("d-1"));
        assert_eq!(entry.event.created_at.timestamp_millis(), 1_730_000_000_123);
        assert_eq!((entry.attempt, entry.series_try), (1, 0));

        let mut redelivery = accepted.clone();
        redelivery.insert("attempt".into(), "3".into());
        redelivery.insert("try".into(), "2".into());
        let entry = StreamEntry::decode(&redelivery).unwrap();
        assert_eq!((entry.attempt, entry.series_try), (3, 2));
        // Written before entries carried a trace context: none.
        assert_eq!(entry.trace, None);
    }

    #[test]
    fn a_damaged_entry_is_an_error_not_a_guess() {
        let mut fields = as_map(&StreamEntry::new(event(None)));
        fields.remove("payload");
        assert!(StreamEntry::decode(&fields).is_err());
        let mut fields = as_map(&StreamEntry::new(event(None)));
        fields.insert("attempt".into(), "many".into());
        assert!(StreamEntry::decode(&fields).is_err());
    }
}
