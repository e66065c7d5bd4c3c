//! Plans and the hourly message quota (docs/decisions/0009).
//!
//! Windows are fixed: they start at whole multiples of the window length since the Unix epoch
//! (whole UTC clock hours with the default of 3,600 s). A tenant's usage in a window is one row of
//! `quota_usage`; a grant is one upsert that hands out at most what is left, so concurrent
//! claims on any number of instances never grant more than the plan allows.

use chrono::{DateTime, TimeZone, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

/// A tenant's plan (the table in docs/plans-and-pacing.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Basic,
    Pro,
    Max,
    Unlimited,
}

/// What a plan allows; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    pub sessions: Option<i64>,
    pub messages_per_window: Option<i64>,
    pub api_calls_per_window: Option<i64>,
}

impl Plan {
    pub const ALL: [Plan; 4] = [Plan::Basic, Plan::Pro, Plan::Max, Plan::Unlimited];

    pub fn parse(s: &str) -> Option<Plan> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Plan::Basic => "basic",
            Plan::Pro => "pro",
            Plan::Max => "max",
            Plan::Unlimited => "unlimited",
        }
    }

    pub fn limits(&self) -> Limits {
        let (s, m, a) = match self {
            Plan::Basic => (Some(1), Some(100), Some(1_000)),
            Plan::Pro => (Some(5), Some(1_000), Some(10_000)),
            Plan::Max => (Some(20), Some(10_000), Some(100_000)),
            Plan::Unlimited => (None, None, None),
        };
        Limits {
            sessions: s,
            messages_per_window: m,
            api_calls_per_window: a,
        }
    }
}

/// Fixed quota windows of `length` seconds.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub length_secs: i64,
}

impl Default for Window {
    fn default() -> Self {
        Window { length_secs: 3_600 }
    }
}

impl Window {
    pub fn new(length_secs: u64) -> Window {
        Window {
            length_secs: (length_secs as i64).clamp(1, 86_400 * 31),
        }
    }

    /// The window `at` falls in: (start, end).
    pub fn around(&self, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let secs = at.timestamp();
        let start = secs - secs.rem_euclid(self.length_secs);
        let start = Utc.timestamp_opt(start, 0).single().unwrap_or(at);
        (start, start + chrono::Duration::seconds(self.length_secs))
    }
}

/// A tenant's plan as stored, and whether it has run out.
#[derive(Debug, Clone)]
pub struct TenantPlan {
    pub plan: Plan,
    pub expires_at: Option<DateTime<Utc>>,
}

impl TenantPlan {
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

/// Reads tenants' plans (an unknown stored plan counts as `basic`, the most careful reading).
pub async fn plans(
    conn: &mut PgConnection,
    tenants: &[Uuid],
) -> sqlx::Result<Vec<(Uuid, TenantPlan)>> {
    let rows: Vec<(Uuid, String, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT id, plan, plan_expires_at FROM tenants WHERE id = ANY($1)")
            .bind(tenants)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(id, plan, expires_at)| {
            (
                id,
                TenantPlan {
                    plan: Plan::parse(&plan).unwrap_or(Plan::Basic),
                    expires_at,
                },
            )
        })
        .collect())
}

/// Grants up to `wanted` messages of the tenant's current window, at most what is left of
/// `limit`; returns how many were granted. The row stays locked until the caller's transaction
/// ends, so the grant and what the caller does with it commit together.
pub async fn grant(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    window_start: DateTime<Utc>,
    wanted: i64,
    limit: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO quota_usage AS u (tenant_id, window_start, messages, last_grant)
         VALUES ($1, $2, LEAST($3, $4), LEAST($3, $4))
         ON CONFLICT (tenant_id, window_start) DO UPDATE
            SET last_grant = LEAST($3, GREATEST($4 - u.messages, 0)),
                messages = u.messages + LEAST($3, GREATEST($4 - u.messages, 0))
         RETURNING last_grant",
    )
    .bind(tenant_id)
    .bind(window_start)
    .bind(wanted.max(0))
    .bind(limit.max(0))
    .fetch_one(&mut *conn)
    .await
}

/// Counts messages of a tenant without a limit (shown as usage), outside any claim.
pub async fn count_unlimited(
    pool: &sqlx::PgPool,
    tenant_id: Uuid,
    window_start: DateTime<Utc>,
    n: i64,
) -> sqlx::Result<()> {
    // usage shown to people, not a limit: no need to wait for a disk flush on the dispatch path
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO quota_usage AS u (tenant_id, window_start, messages) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, window_start) DO UPDATE SET messages = u.messages + $3",
    )
    .bind(tenant_id)
    .bind(window_start)
    .bind(n)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Messages used in the tenant's window.
pub async fn used(
    pool: &sqlx::PgPool,
    tenant_id: Uuid,
    window_start: DateTime<Utc>,
) -> sqlx::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT messages FROM quota_usage WHERE tenant_id = $1 AND window_start = $2",
    )
    .bind(tenant_id)
    .bind(window_start)
    .fetch_optional(pool)
    .await?
    .unwrap_or(0))
}

/// Recipients waiting for quota go now (the plan grew or was renewed): due at once, rechecked by
/// the next claim. Held campaigns (paused, scheduled) are left where they are.
pub async fn release_waiting(pool: &sqlx::PgPool, tenant_id: Uuid) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE dispatch_queue q SET not_before = now()
          WHERE q.tenant_id = $1 AND q.waiting_quota AND q.state = 'ready'
            AND NOT EXISTS (SELECT 1 FROM campaign_holds h WHERE h.campaign_id = q.campaign_id)",
    )
    .bind(tenant_id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Recipients of each campaign waiting for quota right now.
pub async fn waiting_counts(
    pool: &sqlx::PgPool,
    campaigns: &[Uuid],
) -> sqlx::Result<std::collections::HashMap<Uuid, i64>> {
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT campaign_id, count(*) FROM dispatch_queue
          WHERE campaign_id = ANY($1) AND waiting_quota GROUP BY campaign_id",
    )
    .bind(campaigns)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_fixed_and_aligned() {
        let w = Window::default();
        let at = Utc.with_ymd_and_hms(2026, 11, 21, 9, 41, 7).unwrap();
        let (s, e) = w.around(at);
        assert_eq!(s, Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap());
        assert_eq!(e, Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap());
        let short = Window::new(5);
        let (s, e) = short.around(at);
        assert_eq!((s.timestamp() % 5, (e - s).num_seconds()), (0, 5));
        assert!(s <= at && at < e);
    }

    #[test]
    fn plans_match_the_table() {
        assert_eq!(
            Plan::parse("basic").map(|p| p.limits().messages_per_window),
            Some(Some(100))
        );
        assert_eq!(Plan::Pro.limits().sessions, Some(5));
        assert_eq!(Plan::Max.limits().api_calls_per_window, Some(100_000));
        assert_eq!(Plan::Unlimited.limits().sessions, None);
        assert_eq!(Plan::parse("gold"), None);
    }
}
