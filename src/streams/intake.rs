//! Admission of new events: rate limit, dedup and enqueue in one script.

use fred::{prelude::*, types::scripts::Script};

use super::StreamEntry;
use crate::{
    domain::{DEDUP_WINDOW_SECS, EventRecord, OrgContext},
    ratelimit::{GCRA_LUA, PERIOD, RateLimit},
    redis::{Keys, RedisError},
    telemetry::TraceContext,
};

/// What Redis decided about an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Accepted,
    /// The `dedup_id` was used by this event within the dedup window.
    Duplicate {
        original_id: String,
    },
    RateLimited,
}

#[derive(Clone)]
pub struct Intake {
    pool: Pool,
    keys: Keys,
    script: Script,
    batch_script: Script,
}

impl Intake {
    pub fn new(pool: Pool, keys: Keys) -> Self {
        let script = Script::from_lua(format!("{GCRA_LUA}\n{}", include_str!("intake.lua")));
        let batch_script =
            Script::from_lua(format!("{GCRA_LUA}\n{}", include_str!("intake_batch.lua")));
        Self {
            pool,
            keys,
            script,
            batch_script,
        }
    }

    /// Rate-limits, dedups and enqueues one event in a single round trip;
    /// `trace` is stored with it, for the spans of its delivery.
    pub async fn admit(
        &self,
        org: &OrgContext,
        event: &EventRecord,
        trace: Option<&TraceContext>,
    ) -> Result<(Admission, RateLimit), RedisError> {
        let shard = self.keys.shard_of(org.organization_id);
        let rate_key = self.keys.rate_limit(org.organization_id);
        let dedup_key = match &event.dedup_id {
            Some(dedup) => self.keys.dedup(org.organization_id, dedup),
            None => rate_key.clone(),
        };
        let keys = vec![
            rate_key,
            dedup_key,
            self.keys.stream(shard),
            self.keys.unarchived_index(shard),
        ];
        let mut args: Vec<Value> = vec![
            i64::from(org.rate_limit_per_minute.max(1)).into(),
            (PERIOD.as_millis() as i64).into(),
            (DEDUP_WINDOW_SECS as i64).into(),
            if event.dedup_id.is_some() { "1" } else { "0" }.into(),
            event.id.to_string().into(),
        ];
        args.extend(
            StreamEntry::new_event_fields(event, trace)
                .into_iter()
                .flat_map(|(name, value)| [Value::from(name), Value::from(value)]),
        );

        let reply: Vec<Value> = self
            .script
            .evalsha_with_reload(self.pool.next(), keys, args)
            .await?;
        let outcome = reply.first().and_then(Value::as_i64);
        let rest = reply.get(1..).unwrap_or(&[]);
        let limit = RateLimit::from_reply(org.rate_limit_per_minute, outcome != Some(0), rest)?;
        let admission = match outcome {
            Some(1) => Admission::Accepted,
            Some(2) => Admission::Duplicate {
                original_id: rest
                    .get(3)
                    .and_then(Value::as_string)
                    .ok_or_else(|| RedisError::Reply("duplicate without original id".into()))?,
            },
            Some(0) => Admission::RateLimited,
            other => return Err(RedisError::Reply(format!("ingest outcome {other:?}"))),
        };
        Ok((admission, limit))
    }

    /// Admits a batch of one organization's events in a single round trip,
    /// each all or nothing. `None` items are invalid events: they only count
    /// against the limit. Returns, per item, what Redis decided (`None` for
    /// a counted invalid event) and the allowance after the batch.
    /// `trace` is stored with every event, as in [`Intake::admit`].
    pub async fn admit_batch(
        &self,
        org: &OrgContext,
        items: &[Option<EventRecord>],
        trace: Option<&TraceContext>,
    ) -> Result<(Vec<Option<Admission>>, RateLimit), RedisError> {
        let organization_id = org.organization_id;
        let shard = self.keys.shard_of(organization_id);
        let mut keys = vec![
            self.keys.rate_limit(organization_id),
            self.keys.stream(shard),
            self.keys.unarchived_index(shard),
        ];
        let mut args: Vec<Value> = vec![
            i64::from(org.rate_limit_per_minute.max(1)).into(),
            (PERIOD.as_millis() as i64).into(),
            (DEDUP_WINDOW_SECS as i64).into(),
            (items.len() as i64).into(),
        ];
        for item in items {
            let Some(event) = item else {
                args.push("x".into());
                continue;
            };
            if let Some(dedup) = &event.dedup_id {
                keys.push(self.keys.dedup(organization_id, dedup));
            }
            let fields = StreamEntry::new_event_fields(event, trace);
            args.extend([
                Value::from("v"),
                Value::from(event.id.to_string()),
                Value::from(if event.dedup_id.is_some() { "1" } else { "0" }),
                Value::from((fields.len() * 2) as i64),
            ]);
            args.extend(
                fields
                    .into_iter()
                    .flat_map(|(name, value)| [Value::from(name), Value::from(value)]),
            );
        }
        let reply: Vec<Value> = self
            .batch_script
            .evalsha_with_reload(self.pool.next(), keys, args)
            .await?;
        let head = reply.get(..3).unwrap_or(&[]);
        let refused_some = head.get(2).and_then(Value::as_i64).unwrap_or(0) > 0;
        let limit = RateLimit::from_reply(org.rate_limit_per_minute, !refused_some, head)?;
        let outcomes = reply.get(3..).unwrap_or(&[]);
        if outcomes.len() != items.len() * 2 {
            return Err(RedisError::Reply(format!(
                "batch intake answered {} outcomes for {} events",
                outcomes.len() / 2,
                items.len()
            )));
        }
        let admissions = outcomes
            .chunks(2)
            .map(|pair| match pair.first().and_then(Value::as_i64) {
                Some(1) => Ok(Some(Admission::Accepted)),
                Some(2) => Ok(Some(Admission::Duplicate {
                    original_id: pair
                        .get(1)
                        .and_then(Value::as_string)
                        .ok_or_else(|| RedisError::Reply("duplicate without original id".into()))?,
                })),
                Some(0) => Ok(Some(Admission::RateLimited)),
                Some(3) => Ok(None),
                other => Err(RedisError::Reply(format!("batch outcome {other:?}"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((admissions, limit))
    }
}
