//! `admin keys`: list keys and revoke one by its prefix.

use serde::Serialize;
use uuid::Uuid;

use super::{
    Admin, AdminError, KeysCommand,
    output::{Report, cell},
};
use crate::auth::keys::KEY_PREFIX;

pub(super) async fn run(admin: &Admin, command: KeysCommand) -> Result<(), AdminError> {
    match command {
        KeysCommand::List { org } => list_keys(admin, org).await,
        KeysCommand::Revoke { key_prefix } => revoke(admin, &key_prefix).await,
    }
}

#[derive(Serialize)]
struct KeyView {
    organization_id: Uuid,
    key_prefix: String,
    created_at: chrono::DateTime<chrono::Utc>,
    revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Report for KeyView {
    const HEADERS: &'static [&'static str] = &["organization", "key prefix", "created", "revoked"];

    fn rows(&self) -> Vec<Vec<String>> {
        vec![vec![
            self.organization_id.to_string(),
            self.key_prefix.clone(),
            self.created_at.to_rfc3339(),
            cell(self.revoked_at.map(|r| r.to_rfc3339())),
        ]]
    }
}

#[derive(Serialize)]
struct Revoked {
    key_prefix: String,
    organization_id: Uuid,
    revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    cache_entries_rejected: usize,
}

impl Report for Revoked {
    const HEADERS: &'static [&'static str] = &["key prefix", "organization", "revoked"];

    fn rows(&self) -> Vec<Vec<String>> {
        vec![vec![
            self.key_prefix.clone(),
            self.organization_id.to_string(),
            cell(self.revoked_at.map(|r| r.to_rfc3339())),
        ]]
    }
}

async fn list_keys(admin: &Admin, org: Option<Uuid>) -> Result<(), AdminError> {
    let keys: Vec<KeyView> = admin
        .store
        .keys_of(org)
        .await?
        .into_iter()
        .map(|(organization_id, key)| KeyView {
            organization_id,
            key_prefix: format!("{KEY_PREFIX}{}", key.lookup_prefix),
            created_at: key.created_at,
            revoked_at: key.revoked_at,
        })
        .collect();
    admin.print(&keys)
}

async fn revoke(admin: &Admin, key_prefix: &str) -> Result<(), AdminError> {
    let lookup = key_prefix.trim().trim_start_matches(KEY_PREFIX);
    if lookup.is_empty() || !lookup.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AdminError::Invalid(format!(
            "`{key_prefix}` is not a key prefix: use the trg_… prefix `keys list` shows"
        )));
    }
    let owner = admin
        .store
        .revoke_key(lookup)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no key with prefix {key_prefix}")))?;
    let rejected = admin
        .revocation
        .revoke_key_id(&admin.redis().await?, &admin.keys, owner.key_id)
        .await?;
    admin.print(&Revoked {
        key_prefix: format!("{KEY_PREFIX}{lookup}"),
        organization_id: owner.organization_id,
        revoked_at: owner.revoked_at,
        cache_entries_rejected: rejected,
    })
}
