//! `triggers-api admin`: the operator's command line, talking to Postgres
//! and Redis as the service does. Tables by default, `--json` for scripts.

mod args;
mod cache;
mod output;
mod streams;

use serde::Serialize;
use uuid::Uuid;

pub use self::args::{
    AdminArgs, AdminCommand, DlqCommand, EventsCommand, KeysCommand, OrgsCommand, RetentionCommand,
    StreamsCommand,
};
use self::{
    cache::Forget,
    output::{Report, cell, print},
};
use crate::{
    auth::keys::{self, KEY_PREFIX},
    domain::Tier,
    events::{Events, EventsError},
    redis::{self, Keys, RedisError},
    retention::{RetentionPolicy, RetentionSweeper},
    store::{NewOrganization, OrganizationRow, Store, StoreError},
    streams::{RetryQueue, Unarchived},
};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot connect to Postgres (DATABASE_URL): {0}")]
    Postgres(StoreError),
    #[error("cannot connect to Redis (REDIS_URL): {0}")]
    RedisConnect(RedisError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Events(#[from] EventsError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot print: {0}")]
    Output(#[from] std::io::Error),
    #[error("{0}")]
    SecretKeys(String),
}

/// Stops dead-letter replays of one organization from running forever
/// while new dead letters keep coming.
const MAX_REPLAY_BATCHES: usize = 1_000;
const REPLAY_BATCH: usize = 1_000;

struct Admin {
    store: Store,
    keys: Keys,
    redis_url: String,
    retention: RetentionPolicy,
    json: bool,
}

pub async fn run(args: AdminArgs) -> Result<(), AdminError> {
    let sealer =
        crate::sealer(&args.security).map_err(|e| AdminError::SecretKeys(format!("{e:#}")))?;
    let store = Store::connect(&args.database.database_url, 2)
        .await
        .map_err(AdminError::Postgres)?
        .with_sealer(std::sync::Arc::new(sealer));
    let admin = Admin {
        store,
        keys: Keys::new(&args.redis_prefix, args.stream_shards),
        redis_url: args.redis_url,
        retention: args.retention,
        json: args.json,
    };
    match args.command {
        AdminCommand::Orgs(OrgsCommand::Create { name, tier }) => {
            admin.create_org(&name, tier).await
        }
        AdminCommand::Orgs(OrgsCommand::List { limit }) => admin.list_orgs(limit).await,
        AdminCommand::Orgs(OrgsCommand::SetTier {
            organization_id,
            tier,
        }) => admin.set_tier(organization_id, tier).await,
        AdminCommand::Keys(KeysCommand::List { org }) => admin.list_keys(org).await,
        AdminCommand::Keys(KeysCommand::Revoke { key_prefix }) => admin.revoke(&key_prefix).await,
        AdminCommand::Events(EventsCommand::Get { event_id }) => admin.event(event_id).await,
        AdminCommand::Dlq(DlqCommand::Stats) => admin.dlq_stats().await,
        AdminCommand::Dlq(DlqCommand::Replay { org }) => admin.dlq_replay(org).await,
        AdminCommand::Streams(StreamsCommand::Info) => admin.streams().await,
        AdminCommand::Retention(RetentionCommand::Sweep { batch }) => admin.sweep(batch).await,
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

impl Admin {
    async fn redis(&self) -> Result<fred::prelude::Client, AdminError> {
        redis::connect_client(&self.redis_url)
            .await
            .map_err(AdminError::RedisConnect)
    }

    fn org_view(&self, org: OrganizationRow) -> OrgView {
        OrgView {
            organization_id: org.id,
            retention_days: self.retention.days(org.tier),
            name: org.name,
            tier: org.tier,
            rate_limit_per_minute: org.rate_limit_per_minute,
            webhook_url: org.webhook_url,
            webhook_enabled: org.webhook_enabled,
            created_at: org.created_at,
        }
    }

    fn print_orgs(&self, orgs: Vec<OrgView>) -> Result<(), AdminError> {
        let rows = orgs
            .iter()
            .map(|o| {
                vec![
                    o.organization_id.to_string(),
                    o.name.clone(),
                    o.tier.as_str().to_owned(),
                    o.rate_limit_per_minute.to_string(),
                    o.retention_days.to_string(),
                    match (&o.webhook_url, o.webhook_enabled) {
                        (Some(url), true) => url.clone(),
                        (Some(url), false) => format!("{url} (disabled)"),
                        (None, _) => "-".to_owned(),
                    },
                    o.created_at.to_rfc3339(),
                ]
            })
            .collect();
        let report = Report {
            headers: &[
                "organization",
                "name",
                "tier",
                "per minute",
                "retention days",
                "webhook",
                "created",
            ],
            rows,
            json: orgs,
        };
        Ok(print(report, self.json)?)
    }

    async fn create_org(&self, name: &str, tier: Tier) -> Result<(), AdminError> {
        let name = crate::domain::Name::parse(name)
            .map_err(|e| AdminError::Invalid(format!("the name {e}")))?
            .trimmed();
        let name = name.as_str();
        let key = keys::generate().map_err(|e| AdminError::Invalid(e.to_string()))?;
        let (org, _) = self
            .store
            .create_organization(NewOrganization {
                name,
                tier,
                key_lookup_prefix: &key.lookup,
                key_hash: &key.hash,
            })
            .await?;
        #[derive(Serialize)]
        struct Created {
            #[serde(flatten)]
            org: OrgView,
            api_key: String,
        }
        let created = Created {
            org: self.org_view(org),
            api_key: key.plaintext,
        };
        let rows = vec![vec![
            created.org.organization_id.to_string(),
            created.org.name.clone(),
            created.org.tier.as_str().to_owned(),
            created.api_key.clone(),
        ]];
        let report = Report {
            headers: &["organization", "name", "tier", "api key (shown once)"],
            rows,
            json: created,
        };
        Ok(print(report, self.json)?)
    }

    async fn list_orgs(&self, limit: i64) -> Result<(), AdminError> {
        let orgs = self.store.organizations(limit.max(1)).await?;
        let views = orgs.into_iter().map(|o| self.org_view(o)).collect();
        self.print_orgs(views)
    }

    async fn set_tier(&self, organization_id: Uuid, tier: Tier) -> Result<(), AdminError> {
        let org = self
            .store
            .set_tier(organization_id, tier)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no organization {organization_id}")))?;
        // Cached keys carry the old tier and limit.
        cache::forget(
            &self.redis().await?,
            &self.keys,
            Forget::Organization(organization_id),
        )
        .await?;
        self.print_orgs(vec![self.org_view(org)])
    }

    async fn list_keys(&self, org: Option<Uuid>) -> Result<(), AdminError> {
        #[derive(Serialize)]
        struct KeyView {
            organization_id: Uuid,
            key_prefix: String,
            created_at: chrono::DateTime<chrono::Utc>,
            revoked_at: Option<chrono::DateTime<chrono::Utc>>,
        }
        let keys: Vec<KeyView> = self
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
        let rows = keys
            .iter()
            .map(|k| {
                vec![
                    k.organization_id.to_string(),
                    k.key_prefix.clone(),
                    k.created_at.to_rfc3339(),
                    cell(k.revoked_at.map(|r| r.to_rfc3339())),
                ]
            })
            .collect();
        let report = Report {
            headers: &["organization", "key prefix", "created", "revoked"],
            rows,
            json: keys,
        };
        Ok(print(report, self.json)?)
    }

    async fn revoke(&self, key_prefix: &str) -> Result<(), AdminError> {
        let lookup = key_prefix.trim().trim_start_matches(KEY_PREFIX);
        if lookup.is_empty() || !lookup.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AdminError::Invalid(format!(
                "`{key_prefix}` is not a key prefix: use the trg_… prefix `keys list` shows"
            )));
        }
        let owner = self
            .store
            .revoke_key(lookup)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no key with prefix {key_prefix}")))?;
        let forgotten =
            cache::forget(&self.redis().await?, &self.keys, Forget::Key(owner.key_id)).await?;
        #[derive(Serialize)]
        struct Revoked {
            key_prefix: String,
            organization_id: Uuid,
            revoked_at: Option<chrono::DateTime<chrono::Utc>>,
            cache_entries_rejected: usize,
        }
        let revoked = Revoked {
            key_prefix: format!("{KEY_PREFIX}{lookup}"),
            organization_id: owner.organization_id,
            revoked_at: owner.revoked_at,
            cache_entries_rejected: forgotten,
        };
        let rows = vec![vec![
            revoked.key_prefix.clone(),
            revoked.organization_id.to_string(),
            cell(revoked.revoked_at.map(|r| r.to_rfc3339())),
        ]];
        let report = Report {
            headers: &["key prefix", "organization", "revoked"],
            rows,
            json: revoked,
        };
        Ok(print(report, self.json)?)
    }

    async fn event(&self, id: Uuid) -> Result<(), AdminError> {
        let event = self
            .store
            .event_by_id(id)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no archived event {id}")))?;
        let payload: serde_json::Value =
            serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null);
        let json = serde_json::json!({
            "id": event.id,
            "organization_id": event.organization_id,
            "type": event.event_type,
            "dedup_id": event.dedup_id,
            "status": event.status,
            "attempts": event.attempts,
            "lease_count": event.lease_count,
            "last_error": event.last_error,
            "created_at": event.created_at,
            "delivered_at": event.delivered_at,
            "acknowledged_at": event.acknowledged_at,
            "payload": payload,
        });
        let rows = json
            .as_object()
            .into_iter()
            .flatten()
            .map(|(field, value)| {
                let shown = match value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "-".to_owned(),
                    other => other.to_string(),
                };
                vec![field.clone(), shown]
            })
            .collect();
        let report = Report {
            headers: &["field", "value"],
            rows,
            json,
        };
        Ok(print(report, self.json)?)
    }

    async fn dlq_stats(&self) -> Result<(), AdminError> {
        let stats = self.store.dead_letter_stats().await?;
        let rows = stats
            .iter()
            .map(|s| {
                vec![
                    s.organization_id.to_string(),
                    s.organization_name.clone(),
                    s.dead_letters.to_string(),
                    cell(s.oldest.map(|t| t.to_rfc3339())),
                    cell(s.newest.map(|t| t.to_rfc3339())),
                ]
            })
            .collect();
        let report = Report {
            headers: &["organization", "name", "dead letters", "oldest", "newest"],
            rows,
            json: stats,
        };
        Ok(print(report, self.json)?)
    }

    async fn dlq_replay(&self, org: Uuid) -> Result<(), AdminError> {
        if self.store.organization(org).await?.is_none() {
            return Err(AdminError::NotFound(format!("no organization {org}")));
        }
        let pool = redis::connect_pool(&self.redis_url, 1)
            .await
            .map_err(AdminError::RedisConnect)?;
        let events = Events::new(
            self.store.clone(),
            Unarchived::new(pool.clone(), self.keys.clone()),
            RetryQueue::new(pool, self.keys.clone()),
        );
        let mut replayed = 0;
        let mut has_more = false;
        for _ in 0..MAX_REPLAY_BATCHES {
            let batch = events.replay_dead_letters(org, None, REPLAY_BATCH).await?;
            replayed += batch.replayed;
            has_more = batch.has_more;
            if !batch.has_more || batch.replayed == 0 {
                break;
            }
        }
        let json = serde_json::json!({
            "organization_id": org,
            "replayed": replayed,
            "has_more": has_more,
        });
        let report = Report {
            headers: &["organization", "replayed", "more left"],
            rows: vec![vec![
                org.to_string(),
                replayed.to_string(),
                has_more.to_string(),
            ]],
            json,
        };
        Ok(print(report, self.json)?)
    }

    async fn sweep(&self, batch: u32) -> Result<(), AdminError> {
        let sweeper = RetentionSweeper::new(self.store.clone(), self.retention.clone(), batch);
        let started = std::time::Instant::now();
        let swept = sweeper
            .sweep(&tokio_util::sync::CancellationToken::new())
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        let json = serde_json::json!({
            "organizations": swept.organizations,
            "events": swept.events,
            "attempts": swept.attempts,
            "batches": swept.batches,
            "slowest_batch_ms": swept.slowest_batch_ms,
            "partitions_created": swept.partitions_created,
            "partitions_dropped": swept.partitions_dropped,
            "seconds": seconds,
        });
        let report = Report {
            headers: &[
                "organizations",
                "events deleted",
                "attempts deleted",
                "batches",
                "slowest batch (ms)",
                "partitions created",
                "partitions dropped",
                "seconds",
            ],
            rows: vec![vec![
                swept.organizations.to_string(),
                swept.events.to_string(),
                swept.attempts.to_string(),
                swept.batches.to_string(),
                swept.slowest_batch_ms.to_string(),
                swept.partitions_created.to_string(),
                swept.partitions_dropped.to_string(),
                format!("{seconds:.1}"),
            ]],
            json,
        };
        Ok(print(report, self.json)?)
    }

    async fn streams(&self) -> Result<(), AdminError> {
        let info = streams::info(&self.redis().await?, &self.keys).await?;
        let mut rows = Vec::new();
        for stream in &info {
            if stream.groups.is_empty() {
                rows.push(vec![
                    stream.stream.clone(),
                    stream.length.to_string(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
            }
            for group in &stream.groups {
                let consumers = group
                    .consumers
                    .iter()
                    .map(|c| format!("{}: {} pending, idle {} ms", c.name, c.pending, c.idle_ms))
                    .collect::<Vec<_>>()
                    .join("\n");
                rows.push(vec![
                    stream.stream.clone(),
                    stream.length.to_string(),
                    group.name.clone(),
                    cell(group.lag),
                    group.pending.to_string(),
                    if consumers.is_empty() {
                        "-".into()
                    } else {
                        consumers
                    },
                ]);
            }
        }
        let report = Report {
            headers: &["stream", "length", "group", "lag", "pending", "consumers"],
            rows,
            json: info,
        };
        Ok(print(report, self.json)?)
    }
}
