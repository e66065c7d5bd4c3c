//! Linked WhatsApp numbers (sessions). Linking with an existing WuzAPI user token points that
//! user's webhook at Herald and gives it a webhook signing key; token and key are stored apart
//! from the event store.

use chrono::{DateTime, Utc};
use herald_domain::session::{Session, SessionCommand, SessionStatus};
use herald_projections::sessions::{self as read, SessionRow};
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
    /// The WhatsApp Cloud API phone number id this number has at Meta (digits), when Meta's
    /// webhook notifications for it should reach this session.
    meta_phone_number_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    id: Uuid,
    name: String,
    /// `disconnected`, `qr_pending`, `connected` or `logged_out`.
    status: String,
    /// Where the gateway posts this session's events.
    webhook_url: String,
    /// The WhatsApp Cloud API phone number id, when set.
    meta_phone_number_id: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn view(state: &AppState, row: SessionRow) -> SessionView {
    SessionView {
        webhook_url: webhook_url(state, row.id),
        id: row.id,
        name: row.name,
        status: row.status,
        meta_phone_number_id: row.meta_phone_number_id,
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
#[endpoint(tags("sessions"), request_body = CreateSession, status_codes(201, 400, 401, 422, 502), security(["bearer" = []], ["api_key" = []]))]
pub async fn create(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
) -> Result<Json<SessionView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let body: CreateSession = json_body(req, 64 * 1024).await?;
    let name = herald_domain::template::validate_name(&body.name)?;
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
    let meta_phone_number_id = body
        .meta_phone_number_id
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if let Some(n) = &meta_phone_number_id {
        if !herald_gateway::meta::valid_phone_number_id(n) {
            return Err(ApiError::validation(
                "meta_phone_number_id",
                "must be the digits of a Cloud API phone number id",
            ));
        }
        let taken: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM session_credentials WHERE meta_phone_number_id = $1")
                .bind(n)
                .fetch_optional(&state.pool)
                .await?;
        if taken.is_some() {
            return Err(ApiError::Conflict {
                code: "already_exists",
                message: "another session already has this meta_phone_number_id".into(),
            });
        }
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
    sqlx::query(
        "INSERT INTO session_credentials (session_id, tenant_id, gateway_token, hmac_key, meta_phone_number_id)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(caller.tenant_id)
    .bind(&token)
    .bind(&hmac_key)
    .bind(&meta_phone_number_id)
    .execute(&state.pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => ApiError::Conflict {
            code: "already_exists",
            message: "another session already has this meta_phone_number_id".into(),
        },
        _ => e.into(),
    })?;
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
    Ok(Json(view(&state, row)))
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
    Ok(Json(ListOf {
        items: page.items.into_iter().map(|r| view(&state, r)).collect(),
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
    Ok(Json(view(&state, row)))
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
