//! What follows a delivery attempt: pure decisions, no I/O.

use std::time::Duration;

use rand::Rng;

use super::sender::Outcome;

/// The longest `Retry-After` honoured: a receiver cannot park events for days.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60 * 60);

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Delivered,
    /// Try again after this long.
    Retry {
        after: Duration,
    },
    /// Stop trying; `disable_webhook` when the endpoint said it is gone.
    DeadLetter {
        reason: String,
        disable_webhook: bool,
    },
}

/// The retry schedule: the delays before each retry of a failed attempt.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    schedule: Vec<Duration>,
}

impl RetryPolicy {
    pub fn new(schedule: Vec<Duration>) -> Self {
        Self { schedule }
    }

    /// A jitter factor for [`RetryPolicy::decide`]: ±10 % spreads the
    /// retries of a burst of failures.
    pub fn jitter(rng: &mut impl Rng) -> f64 {
        rng.gen_range(0.9..=1.1)
    }

    /// The decision after an attempt at position `series_try` of its retry
    /// series, with the delay's `jitter` factor given by the caller.
    pub fn decide(&self, outcome: &Outcome, series_try: u32, jitter: f64) -> Decision {
        match outcome {
            Outcome::Delivered { .. } => Decision::Delivered,
            Outcome::Gone => Decision::DeadLetter {
                reason: "endpoint answered 410 Gone; webhook disabled".into(),
                disable_webhook: true,
            },
            Outcome::Failed {
                error, retry_after, ..
            } => match self.next_delay(series_try, *retry_after, jitter) {
                Some(after) => Decision::Retry { after },
                None => Decision::DeadLetter {
                    reason: error.clone(),
                    disable_webhook: false,
                },
            },
        }
    }

    /// The wait before retry number `series_try + 1`, or `None` when the
    /// schedule is exhausted. A receiver's `Retry-After` lengthens the
    /// wait, up to a cap, and never shortens it.
    fn next_delay(
        &self,
        series_try: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Option<Duration> {
        let delay = self.schedule.get(series_try as usize)?.mul_f64(jitter);
        Some(match retry_after {
            Some(asked) => delay.max(asked.min(RETRY_AFTER_CAP)),
            None => delay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(delays: &[u64]) -> RetryPolicy {
        RetryPolicy::new(delays.iter().map(|&s| Duration::from_secs(s)).collect())
    }

    fn failed(retry_after: Option<u64>) -> Outcome {
        Outcome::Failed {
            status: Some(503),
            error: "HTTP 503".into(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    fn retry_after(decision: Decision) -> Duration {
        match decision {
            Decision::Retry { after } => after,
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    #[test]
    fn failures_follow_the_schedule_then_are_dead_lettered() {
        let policy = policy(&[10, 100]);
        assert_eq!(
            retry_after(policy.decide(&failed(None), 0, 1.0)),
            Duration::from_secs(10)
        );
        assert_eq!(
            retry_after(policy.decide(&failed(None), 1, 1.0)),
            Duration::from_secs(100)
        );
        assert_eq!(
            policy.decide(&failed(None), 2, 1.0),
            Decision::DeadLetter {
                reason: "HTTP 503".into(),
                disable_webhook: false
            }
        );
    }

    #[test]
    fn jitter_scales_the_delay() {
        let policy = policy(&[10]);
        assert_eq!(
            retry_after(policy.decide(&failed(None), 0, 0.9)),
            Duration::from_secs(9)
        );
        assert_eq!(
            retry_after(policy.decide(&failed(None), 0, 1.1)),
            Duration::from_secs(11)
        );
        let mut rng = rand::thread_rng();
        for _ in 0..100 {
            assert!((0.9..=1.1).contains(&RetryPolicy::jitter(&mut rng)));
        }
    }

    #[test]
    fn retry_after_lengthens_a_delay_up_to_a_cap_and_never_shortens_it() {
        let policy = policy(&[10, 100]);
        assert_eq!(
            retry_after(policy.decide(&failed(Some(600)), 0, 1.0)),
            Duration::from_secs(600)
        );
        assert_eq!(
            retry_after(policy.decide(&failed(Some(1)), 1, 1.0)),
            Duration::from_secs(100)
        );
        assert_eq!(
            retry_after(policy.decide(&failed(Some(86_400 * 7)), 0, 1.0)),
            RETRY_AFTER_CAP
        );
        // Past the schedule a Retry-After changes nothing: the event is done.
        assert!(matches!(
            policy.decide(&failed(Some(5)), 2, 1.0),
            Decision::DeadLetter { .. }
        ));
    }

    #[test]
    fn success_delivers_and_gone_disables_whatever_the_schedule() {
        let policy = policy(&[]);
        assert_eq!(
            policy.decide(&Outcome::Delivered { status: 204 }, 0, 1.0),
            Decision::Delivered
        );
        assert!(matches!(
            policy.decide(&Outcome::Gone, 0, 1.0),
            Decision::DeadLetter {
                disable_webhook: true,
                ..
            }
        ));
        // An empty schedule dead-letters the first failure.
        assert!(matches!(
            policy.decide(&failed(None), 0, 1.0),
            Decision::DeadLetter { .. }
        ));
    }
}
