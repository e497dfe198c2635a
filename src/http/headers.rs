//! Rate-limit headers, on every response of a rate-limited route.
//!
//! `X-RateLimit-Reset` and `Retry-After` are in seconds from now (rounded
//! up), so they need no clock agreement with the client.

use axum::{
    http::HeaderValue,
    response::{IntoResponseParts, ResponseParts},
};

use crate::ratelimit::RateLimit;

fn ceil_secs(d: std::time::Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

impl IntoResponseParts for RateLimit {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        let headers = res.headers_mut();
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert(
            "x-ratelimit-reset",
            HeaderValue::from(ceil_secs(self.reset_after)),
        );
        if let Some(retry) = self.retry_after {
            headers.insert("retry-after", HeaderValue::from(ceil_secs(retry).max(1)));
        }
        Ok(res)
    }
}
