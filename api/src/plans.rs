//! Plans as the API enforces them (docs/plans-and-pacing.md): expired subscriptions cannot send,
//! session limits, API calls per window, and the usage `GET /api/v1/me` and the operator see.

use chrono::{DateTime, Utc};
use herald_scheduler::quota::{self, Plan, TenantPlan, Window};
use salvo::oapi::ToSchema;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

pub fn window(state: &AppState) -> Window {
    Window::new(state.settings.quota_window_secs)
}

pub async fn tenant_plan(pool: &PgPool, tenant_id: Uuid) -> Result<TenantPlan, ApiError> {
    let mut conn = pool.acquire().await?;
    quota::plans(&mut conn, &[tenant_id])
        .await?
        .into_iter()
        .next()
        .map(|(_, p)| p)
        .ok_or(ApiError::NotFound)
}

/// Sending (creating or starting a campaign, resuming one, a single send) needs a subscription
/// that has not expired; reading never does.
pub async fn require_active(state: &AppState, tenant_id: Uuid) -> Result<TenantPlan, ApiError> {
    let plan = tenant_plan(&state.pool, tenant_id).await?;
    if let Some(expired) = plan.expires_at.filter(|e| *e <= Utc::now()) {
        return Err(ApiError::PlanRefused {
            code: "subscription_expired",
            message: format!(
                "the {} plan expired at {}; renew it to send (reading still works)",
                plan.plan.as_str(),
                expired.to_rfc3339()
            ),
            details: Some(serde_json::json!({
                "plan": plan.plan.as_str(), "expires_at": expired
            })),
        });
    }
    Ok(plan)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsView {
    /// `null`: no limit.
    pub sessions: Option<i64>,
    pub messages_per_hour: Option<i64>,
    pub api_calls_per_hour: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    /// Messages taken from the current window (sends, single sends; retries are not counted).
    pub messages: i64,
    /// API calls in the current window (limited plans only; rejected calls included).
    pub api_calls: i64,
    pub sessions: i64,
    pub window_started_at: DateTime<Utc>,
    /// When the current window ends and the counts start again.
    pub resets_at: DateTime<Utc>,
}

pub fn limits_view(plan: Plan) -> LimitsView {
    let l = plan.limits();
    LimitsView {
        sessions: l.sessions,
        messages_per_hour: l.messages_per_window,
        api_calls_per_hour: l.api_calls_per_window,
    }
}

/// Linked sessions of a tenant (those with gateway credentials).
pub async fn session_count(
    conn: &mut sqlx::PgConnection,
    tenant_id: Uuid,
) -> Result<i64, ApiError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM session_credentials WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_one(&mut *conn)
            .await?,
    )
}

pub async fn usage(state: &AppState, tenant_id: Uuid) -> Result<UsageView, ApiError> {
    let (start, end) = window(state).around(Utc::now());
    let (messages, api_calls, sessions): (i64, i64, i64) = sqlx::query_as(
        "SELECT COALESCE((SELECT messages FROM quota_usage WHERE tenant_id = $1 AND window_start = $2), 0),
                COALESCE((SELECT calls FROM api_usage WHERE tenant_id = $1 AND window_start = $2), 0),
                (SELECT count(*) FROM session_credentials WHERE tenant_id = $1)",
    )
    .bind(tenant_id)
    .bind(start)
    .fetch_one(&state.pool)
    .await?;
    Ok(UsageView {
        messages,
        api_calls,
        sessions,
        window_started_at: start,
        resets_at: end,
    })
}

/// Counts one API call of a limited plan and refuses it over the limit (429 with Retry-After).
/// One statement: unlimited tenants are read, not written.
pub async fn count_api_call(state: &AppState, tenant_id: Uuid) -> Result<(), ApiError> {
    let now = Utc::now();
    let (start, end) = window(state).around(now);
    // a counter lost in a crash costs nothing: do not make every API call wait for a disk flush
    let mut tx = state.pool.begin().await?;
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
        Some(limit) if calls > limit => {
            let retry = (end - now).num_seconds().max(1) as u64;
            Err(ApiError::TooManyRequests {
                code: "rate_limited",
                message: format!(
                    "the {plan} plan allows {limit} API calls per hour; try again after {}",
                    end.to_rfc3339()
                ),
                details: Some(serde_json::json!({"limit": limit, "resets_at": end})),
                retry_after_secs: retry,
            })
        }
        _ => Ok(()),
    }
}
