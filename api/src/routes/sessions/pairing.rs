//! Pairing a linked number with WhatsApp: `connect`, the QR code, `logout` and the live status.
//!
//! Each asks the gateway, then records what it learned through the `Session` aggregate (timed
//! now), so the stored status follows Herald's own calls as well as the gateway's webhooks. The
//! gateway's "already connected" is not an error; "already logged in" and "not connected" are
//! clear 409s; an unreachable or refusing gateway is a 502, never a 500.

use chrono::{DateTime, Duration, Utc};
use herald_domain::session::{Session, SessionCommand, SessionStatus};
use herald_gateway::{ConnectOutcome, LogoutOutcome, QrOutcome};
use herald_projections::sessions as read;
use salvo::oapi::extract::PathParam;
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use super::{gateway_failure, view_with_pacing, wuzapi_credentials, SessionView, WEBHOOK_EVENTS};
use crate::auth::caller;
use crate::error::ApiError;
use crate::routes::parse_id;
use crate::state::AppState;

/// A QR code received this recently (by webhook, or from the gateway) is served as is; an older
/// one is asked from the gateway again. WhatsApp's first code lasts 60 s and each next one 20 s,
/// and WuzAPI posts every new code, so a code older than this means a webhook went missing.
const QR_FRESH_SECS: i64 = 30;

#[derive(Serialize, ToSchema)]
pub struct QrView {
    /// The pairing code as an image: `data:image/png;base64,...`. Scan it in WhatsApp under
    /// Linked devices.
    qr_code: String,
    /// When Herald got this code (from the gateway's `QR` webhook or from the gateway itself).
    received_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct LiveStatusView {
    /// The status Herald recorded from this answer: `disconnected`, `qr_pending`, `connected`
    /// or `logged_out`.
    status: String,
    /// The gateway holds a connection to WhatsApp.
    connected: bool,
    /// The number is paired (its QR code was scanned).
    logged_in: bool,
    /// The paired number's WhatsApp id, when the gateway reports one.
    jid: Option<String>,
}

fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::Conflict {
        code,
        message: message.into(),
    }
}

