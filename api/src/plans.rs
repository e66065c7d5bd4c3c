//! The request side of plans: the shapes `GET /api/v1/me` and the operator see, and the glue
//! that hands the rules (`herald_accounts::plans`, docs/plans-and-pacing.md) this process's
//! pool and window. The rules themselves run without a request.

use chrono::{DateTime, Utc};
use herald_accounts::plans::{self, Usage};
use herald_scheduler::quota::{Plan, TenantPlan, Window};
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
    Ok(plans::tenant_plan(pool, tenant_id).await?)
}

/// Sending (creating or starting a campaign, resuming one, a single send) needs a subscription
/// that has not expired; reading never does.
pub async fn require_active(state: &AppState, tenant_id: Uuid) -> Result<TenantPlan, ApiError> {
    Ok(plans::require_active(&state.pool, tenant_id).await?)
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

impl From<Usage> for UsageView {
    fn from(u: Usage) -> Self {
        UsageView {
            messages: u.messages,
            api_calls: u.api_calls,
            sessions: u.sessions,
            window_started_at: u.window_started_at,
            resets_at: u.resets_at,
        }
    }
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
    Ok(plans::session_count(conn, tenant_id).await?)
}

pub async fn usage(state: &AppState, tenant_id: Uuid) -> Result<UsageView, ApiError> {
    Ok(plans::usage(&state.pool, window(state), tenant_id)
        .await?
        .into())
}

/// Counts one API call of a limited plan and refuses it over the limit (429 with Retry-After).
pub async fn count_api_call(state: &AppState, tenant_id: Uuid) -> Result<(), ApiError> {
    Ok(plans::count_api_call(&state.pool, window(state), tenant_id).await?)
}
