//! Linked WhatsApp numbers (sessions). Linking with an existing WuzAPI user token points that
//! user's webhook at Herald and gives it a webhook signing key; token and key are stored apart
//! from the event store.

use chrono::{DateTime, Utc};
use herald_domain::session::{Session, SessionCommand, SessionStatus};
use herald_projections::sessions::{self as read, SessionRow};
use herald_scheduler::pacing::Pacing;
use salvo::oapi::extract::{PathParam, QueryParam};
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{parse_id, parse_limit, parse_time_cursor, ListOf};
use crate::auth::caller;
use crate::error::{json_body, ApiError};
use crate::state::AppState;

/// The WuzAPI events Herald subscribes a linked number to.
pub const WEBHOOK_EVENTS: [&str; 6] = [
    "Message",
    "ReadReceipt",
    "Connected",
    "Disconnected",
    "LoggedOut",
    "QR",
];

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    name: String,
    /// The token of an existing WuzAPI user. Herald points that user's webhook at itself.
    gateway_token: Option<String>,
    /// The interval between two sends of this number (default 3,000-8,000 ms; 0/0: none).
    pacing: Option<PacingBody>,
}

/// `{"min_interval_ms", "max_interval_ms"}`: a random interval in this range between two sends
/// of one number, across every campaign and instance. 0/0 is no pacing; at most one hour.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PacingBody {
    #[salvo(schema(value_type = i64))]
    min_interval_ms: Option<serde_json::Value>,
    #[salvo(schema(value_type = i64))]
    max_interval_ms: Option<serde_json::Value>,
}

impl PacingBody {
    /// Checks the numbers; errors name `<prefix>.<field>`.
    pub fn parse(self, prefix: &str) -> Result<Pacing, ApiError> {
        let input = herald_scheduler::pacing::PacingInput {
            min_interval_ms: self.min_interval_ms,
            max_interval_ms: self.max_interval_ms,
        };
        Pacing::from_input(prefix, &input)
            .map_err(|(field, message)| ApiError::validation(&field, message))
    }
}

#[derive(Serialize, ToSchema)]
pub struct PacingView {
    pub min_interval_ms: i32,
    pub max_interval_ms: i32,
}

impl From<Pacing> for PacingView {
    fn from(p: Pacing) -> Self {
        PacingView {
            min_interval_ms: p.min_interval_ms,
            max_interval_ms: p.max_interval_ms,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSession {
    pacing: Option<PacingBody>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    id: Uuid,
    name: String,
    /// `disconnected`, `qr_pending`, `connected` or `logged_out`.
    status: String,
    /// Where the gateway posts this session's events.
    webhook_url: String,
    /// The pace of sends through this number (0/0: none).
    pacing: PacingView,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn view(state: &AppState, row: SessionRow, pacing: Option<Pacing>) -> SessionView {
    SessionView {
        pacing: pacing.unwrap_or(Pacing::NONE).into(),
        webhook_url: webhook_url(state, row.id),
        id: row.id,
        name: row.name,
        status: row.status,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// 32 random bytes as 64 hex characters (WuzAPI wants at least 32 characters), from the OS's
/// cryptographic generator. Stored like the gateway token (docs/decisions/0007).
fn new_hmac_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn webhook_url(state: &AppState, id: Uuid) -> String {
    format!("{}/api/v1/webhooks/wuzapi/{id}", state.public_url)
}

/// Links a WhatsApp number through its WuzAPI user token.
#[endpoint(tags("sessions"), request_body = CreateSession, status_codes(201, 400, 401, 403, 422, 502), security(["bearer" = []], ["api_key" = []]))]
pub async fn create(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
) -> Result<Json<SessionView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let body: CreateSession = json_body(req, 64 * 1024).await?;
    let name = herald_domain::template::validate_name(&body.name)?;
    let pacing = match body.pacing {
        Some(p) => p.parse("pacing")?,
        None => herald_scheduler::pacing::DEFAULT,
    };
    let plan = crate::plans::require_active(&state, caller.tenant_id).await?;
    let max_sessions = plan.plan.limits().sessions;
    // checked before the gateway is asked, and again where the session is stored
    if let Some(limit) = max_sessions {
        let mut conn = state.pool.acquire().await?;
        plan_session_limit(&mut conn, caller.tenant_id, plan.plan, limit).await?;
    }
    let token = body
        .gateway_token
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::validation(
                "gateway_token",
                "is required: give the token of an existing WuzAPI user (creating WuzAPI users from Herald is not available yet)",
            )
        })?;
    if token.len() > 256 || token.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::validation(
            "gateway_token",
            "is not a valid WuzAPI token",
        ));
    }
    let id = Uuid::new_v4();
    // Ask the gateway first: a wrong token or an unreachable gateway is the user's to know now.
    state
        .gateway
        .set_webhook(&token, &webhook_url(&state, id), &WEBHOOK_EVENTS)
        .await
        .map_err(|e| {
            ApiError::Gateway(format!(
                "the gateway refused the webhook registration: {}",
                e.message()
            ))
        })?;
    // A per-session key from now on: WuzAPI signs every post with it, and Herald refuses posts
    // to this session that are unsigned or forged. Set on the gateway BEFORE it is stored, so
    // Herald never demands a signature the gateway does not make.
    let hmac_key = new_hmac_key();
    state
        .gateway
        .set_hmac_key(&token, &hmac_key)
        .await
        .map_err(|e| {
            ApiError::Gateway(format!(
                "the gateway refused the webhook signing key: {}",
                e.message()
            ))
        })?;
    let status = match state.gateway.session_status(&token).await {
        Ok(s) if s.logged_in && s.connected => SessionStatus::Connected,
        Ok(_) => SessionStatus::Disconnected,
        Err(e) => {
            tracing::warn!(error = %e.message(), "gateway session status unavailable");
            SessionStatus::Disconnected
        }
    };
    let mut tx = state.pool.begin().await?;
    if let Some(limit) = max_sessions {
        // one tenant's session creations in a row, so two at once cannot both pass the limit
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('herald-sessions:' || $1::text))")
            .bind(caller.tenant_id)
            .execute(&mut *tx)
            .await?;
        plan_session_limit(&mut tx, caller.tenant_id, plan.plan, limit).await?;
    }
    sqlx::query(
        "INSERT INTO session_credentials (session_id, tenant_id, gateway_token, hmac_key)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(caller.tenant_id)
    .bind(&token)
    .bind(&hmac_key)
    .execute(&mut *tx)
    .await?;
    herald_scheduler::pacing::set_session(&mut tx, id, caller.tenant_id, pacing).await?;
    tx.commit().await?;
    let now = Utc::now();
    state
        .sessions
        .execute(
            &id.to_string(),
            SessionCommand::Link {
                tenant_id: caller.tenant_id,
                name,
                status,
                at: now,
            },
        )
        .await?;
    state
        .wait_projected(
            read::NAME,
            <Session as cqrs_es::Aggregate>::TYPE,
            &id.to_string(),
        )
        .await?;
    let row = read::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("session {id} not projected")))?;
    res.status_code(StatusCode::CREATED);
    Ok(Json(view(&state, row, Some(pacing))))
}

