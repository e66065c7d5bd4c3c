//! Steps 3 and 4: as the calls finish, append their outcomes and change the queue in one
//! transaction per small group, then complete the campaigns that have nothing left to send.
//!
//! Grouping is group commit (docs/decisions/0065): the recorder writes whatever finished while
//! its previous write ran, so a group is one outcome when calls are slow and hundreds when they
//! are fast, and an outcome waits for at most one write before it is stored. A call's slot
//! ([`Finished::slot`]) is released only after its outcome is stored: what was sent but not
//! recorded, the only resends a crash can cause, never exceeds the worker's `concurrency`.

use std::time::Duration;

use chrono::Utc;
use herald_domain::campaign::{Campaign, CampaignCommand};
use herald_domain::delivery::{Delivery, DeliveryCommand};
use herald_domain::store;

use uuid::Uuid;

use super::safety::breaker::{self, Trip};
use super::*;

/// One finished call, holding its slot until its outcome is stored.
pub(super) struct Finished<'a> {
    pub c: Claimed,
    pub outcome: Outcome,
    pub slot: tokio::sync::SemaphorePermit<'a>,
}

/// Outcomes written in one transaction at most (a group is usually far smaller).
const GROUP_MAX: usize = 512;

/// When a recipient the gateway refused for a halt is due again: the breaker parks it until the
/// campaign is resumed; this only matters for a single send or an already paused campaign.
const HALT_RETRY: Duration = Duration::from_secs(30);

/// What step 3 writes: final outcomes (events, queue rows deleted), retries (rows due again)
/// and releases (rows never called, back as they were).
#[derive(Default)]
pub(super) struct OutcomeBatch {
    commands: Vec<(String, DeliveryCommand)>,
    done_c: Vec<Uuid>,
    done_p: Vec<String>,
    retry_c: Vec<Uuid>,
    retry_p: Vec<String>,
    retry_after: Vec<f64>,
    retry_error: Vec<String>,
    release_c: Vec<Uuid>,
    release_p: Vec<String>,
    /// Campaign sends in order, by number: (session, failed permanently), for the failure spike.
    health: Vec<(Uuid, bool)>,
    /// Gateway-chosen message ids (the Cloud API's wamids) to index beside Herald's own.
    index_id: Vec<String>,
    index_delivery: Vec<String>,
    index_tenant: Vec<Uuid>,
    index_session: Vec<Uuid>,
}

impl Dispatcher {
    /// Step 3 for one batch: records the finished calls group by group until every call of
    /// the batch has finished (the channel closes). An error means a group could not be stored
    /// even after the database had time to come back: its rows stay leased (in doubt).
    pub(super) async fn record_as_they_finish(
        &self,
        mut finished: tokio::sync::mpsc::UnboundedReceiver<Finished<'_>>,
    ) -> anyhow::Result<()> {
        let mut group = Vec::new();
        while finished.recv_many(&mut group, GROUP_MAX).await > 0 {
            let (sends, slots): (Vec<_>, Vec<_>) =
                group.drain(..).map(|f| ((f.c, f.outcome), f.slot)).unzip();
            metrics::histogram!("herald_dispatch_record_group_size").record(sends.len() as f64);
            self.record(sends).await?;
            drop(slots);
        }
        Ok(())
    }

    /// Pushes the lease of the batch's rows still leased one lease length further. Rows a
    /// recorder holds are skipped (they are being finished); never fatal: a renewal that fails
    /// leaves the lease as it was.
    pub(super) async fn renew_leases(&self, (campaigns, phones): &QueueKeys) {
        let renewed = sqlx::query(
            "UPDATE dispatch_queue SET lease_until = now() + make_interval(secs => $3)
              WHERE ctid = ANY(ARRAY(
                    SELECT q.ctid FROM dispatch_queue q
                      JOIN UNNEST($1::uuid[], $2::text[]) AS k(c, p)
                        ON q.campaign_id = k.c AND q.phone = k.p
                     WHERE q.state = 'leased'
                     FOR UPDATE OF q SKIP LOCKED))",
        )
        .bind(campaigns)
        .bind(phones)
        .bind(self.config.lease.as_secs_f64())
        .execute(&self.pool)
        .await;
        if let Err(e) = renewed {
            tracing::warn!(error = %e, "dispatch leases not renewed");
        }
    }

