//! The scheduler's ticker (DESIGN decision 9): tokio-cron-scheduler fires once a second in each
//! process, and each firing starts the campaigns whose time has come.
//!
//! Schedules live in Herald's own table (`campaign_holds` rows with reason `scheduled` and a
//! `release_at`), never in the crate's storage. A due campaign is claimed with
//! `FOR UPDATE SKIP LOCKED`, gets `CampaignStarted`, and loses its hold in one transaction, so any
//! number of instances start it exactly once; its queue rows, due at the same time, are then
//! claimed by the dispatch workers.

use chrono::Utc;
use herald_domain::campaign::{Campaign, CampaignCommand};
use herald_domain::store;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_cron_scheduler::{Job, JobScheduler};
use uuid::Uuid;

/// Starts every campaign whose scheduled time has passed. Returns how many it started.
pub async fn start_due(pool: &PgPool) -> anyhow::Result<usize> {
    let mut tx = pool.begin().await?;
    let due: Vec<Uuid> = sqlx::query_scalar(
        "SELECT campaign_id FROM campaign_holds
          WHERE reason = 'scheduled' AND release_at <= now()
          ORDER BY release_at LIMIT 100
          FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await?;
    if due.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let now = Utc::now();
    let commands = due
        .iter()
        .map(|id| (id.to_string(), CampaignCommand::Start { at: now }))
        .collect();
    let outcomes = store::execute_batch::<Campaign>(&mut tx, commands, &()).await?;
    let mut started = 0;
    for (id, outcome) in due.iter().zip(outcomes) {
        match outcome {
            Ok(events) if !events.is_empty() => {
                started += 1;
                tracing::info!(campaign = %id, "scheduled campaign started");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(campaign = %id, error = %e, "scheduled campaign not started"),
        }
    }
    sqlx::query("DELETE FROM campaign_holds WHERE campaign_id = ANY($1) AND reason = 'scheduled'")
        .bind(&due)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(started)
}

/// Runs the ticker until `shutdown` turns true.
pub async fn spawn(
    pool: PgPool,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut scheduler = JobScheduler::new().await?;
    let job = Job::new_async("* * * * * *", move |_, _| {
        let pool = pool.clone();
        Box::pin(async move {
            if let Err(e) = start_due(&pool).await {
                tracing::warn!(error = %format!("{e:#}"), "starting due campaigns failed; next tick retries");
            }
        })
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    Ok(tokio::spawn(async move {
        let _ = shutdown.changed().await;
        if let Err(e) = scheduler.shutdown().await {
            tracing::warn!(error = %e, "ticker did not shut down cleanly");
        }
    }))
}