/// Records a status Herald observed now. Stale or unchanged statuses record nothing. The inbox
/// processor may append to the same session at the same moment (the gateway's webhook about the
/// very change this call made): a lost race is simply tried again.
async fn record(state: &AppState, id: Uuid, status: SessionStatus) -> Result<(), ApiError> {
    let mut attempt = 0;
    loop {
        let command = SessionCommand::ChangeStatus {
            status,
            at: Utc::now(),
        };
        match state.sessions.execute(&id.to_string(), command).await {
            Ok(()) => break,
            Err(cqrs_es::AggregateError::AggregateConflict) if attempt < 4 => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    }
    state
        .wait_projected(
            read::NAME,
            <Session as cqrs_es::Aggregate>::TYPE,
            &id.to_string(),
        )
        .await
}

async fn current(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<read::SessionRow, ApiError> {
    read::get(&state.pool, tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Connects the number to WhatsApp, subscribing the events Herald needs. An unpaired number then
/// shows `qr_pending` and its QR code is at `GET /sessions/{id}/qr`; a paired one becomes
/// `connected` (at once, or when the gateway's `Connected` webhook arrives). Connecting a
/// connected session is not an error.
#[endpoint(tags("sessions"), status_codes(200, 401, 404, 502), security(["bearer" = []], ["api_key" = []]))]
pub async fn connect(
    id: PathParam<String>,
    depot: &mut Depot,
) -> Result<Json<SessionView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let credentials =
        wuzapi_credentials(&state, caller.tenant_id, id, "pairing or live status").await?;
    let outcome = state
        .gateway
        .connect(&credentials.token, &WEBHOOK_EVENTS)
        .await
        .map_err(|e| gateway_failure("connect the session", &e))?;
    if outcome == ConnectOutcome::AlreadyConnected {
        tracing::debug!(session_id = %id, "session was already connected");
    }
    // What the gateway says now. Right after connecting a paired number it may still be
    // handshaking (not connected yet): then the `Connected` webhook tells.
    match state.gateway.session_status(&credentials.token).await {
        Ok(s) if s.connected && s.logged_in => record(&state, id, SessionStatus::Connected).await?,
        Ok(s) if s.connected => record(&state, id, SessionStatus::QrPending).await?,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(session_id = %id, error = %e.message(), "status after connect unavailable")
        }
    }
    Ok(Json(
        view_with_pacing(&state, current(&state, caller.tenant_id, id).await?).await?,
    ))
}

/// The QR code to pair the number with: the latest one the gateway posted, if recent, else asked
/// from the gateway. 409 `already_logged_in` when the number is paired already, 409
/// `not_connected` when the session must be connected first (`POST /sessions/{id}/connect`),
/// 409 `qr_not_ready` right after connecting, before the gateway has a code.
#[endpoint(tags("sessions"), status_codes(200, 401, 404, 409, 502), security(["bearer" = []], ["api_key" = []]))]
pub async fn qr(id: PathParam<String>, depot: &mut Depot) -> Result<Json<QrView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let credentials =
        wuzapi_credentials(&state, caller.tenant_id, id, "pairing or live status").await?;
    let session = current(&state, caller.tenant_id, id).await?;
    if session.status == SessionStatus::QrPending.as_str() {
        let stored: Option<(String, DateTime<Utc>)> =
            sqlx::query_as("SELECT qr_code, received_at FROM session_qr WHERE session_id = $1")
                .bind(id)
                .fetch_optional(&state.pool)
                .await?;
        if let Some((qr_code, received_at)) = stored {
            if Utc::now() - received_at < Duration::seconds(QR_FRESH_SECS) {
                return Ok(Json(QrView {
                    qr_code,
                    received_at,
                }));
            }
        }
    }
    let outcome = state
        .gateway
        .qr_code(&credentials.token)
        .await
        .map_err(|e| gateway_failure("show the QR code", &e))?;
    match outcome {
        QrOutcome::Code(qr_code) => {
            let received_at = Utc::now();
            let mut conn = state.pool.acquire().await?;
            herald_inbox::store_qr(&mut conn, id, &qr_code, received_at).await?;
            drop(conn);
            record(&state, id, SessionStatus::QrPending).await?;
            Ok(Json(QrView {
                qr_code,
                received_at,
            }))
        }
        QrOutcome::AlreadyLoggedIn => {
            record(&state, id, SessionStatus::Connected).await?;
            Err(conflict(
                "already_logged_in",
                "this number is already paired: there is no QR code to scan (log out first to pair again)",
            ))
        }
        QrOutcome::NotConnected => {
            if matches!(session.status.as_str(), "qr_pending" | "connected") {
                record(&state, id, SessionStatus::Disconnected).await?;
            }
            Err(conflict(
                "not_connected",
                format!("the session is not connected, so there is no QR code yet: POST /api/v1/sessions/{id}/connect first"),
            ))
        }
        QrOutcome::NotReady => Err(conflict(
            "qr_not_ready",
            "the gateway has not produced a QR code yet; try again in a few seconds",
        )),
    }
}

/// Unpairs the number from WhatsApp (status `logged_out`); pairing again needs `connect` and a
/// new QR scan. 409 `not_connected` when the session is not connected (WuzAPI can only log out a
/// connected session), 409 `not_logged_in` when it is not paired.
#[endpoint(tags("sessions"), status_codes(200, 401, 404, 409, 502), security(["bearer" = []], ["api_key" = []]))]
pub async fn logout(
    id: PathParam<String>,
    depot: &mut Depot,
) -> Result<Json<SessionView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let credentials =
        wuzapi_credentials(&state, caller.tenant_id, id, "pairing or live status").await?;
    let outcome = state
        .gateway
        .logout(&credentials.token)
        .await
        .map_err(|e| gateway_failure("log the session out", &e))?;
    match outcome {
        LogoutOutcome::LoggedOut => {
            sqlx::query("DELETE FROM session_qr WHERE session_id = $1")
                .bind(id)
                .execute(&state.pool)
                .await?;
            record(&state, id, SessionStatus::LoggedOut).await?;
            Ok(Json(
                view_with_pacing(&state, current(&state, caller.tenant_id, id).await?).await?,
            ))
        }
        LogoutOutcome::NotLoggedIn => Err(conflict(
            "not_logged_in",
            "this number is not paired: there is nothing to log out of",
        )),
        LogoutOutcome::NotConnected => Err(conflict(
            "not_connected",
            format!("the gateway can only log out a connected session: POST /api/v1/sessions/{id}/connect first"),
        )),
    }
}

/// The live status, asked from the gateway now (`GET /sessions/{id}` shows the recorded one
/// without calling the gateway). What it says is recorded: connected and paired is `connected`,
/// connected but unpaired `qr_pending`, not connected `disconnected` (or `logged_out` if it was).
#[endpoint(tags("sessions"), status_codes(200, 401, 404, 502), security(["bearer" = []], ["api_key" = []]))]
pub async fn live_status(
    id: PathParam<String>,
    depot: &mut Depot,
) -> Result<Json<LiveStatusView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let credentials =
        wuzapi_credentials(&state, caller.tenant_id, id, "pairing or live status").await?;
    let session = current(&state, caller.tenant_id, id).await?;
    let live = state
        .gateway
        .session_status(&credentials.token)
        .await
        .map_err(|e| gateway_failure("report the session status", &e))?;
    let observed = match (live.connected, live.logged_in) {
        (true, true) => SessionStatus::Connected,
        (true, false) => SessionStatus::QrPending,
        (false, _) if session.status == SessionStatus::LoggedOut.as_str() => {
            SessionStatus::LoggedOut
        }
        (false, _) => SessionStatus::Disconnected,
    };
    record(&state, id, observed).await?;
    Ok(Json(LiveStatusView {
        status: observed.as_str().to_string(),
        connected: live.connected,
        logged_in: live.logged_in,
        jid: live.jid,
    }))
}
