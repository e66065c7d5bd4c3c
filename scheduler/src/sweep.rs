//! The cancel sweep: a cancelled campaign's ready queue rows become `DeliverySkipped`, in chunks.
//!
//! Cancelling (herald-campaigns' `control::cancel`) sweeps once; the dispatch workers call
//! [`sweep_cancelled`] before each claim, so a retry that comes back after the cancel is skipped
//! too. It is the queue's side of a cancel, which is why it lives with the queue.

use chrono::Utc;
use herald_domain::delivery::{Delivery, DeliveryCommand};
use herald_domain::store;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::Error;

const SWEEP_CHUNK: i64 = 5_000;
const CANCEL_REASON: &str = "campaign cancelled";

/// Skips the ready rows of one cancelled campaign, chunk by chunk. Rows leased right now are
/// left to finish (they may be on their way to the phone already).
pub async fn sweep(pool: &PgPool, campaign_id: Uuid) -> Result<u64, Error> {
    let mut skipped = 0u64;
    loop {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query(
            "DELETE FROM dispatch_queue
              WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM dispatch_queue
                     WHERE campaign_id = $1 AND state = 'ready'
                     LIMIT $2 FOR UPDATE SKIP LOCKED))
          RETURNING phone",
        )
        .bind(campaign_id)
        .bind(SWEEP_CHUNK)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            // nothing left in flight either: the hold has done its job
            sqlx::query(
                "DELETE FROM campaign_holds WHERE campaign_id = $1
                    AND NOT EXISTS (SELECT 1 FROM dispatch_queue WHERE campaign_id = $1)",
            )
            .bind(campaign_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(skipped);
        }
        let now = Utc::now();
        let mut commands = Vec::with_capacity(rows.len());
        for r in rows {
            let phone: String = r.try_get("phone")?;
            commands.push((
                format!("{campaign_id}:{phone}"),
                DeliveryCommand::Skip {
                    reason: CANCEL_REASON.to_string(),
                    at: now,
                },
            ));
        }
        skipped += commands.len() as u64;
        store::execute_batch::<Delivery>(&mut tx, commands, &()).await?;
        tx.commit().await?;
    }
}

/// Sweeps every cancelled campaign that still has ready rows (cheap when there is none).
pub async fn sweep_cancelled(pool: &PgPool) -> Result<u64, Error> {
    let cancelled: Vec<Uuid> = sqlx::query_scalar(
        "SELECT h.campaign_id FROM campaign_holds h
          WHERE h.reason = 'cancelled'
            AND EXISTS (SELECT 1 FROM dispatch_queue q WHERE q.campaign_id = h.campaign_id AND q.state = 'ready')",
    )
    .fetch_all(pool)
    .await?;
    let mut total = 0;
    for id in cancelled {
        total += sweep(pool, id).await?;
    }
    Ok(total)
}
