//! `admin dlq`: dead letters per organization, and replaying them.

use serde::Serialize;
use uuid::Uuid;

use super::{
    Admin, AdminError, DlqCommand,
    output::{Report, cell},
};
use crate::{
    events::Events,
    redis,
    store::DeadLetterStats,
    streams::{RetryQueue, Unarchived},
};

/// Stops dead-letter replays of one organization from running forever
/// while new dead letters keep coming.
const MAX_REPLAY_BATCHES: usize = 1_000;
const REPLAY_BATCH: usize = 1_000;

pub(super) async fn run(admin: &Admin, command: DlqCommand) -> Result<(), AdminError> {
    match command {
        DlqCommand::Stats => {
            let stats = admin.store.dead_letter_stats().await?;
            admin.print(&stats)
        }
        DlqCommand::Replay { org } => replay(admin, org).await,
    }
}

impl Report for DeadLetterStats {
    const HEADERS: &'static [&'static str] =
        &["organization", "name", "dead letters", "oldest", "newest"];

    fn rows(&self) -> Vec<Vec<String>> {
        vec![vec![
            self.organization_id.to_string(),
            self.organization_name.clone(),
            self.dead_letters.to_string(),
            cell(self.oldest.map(|t| t.to_rfc3339())),
            cell(self.newest.map(|t| t.to_rfc3339())),
        ]]
    }
}

/// Fields in alphabetical order, as this command has always printed them.
#[derive(Serialize)]
struct Replayed {
    has_more: bool,
    organization_id: Uuid,
    replayed: usize,
}

impl Report for Replayed {
    const HEADERS: &'static [&'static str] = &["organization", "replayed", "more left"];

    fn rows(&self) -> Vec<Vec<String>> {
        vec![vec![
            self.organization_id.to_string(),
            self.replayed.to_string(),
            self.has_more.to_string(),
        ]]
    }
}

async fn replay(admin: &Admin, org: Uuid) -> Result<(), AdminError> {
    if admin.store.organization(org).await?.is_none() {
        return Err(AdminError::NotFound(format!("no organization {org}")));
    }
    let pool = redis::connect_pool(&admin.redis_url, 1)
        .await
        .map_err(AdminError::RedisConnect)?;
    let events = Events::new(
        admin.store.clone(),
        Unarchived::new(pool.clone(), admin.keys.clone()),
        RetryQueue::new(pool, admin.keys.clone()),
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
    admin.print(&Replayed {
        has_more,
        organization_id: org,
        replayed,
    })
}
