//! The API contract: OpenAPI 3.1 generated from the route handlers.
//!
//! Routes are registered through [`OpenApiRouter`] from the handlers'
//! `#[utoipa::path]` attributes, so the router and the document are built
//! from one list and cannot name different routes. What every operation of
//! a kind has in common — error responses, rate-limit and request-id
//! headers, security schemes — is added by [`Conventions`] rather than
//! repeated on each handler, mirroring how `http/error.rs` and the
//! extractors produce them.

use std::sync::LazyLock;

use axum::{
    http::header,
    response::{Html, IntoResponse},
};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, Content, Ref, RefOr, Response, ResponseBuilder,
        header::HeaderBuilder,
        path::{Operation, ParameterIn},
        schema::{ObjectBuilder, Type},
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::domain::MAX_BODY_BYTES;

use super::{
    AppState,
    error::{ErrorBody, ErrorCode, size},
    extract::with_body_limit,
    routes::{batch, events, health, keys, leases, webhooks},
};

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

/// The routes of the public API (role `api`).
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(keys::generate))
        .routes(routes!(keys::info))
        .routes(routes!(keys::rotate))
        .routes(routes!(events::ingest))
        .merge(with_body_limit(
            OpenApiRouter::new().routes(routes!(batch::ingest_batch)),
            batch::MAX_BATCH_BYTES,
        ))
        .routes(routes!(events::get))
        .routes(routes!(events::inbox))
        .routes(routes!(events::ack))
        .routes(routes!(leases::lease))
        .routes(routes!(leases::ack))
        .routes(routes!(leases::release))
        .routes(routes!(webhooks::attempts))
        .routes(routes!(webhooks::replay))
        .routes(routes!(webhooks::replay_dead_letters))
        .routes(routes!(webhooks::configure))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(spec))
        .routes(routes!(docs))
}

/// The routes every role serves.
pub fn operations_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(health::metrics))
}

/// The whole document, as JSON.
pub fn document() -> serde_json::Value {
    let (_, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(operations_routes())
        .merge(api_routes())
        .split_for_parts();
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    Conventions.modify(&mut api);
    let mut json = serde_json::to_value(&api).unwrap_or_else(
        |e| serde_json::json!({ "error": format!("cannot render the OpenAPI document: {e}") }),
    );
    if let Some(accepted) = json.pointer_mut("/paths/~1api~1events/post/responses/202") {
        accepted["links"] = event_links();
    }
    json
}

static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| serde_json::to_string_pretty(&document()).unwrap_or_else(|e| e.to_string()));

/// This document, OpenAPI 3.1.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object, content_type = "application/json")),
)]
pub async fn spec() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

/// The schema of event payloads (see [`payload_schemas`]).
pub fn payload_ref() -> RefOr<openapi::schema::Schema> {
    RefOr::Ref(Ref::from_schema_name("Payload"))
}

/// A browsable page of this document; it loads nothing from elsewhere.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    responses((status = 200, description = "HTML", body = String, content_type = "text/html")),
)]
pub async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

/// What operations of a kind have in common.
struct Conventions;

const API_KEY: &str = "api_key";

fn header_of(ty: Type, description: &str) -> openapi::header::Header {
    HeaderBuilder::new()
        .schema(ObjectBuilder::new().schema_type(ty))
        .description(Some(description))
        .build()
}

fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))),
        )
        .build()
}