    /// Step 3: outcomes and queue changes in one transaction.
    pub(super) async fn record(&self, sends: Vec<(Claimed, Outcome)>) -> anyhow::Result<()> {
        let now = Utc::now();
        let mut batch = OutcomeBatch::default();
        let mut campaigns: Vec<Uuid> = Vec::new();
        let (mut sent, mut failed) = (0u64, 0u64);
        let mut trips: Vec<Trip> = Vec::new();
        // (session, campaign) of the group's campaign recipients, for the failure spike's trip
        let mut batch_campaigns: Vec<(Uuid, Uuid)> = Vec::new();
        for (c, outcome) in sends {
            if c.is_campaign() {
                campaigns.push(c.campaign_id);
                batch_campaigns.push((c.session_id, c.campaign_id));
                match &outcome {
                    Outcome::Sent(..) => batch.health.push((c.session_id, false)),
                    Outcome::Failed(_) => batch.health.push((c.session_id, true)),
                    Outcome::Retry(..) | Outcome::Halt(..) | Outcome::Release => {}
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
                Outcome::Release => {
                    batch.release_c.push(c.campaign_id);
                    batch.release_p.push(c.phone);
                    continue;
                }
            };
            batch.commands.push((c.delivery_id(), command));
            batch.done_c.push(c.campaign_id);
            batch.done_p.push(c.phone);
        }
        // Losing a race to a younger transaction (a receipt for the same recipient) is passing:
        // do the same work again in a fresh transaction rather than leave the leases to expire.
        // So is a database that went away (a restart, a failover): the calls were made, so wait
        // for it (holding the slots: nothing more is sent meanwhile) for up to half the lease.
        let mut attempt = 0;
        let started = tokio::time::Instant::now();
        let patience = (self.config.lease / 2).min(Duration::from_secs(30));
        let spiked = loop {
            attempt += 1;
            match self.write_outcomes(&batch).await {
                Ok(spiked) => break spiked,
                Err(e) if attempt < 5 && (e.is_retryable() || lost_a_lock_race(&e)) => {
                    tracing::debug!(attempt, error = %e, "outcome batch raced a younger writer; again");
                    tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                }
                Err(e) if unreachable(&e) && started.elapsed() < patience => {
                    tracing::warn!(attempt, error = %e, "outcomes not stored yet (database unreachable); retrying");
                    let pause = Duration::from_millis(100 * 2u64.pow(attempt.min(4) as u32));
                    tokio::time::sleep(pause.min(Duration::from_secs(2))).await;
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
        if !batch.release_c.is_empty() {
            sqlx::query(
                "UPDATE dispatch_queue q SET state = 'ready', lease_until = NULL
                   FROM UNNEST($1::uuid[], $2::text[]) AS r(c, p)
                  WHERE q.campaign_id = r.c AND q.phone = r.p",
            )
            .bind(&batch.release_c)
            .bind(&batch.release_p)
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

/// Whether the database could not be reached (rather than refused the work): worth waiting for.
fn unreachable(e: &store::StoreError) -> bool {
    let store::StoreError::Database(e) = e else {
        return false;
    };
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // connection exceptions (08xxx) and operator intervention (57P01 admin shutdown, ...)
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// A deadlock or serialization failure: Postgres aborted this transaction for another's sake.
fn lost_a_lock_race(e: &store::StoreError) -> bool {
    matches!(e, store::StoreError::Database(sqlx::Error::Database(db))
        if matches!(db.code().as_deref(), Some("40P01" | "40001")))
}
