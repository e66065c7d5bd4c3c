//! Steps 3 and 4: append the outcomes and change the queue in one transaction, then complete
//! the campaigns that have nothing left to send.

use std::time::Duration;

use chrono::Utc;
use herald_domain::campaign::{Campaign, CampaignCommand};
use herald_domain::delivery::{Delivery, DeliveryCommand};
use herald_domain::store;

use uuid::Uuid;

use super::safety::breaker::{self, Trip};
use super::*;

/// When a recipient the gateway refused for a halt is due again: the breaker parks it until the
/// campaign is resumed; this only matters for a single send or an already paused campaign.
const HALT_RETRY: Duration = Duration::from_secs(30);

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
    /// Campaign sends in order, by number: (session, failed permanently), for the failure spike.
    health: Vec<(Uuid, bool)>,
}

impl Dispatcher {
    /// Step 3: outcomes and queue changes in one transaction.
    pub(super) async fn record(&self, sends: Vec<(Claimed, Outcome)>) -> anyhow::Result<()> {
        let now = Utc::now();
        let mut batch = OutcomeBatch::default();
        let mut campaigns: Vec<Uuid> = Vec::new();
        let (mut sent, mut failed) = (0u64, 0u64);
        let mut trips: Vec<Trip> = Vec::new();
        // (session, campaign) of the batch's campaign recipients, for the failure spike's trip
        let mut batch_campaigns: Vec<(Uuid, Uuid)> = Vec::new();
        for (c, outcome) in sends {
            if c.is_campaign() {
                campaigns.push(c.campaign_id);
                batch_campaigns.push((c.session_id, c.campaign_id));
                match &outcome {
                    Outcome::Sent(_) => batch.health.push((c.session_id, false)),
                    Outcome::Failed(_) => batch.health.push((c.session_id, true)),
                    Outcome::Retry(..) | Outcome::Halt(..) => {}
                }
            }
            let command = match outcome {
                Outcome::Halt(reason, message) => {
                    trips.push(Trip {
                        session_id: c.session_id,
                        reason: reason.as_str().to_string(),
                        campaigns: if c.is_campaign() {
                            vec![c.campaign_id]
                        } else {
                            vec![]
                        },
                    });
                    batch.retry_c.push(c.campaign_id);
                    batch.retry_p.push(c.phone);
                    batch.retry_after.push(HALT_RETRY.as_secs_f64());
                    batch.retry_error.push(message);
                    continue;
                }
                Outcome::Sent(at) => {
                    sent += 1;
                    DeliveryCommand::RecordSent {
                        message_id: c.message_id.clone(),
                        at,
                    }
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
        let spiked = loop {
            attempt += 1;
            match self.write_outcomes(&batch).await {
                Ok(spiked) => break spiked,
                Err(e) if attempt < 5 && e.is_retryable() => {
                    tracing::debug!(attempt, error = %e, "outcome batch raced a younger writer; again");
                    tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        for session_id in spiked {
            let mut on_it: Vec<Uuid> = batch_campaigns
                .iter()
                .filter(|(s, _)| *s == session_id)
                .map(|(_, c)| *c)
                .collect();
            on_it.sort();
            on_it.dedup();
            trips.push(Trip {
                session_id,
                reason: "failure_spike".to_string(),
                campaigns: on_it,
            });
        }
        self.trip(trips).await;
        metrics::counter!("herald_dispatch_sent_total").increment(sent);
        metrics::counter!("herald_dispatch_failed_total").increment(failed);
        metrics::counter!("herald_dispatch_retried_total").increment(batch.retry_c.len() as u64);

        campaigns.sort();
        campaigns.dedup();
        self.complete_finished(&campaigns).await
    }

    /// The transaction of step 3. Returns the numbers whose last sends reached the failure spike.
    pub(super) async fn write_outcomes(
        &self,
        batch: &OutcomeBatch,
    ) -> Result<Vec<Uuid>, store::StoreError> {
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
        let spiked = breaker::record_outcomes(&mut tx, &batch.health).await?;
        tx.commit().await?;
        Ok(spiked)
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
