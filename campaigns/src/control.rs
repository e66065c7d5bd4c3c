//! Pause, resume and cancel: the campaign event and the dispatch queue change in ONE transaction.
//!
//! - Pause: `CampaignPaused`, a `paused` hold, and the campaign's ready rows parked at
//!   `not_before = 'infinity'` (out of the claim index's range, so a paused 1M-row campaign costs
//!   other campaigns nothing). Leases in flight finish; a retry of a held campaign is never claimed.
//! - Resume: `CampaignResumed`, the hold removed, parked rows due now. Nothing already sent is
//!   sent again: sent recipients have no queue row.
//! - Cancel: `CampaignCancelled` and a `cancelled` hold, then a sweep that deletes every ready row
//!   of the campaign and appends `DeliverySkipped` for it, in chunks (herald-scheduler's
//!   `sweep`). Workers sweep again before each claim, so a retry that comes back after the
//!   cancel is skipped too.

use chrono::Utc;
use herald_domain::campaign::{Campaign, CampaignCommand};
use herald_domain::store;
use sqlx::PgPool;
use uuid::Uuid;

use crate::Error;

async fn campaign_command(
    conn: &mut sqlx::PgConnection,
    campaign_id: Uuid,
    command: CampaignCommand,
) -> Result<bool, Error> {
    let mut outcomes =
        store::execute_batch::<Campaign>(conn, vec![(campaign_id.to_string(), command)], &())
            .await?;
    match outcomes.pop() {
        Some(Ok(events)) => Ok(!events.is_empty()),
        Some(Err(e)) => Err(e.into()),
        None => Ok(false),
    }
}

pub async fn pause(pool: &PgPool, tenant_id: Uuid, campaign_id: Uuid) -> Result<(), Error> {
    let mut tx = pool.begin().await?;
    let changed = campaign_command(
        &mut tx,
        campaign_id,
        CampaignCommand::Pause {
            tenant_id,
            at: Utc::now(),
        },
    )
    .await?;
    if changed {
        sqlx::query(
            "INSERT INTO campaign_holds (campaign_id, reason) VALUES ($1, 'paused')
             ON CONFLICT (campaign_id) DO UPDATE SET reason = 'paused', since = now()",
        )
        .bind(campaign_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE dispatch_queue SET not_before = 'infinity'
              WHERE campaign_id = $1 AND state = 'ready'",
        )
        .bind(campaign_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn resume(pool: &PgPool, tenant_id: Uuid, campaign_id: Uuid) -> Result<(), Error> {
    let mut tx = pool.begin().await?;
    let changed = campaign_command(
        &mut tx,
        campaign_id,
        CampaignCommand::Resume {
            tenant_id,
            at: Utc::now(),
        },
    )
    .await?;
    if changed {
        sqlx::query("DELETE FROM campaign_holds WHERE campaign_id = $1")
            .bind(campaign_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE dispatch_queue SET not_before = now()
              WHERE campaign_id = $1 AND not_before = 'infinity'",
        )
        .bind(campaign_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Cancels and skips every recipient not yet sent. Returns how many were skipped now.
pub async fn cancel(pool: &PgPool, tenant_id: Uuid, campaign_id: Uuid) -> Result<u64, Error> {
    let mut tx = pool.begin().await?;
    campaign_command(
        &mut tx,
        campaign_id,
        CampaignCommand::Cancel {
            tenant_id,
            at: Utc::now(),
        },
    )
    .await?;
    sqlx::query(
        "INSERT INTO campaign_holds (campaign_id, reason) VALUES ($1, 'cancelled')
         ON CONFLICT (campaign_id) DO UPDATE SET reason = 'cancelled', since = now()",
    )
    .bind(campaign_id)
    .execute(&mut *tx)
    .await?;
    // a scheduled campaign's audience will not be resolved any more
    sqlx::query("DELETE FROM campaign_audiences WHERE campaign_id = $1")
        .bind(campaign_id)
        .execute(&mut *tx)
        .await?;
    // a recurring campaign starts no more runs (runs already started go on unless cancelled)
    sqlx::query("UPDATE recurring_campaigns SET active = false WHERE campaign_id = $1")
        .bind(campaign_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(herald_scheduler::sweep::sweep(pool, campaign_id).await?)
}
