//! Steps 3 and 4: append the outcomes and change the queue in one transaction, then complete
//! the campaigns that have nothing left to send.

use std::time::Duration;

use chrono::Utc;
use herald_domain::campaign::{Campaign, CampaignCommand};
use herald_domain::delivery::{Delivery, DeliveryCommand};
use herald_domain::store;

use uuid::Uuid;

use super::*;

/// What step 3 writes: final outcomes (events, queue rows deleted) and retries (rows due again).
#[derive(Default)]
pub(super) struct OutcomeBatch {
    commands: Vec<(String, DeliveryCommand)>,
    done_c: Vec<Uuid>,
    done_p: Vec<String>,
    retry_c: Vec<Uuid>,
    retry_p: Vec<String>,
    retry_after: Vec<f64>,
    retry_error: Vec<String>,
    /// Gateway-chosen message ids (the Cloud API's wamids) to index beside Herald's own.
    index_id: Vec<String>,
    index_delivery: Vec<String>,
    index_tenant: Vec<Uuid>,
    index_session: Vec<Uuid>,
}

impl Dispatcher {
    /// Step 3: outcomes and queue changes in one transaction.
    pub(super) async fn record(&self, sends: Vec<(Claimed, Outcome)>) -> anyhow::Result<()> {
        let now = Utc::now();
        let mut batch = OutcomeBatch::default();
        let mut campaigns: Vec<Uuid> = Vec::new();
        let (mut sent, mut failed) = (0u64, 0u64);
        for (c, outcome) in sends {
            if c.is_campaign() {
                campaigns.push(c.campaign_id);
            }
            let command = match outcome {
                Outcome::Sent(at, gateway_id) => {
                    sent += 1;
                    let message_id = match gateway_id {
                        Some(id) => {
                            batch.index_id.push(id.clone());
                            batch.index_delivery.push(c.delivery_id());
                            batch.index_tenant.push(c.tenant_id);
                            batch.index_session.push(c.session_id);
                            id
                        }
                        None => c.message_id.clone(),
                    };
                    DeliveryCommand::RecordSent { message_id, at }
                }
                Outcome::Failed(reason) => {
                    failed += 1;
                    DeliveryCommand::RecordFailed { reason, at: now }
                }
                Outcome::Retry(reason, after) => {
                    batch.retry_c.push(c.campaign_id);
                    batch.retry_p.push(c.phone);
                    batch.retry_after.push(after.as_secs_f64());
                    batch.retry_error.push(reason);
                    continue;
                }
            };
            batch.commands.push((c.delivery_id(), command));
            batch.done_c.push(c.campaign_id);
            batch.done_p.push(c.phone);
        }
        // Losing a race to a younger transaction (a receipt for the same recipient) is passing:
        // do the same work again in a fresh transaction rather than leave the leases to expire.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.write_outcomes(&batch).await {
                Ok(()) => break,
                Err(e) if attempt < 5 && e.is_retryable() => {
                    tracing::debug!(attempt, error = %e, "outcome batch raced a younger writer; again");
                    tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        metrics::counter!("herald_dispatch_sent_total").increment(sent);
        metrics::counter!("herald_dispatch_failed_total").increment(failed);
        metrics::counter!("herald_dispatch_retried_total").increment(batch.retry_c.len() as u64);

        campaigns.sort();
        campaigns.dedup();
        self.complete_finished(&campaigns).await
    }

    /// The transaction of step 3.
    pub(super) async fn write_outcomes(
        &self,
        batch: &OutcomeBatch,
    ) -> Result<(), store::StoreError> {
        let mut tx = self.pool.begin().await?;
        store::plan_as_key_lookups(&mut tx).await?;
        let outcomes =
            store::execute_batch::<Delivery>(&mut tx, batch.commands.clone(), &()).await?;
        for o in outcomes {
            if let Err(e) = o {
                tracing::warn!(error = %e, "outcome not recorded");
            }
        }
        delete_rows(&mut tx, &batch.done_c, &batch.done_p).await?;
        if !batch.index_id.is_empty() {
            // statuses name the gateway's id: found in message_index like Herald's own
            sqlx::query(
                "INSERT INTO message_index (message_id, delivery_id, tenant_id, session_id)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::uuid[], $4::uuid[])
                 ON CONFLICT (message_id) DO NOTHING",
            )
            .bind(&batch.index_id)
            .bind(&batch.index_delivery)
            .bind(&batch.index_tenant)
            .bind(&batch.index_session)
            .execute(&mut *tx)
            .await?;
        }
        if !batch.retry_c.is_empty() {
            sqlx::query(
                "UPDATE dispatch_queue q SET state = 'ready', lease_until = NULL, in_doubt = false,
                        not_before = now() + make_interval(secs => r.after), last_error = r.error
                   FROM UNNEST($1::uuid[], $2::text[], $3::float8[], $4::text[]) AS r(c, p, after, error)
                  WHERE q.campaign_id = r.c AND q.phone = r.p",
            )
            .bind(&batch.retry_c)
            .bind(&batch.retry_p)
            .bind(&batch.retry_after)
            .bind(&batch.retry_error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Step 4: a campaign whose queue is empty has every recipient final.
    pub(super) async fn complete_finished(&self, campaigns: &[Uuid]) -> anyhow::Result<()> {
        let finished: Vec<Uuid> = sqlx::query_scalar(
            "SELECT c FROM UNNEST($1::uuid[]) AS c
              WHERE NOT EXISTS (SELECT 1 FROM dispatch_queue q WHERE q.campaign_id = c)",
        )
        .bind(campaigns)
        .fetch_all(&self.pool)
        .await?;
        if finished.is_empty() {
            return Ok(());
        }
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        let commands = finished
            .iter()
            .map(|id| (id.to_string(), CampaignCommand::Complete { at: now }))
            .collect();
        for (id, outcome) in finished
            .iter()
            .zip(store::execute_batch::<Campaign>(&mut tx, commands, &()).await?)
        {
            match outcome {
                Ok(events) if !events.is_empty() => {
                    tracing::info!(campaign = %id, "campaign completed")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(campaign = %id, error = %e, "campaign not completed"),
            }
        }
        // after the events: the first write of this transaction must be the append (see
        // StoreError::OutOfOrder)
        sqlx::query("DELETE FROM campaign_holds WHERE campaign_id = ANY($1)")
            .bind(&finished)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
