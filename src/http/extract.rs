//! Extractors: authentication, rate limiting and bodies that fail with our
//! error shape instead of axum's plain-text rejections.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    Extension,
    body::Bytes,
    extract::{ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request},
    http::{header, request::Parts},
};
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::{
    AppState,
    error::{ApiError, ErrorCode},
};
use crate::{
    auth::AuthError,
    domain::{MAX_BODY_BYTES, OrgContext},
    ratelimit::RateLimit,
};

/// The key a request presents: `X-API-Key`, or `Authorization: Bearer`.
fn presented_key(parts: &Parts) -> Option<&str> {
    if let Some(key) = parts.headers.get("x-api-key") {
        return key.to_str().ok().map(str::trim);
    }
    parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The client's address: the last one in `header` when a trusted proxy
/// appends it there, else the connection's peer.
fn client_address(parts: &Parts, header: Option<&str>) -> Option<IpAddr> {
    if let Some(name) = header {
        // The proxy appends the address it saw; earlier entries are the
        // client's own claims, which anyone can forge.
        return parts
            .headers
            .get_all(name)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok());
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// An authenticated caller: the organization it acts for, and the key it
/// presented. Routes taking it do their own rate limiting (ingestion does it
/// in the same Redis round trip as the enqueue).
pub struct Caller {
    pub org: Arc<OrgContext>,
    pub presented_key: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = presented_key(parts)
            .filter(|k| !k.is_empty())
            .ok_or(AuthError::Missing)?;
        let client = client_address(parts, state.client_ip_header.as_deref());
        let org = state.auth.authenticate(presented, client).await?;
        tracing::Span::current().record(
            "organization_id",
            tracing::field::display(org.organization_id),
        );
        Ok(Caller {
            org,
            presented_key: presented.to_owned(),
        })
    }
}

/// An authenticated caller within its organization's rate limit.
pub struct Limited {
    pub caller: Caller,
    pub limit: RateLimit,
}

impl FromRequestParts<AppState> for Limited {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let limit = state.limiter.check(&caller.org).await?;
        if limit.retry_after.is_some() {
            return Err(ApiError::RateLimited(limit));
        }
        Ok(Limited { caller, limit })
    }
}

/// A JSON body: 413 when too large, 400 when not JSON, 422 when JSON of the
/// wrong shape.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req
            .extensions()
            .get::<BodyTimeout>()
            .map_or(BodyTimeout::DEFAULT, |t| t.0);
        let max_bytes = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(MAX_BODY_BYTES, |l| l.0);
        let read = Bytes::from_request(req, state);
        let bytes = tokio::time::timeout(limit, read)
            .await
            .map_err(|_| ApiError::BodyTimeout)?
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge { limit: max_bytes }
                } else {
                    ApiError::bad_request(ErrorCode::UnreadableBody, rejection.body_text())
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A route's own body limit, where it is not [`MAX_BODY_BYTES`]: axum's
/// limit layer refuses the body without saying which limit applied, and the
/// 413 message names it. Set with [`with_body_limit`].
#[derive(Debug, Clone, Copy)]
struct BodyLimit(usize);

/// `routes` with a body limit of `bytes` instead of [`MAX_BODY_BYTES`].
pub fn with_body_limit<S>(routes: OpenApiRouter<S>, bytes: usize) -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    routes
        .layer(DefaultBodyLimit::max(bytes))
        .layer(Extension(BodyLimit(bytes)))
}

/// How long a request's body may take to arrive, put on each request by
/// the server (the extractor is generic over state, so it cannot read the
/// configuration).
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub std::time::Duration);

impl BodyTimeout {
    const DEFAULT: std::time::Duration = std::time::Duration::from_secs(5);
}

/// `bytes` as a `T`: 400 when not JSON, 422 naming the field when JSON of
/// the wrong shape or with an invalid value.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut json)
        .map_err(|err| refusal(&err.path().to_string(), err.into_inner()))?;
    json.end().map_err(|err| refusal(".", err))?;
    Ok(value)
}

/// What a body is refused with; `path` is where in it, `.` for the whole.
fn refusal(path: &str, err: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Data if path == "." => ApiError::Unprocessable(err.to_string()),
        Category::Data => ApiError::Unprocessable(format!("`{path}`: {err}")),
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::bad_request(ErrorCode::MalformedJson, format!("malformed JSON: {err}"))
        }
    }
}

/// Query parameters whose errors are 422 with our error shape.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| QueryParams(q))
            .map_err(|rejection| ApiError::Unprocessable(rejection.body_text()))
    }
}

/// The `{id}` of an event route. An id that is not a UUID names no event: 404.
pub struct EventId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for EventId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|Path(raw)| raw.parse().ok())
            .map(EventId)
            .ok_or(ApiError::NotFound("event not found"))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(headers: &[(&str, &str)], peer: Option<&str>) -> Parts {
        let mut request = Request::builder().uri("/");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (mut parts, ()) = request.body(()).expect("request").into_parts();
        if let Some(peer) = peer {
            let addr: SocketAddr = peer.parse().expect("socket address");
            parts.extensions.insert(ConnectInfo(addr));
        }
        parts
    }

    #[test]
    fn the_client_is_the_peer_or_what_the_trusted_proxy_appended() {
        let peer = Some("10.0.0.9:5000");
        let spoofed = [("x-forwarded-for", "1.1.1.1, 203.0.113.7")];
        assert_eq!(
            client_address(&parts(&spoofed, peer), None),
            "10.0.0.9".parse().ok()
        );
        // The last entry is the one the proxy added; earlier ones are claims.
        assert_eq!(
            client_address(&parts(&spoofed, peer), Some("x-forwarded-for")),
            "203.0.113.7".parse().ok()
        );
        assert_eq!(
            client_address(&parts(&[], peer), Some("x-forwarded-for")),
            None
        );
    }
}
