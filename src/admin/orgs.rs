//! `admin orgs`: create, list, and move between tiers.

use serde::Serialize;
use uuid::Uuid;

use super::{Admin, AdminError, OrgsCommand, output::Report};
use crate::{
    auth::{keys, revocation},
    domain::Tier,
    retention::RetentionPolicy,
    store::{NewOrganization, OrganizationRow},
};

pub(super) async fn run(admin: &Admin, command: OrgsCommand) -> Result<(), AdminError> {
    match command {
        OrgsCommand::Create { name, tier } => create_org(admin, &name, tier).await,
        OrgsCommand::List { limit } => list_orgs(admin, limit).await,
        OrgsCommand::SetTier {
            organization_id,
            tier,
        } => set_tier(admin, organization_id, tier).await,
    }
}

#[derive(Serialize)]
struct OrgView {
    organization_id: Uuid,
    name: String,
    tier: Tier,
    rate_limit_per_minute: i32,
    retention_days: u64,
    webhook_url: Option<String>,
    webhook_enabled: bool,
    created_at: chrono::DateTime<chrono::Utc>,
}

impl OrgView {
    fn new(org: OrganizationRow, retention: &RetentionPolicy) -> Self {
        Self {
            organization_id: org.id,
            retention_days: retention.days(org.tier),
            name: org.name,
            tier: org.tier,
            rate_limit_per_minute: org.rate_limit_per_minute,
            webhook_url: org.webhook_url,
            webhook_enabled: org.webhook_enabled,
            created_at: org.created_at,
        }
    }
}

impl Report for OrgView {
    const HEADERS: &'static [&'static str] = &[
        "organization",
        "name",
        "tier",
        "per minute",
        "retention days",
        "webhook",
        "created",
    ];

    fn rows(&self) -> Vec<Vec<String>> {
        vec![vec![
            self.organization_id.to_string(),
            self.name.clone(),
            self.tier.as_str().to_owned(),
            self.rate_limit_per_minute.to_string(),
            self.retention_days.to_string(),
            match (&self.webhook_url, self.webhook_enabled) {
                (Some(url), true) => url.clone(),
                (Some(url), false) => format!("{url} (disabled)"),
                (None, _) => "-".to_owned(),
            },
            self.created_at.to_rfc3339(),
        ]]
    }
}

/// A new organization and its first key, shown this once.
#[derive(Serialize)]
struct Created {
    #[serde(flatten)]
    org: OrgView,
    api_key: String,
}

impl Report for Created {
    const HEADERS: &'static [&'static str] =
        &["organization", "name", "tier", "api key (shown once)"];

    fn rows(&self) -> Vec<Vec<String>> {
        vec![vec![
            self.org.organization_id.to_string(),
            self.org.name.clone(),
            self.org.tier.as_str().to_owned(),
            self.api_key.clone(),
        ]]
    }
}

async fn create_org(admin: &Admin, name: &str, tier: Tier) -> Result<(), AdminError> {
    let name = crate::domain::Name::parse(name)
        .map_err(|e| AdminError::Invalid(format!("the name {e}")))?
        .trimmed();
    let key = keys::generate().map_err(|e| AdminError::Invalid(e.to_string()))?;
    let (org, _) = admin
        .store
        .create_organization(NewOrganization {
            name: name.as_str(),
            tier,
            key_lookup_prefix: &key.lookup,
            key_hash: &key.hash,
        })
        .await?;
    let created = Created {
        org: OrgView::new(org, &admin.retention),
        api_key: key.plaintext,
    };
    admin.print(&created)
}

async fn list_orgs(admin: &Admin, limit: i64) -> Result<(), AdminError> {
    let orgs = admin.store.organizations(limit.max(1)).await?;
    let views: Vec<OrgView> = orgs
        .into_iter()
        .map(|o| OrgView::new(o, &admin.retention))
        .collect();
    admin.print(&views)
}

async fn set_tier(admin: &Admin, organization_id: Uuid, tier: Tier) -> Result<(), AdminError> {
    let org = admin
        .store
        .set_tier(organization_id, tier)
        .await?
        .ok_or_else(|| AdminError::NotFound(format!("no organization {organization_id}")))?;
    // Cached keys carry the old tier and limit.
    revocation::forget_organization(&admin.redis().await?, &admin.keys, organization_id).await?;
    admin.print(&vec![OrgView::new(org, &admin.retention)])
}
