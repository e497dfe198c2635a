//! Organizations and their API keys.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{rfc3339, rfc3339_opt};
use crate::{
    auth::keys::{self, KEY_PREFIX},
    domain::{Name, Tier},
    http::{
        AppState,
        error::ApiError,
        extract::{JsonBody, Limited},
        schema::ErrorBody,
    },
    store::NewOrganization,
};

#[derive(Deserialize, ToSchema)]
pub struct GenerateRequest {
    /// Stored without leading or trailing white space.
    organization_name: Name,
    /// Default `free`.
    #[serde(default)]
    #[schema(value_type = Option<Tier>)]
    tier: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct NewKeyResponse {
    organization_id: Uuid,
    organization_name: String,
    tier: Tier,
    rate_limit_per_minute: i32,
    /// Shown once: only its hash is stored.
    api_key: String,
    key_prefix: String,
    #[serde(serialize_with = "rfc3339")]
    created_at: DateTime<Utc>,
}

fn admin_allowed(expected: &str, headers: &HeaderMap) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Comparing digests keeps the comparison's timing independent of the token.
    Sha256::digest(presented.trim().as_bytes()) == Sha256::digest(expected.as_bytes())
}

/// `POST /api/keys/generate`: a new organization and its first key.
#[utoipa::path(
    post,
    path = "/api/keys/generate",
    tag = "keys",
    request_body = GenerateRequest,
    responses(
        (status = 201, description = "The organization and its key, shown once", body = NewKeyResponse),
        (status = 401, description = "The admin token is required and was not presented", body = ErrorBody),
        (status = 403, description = "Sign-up is closed: no admin token is set and open sign-up is off (`forbidden`)", body = ErrorBody),
    ),
    security((), ("admin_token" = [])),
)]
pub async fn generate(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<GenerateRequest>,
) -> Result<impl IntoResponse, ApiError> {
    match &state.sign_up.admin_token {
        Some(token) if !admin_allowed(token.expose(), &headers) => {
            return Err(ApiError::Unauthorized(
                "creating organizations requires the admin token (Authorization: Bearer)",
            ));
        }
        Some(_) => {}
        None if state.sign_up.open => {}
        None => return Err(ApiError::Forbidden("sign-up is closed on this deployment")),
    }
    let name = request.organization_name.trimmed();
    let tier = match request.tier.as_deref() {
        None => Tier::Free,
        Some(t) => t
            .parse::<Tier>()
            .map_err(|e| ApiError::Unprocessable(e.to_string()))?,
    };
    let key = state.auth.new_key().await?;
    let (org, row) = state
        .store
        .create_organization(NewOrganization {
            name: name.as_str(),
            tier,
            key_lookup_prefix: &key.lookup,
            key_hash: &key.hash,
        })
        .await?;
    tracing::info!(organization_id = %org.id, tier = tier.as_str(), "organization created");
    let body = NewKeyResponse {
        organization_id: org.id,
        organization_name: org.name,
        tier: org.tier,
        rate_limit_per_minute: org.rate_limit_per_minute,
        api_key: key.plaintext,
        key_prefix: format!("{KEY_PREFIX}{}", row.lookup_prefix),
        created_at: row.created_at,
    };
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Serialize, ToSchema)]
pub struct KeyInfo {
    key_prefix: String,
    current: bool,
    #[serde(serialize_with = "rfc3339")]
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339_opt")]
    revoked_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookInfo {
    url: Option<String>,
    enabled: bool,
    /// Why pushing stopped (e.g. the endpoint answered 410 Gone).
    disabled_reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct OrganizationInfo {
    organization_id: Uuid,
    organization_name: String,
    tier: Tier,
    rate_limit_per_minute: i32,
    /// How long delivered and acknowledged events are kept, in days.
    retention_days: u64,
    webhook: WebhookInfo,
    #[serde(serialize_with = "rfc3339")]
    created_at: DateTime<Utc>,
    keys: Vec<KeyInfo>,
}

/// `GET /api/keys`: the caller's organization, never a key.
#[utoipa::path(
    get,
    path = "/api/keys",
    tag = "keys",
    responses(
        (status = 200, description = "The organization", body = OrganizationInfo),
        (status = 404, description = "The organization is gone", body = ErrorBody),
    ),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn info(
    State(state): State<AppState>,
    Limited { caller, limit }: Limited,
) -> Result<impl IntoResponse, ApiError> {
    let org_id = caller.org.organization_id;
    let (org, keys) = tokio::try_join!(
        state.store.organization(org_id),
        state.store.api_keys(org_id)
    )?;
    let org = org.ok_or(ApiError::NotFound("organization not found"))?;
    let body = OrganizationInfo {
        organization_id: org.id,
        organization_name: org.name,
        tier: org.tier,
        rate_limit_per_minute: org.rate_limit_per_minute,
        retention_days: state.retention.days(org.tier),
        webhook: WebhookInfo {
            url: org.webhook_url,
            enabled: org.webhook_enabled,
            disabled_reason: org.webhook_disabled_reason,
        },
        created_at: org.created_at,
        keys: keys
            .into_iter()
            .map(|k| KeyInfo {
                current: k.id == caller.org.key_id,
                key_prefix: format!("{KEY_PREFIX}{}", k.lookup_prefix),
                created_at: k.created_at,
                revoked_at: k.revoked_at,
            })
            .collect(),
    };
    Ok((limit, Json(body)))
}

#[derive(Serialize, ToSchema)]
pub struct RotatedKey {
    organization_id: Uuid,
    api_key: String,
    key_prefix: String,
    #[serde(serialize_with = "rfc3339")]
    created_at: DateTime<Utc>,
    revoked_key_prefix: String,
}

/// `POST /api/keys/rotate`: a new key; the presented one stops working on
/// every replica.
#[utoipa::path(
    post,
    path = "/api/keys/rotate",
    tag = "keys",
    responses((status = 200, description = "The new key, shown once", body = RotatedKey)),
    security(("api_key" = []), ("bearer" = [])),
)]
pub async fn rotate(
    State(state): State<AppState>,
    Limited { caller, limit }: Limited,
) -> Result<impl IntoResponse, ApiError> {
    let org_id = caller.org.organization_id;
    let new = state.auth.new_key().await?;
    let row = state
        .store
        .rotate_key(org_id, caller.org.key_id, &new.lookup, &new.hash)
        .await?
        .ok_or(ApiError::Unauthorized("invalid or revoked API key"))?;
    state.auth.forget(&caller.presented_key).await?;
    tracing::info!(organization_id = %org_id, "API key rotated");
    let revoked_key_prefix = keys::lookup_of(&caller.presented_key)
        .map(|l| format!("{KEY_PREFIX}{l}"))
        .unwrap_or_default();
    let body = RotatedKey {
        organization_id: org_id,
        api_key: new.plaintext,
        key_prefix: format!("{KEY_PREFIX}{}", row.lookup_prefix),
        created_at: row.created_at,
        revoked_key_prefix,
    };
    Ok((limit, Json(body)))
}