/// 403 `plan_limit_reached` when the tenant has its plan's number of sessions already.
async fn plan_session_limit(
    conn: &mut sqlx::PgConnection,
    tenant_id: Uuid,
    plan: herald_scheduler::quota::Plan,
    limit: i64,
) -> Result<(), ApiError> {
    let count = crate::plans::session_count(conn, tenant_id).await?;
    if count >= limit {
        return Err(ApiError::PlanRefused {
            code: "plan_limit_reached",
            message: format!(
                "the {} plan allows {limit} linked number(s); unlink one or upgrade the plan",
                plan.as_str()
            ),
            details: Some(serde_json::json!({
                "limit": "sessions", "plan": plan.as_str(), "max": limit, "current": count
            })),
        });
    }
    Ok(())
}

/// Changes a linked number's pacing; recipients already queued that follow the session's pacing
/// take the new one at once (campaigns with their own pacing keep theirs).
#[endpoint(tags("sessions"), request_body = UpdateSession, status_codes(200, 400, 401, 404, 422), security(["bearer" = []], ["api_key" = []]))]
pub async fn update(
    id: PathParam<String>,
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Json<SessionView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let body: UpdateSession = json_body(req, 64 * 1024).await?;
    let row = read::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut tx = state.pool.begin().await?;
    if let Some(p) = body.pacing {
        let pacing = p.parse("pacing")?;
        herald_scheduler::pacing::set_session(&mut tx, id, caller.tenant_id, pacing).await?;
    }
    let pacing = herald_scheduler::pacing::of_session(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(view(&state, row, pacing)))
}

/// This tenant's linked numbers, newest first.
#[endpoint(tags("sessions"), security(["bearer" = []], ["api_key" = []]))]
pub async fn list(
    limit: QueryParam<String, false>,
    cursor: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<Json<ListOf<SessionView>>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let limit = parse_limit(limit.as_deref())?;
    let cursor = parse_time_cursor(cursor.as_deref())?;
    let page = read::list(&state.pool, caller.tenant_id, limit, cursor).await?;
    let ids: Vec<Uuid> = page.items.iter().map(|r| r.id).collect();
    let pacing = herald_scheduler::pacing::of_sessions(&state.pool, &ids).await?;
    Ok(Json(ListOf {
        items: page
            .items
            .into_iter()
            .map(|r| {
                let p = pacing.get(&r.id).copied();
                view(&state, r, p)
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One linked number.
#[endpoint(tags("sessions"), security(["bearer" = []], ["api_key" = []]))]
pub async fn get(id: PathParam<String>, depot: &mut Depot) -> Result<Json<SessionView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let row = read::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let mut conn = state.pool.acquire().await?;
    let pacing = herald_scheduler::pacing::of_session(&mut conn, id).await?;
    Ok(Json(view(&state, row, pacing)))
}

/// Unlinks a number: Herald forgets its gateway token; campaigns on it stop sending.
#[endpoint(tags("sessions"), status_codes(204, 401, 404), security(["bearer" = []], ["api_key" = []]))]
pub async fn delete(
    id: PathParam<String>,
    depot: &mut Depot,
    res: &mut Response,
) -> Result<(), ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    state
        .sessions
        .execute(
            &id.to_string(),
            SessionCommand::Delete {
                tenant_id: caller.tenant_id,
                at: Utc::now(),
            },
        )
        .await?;
    sqlx::query("DELETE FROM session_credentials WHERE session_id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(caller.tenant_id)
        .execute(&state.pool)
        .await?;
    // session_pacing stays: recipients still queued on this session are claimed through it (at
    // its pace) and fail with "the session no longer exists"; without the row they would strand
    state
        .wait_projected(
            read::NAME,
            <Session as cqrs_es::Aggregate>::TYPE,
            &id.to_string(),
        )
        .await?;
    res.status_code(StatusCode::NO_CONTENT);
    Ok(())
}
