//! The scheduler's ticker (docs/decisions/0006): tokio-cron-scheduler fires once a second in each
//! process, and each firing starts the campaigns whose time has come.
//!
//! Schedules live in Herald's own table (`campaign_holds` rows with reason `scheduled` and a
//! `release_at`), never in the crate's storage. A due campaign is claimed with
//! `FOR UPDATE SKIP LOCKED`, gets `CampaignStarted`, and loses its hold in one transaction, so any
//! number of instances start it exactly once; its queue rows, due at the same time, are then
//! claimed by the dispatch workers.
//!
//! Recurring campaigns: see [`fire_recurrences`].
//!
//! What a start does to a campaign (its deferred audience resolved, a recurring run written) is
//! the campaign flow's, in herald-campaigns, which sits above this crate: the ticker reaches it
//! through the [`CampaignStarts`] port the composition root hands it (docs/decisions/0067).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_domain::campaign::{Campaign, CampaignCommand};
use herald_domain::schedule::Recurrence;
use herald_domain::store;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::watch;
use tokio_cron_scheduler::{Job, JobScheduler};
use uuid::Uuid;

/// What the ticker asks of the campaign flows when a campaign's time comes (herald-campaigns
/// implements it). Both run inside the ticker's transaction.
#[async_trait::async_trait]
pub trait CampaignStarts: Send + Sync {
    /// Resolves and queues the deferred audiences of the `due` campaigns; `started` are those
    /// that started now (the others had theirs dropped).
    async fn start_deferred(
        &self,
        tx: &mut PgConnection,
        due: &[Uuid],
        started: &[Uuid],
        now: DateTime<Utc>,
    ) -> anyhow::Result<()>;

    /// Writes one run of a recurring campaign and answers its id, or why it cannot start.
    async fn start_run(
        &self,
        conn: &mut PgConnection,
        run: RecurringRun,
    ) -> anyhow::Result<Result<Uuid, String>>;
}

/// One run of a recurring campaign, as the ticker found it in `recurring_campaigns`.
#[derive(Debug, Clone)]
pub struct RecurringRun {
    /// The run's own id.
    pub id: Uuid,
    /// The recurring campaign it is a run of.
    pub parent: Uuid,
    pub tenant_id: Uuid,
    pub template_id: Uuid,
    pub session_id: Uuid,
    /// The run's name: the parent's and the occurrence's local time.
    pub name: String,
    /// The stored recipients (JSON) and audience (JSON text, if any).
    pub recipients: String,
    pub audience: Option<String>,
}

/// Starts every campaign whose scheduled time has passed. Returns how many it started.
pub async fn start_due(pool: &PgPool, starts: &dyn CampaignStarts) -> anyhow::Result<usize> {
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
    let mut started = Vec::new();
    for (id, outcome) in due.iter().zip(outcomes) {
        match outcome {
            Ok(events) if !events.is_empty() => {
                started.push(*id);
                tracing::info!(campaign = %id, "scheduled campaign started");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(campaign = %id, error = %e, "scheduled campaign not started"),
        }
    }
    // audiences are resolved now, when the campaign starts (after the append above: see
    // StoreError::OutOfOrder)
    starts.start_deferred(&mut tx, &due, &started, now).await?;
    sqlx::query("DELETE FROM campaign_holds WHERE campaign_id = ANY($1) AND reason = 'scheduled'")
        .bind(&due)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(started.len())
}

/// Most missed occurrences recorded one by one for a single campaign after a long downtime.
const MAX_MISSED_RECORDED: usize = 1_000;

/// What happened to the occurrences of one recurring campaign in one firing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fired {
    pub runs: Vec<Uuid>,
    pub missed: usize,
    pub failed: usize,
}