fn rate_limit_headers() -> [(&'static str, openapi::header::Header); 3] {
    [
        (
            "X-RateLimit-Limit",
            header_of(
                Type::Integer,
                "Requests a minute the organization's tier allows",
            ),
        ),
        (
            "X-RateLimit-Remaining",
            header_of(Type::Integer, "Requests left in the current allowance"),
        ),
        (
            "X-RateLimit-Reset",
            header_of(Type::Integer, "Seconds until the allowance is whole again"),
        ),
    ]
}

/// Event payloads: any JSON object whose strings and keys hold no U+0000
/// (Postgres cannot store it), said precisely so generated clients and
/// contract tests know what is refused.
fn payload_schemas() -> [(&'static str, serde_json::Value); 2] {
    let text = serde_json::json!({ "type": "string", "pattern": "^[^\\x00]*$" });
    let object = serde_json::json!({
        "type": "object",
        "propertyNames": text,
        "additionalProperties": { "$ref": "#/components/schemas/JsonValue" },
    });
    [
        ("Payload", {
            let mut o = object.clone();
            o["description"] =
                "A JSON object; no string or key may contain U+0000, numbers fit a double".into();
            o
        }),
        (
            "JsonValue",
            serde_json::json!({
                "oneOf": [
                    { "type": "null" },
                    { "type": "boolean" },
                    { "type": "number" },
                    text,
                    { "type": "array", "items": { "$ref": "#/components/schemas/JsonValue" } },
                    object,
                ]
            }),
        ),
    ]
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

/// A stable, unique operation id: `get_api_events_id` for `GET /api/events/{id}`.
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<&str> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    format!("{method}_{}", words.join("_"))
}

impl Conventions {
    fn operation(op: &mut Operation) {
        let authenticated = op.security.as_ref().is_some_and(|s| {
            serde_json::to_string(s).is_ok_and(|json| json.contains(&format!("\"{API_KEY}\"")))
        });
        let has_body = op.request_body.is_some();
        let params = op.parameters.as_deref().unwrap_or_default();
        let in_path = params
            .iter()
            .any(|p| matches!(p.parameter_in, ParameterIn::Path));
        let in_query = params
            .iter()
            .any(|p| matches!(p.parameter_in, ParameterIn::Query));

        let mut errors: Vec<(&str, Response)> = vec![
            ("500", error_response("Internal error (`internal`)")),
            (
                "503",
                error_response(if authenticated {
                    "Redis or Postgres unreachable, or the request took too long \
                     (`unavailable`), or the API key cannot be checked now (`busy`): \
                     retry; nothing was accepted"
                } else {
                    "Redis or Postgres unreachable, or the request took too long \
                     (`unavailable`): retry; nothing was accepted"
                }),
            ),
        ];
        if authenticated {
            errors.push((
                "401",
                error_response("Missing, unknown or revoked API key (`unauthorized`)"),
            ));
            errors.push((
                "429",
                error_response(
                    "Over the tier's rate limit (`rate_limited`), or too many failed key \
                     checks from this key prefix or address (`too_many_failures`)",
                ),
            ));
        }
        if has_body {
            errors.push((
                "400",
                error_response("The body is not JSON (`malformed_json`, `unreadable_body`)"),
            ));
            errors.push((
                "408",
                error_response("The body did not arrive in time (`body_timeout`)"),
            ));
            errors.push((
                "413",
                error_response(&format!(
                    "The body is over {} (`payload_too_large`)",
                    size(MAX_BODY_BYTES)
                )),
            ));
        }
        if has_body || in_query {
            errors.push((
                "422",
                error_response("JSON of the wrong shape, or invalid values (`invalid`)"),
            ));
        }
        if in_path {
            errors.push((
                "404",
                error_response("No such event in your organization (`not_found`)"),
            ));
        }
        for (status, response) in errors {
            op.responses
                .responses
                .entry(status.to_owned())
                .or_insert(RefOr::T(response));
        }
        for (status, response) in op.responses.responses.iter_mut() {
            let RefOr::T(response) = response else {
                continue;
            };
            if status == "429" {
                response.headers.insert(
                    "Retry-After".into(),
                    header_of(Type::Integer, "Seconds until a request may succeed"),
                );
            }
            response.headers.insert(
                "X-Request-Id".into(),
                header_of(
                    Type::String,
                    "The request's id: yours if you sent one, else a new UUID",
                ),
            );
            if authenticated {
                for (name, header) in rate_limit_headers() {
                    response.headers.insert(name.into(), header);
                }
            }
        }
    }
}

impl Modify for Conventions {
    fn modify(&self, api: &mut openapi::OpenApi) {
        for (path, item) in api.paths.paths.iter_mut() {
            for (method, op) in [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ] {
                let Some(op) = op else { continue };
                // Handler names repeat across modules (`ack`, `get`).
                op.operation_id = Some(operation_id(method, path));
                Self::operation(op);
            }
        }
        let components = api.components.get_or_insert_with(Default::default);
        for (name, schema) in payload_schemas() {
            match serde_json::from_value(schema) {
                Ok(schema) => {
                    components.schemas.insert(name.to_owned(), schema);
                }
                Err(err) => tracing::error!(error = %err, name, "invalid built-in schema"),
            }
        }
        components.add_security_scheme(
            API_KEY,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "The organization's API key",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The API key as `Authorization: Bearer <key>`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`TRIGGERS_ADMIN_TOKEN`, when the operator has set one",
                    ))
                    .build(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::one_of_each;

    #[test]
    fn every_code_the_server_sends_is_documented() {
        let json = document();
        let documented: Vec<&str> = json["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .expect("ErrorCode enum")
            .iter()
            .filter_map(|code| code.as_str())
            .collect();
        for err in one_of_each() {
            let sent = serde_json::to_value(err.code()).expect("code");
            let body = body_json(err.into_response());
            assert_eq!(body["code"], sent);
            let sent = sent.as_str().expect("a string");
            assert!(documented.contains(&sent), "`{sent}` is not documented");
        }
        for code in ["forbidden", "too_many_failures", "body_timeout", "busy"] {
            assert!(documented.contains(&code), "`{code}` is not documented");
        }
    }

    #[test]
    fn the_batch_route_documents_its_own_body_limit() {
        let json = document();
        let too_large =
            json["paths"]["/api/events/batch"]["post"]["responses"]["413"]["description"]
                .as_str()
                .expect("413");
        assert!(
            too_large.contains(&size(batch::MAX_BATCH_BYTES)),
            "{too_large}"
        );
        let single = json["paths"]["/api/events"]["post"]["responses"]["413"]["description"]
            .as_str()
            .expect("413");
        assert!(single.contains(&size(MAX_BODY_BYTES)), "{single}");
    }

    fn body_json(response: axum::response::Response) -> serde_json::Value {
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .expect("body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[test]
    fn every_authenticated_operation_documents_its_errors_and_headers() {
        let json = document();
        assert_eq!(json["openapi"], "3.1.0");
        let ingest = &json["paths"]["/api/events"]["post"]["responses"];
        for status in [
            "202", "400", "401", "409", "413", "422", "429", "500", "503",
        ] {
            assert!(
                ingest[status].is_object(),
                "POST /api/events lacks {status}"
            );
        }
        assert!(ingest["429"]["headers"]["Retry-After"].is_object());
        assert!(ingest["202"]["headers"]["X-RateLimit-Remaining"].is_object());
        assert!(
            json["paths"]["/health"]["get"]["responses"]["200"]["headers"]["X-Request-Id"]
                .is_object()
        );
        assert!(json["paths"]["/health"]["get"]["responses"]["401"].is_null());
        assert!(json["components"]["securitySchemes"]["api_key"].is_object());
        assert!(json["components"]["schemas"]["JsonValue"].is_object());
        let links = &json["paths"]["/api/events"]["post"]["responses"]["202"]["links"];
        assert_eq!(links["GetEvent"]["operationId"], "get_api_events_id");
        let mut ids: Vec<&str> = json["paths"]
            .as_object()
            .expect("paths")
            .values()
            .flat_map(|item| item.as_object().expect("item").values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "operation ids repeat");
    }
}
