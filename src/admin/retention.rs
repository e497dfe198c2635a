//! `admin retention`: sweep finished events past their retention now.

use serde::Serialize;

use super::{Admin, AdminError, RetentionCommand, output::Report};
use crate::retention::{RetentionSweeper, Swept};

pub(super) async fn run(admin: &Admin, command: RetentionCommand) -> Result<(), AdminError> {
    match command {
        RetentionCommand::Sweep { batch } => sweep(admin, batch).await,
    }
}

/// One sweep and how long it took. Fields in alphabetical order, as this
/// command has always printed them.
#[derive(Serialize)]
struct SweepView {
    attempts: u64,
    batches: u64,
    events: u64,
    organizations: u64,
    partitions_created: u64,
    partitions_dropped: u64,
    seconds: f64,
    slowest_batch_ms: u64,
}

impl SweepView {
    fn new(swept: Swept, seconds: f64) -> Self {
        Self {
            attempts: swept.attempts,
            batches: swept.batches,
            events: swept.events,
            organizations: swept.organizations,
            partitions_created: swept.partitions_created,
            partitions_dropped: swept.partitions_dropped,
            seconds,
            slowest_batch_ms: swept.slowest_batch_ms,
        }
    }
}

impl Report for SweepView {
    const HEADERS: &'static [&'static str] = &[
        "organizations",
        "events deleted",
        "attempts deleted",
        "batches",
        "slowest batch (ms)",
        "partitions created",
        "partitions dropped",
        "seconds",
    ];

    fn rows(&self) -> Vec<Vec<String>> {
        vec![vec![
            self.organizations.to_string(),
            self.events.to_string(),
            self.attempts.to_string(),
            self.batches.to_string(),
            self.slowest_batch_ms.to_string(),
            self.partitions_created.to_string(),
            self.partitions_dropped.to_string(),
            format!("{:.1}", self.seconds),
        ]]
    }
}

async fn sweep(admin: &Admin, batch: u32) -> Result<(), AdminError> {
    let sweeper = RetentionSweeper::new(admin.store.clone(), admin.retention.clone(), batch);
    let started = std::time::Instant::now();
    let swept = sweeper
        .sweep(&tokio_util::sync::CancellationToken::new())
        .await?;
    admin.print(&SweepView::new(swept, started.elapsed().as_secs_f64()))
}