/// Fires the due occurrences of recurring campaigns at `now`. Each occurrence is recorded once in
/// `campaign_occurrences` (its primary key is the claim, so N instances fire it once). After a
/// downtime only the latest due occurrence may fire, and only if it is at most `grace` late; every
/// other one is recorded as missed, never silently dropped.
pub async fn fire_recurrences(
    pool: &PgPool,
    starts: &dyn CampaignStarts,
    now: DateTime<Utc>,
    grace: Duration,
) -> anyhow::Result<Fired> {
    let mut fired = Fired::default();
    let mut tx = pool.begin().await?;
    let due = sqlx::query(
        "SELECT campaign_id, tenant_id, name, template_id, session_id, recipients::text AS recipients,
                recurrence::text AS recurrence, next_at, audience::text AS audience
           FROM recurring_campaigns
          WHERE active AND next_at <= $1
          ORDER BY next_at LIMIT 20
          FOR UPDATE SKIP LOCKED",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    for row in due {
        let parent: Uuid = row.try_get("campaign_id")?;
        let recurrence: Recurrence = serde_json::from_str(row.try_get("recurrence")?)?;
        let mut occurrences = vec![row.try_get::<DateTime<Utc>, _>("next_at")?];
        while let Some(next) = occurrences.last().and_then(|t| recurrence.next_after(*t)) {
            if next > now || occurrences.len() > 100_000 {
                break;
            }
            occurrences.push(next);
        }
        let Some(latest) = occurrences.pop() else {
            continue;
        };
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::hours(1));
        let mut missed: Vec<DateTime<Utc>> = occurrences;
        let fire = if now - latest <= grace {
            Some(latest)
        } else {
            missed.push(latest);
            None
        };
        fired.missed += missed.len();
        for at in missed.iter().rev().take(MAX_MISSED_RECORDED) {
            record(
                &mut tx,
                parent,
                *at,
                "missed",
                None,
                Some("Herald was not running at that time"),
            )
            .await?;
        }
        if let Some(at) = fire {
            // the claim: a second instance that got here too records nothing and starts nothing
            let claimed = sqlx::query(
                "INSERT INTO campaign_occurrences (campaign_id, occurrence_at, status) VALUES ($1, $2, 'fired')
                 ON CONFLICT DO NOTHING",
            )
            .bind(parent)
            .bind(at)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if claimed {
                match start_run(&mut tx, starts, &row, parent, &recurrence, at).await? {
                    Ok(run) => {
                        sqlx::query("UPDATE campaign_occurrences SET run_id = $3 WHERE campaign_id = $1 AND occurrence_at = $2")
                            .bind(parent)
                            .bind(at)
                            .bind(run)
                            .execute(&mut *tx)
                            .await?;
                        tracing::info!(campaign = %parent, run = %run, late_s = (now - at).num_seconds(), "recurring campaign run started");
                        fired.runs.push(run);
                    }
                    Err(reason) => {
                        sqlx::query("UPDATE campaign_occurrences SET status = 'failed', reason = $3 WHERE campaign_id = $1 AND occurrence_at = $2")
                            .bind(parent)
                            .bind(at)
                            .bind(&reason)
                            .execute(&mut *tx)
                            .await?;
                        tracing::warn!(campaign = %parent, %reason, "recurring campaign run not started");
                        fired.failed += 1;
                    }
                }
            }
        }
        let next = recurrence.next_after(latest.max(now));
        sqlx::query("UPDATE recurring_campaigns SET next_at = COALESCE($2, 'infinity'), active = $3 WHERE campaign_id = $1")
            .bind(parent)
            .bind(next)
            .bind(next.is_some())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(fired)
}

async fn record(
    conn: &mut sqlx::PgConnection,
    parent: Uuid,
    at: DateTime<Utc>,
    status: &str,
    run: Option<Uuid>,
    reason: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO campaign_occurrences (campaign_id, occurrence_at, status, run_id, reason)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(parent)
    .bind(at)
    .bind(status)
    .bind(run)
    .bind(reason)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One run of a recurring campaign: its audience, with the template as it is now.
async fn start_run(
    conn: &mut PgConnection,
    starts: &dyn CampaignStarts,
    row: &sqlx::postgres::PgRow,
    parent: Uuid,
    recurrence: &Recurrence,
    at: DateTime<Utc>,
) -> anyhow::Result<Result<Uuid, String>> {
    let name: String = row.try_get("name")?;
    let local = recurrence.zone().to_local(at).format("%Y-%m-%d %H:%M");
    let run = RecurringRun {
        id: Uuid::new_v4(),
        parent,
        tenant_id: row.try_get("tenant_id")?,
        template_id: row.try_get("template_id")?,
        session_id: row.try_get("session_id")?,
        name: format!("{name} · {local}"),
        recipients: row.try_get("recipients")?,
        audience: row.try_get("audience")?,
    };
    starts.start_run(conn, run).await
}

/// Runs the ticker until `shutdown` turns true. `grace`: how late a missed occurrence may still fire.
pub async fn spawn(
    pool: PgPool,
    starts: Arc<dyn CampaignStarts>,
    grace: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut scheduler = JobScheduler::new().await?;
    let stopping = shutdown.clone();
    let job = Job::new_async("* * * * * *", move |_, _| {
        let pool = pool.clone();
        let starts = starts.clone();
        let stopping = *stopping.borrow();
        Box::pin(async move {
            // a tick that lands while the process stops has nothing to do (the pool is closing)
            if stopping || pool.is_closed() {
                return;
            }
            if let Err(e) = start_due(&pool, starts.as_ref()).await {
                tracing::warn!(error = %format!("{e:#}"), "starting due campaigns failed; next tick retries");
            }
            if let Err(e) = fire_recurrences(&pool, starts.as_ref(), Utc::now(), grace).await {
                tracing::warn!(error = %format!("{e:#}"), "firing recurring campaigns failed; next tick retries");
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
