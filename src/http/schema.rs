//! Schemas of the document that no handler's type gives: the error body,
//! built by hand in `http::error`, and event payloads, any JSON object but
//! without U+0000 anywhere, which only a hand-written JSON Schema expresses.

use utoipa::{
    ToSchema,
    openapi::{Ref, RefOr, schema::Schema},
};

use super::error::ErrorCode;

/// Every error response's body, as documented in the OpenAPI document. The
/// body itself is built in `ApiError::into_response`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// What went wrong, for people.
    error: String,
    /// What went wrong, for programs.
    code: ErrorCode,
    /// 409 `duplicate`: the id of the event that used the `dedup_id` first.
    original_id: Option<String>,
    /// 429: seconds until a request may succeed (also in `Retry-After`).
    retry_after_seconds: Option<u64>,
}

/// The schema of event payloads (see [`payload_schemas`]), for
/// `#[schema(schema_with = …)]`.
pub fn payload_ref() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name("Payload"))
}

/// Event payloads: any JSON object whose strings and keys hold no U+0000
/// (Postgres cannot store it), said precisely so generated clients and
/// contract tests know what is refused.
pub fn payload_schemas() -> [(&'static str, serde_json::Value); 2] {
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
