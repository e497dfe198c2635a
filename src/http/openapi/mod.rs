//! The API contract: OpenAPI 3.1 for a router it is given.
//!
//! [`router`] starts an [`OpenApiRouter`] with the document's frame (title,
//! tags, error schemas); the routes add themselves with their
//! `#[utoipa::path]` attributes (see `http::routes`), so the router and the
//! document are built from one list and cannot name different routes.
//! [`finish`] then adds what every operation of a kind has in common —
//! error responses, rate-limit and request-id headers, security schemes —
//! rather than repeating it on each handler, mirroring how `http/error.rs`
//! and the extractors produce them (see [`conventions`]).

mod conventions;

use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use super::{error::ErrorCode, schema::ErrorBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Triggers API",
        description = "Durable event ingestion, an inbox with leases for pull consumers, and \
                       signed webhook delivery. Errors are JSON `{\"error\", \"code\"}`; every \
                       response carries `X-Request-Id`; authenticated responses carry \
                       `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`. \
                       A request head over the server's limit is answered 431 without a body.",
    ),
    components(schemas(ErrorBody, ErrorCode)),
    tags(
        (name = "events", description = "Sending events and reading them back"),
        (name = "inbox", description = "Pull consumers: list, lease, acknowledge, release"),
        (name = "webhooks", description = "Push delivery: settings, attempts, replays"),
        (name = "keys", description = "Organizations and API keys"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
struct ApiDoc;

/// An empty router whose document has the API's frame; routes add
/// themselves to both.
pub fn router<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    OpenApiRouter::with_openapi(ApiDoc::openapi())
}

/// The document of a router built from [`router`], with the conventions
/// applied, as JSON.
pub fn finish(mut api: utoipa::openapi::OpenApi) -> serde_json::Value {
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    conventions::Conventions.modify(&mut api);
    let mut json = serde_json::to_value(&api).unwrap_or_else(
        |e| serde_json::json!({ "error": format!("cannot render the OpenAPI document: {e}") }),
    );
    if let Some(accepted) = json.pointer_mut("/paths/~1api~1events/post/responses/202") {
        accepted["links"] = event_links();
    }
    json
}

/// `POST /api/events` answers with the id the event operations take.
/// Written as JSON: utoipa 5 spells `operationId` of a link in snake case.
fn event_links() -> serde_json::Value {
    let links: serde_json::Map<String, serde_json::Value> = [
        ("GetEvent", "get_api_events_id"),
        ("AckEvent", "post_api_ack_id"),
        ("EventAttempts", "get_api_events_id_attempts"),
        ("ReplayEvent", "post_api_events_id_replay"),
    ]
    .into_iter()
    .map(|(name, operation)| {
        let link = serde_json::json!({
            "operationId": operation,
            "parameters": { "id": "$response.body#/id" },
        });
        (name.to_owned(), link)
    })
    .collect();
    serde_json::Value::Object(links)
}
