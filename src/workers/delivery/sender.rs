//! One webhook request and what came of it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{StatusCode, Url, header};

use crate::{
    config::WebhookSettings,
    domain::EventRecord,
    store::WebhookTarget,
    telemetry::TraceContext,
    webhook::{self, address},
};

/// Longest error text kept with an attempt.
const MAX_ERROR_CHARS: usize = 1_000;
/// Most of a response body read (and thrown away) so the connection can be reused.
const MAX_DRAINED_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered { status: u16 },
    /// 410: the endpoint is gone for good; stop pushing to it.
    Gone,
    /// Anything else: another status, a timeout, a connection error.
    Failed {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
}

/// What one request came to.
#[derive(Debug, Clone)]
pub struct Sent {
    pub outcome: Outcome,
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
}

/// The shared HTTP client: pooled connections, rustls, no redirects (a
/// redirect could lead anywhere, including inside our network), and unless
/// private targets are allowed, a resolver that never yields an internal address.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
    /// Send the delivery span's `traceparent` to the endpoint (opt-in: it
    /// shows receivers our internal trace ids).
    traceparent: bool,
    /// Longest a whole request may take.
    timeout: Duration,
}

impl Sender {
    pub fn new(settings: &WebhookSettings) -> Result<Self, reqwest::Error> {
        let allow_private = settings.allow_private_webhooks;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(settings.webhook_connect_timeout)
            .timeout(settings.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("triggers-api/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(64);
        if !allow_private {
            builder = builder.dns_resolver(address::guarded_resolver());
        }
        Ok(Self {
            client: builder.build()?,
            allow_private,
            traceparent: settings.webhook_traceparent,
            timeout: settings.webhook_timeout,
        })
    }

    /// Longest a whole request may take, response included.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub async fn send(&self, target: &WebhookTarget, event: &EventRecord) -> Sent {
        let started_at = Utc::now();
        let clock = Instant::now();
        let outcome = self.try_send(target, event, started_at).await;
        Sent {
            outcome,
            started_at,
            duration: clock.elapsed(),
        }
    }

    async fn try_send(
        &self,
        target: &WebhookTarget,
        event: &EventRecord,
        now: DateTime<Utc>,
    ) -> Outcome {
        let failed = |error: String| Outcome::Failed {
            status: None,
            error: truncate(error),
            retry_after: None,
        };
        let url = match Url::parse(&target.webhook_url) {
            Ok(url) => url,
            Err(err) => return failed(format!("invalid webhook URL: {err}")),
        };
        if !self.allow_private {
            if let Some(ip) = address::forbidden_literal(&url) {
                return failed(format!("refused: {ip} is an internal address"));
            }
        }
        let body = webhook::message_body(event);
        let msg_id = event.id.to_string();
        // `webhook-timestamp`: seconds since the epoch.
        let timestamp = now.timestamp();
        let signature = webhook::signature(&target.signing_secrets(now), &msg_id, timestamp, &body);
        let mut request = self
            .client
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header("webhook-id", msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature);
        if let Some(trace) = self.traceparent.then(TraceContext::current).flatten() {
            for (name, value) in trace.headers() {
                request = request.header(name, value);
            }
        }
        let response = request.body(body).send().await;
        let mut response = match response {
            Ok(response) => response,
            Err(err) => return failed(describe(&err)),
        };
        let status = response.status();
        let retry_after = retry_after(&response);
        let mut drained = 0;
        while drained < MAX_DRAINED_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => drained += chunk.len(),
                _ => break,
            }
        }
        if status.is_success() {
            Outcome::Delivered {
                status: status.as_u16(),
            }
        } else if status == StatusCode::GONE {
            Outcome::Gone
        } else {
            Outcome::Failed {
                status: Some(status.as_u16()),
                error: format!("endpoint answered {status}"),
                retry_after,
            }
        }
    }
}

/// `Retry-After` on the statuses that define it: seconds, or an HTTP date.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    if !matches!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        return None;
    }
    let value = response.headers().get(header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, Utc::now())
}

fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // IMF-fixdate ("Wed, 21 Oct 2015 07:28:00 GMT") is an RFC 2822 date.
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&Utc) - now).to_std().ok()
}

fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // The chain says why (refused, DNS, TLS …); the URL is the org's own.
    let mut detail = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    truncate(format!("{kind}: {detail}"))
}

fn truncate(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        // A date in the past, or nonsense, asks for nothing.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            None
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
