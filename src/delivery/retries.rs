//! The retry schedule: when a failed delivery is tried again, and where it
//! waits meanwhile (a Redis sorted set per shard, not a sleeping task, so
//! nothing is lost when a worker restarts).

use std::time::Duration;

use fred::{prelude::*, types::scripts::Script};
use rand::Rng;

use crate::{
    domain::EventRecord,
    queue::entry,
    redis::{Keys, RedisError},
};

/// The longest `Retry-After` honoured: a receiver cannot park events for days.
const RETRY_AFTER_CAP: Duration = Duration::from_secs(60 * 60);
/// Most entries of dead-letter streams kept in Redis; Postgres keeps them all.
const DEAD_LETTER_MAXLEN: i64 = 100_000;

#[derive(Clone)]
pub struct Retries {
    pool: Pool,
    keys: Keys,
    schedule: Vec<Duration>,
    script: Script,
}

impl Retries {
    pub fn new(pool: Pool, keys: Keys, schedule: Vec<Duration>) -> Self {
        Self {
            pool,
            keys,
            schedule,
            script: Script::from_lua(include_str!("retries.lua")),
        }
    }

    /// The wait before retry number `series_try + 1`, or `None` when the
    /// schedule is exhausted. ±10 % jitter spreads retries of a burst;
    /// a receiver's `Retry-After` lengthens the wait, up to a cap.
    pub fn next_delay(&self, series_try: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let base = *self.schedule.get(series_try as usize)?;
        let jitter = rand::thread_rng().gen_range(0.9..=1.1);
        let delay = base.mul_f64(jitter);
        Some(match retry_after {
            Some(asked) => delay.max(asked.min(RETRY_AFTER_CAP)),
            None => delay,
        })
    }

    fn keys_of(&self, shard: u16) -> Vec<String> {
        vec![
            self.keys.retry_set(shard),
            self.keys.retry_data(shard),
            self.keys.redeliver(shard),
        ]
    }

    /// Schedules `attempt` of `event` (position `series_try` in its series) after `delay`.
    pub async fn schedule(
        &self,
        shard: u16,
        event: &EventRecord,
        attempt: u32,
        series_try: u32,
        delay: Duration,
    ) -> Result<(), RedisError> {
        let fields = redelivery_fields(event, attempt, series_try)?;
        let _: i64 = self
            .script
            .evalsha_with_reload(
                self.pool.next(),
                self.keys_of(shard),
                vec![
                    "schedule".to_owned(),
                    (delay.as_millis() as u64).to_string(),
                    event.id.to_string(),
                    fields,
                ],
            )
            .await?;
        Ok(())
    }

    /// Queues `event` for delivery now as `attempt`, the start of a new series.
    pub async fn replay(
        &self,
        shard: u16,
        event: &EventRecord,
        attempt: u32,
    ) -> Result<(), RedisError> {
        let fields = redelivery_fields(event, attempt, 0)?;
        let _: i64 = self
            .script
            .evalsha_with_reload(
                self.pool.next(),
                self.keys_of(shard),
                vec!["now".to_owned(), event.id.to_string(), fields],
            )
            .await?;
        Ok(())
    }

    /// Moves due retries of every shard to the redelivery streams.
    pub async fn move_due(&self, limit: u32) -> Result<u64, RedisError> {
        let mut moved = 0;
        for shard in 0..self.keys.shards() {
            let n: i64 = self
                .script
                .evalsha_with_reload(
                    self.pool.next(),
                    self.keys_of(shard),
                    vec!["move".to_owned(), limit.to_string()],
                )
                .await?;
            moved += n.max(0) as u64;
        }
        Ok(moved)
    }

    /// Scheduled retries over all shards, for metrics.
    pub async fn scheduled(&self) -> Result<u64, RedisError> {
        let mut total = 0;
        for shard in 0..self.keys.shards() {
            let n: u64 = self.pool.zcard(self.keys.retry_set(shard)).await?;
            total += n;
        }
        Ok(total)
    }

    /// Records an event whose every attempt failed in its shard's dead-letter stream.
    pub async fn dead_letter(
        &self,
        shard: u16,
        event: &EventRecord,
        error: &str,
    ) -> Result<(), RedisError> {
        let mut fields = entry::to_pairs(event);
        fields.push(("error", error.to_owned()));
        let _: String = self
            .pool
            .xadd(
                self.keys.dead_letters(shard),
                false,
                ("MAXLEN", "~", DEAD_LETTER_MAXLEN),
                "*",
                fields,
            )
            .await?;
        Ok(())
    }
}

/// The stream entry of a redelivery, as the JSON array the script unpacks.
fn redelivery_fields(
    event: &EventRecord,
    attempt: u32,
    series_try: u32,
) -> Result<String, RedisError> {
    let mut fields: Vec<String> = entry::to_pairs(event)
        .into_iter()
        .flat_map(|(name, value)| [name.to_owned(), value])
        .collect();
    fields.extend([
        entry::ATTEMPT.to_owned(),
        attempt.to_string(),
        entry::SERIES_TRY.to_owned(),
        series_try.to_string(),
    ]);
    serde_json::to_string(&fields).map_err(|e| RedisError::Reply(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(delays: &[u64]) -> Vec<Duration> {
        delays.iter().map(|&s| Duration::from_secs(s)).collect()
    }

    #[test]
    fn delays_follow_the_schedule_with_jitter_then_stop() {
        let pool = Builder::default_centralized().build_pool(1).unwrap();
        let retries = Retries::new(pool, Keys::new("t", 1), schedule(&[10, 100]));
        for _ in 0..50 {
            let first = retries.next_delay(0, None).unwrap();
            assert!((9_000..=11_000).contains(&first.as_millis()), "{first:?}");
            let second = retries.next_delay(1, None).unwrap();
            assert!(
                (90_000..=110_000).contains(&second.as_millis()),
                "{second:?}"
            );
        }
        assert_eq!(retries.next_delay(2, None), None);
        // Retry-After lengthens a delay, never shortens it, and is capped.
        let asked = retries
            .next_delay(0, Some(Duration::from_secs(600)))
            .unwrap();
        assert_eq!(asked, Duration::from_secs(600));
        let short = retries.next_delay(1, Some(Duration::from_secs(1))).unwrap();
        assert!(short >= Duration::from_secs(90));
        let capped = retries
            .next_delay(0, Some(Duration::from_secs(86_400 * 7)))
            .unwrap();
        assert_eq!(capped, RETRY_AFTER_CAP);
    }
}
