//! The gates a claimed batch passes inside the claim's transaction: the message quota and the
//! per-session pacing reservation.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgConnection;

use crate::quota::{self, Plan};
use uuid::Uuid;

use super::*;

impl Dispatcher {
    /// Quota (decision 7): each tenant's first-time recipients are granted from its current
    /// window in one upsert; the rest go back to the queue flagged `waiting_quota`, due when the
    /// window turns (or, for an expired subscription, when the operator renews it), together with
    /// every other due first-time recipient of their campaigns, so they are not claimed again and
    /// again. Returns the rows to send, and the unlimited tenants' counts to record.
    pub(super) async fn apply_quota(
        &self,
        tx: &mut PgConnection,
        claimed: Vec<Claimed>,
    ) -> anyhow::Result<(Vec<Claimed>, Vec<(Uuid, i64)>)> {
        let mut wanted: HashMap<Uuid, i64> = HashMap::new();
        for c in claimed.iter().filter(|c| c.needs_quota()) {
            *wanted.entry(c.tenant_id).or_default() += 1;
        }
        let mut unlimited = Vec::new();
        let mut waiting_granted: Vec<(Uuid, String)> = Vec::new();
        if wanted.is_empty() {
            return Ok((claimed, unlimited));
        }
        let now = Utc::now();
        let (window_start, window_end) = self.config.quota_window.around(now);
        let tenants: Vec<Uuid> = wanted.keys().copied().collect();
        let plans: HashMap<Uuid, quota::TenantPlan> = quota::plans(&mut *tx, &tenants)
            .await?
            .into_iter()
            .collect();
        // tenant -> (granted count, when the refused ones are due again)
        let mut grants: HashMap<Uuid, (i64, Option<chrono::DateTime<Utc>>)> = HashMap::new();
        for (tenant, n) in &wanted {
            let plan = plans.get(tenant).cloned().unwrap_or(quota::TenantPlan {
                plan: Plan::Basic,
                expires_at: None,
            });
            if plan.expired(now) {
                grants.insert(*tenant, (0, None));
                continue;
            }
            match plan.plan.limits().messages_per_window {
                None => {
                    unlimited.push((*tenant, *n));
                    grants.insert(*tenant, (*n, Some(window_end)));
                }
                Some(limit) => {
                    let granted = quota::grant(&mut *tx, *tenant, window_start, *n, limit).await?;
                    grants.insert(*tenant, (granted, Some(window_end)));
                }
            }
        }
        let mut keep = Vec::with_capacity(claimed.len());
        // due again at: (campaign, phone) per time; None = when the plan is renewed
        let mut refused: HashMap<Option<chrono::DateTime<Utc>>, QueueKeys> = HashMap::new();
        for c in claimed {
            if !c.needs_quota() {
                keep.push(c);
                continue;
            }
            let entry = grants.entry(c.tenant_id).or_insert((0, None));
            if entry.0 > 0 {
                entry.0 -= 1;
                if c.waiting_quota {
                    waiting_granted.push((c.campaign_id, c.phone.clone()));
                }
                keep.push(c);
            } else {
                let (cs, ps) = refused.entry(entry.1).or_default();
                cs.push(c.campaign_id);
                ps.push(c.phone);
            }
        }
        for (due, (campaigns, phones)) in refused {
            // 'infinity' is also where pause parks rows; a hold tells them apart
            let due_sql = due
                .map(|d| d.to_rfc3339())
                .unwrap_or_else(|| "infinity".into());
            sqlx::query(
                "UPDATE dispatch_queue q
                    SET state = 'ready', attempts = q.attempts - 1, lease_until = NULL,
                        waiting_quota = true, not_before = $3::timestamptz
                   FROM UNNEST($1::uuid[], $2::text[]) AS r(c, p)
                  WHERE q.campaign_id = r.c AND q.phone = r.p",
            )
            .bind(&campaigns)
            .bind(&phones)
            .bind(&due_sql)
            .execute(&mut *tx)
            .await?;
            let mut distinct = campaigns;
            distinct.sort();
            distinct.dedup();
            let parked = sqlx::query(
                "UPDATE dispatch_queue SET waiting_quota = true, not_before = $2::timestamptz
                  WHERE campaign_id = ANY($1) AND state = 'ready' AND attempts = 0
                    AND content IS NULL AND not_before <= now()",
            )
            .bind(&distinct)
            .bind(&due_sql)
            .execute(&mut *tx)
            .await?;
            tracing::info!(
                campaigns = distinct.len(),
                parked = parked.rows_affected(),
                due = %due_sql,
                "recipients wait for quota"
            );
        }
        if !waiting_granted.is_empty() {
            let (cs, ps): (Vec<Uuid>, Vec<String>) = waiting_granted.into_iter().unzip();
            sqlx::query(
                "UPDATE dispatch_queue q SET waiting_quota = false
                   FROM UNNEST($1::uuid[], $2::text[]) AS r(c, p)
                  WHERE q.campaign_id = r.c AND q.phone = r.p",
            )
            .bind(&cs)
            .bind(&ps)
            .execute(&mut *tx)
            .await?;
        }
        Ok((keep, unlimited))
    }
}

/// Marks each paced session busy while its send is in flight (until the lease ends, in case this
/// worker dies) and draws the interval that will follow the send, in the claim's transaction
/// (the session's row is locked by the claim).
pub(super) async fn reserve_pacing(
    tx: &mut PgConnection,
    claimed: &mut [Claimed],
    lease: Duration,
) -> sqlx::Result<()> {
    let mut sessions = Vec::new();
    let mut intervals = Vec::new();
    for c in claimed.iter_mut().filter(|c| c.pacing.is_paced()) {
        let (min, max) = (c.pacing.min_interval_ms, c.pacing.max_interval_ms);
        let ms = if max > min {
            min + (rand::random::<u32>() % ((max - min) as u32 + 1)) as i32
        } else {
            max
        };
        c.interval_ms = ms;
        sessions.push(c.session_id);
        intervals.push(ms);
    }
    if sessions.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE session_pacing p
            SET next_at = clock_timestamp() + make_interval(secs => $3), last_interval_ms = r.ms
           FROM UNNEST($1::uuid[], $2::int[]) AS r(s, ms)
          WHERE p.session_id = r.s",
    )
    .bind(&sessions)
    .bind(&intervals)
    .bind(lease.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    Ok(())
}
