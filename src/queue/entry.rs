//! The fields of a stream entry, and back.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use fred::prelude::Value;
use uuid::Uuid;

use crate::{domain::EventRecord, redis::RedisError};

/// On redelivery entries: which attempt of the event this is.
pub const ATTEMPT: &str = "attempt";
/// On redelivery entries: the position in the current retry series.
pub const SERIES_TRY: &str = "try";

/// The entry's fields as (name, value) pairs.
pub fn to_pairs(event: &EventRecord) -> Vec<(&'static str, String)> {
    let mut pairs = vec![
        ("id", event.id.to_string()),
        ("org", event.organization_id.to_string()),
        ("type", event.event_type.clone()),
        ("ts", event.created_at.timestamp_millis().to_string()),
        ("payload", event.payload.clone()),
    ];
    if let Some(dedup) = &event.dedup_id {
        pairs.push(("dedup", dedup.clone()));
    }
    pairs
}

/// The entry's fields flattened, as `XADD` takes them.
pub fn to_fields(event: &EventRecord) -> Vec<Value> {
    to_pairs(event)
        .into_iter()
        .flat_map(|(name, value)| [Value::from(name), Value::from(value)])
        .collect()
}

pub fn from_fields(fields: &HashMap<String, String>) -> Result<EventRecord, RedisError> {
    let get = |name: &str| {
        fields
            .get(name)
            .ok_or_else(|| RedisError::Reply(format!("stream entry without `{name}`")))
    };
    let uuid = |name: &str| {
        get(name)?
            .parse::<Uuid>()
            .map_err(|e| RedisError::Reply(format!("stream entry `{name}`: {e}")))
    };
    let millis: i64 = get("ts")?
        .parse()
        .map_err(|e| RedisError::Reply(format!("stream entry `ts`: {e}")))?;
    Ok(EventRecord {
        id: uuid("id")?,
        organization_id: uuid("org")?,
        event_type: get("type")?.clone(),
        dedup_id: fields.get("dedup").cloned(),
        payload: get("payload")?.clone(),
        created_at: Utc.timestamp_millis_opt(millis).single().ok_or_else(|| {
            RedisError::Reply(format!("stream entry `ts` out of range: {millis}"))
        })?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::mint_event_id;

    #[test]
    fn an_event_survives_the_round_trip_through_stream_fields() {
        let (id, created_at) = mint_event_id();
        let event = EventRecord {
            id,
            organization_id: Uuid::now_v7(),
            event_type: "order.created".into(),
            dedup_id: Some("o-1".into()),
            payload: r#"{"a":[1,2,{"b":"ü"}]}"#.into(),
            created_at: Utc
                .timestamp_millis_opt(created_at.timestamp_millis())
                .unwrap(),
        };
        let values = to_fields(&event);
        let map: HashMap<String, String> = values
            .chunks(2)
            .map(|kv| (kv[0].as_string().unwrap(), kv[1].as_string().unwrap()))
            .collect();
        assert_eq!(from_fields(&map).unwrap(), event);
    }
}
