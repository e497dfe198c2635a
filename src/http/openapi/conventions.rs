//! What operations of a kind have in common, added to every one of them.

use utoipa::{
    Modify,
    openapi::{
        self, Content, Ref, RefOr, Response, ResponseBuilder,
        header::HeaderBuilder,
        path::{Operation, ParameterIn},
        schema::{ObjectBuilder, Type},
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::{
    domain::MAX_BODY_BYTES,
    http::{error::size, schema::payload_schemas},
};

/// What operations of a kind have in common.
pub(super) struct Conventions;

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

/// A stable, unique operation id: `get_api_events_id` for `GET /api/events/{id}`.
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<&str> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    format!("{method}_{}", words.join("_"))
}

/// What an operation is, as far as its common responses go.
struct Kind {
    authenticated: bool,
    has_body: bool,
    in_path: bool,
    in_query: bool,
}

impl Kind {
    fn of(op: &Operation) -> Self {
        let params = op.parameters.as_deref().unwrap_or_default();
        let has = |place: fn(&ParameterIn) -> bool| params.iter().any(|p| place(&p.parameter_in));
        Self {
            authenticated: op.security.as_ref().is_some_and(|s| {
                serde_json::to_string(s).is_ok_and(|json| json.contains(&format!("\"{API_KEY}\"")))
            }),
            has_body: op.request_body.is_some(),
            in_path: has(|p| matches!(p, ParameterIn::Path)),
            in_query: has(|p| matches!(p, ParameterIn::Query)),
        }
    }

    /// The error responses an operation of this kind can give, each with
    /// the codes it carries.
    fn errors(&self) -> Vec<(&'static str, Response)> {
        let Kind {
            authenticated,
            has_body,
            in_path,
            in_query,
        } = *self;
        let mut errors: Vec<(&'static str, Response)> = vec![
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
        errors
    }
}

impl Conventions {
    fn operation(op: &mut Operation) {
        let kind = Kind::of(op);
        for (status, response) in kind.errors() {
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
            if kind.authenticated {
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
