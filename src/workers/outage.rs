//! The one policy for a dependency that is away: retry an operation while
//! its error says Postgres or Redis is unreachable, pausing with a capped
//! exponential back-off, and give up at once on any other error (a refused
//! query, a script error: retrying those cannot help) or when the process
//! is shutting down.
//!
//! Workers wait out an outage rather than drop what they hold: a batch in
//! hand moves as soon as the dependency answers again, not a visibility
//! timeout later.

use std::{future::Future, time::Duration};

use tokio_util::sync::CancellationToken;

/// The first pause after a failure.
const FIRST_PAUSE: Duration = Duration::from_millis(50);

/// How long to pause between attempts, and when to stop waiting.
#[derive(Debug, Clone)]
pub struct WaitOut {
    /// The longest pause: about how late work resumes once the dependency
    /// is back.
    max_pause: Duration,
    /// Cancelled at shutdown: the operation's last error is returned then.
    shutdown: CancellationToken,
}

impl WaitOut {
    pub fn new(max_pause: Duration, shutdown: CancellationToken) -> Self {
        Self {
            max_pause: max_pause.max(FIRST_PAUSE),
            shutdown,
        }
    }

    /// Runs `operation` until it succeeds, fails with an error
    /// `should_retry` does not accept, or shutdown begins while it fails.
    /// Every retried failure is logged with `what` was being done.
    pub async fn run<T, E, F, Fut>(
        &self,
        what: &str,
        should_retry: impl Fn(&E) -> bool,
        mut operation: F,
    ) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut pause = FIRST_PAUSE;
        loop {
            let err = match operation().await {
                Ok(value) => return Ok(value),
                Err(err) if !should_retry(&err) || self.shutdown.is_cancelled() => return Err(err),
                Err(err) => err,
            };
            tracing::error!(error = %err, retry_in = ?pause, "{what}: dependency unavailable; retrying");
            tokio::select! {
                () = self.shutdown.cancelled() => return Err(err),
                () = tokio::time::sleep(pause) => {}
            }
            pause = self.next_pause(pause);
        }
    }

    fn next_pause(&self, pause: Duration) -> Duration {
        (pause * 2).min(self.max_pause)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug, PartialEq)]
    enum Failure {
        Away,
        Refused,
    }

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    fn away(err: &Failure) -> bool {
        *err == Failure::Away
    }

    #[test]
    fn pauses_double_up_to_the_cap() {
        let wait = WaitOut::new(Duration::from_millis(300), CancellationToken::new());
        let mut pauses = vec![FIRST_PAUSE];
        for _ in 0..4 {
            pauses.push(wait.next_pause(*pauses.last().unwrap()));
        }
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [50, 100, 200, 300, 300]);
        let tiny = WaitOut::new(Duration::ZERO, CancellationToken::new());
        assert_eq!(tiny.next_pause(FIRST_PAUSE), FIRST_PAUSE);
    }

    #[tokio::test]
    async fn an_outage_is_waited_out_and_anything_else_returned_at_once() {
        let wait = WaitOut::new(Duration::from_millis(100), CancellationToken::new());
        let calls = AtomicU32::new(0);
        let result = wait
            .run("test", away, || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0..=2 => Err(Failure::Away),
                    n => Ok(n),
                }
            })
            .await;
        assert_eq!(result, Ok(3));

        calls.store(0, Ordering::SeqCst);
        let result: Result<(), Failure> = wait
            .run("test", away, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Failure::Refused)
            })
            .await;
        assert_eq!(result, Err(Failure::Refused));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn shutdown_ends_the_wait_with_the_last_error() {
        let shutdown = CancellationToken::new();
        let wait = WaitOut::new(Duration::from_secs(1), shutdown.clone());
        let calls = AtomicU32::new(0);
        let result: Result<(), Failure> = wait
            .run("test", away, || async {
                if calls.fetch_add(1, Ordering::SeqCst) == 1 {
                    shutdown.cancel();
                }
                Err(Failure::Away)
            })
            .await;
        assert_eq!(result, Err(Failure::Away));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
