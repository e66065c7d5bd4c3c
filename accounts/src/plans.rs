//! Plans as Herald enforces them (docs/plans-and-pacing.md): expired subscriptions cannot send,
//! session limits, API calls per window, and the usage a tenant and the operator see.

use chrono::{DateTime, Utc};
use herald_scheduler::quota::{self, Plan, TenantPlan, Window};
use sqlx::PgPool;
use uuid::Uuid;

/// Why a plan refused.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// No tenant has this id.
    #[error("no such tenant")]
    NoTenant,
    /// Sending needs a subscription that has not expired.
    #[error("the {plan} plan expired at {}; renew it to send (reading still works)", expires_at.to_rfc3339())]
    SubscriptionExpired {
        plan: &'static str,
        expires_at: DateTime<Utc>,
    },
    /// A limited plan's API calls of the current window are used up.
    #[error("the {plan} plan allows {limit} API calls per hour; try again after {}", resets_at.to_rfc3339())]
    ApiCallsOverLimit {
        plan: String,
        limit: i64,
        resets_at: DateTime<Utc>,
        retry_after_secs: u64,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub async fn tenant_plan(pool: &PgPool, tenant_id: Uuid) -> Result<TenantPlan, PlanError> {
    let mut conn = pool.acquire().await?;
    quota::plans(&mut conn, &[tenant_id])
        .await?
        .into_iter()
        .next()
        .map(|(_, p)| p)
        .ok_or(PlanError::NoTenant)
}

/// Sending (creating or starting a campaign, resuming one, a single send) needs a subscription
/// that has not expired; reading never does.
pub async fn require_active(pool: &PgPool, tenant_id: Uuid) -> Result<TenantPlan, PlanError> {
    let plan = tenant_plan(pool, tenant_id).await?;
    if let Some(expired) = plan.expires_at.filter(|e| *e <= Utc::now()) {
        return Err(PlanError::SubscriptionExpired {
            plan: plan.plan.as_str(),
            expires_at: expired,
        });
    }
    Ok(plan)
}

/// Linked sessions of a tenant (those with gateway credentials).
pub async fn session_count(
    conn: &mut sqlx::PgConnection,
    tenant_id: Uuid,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM session_credentials WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_one(&mut *conn)
        .await
}

/// A tenant's use of the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Messages taken from the current window (sends, single sends; retries are not counted).
    pub messages: i64,
    /// API calls in the current window (limited plans only; rejected calls included).
    pub api_calls: i64,
    pub sessions: i64,
    pub window_started_at: DateTime<Utc>,
    /// When the current window ends and the counts start again.
    pub resets_at: DateTime<Utc>,
}

pub async fn usage(pool: &PgPool, window: Window, tenant_id: Uuid) -> Result<Usage, PlanError> {
    let (start, end) = window.around(Utc::now());
    let (messages, api_calls, sessions): (i64, i64, i64) = sqlx::query_as(
        "SELECT COALESCE((SELECT messages FROM quota_usage WHERE tenant_id = $1 AND window_start = $2), 0),
                COALESCE((SELECT calls FROM api_usage WHERE tenant_id = $1 AND window_start = $2), 0),
                (SELECT count(*) FROM session_credentials WHERE tenant_id = $1)",
    )
    .bind(tenant_id)
    .bind(start)
    .fetch_one(pool)
    .await?;
    Ok(Usage {
        messages,
        api_calls,
        sessions,
        window_started_at: start,
        resets_at: end,
    })
}

/// Counts one API call of a limited plan and refuses it over the limit. One statement: unlimited
/// tenants are read, not written.
pub async fn count_api_call(
    pool: &PgPool,
    window: Window,
    tenant_id: Uuid,
) -> Result<(), PlanError> {
    let now = Utc::now();
    let (start, end) = window.around(now);
    // a counter lost in a crash costs nothing: do not make every API call wait for a disk flush
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    let row: Option<(i64, String)> = sqlx::query_as(
        "WITH t AS (SELECT plan FROM tenants WHERE id = $1)
         INSERT INTO api_usage AS u (tenant_id, window_start, calls)
         SELECT $1, $2, 1 FROM t WHERE t.plan <> 'unlimited'
         ON CONFLICT (tenant_id, window_start) DO UPDATE SET calls = u.calls + 1
         RETURNING calls, (SELECT plan FROM t)",
    )
    .bind(tenant_id)
    .bind(start)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    let Some((calls, plan)) = row else {
        return Ok(());
    };
    let limit = Plan::parse(&plan)
        .unwrap_or(Plan::Basic)
        .limits()
        .api_calls_per_window;
    match limit {
        Some(limit) if calls > limit => Err(PlanError::ApiCallsOverLimit {
            plan,
            limit,
            resets_at: end,
            retry_after_secs: (end - now).num_seconds().max(1) as u64,
        }),
        _ => Ok(()),
    }
}
