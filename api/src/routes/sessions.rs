//! Linked WhatsApp numbers (sessions). Linking with an existing WuzAPI user token points that
//! user's webhook at Herald and gives it a webhook signing key; without a token Herald first
//! creates the WuzAPI user through the admin API (and deletes it with the session). Token and key
//! are stored apart from the event store and never shown back.
//!
//! The status a session shows is the one Herald recorded: from the gateway's session webhooks and
//! from Herald's own calls (connect, qr, logout, live status); `GET /sessions/{id}` never calls the
//! gateway, `GET /sessions/{id}/status` does (docs/decisions/0015). Pairing (connect, QR code,
//! logout, live status) is in [`pairing`].

mod cloud;
mod ownership;
mod pairing;
mod passthrough;

pub(crate) use cloud::{wuzapi_only, Provider, ProviderInfo};
pub(crate) use ownership::phone_number_id_taken;
pub use pairing::{connect, live_status, logout, qr};
pub use passthrough::{forward, forward_get};

use chrono::{DateTime, Utc};
use herald_domain::session::{Session, SessionCommand, SessionStatus};
use herald_gateway::GatewayError;
use herald_projections::sessions::{self as read, SessionRow};
use herald_scheduler::pacing::Pacing;
use herald_scheduler::safe_sending::{self, NumberSafety};
use salvo::oapi::extract::{PathParam, QueryParam};
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::reply::{Created, NoContent};
use super::safe_sending::{
    apply_session_safety, SafetyBody, SafetyView, SendWindowBody, SendWindowView, SessionSafetyView,
};
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
    /// `wuzapi` (the default) or `cloud_api` (then `cloud_api` is required, and the WuzAPI and
    /// `meta_*` fields are not taken).
    provider: Option<String>,
    /// The WhatsApp Cloud API number of a `cloud_api` session.
    cloud_api: Option<cloud::CloudApiBody>,
    /// The token of an existing WuzAPI user. Herald points that user's webhook at itself.
    /// Without it, Herald creates a WuzAPI user for this session through the WuzAPI admin API
    /// (needs `HERALD_WUZAPI_ADMIN_TOKEN`; otherwise 422 naming this field).
    gateway_token: Option<String>,
    /// The WhatsApp Cloud API phone number id this number has at Meta (digits), when Meta's
    /// webhook notifications for it should reach this session. Needs `meta_access_token`.
    meta_phone_number_id: Option<String>,
    /// A Meta access token that may use `meta_phone_number_id`: Herald asks Meta's Graph API
    /// (`GET /{phone_number_id}`) and links the id only when Meta answers with it. Stored like
    /// the gateway token, never shown back.
    meta_access_token: Option<String>,
    /// The interval between two sends of this number (default 3,000-8,000 ms; 0/0: none).
    pacing: Option<PacingBody>,
    /// Daily cap, warm-up and typing (docs/safe-sending.md); default: none of them.
    safety: Option<SafetyBody>,
    /// The day the number started sending, `YYYY-MM-DD` (default: today): day 1 of its warm-up.
    linked_since: Option<String>,
    /// The default send window of the number's campaigns (`null` or absent: none).
    #[salvo(schema(value_type = Option<SendWindowBody>))]
    send_window: Option<serde_json::Value>,
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
    /// Replaces the number's safety settings (fields left out: off / no cap).
    safety: Option<SafetyBody>,
    linked_since: Option<String>,
    /// A send window, or `null` to remove it.
    #[salvo(schema(value_type = Option<SendWindowBody>))]
    send_window: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    id: Uuid,
    name: String,
    /// `disconnected`, `qr_pending`, `connected` or `logged_out`.
    status: String,
    /// `wuzapi` or `cloud_api`.
    provider: String,
    /// Where the gateway posts this session's events (for a Cloud API session: the callback
    /// URL to set in the Meta app's WhatsApp webhook).
    webhook_url: String,
    /// Cloud API sessions: the verify token to set beside `webhook_url` in the Meta app.
    verify_token: Option<String>,
    /// The WhatsApp Cloud API phone number id, when set.
    meta_phone_number_id: Option<String>,
    /// The pace of sends through this number (0/0: none).
    pacing: PacingView,
    /// Daily cap, warm-up and typing (docs/safe-sending.md).
    safety: SafetyView,
    /// The day the number started sending (day 1 of its warm-up).
    linked_since: chrono::NaiveDate,
    /// The default send window of its campaigns (`null`: none).
    send_window: Option<SendWindowView>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A session as the API shows it, with its pacing read from the store.
pub(super) async fn view_with_pacing(
    state: &AppState,
    row: SessionRow,
) -> Result<SessionView, ApiError> {
    let mut conn = state.pool.acquire().await?;
    let pacing = herald_scheduler::pacing::of_session(&mut conn, row.id).await?;
    let safety = safe_sending::of_session(&mut conn, row.id).await?;
    let info = cloud::providers(&state.pool, &[row.id]).await?;
    let info = info.get(&row.id);
    Ok(view(state, row, pacing, safety.as_ref(), info))
}

fn view(
    state: &AppState,
    row: SessionRow,
    pacing: Option<Pacing>,
    safety: Option<&NumberSafety>,
    info: Option<&ProviderInfo>,
) -> SessionView {
    let none = NumberSafety::none(row.created_at.date_naive());
    let shown: SessionSafetyView = safety.unwrap_or(&none).into();
    let cloud = info.filter(|i| i.provider == Provider::CloudApi);
    SessionView {
        pacing: pacing.unwrap_or(Pacing::NONE).into(),
        safety: shown.safety,
        linked_since: shown.linked_since,
        send_window: shown.send_window,
        webhook_url: match cloud {
            Some(_) => meta_callback_url(state, row.id),
            None => webhook_url(state, row.id),
        },
        provider: info.map_or("wuzapi", |i| i.as_str()).to_string(),
        verify_token: cloud.and_then(|i| i.verify_token.clone()),
        id: row.id,
        name: row.name,
        status: row.status,
        meta_phone_number_id: row.meta_phone_number_id,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// 32 random bytes as 64 hex characters, from the OS's cryptographic generator: webhook signing
/// keys (WuzAPI wants at least 32 characters; stored like the gateway token, decision 0007) and
/// the user tokens of WuzAPI users Herald creates.
fn new_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A failed gateway call as the user sees it: 502 `gateway_unavailable` when the gateway could
/// not be reached, 502 `gateway_error` with the gateway's own message when it said no.
pub(crate) fn gateway_failure(what: &str, error: &GatewayError) -> ApiError {
    if error.is_unreachable() {
        ApiError::GatewayUnavailable(format!(
            "the gateway could not be reached to {what}: {}",
            error.message()
        ))
    } else {
        ApiError::Gateway(format!(
            "the gateway refused to {what}: {}",
            error.message()
        ))
    }
}

/// A session's gateway credentials, for the caller's tenant only (another tenant's session, or a
/// deleted one, is not found).
pub(crate) struct Credentials {
    pub(crate) token: String,
    pub(crate) provider: Provider,
    /// WuzAPI's id of the user Herald created for this session, if it did.
    pub(crate) gateway_user_id: Option<String>,
}

pub(crate) async fn credentials(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
) -> Result<Credentials, ApiError> {
    let row: Option<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT gateway_token, gateway_user_id, provider FROM session_credentials
          WHERE session_id = $1 AND tenant_id = $2",
    )
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(&state.pool)
    .await?;
    let (token, gateway_user_id, provider) = row.ok_or(ApiError::NotFound)?;
    Ok(Credentials {
        token,
        provider: if provider == "cloud_api" {
            Provider::CloudApi
        } else {
            Provider::Wuzapi
        },
        gateway_user_id,
    })
}

/// [`credentials`] of a WuzAPI session; a Cloud API session is 409 `not_a_wuzapi_session`
/// (its token must never reach WuzAPI).
pub(crate) async fn wuzapi_credentials(
    state: &AppState,
    tenant_id: Uuid,
    id: Uuid,
    what: &str,
) -> Result<Credentials, ApiError> {
    let credentials = credentials(state, tenant_id, id).await?;
    if credentials.provider == Provider::CloudApi {
        return Err(wuzapi_only(what));
    }
    Ok(credentials)
}

/// What linking set up on the gateway, to be stored.
struct GatewayUser {
    token: String,
    hmac_key: String,
    /// Set when Herald created the user (so it deletes it with the session).
    user_id: Option<String>,
    status: SessionStatus,
}

/// The `gateway_token` field: `None` when absent or blank (Herald creates a user).
fn parse_gateway_token(raw: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(token) = raw.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    // it travels in an HTTP header: visible ASCII only (anything else reached the gateway
    // mangled and came back as its 401, a 502 here)
    if token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::validation(
            "gateway_token",
            "is not a valid WuzAPI token",
        ));
    }
    Ok(Some(token))
}

/// Points the user's webhook at Herald and sets a fresh signing key, on the gateway FIRST: a
/// wrong token or an unreachable gateway is the user's to know now, and Herald never demands a
/// signature the gateway does not make. Returns the key. `callers_token`: the token is the
/// caller's `gateway_token`, so the gateway refusing it (a 4xx) is 422 naming that field, not 502.
async fn register_webhook(
    state: &AppState,
    token: &str,
    id: Uuid,
    callers_token: bool,
) -> Result<String, ApiError> {
    state
        .gateway
        .set_webhook(token, &webhook_url(state, id), &WEBHOOK_EVENTS)
        .await
        .map_err(|e| match e {
            GatewayError::Permanent { message } if callers_token => ApiError::validation(
                "gateway_token",
                format!("the gateway does not accept this token: {message}"),
            ),
            e => gateway_failure("register the webhook", &e),
        })?;
    let hmac_key = new_secret();
    state
        .gateway
        .set_hmac_key(token, &hmac_key)
        .await
        .map_err(|e| gateway_failure("set the webhook signing key", &e))?;
    Ok(hmac_key)
}

/// An existing WuzAPI user, by its token.
async fn link_existing_user(
    state: &AppState,
    id: Uuid,
    token: String,
) -> Result<GatewayUser, ApiError> {
    let hmac_key = register_webhook(state, &token, id, true).await?;
    let status = match state.gateway.session_status(&token).await {
        Ok(s) if s.logged_in && s.connected => SessionStatus::Connected,
        Ok(_) => SessionStatus::Disconnected,
        Err(e) => {
            tracing::warn!(error = %e.message(), "gateway session status unavailable");
            SessionStatus::Disconnected
        }
    };
    Ok(GatewayUser {
        token,
        hmac_key,
        user_id: None,
        status,
    })
}

/// A new WuzAPI user made through the admin API, with a random token only Herald knows. If the
/// webhook cannot be set on it, the user is deleted again (best effort) so nothing is left over.
async fn create_gateway_user(state: &AppState, id: Uuid) -> Result<GatewayUser, ApiError> {
    if state.settings.wuzapi_admin_token.is_none() {
        return Err(ApiError::validation(
            "gateway_token",
            "is required: this Herald has no WuzAPI admin token (HERALD_WUZAPI_ADMIN_TOKEN) to create a WuzAPI user with; give the token of an existing WuzAPI user, or ask the operator to set the admin token",
        ));
    }
    let token = new_secret();
    let user_id = state
        .gateway
        .create_user(
            &format!("herald-{id}"),
            &token,
            &webhook_url(state, id),
            &WEBHOOK_EVENTS,
        )
        .await
        .map_err(|e| gateway_failure("create a WuzAPI user", &e))?;
    match register_webhook(state, &token, id, false).await {
        Ok(hmac_key) => Ok(GatewayUser {
            token,
            hmac_key,
            user_id: Some(user_id),
            status: SessionStatus::Disconnected,
        }),
        Err(e) => {
            if let Err(cleanup) = state.gateway.delete_user(&user_id).await {
                tracing::warn!(user_id, error = %cleanup.message(), "could not delete the WuzAPI user of a failed link");
            }
            Err(e)
        }
    }
}

/// The Cloud API phone number id stored with a session's credentials (written when it was linked,
/// not by a projector).
async fn stored_phone_number_id(state: &AppState, id: Uuid) -> Result<Option<String>, ApiError> {
    let row: Option<(Option<String>,)> = sqlx::query_as(
        "SELECT meta_phone_number_id FROM session_credentials WHERE session_id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    Ok(row.and_then(|(n,)| n))
}

fn webhook_url(state: &AppState, id: Uuid) -> String {
    format!("{}/api/v1/webhooks/wuzapi/{id}", state.public_url)
}

/// A Cloud API session's own callback (docs/cloud-api.md).
fn meta_callback_url(state: &AppState, id: Uuid) -> String {
    format!("{}/api/v1/webhooks/meta/{id}", state.public_url)
}

/// Links a WhatsApp number: with `gateway_token`, that existing WuzAPI user; without it, a new
/// WuzAPI user Herald creates through the admin API. Either way the gateway's webhook points at
/// Herald, signed with a per-session key. A token is linked by one session only (409
/// `gateway_token_taken`); a Cloud API phone number id needs Meta's confirmation of
/// `meta_access_token` and is one session's only (409 `phone_number_id_taken`). Linking with a
/// token or an id is limited to 10 attempts a minute per tenant (429 with `Retry-After`).
#[endpoint(tags("sessions"), request_body = CreateSession, status_codes(201, 400, 401, 403, 409, 422, 429, 502), security(["bearer" = []], ["api_key" = []]))]
pub async fn create(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Created<SessionView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let mut body: CreateSession = json_body(req, 64 * 1024).await?;
    let name = herald_domain::template::validate_name(&body.name)?;
    let given_pacing = body.pacing.take().map(|p| p.parse("pacing")).transpose()?;
    let provider = Provider::parse(body.provider.as_deref())?;
    let asked_safety =
        body.safety.is_some() || body.linked_since.is_some() || body.send_window.is_some();
    let mut safety = NumberSafety::none(Utc::now().date_naive());
    apply_session_safety(
        &mut safety,
        body.safety.take(),
        body.linked_since.take(),
        body.send_window.take(),
    )?;
    let plan = crate::plans::require_active(&state, caller.tenant_id).await?;
    let max_sessions = plan.plan.limits().sessions;
    // checked before the gateway is asked, and again where the session is stored
    if let Some(limit) = max_sessions {
        let mut conn = state.pool.acquire().await?;
        plan_session_limit(&mut conn, caller.tenant_id, plan.plan, limit).await?;
    }
    let session_limit = max_sessions.map(|limit| (plan.plan, limit));
    let id = Uuid::new_v4();
    let status = match provider {
        Provider::CloudApi => {
            if body.gateway_token.is_some()
                || body.meta_phone_number_id.is_some()
                || body.meta_access_token.is_some()
            {
                return Err(ApiError::validation(
                    "provider",
                    "a cloud_api session takes its number in `cloud_api`, not gateway_token or meta_* fields",
                ));
            }
            let link = body
                .cloud_api
                .ok_or_else(|| {
                    ApiError::validation("cloud_api", "is required with provider cloud_api")
                })?
                .parse()?;
            ownership::count_attempt(&state, req, caller.tenant_id).await?;
            cloud::prove(&state, &link).await?;
            ownership::phone_number_id_free(&state, &link.phone_number_id).await?;
            store_cloud_link(&state, &caller, id, link, session_limit, given_pacing).await?
        }
        Provider::Wuzapi => {
            if body.cloud_api.is_some() {
                return Err(ApiError::validation(
                    "cloud_api",
                    "is only for provider cloud_api",
                ));
            }
            let pacing = given_pacing.unwrap_or(herald_scheduler::pacing::DEFAULT);
            link_wuzapi(&state, req, &caller, id, body, pacing, session_limit).await?
        }
    };
    if asked_safety {
        let mut conn = state.pool.acquire().await?;
        safe_sending::set_session(&mut conn, id, caller.tenant_id, &safety).await?;
    }
    finish_link(&state, &caller, id, name, status).await
}

/// A WuzAPI session: an existing user by its token, or a new one; optionally with a Cloud API
/// phone number id whose notifications reach it (the deployment-wide Meta webhook).
async fn link_wuzapi(
    state: &AppState,
    req: &Request,
    caller: &crate::auth::Caller,
    id: Uuid,
    body: CreateSession,
    pacing: Pacing,
    session_limit: Option<(herald_scheduler::quota::Plan, i64)>,
) -> Result<SessionStatus, ApiError> {
    let token = parse_gateway_token(body.gateway_token)?;
    let meta_access_token = ownership::parse_access_token(body.meta_access_token)?;
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
    }
    if token.is_some() || meta_phone_number_id.is_some() {
        // what a guesser would try: counted before Meta or the gateway is asked
        ownership::count_attempt(state, req, caller.tenant_id).await?;
    }
    if let Some(n) = &meta_phone_number_id {
        // proof first, so the 409 below tells only the number's owner that it is linked
        ownership::prove_phone_number_id(state, n, meta_access_token.as_deref()).await?;
        ownership::phone_number_id_free(state, n).await?;
    }
    if let Some(t) = &token {
        // before the gateway is asked: a refused linker never moves the holder's webhook
        ownership::claim_token(state, caller.tenant_id, id, t).await?;
    }
    match store_link(
        state,
        caller,
        id,
        token,
        meta_phone_number_id,
        meta_access_token,
        session_limit,
        pacing,
    )
    .await
    {
        Ok(status) => Ok(status),
        Err(e) => {
            if let Err(release) = ownership::release(state, id).await {
                tracing::warn!(session_id = %id, error = %release, "could not release the token claim of a failed link");
            }
            Err(e)
        }
    }
}

/// Records the link and answers the session as stored.
async fn finish_link(
    state: &AppState,
    caller: &crate::auth::Caller,
    id: Uuid,
    name: String,
    status: SessionStatus,
) -> Result<Created<SessionView>, ApiError> {
    let now = Utc::now();
    state
        .sessions
        .execute(
            &id.to_string(),
            SessionCommand::Link {
                tenant_id: caller.tenant_id,
                name: name.clone(),
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
    // The link is stored; a read model still behind after the wait (a loaded or a separate
    // worker process) does not make it a failure: answer what was stored.
    let row = match read::get(&state.pool, caller.tenant_id, id).await? {
        Some(row) => row,
        None => read::SessionRow {
            id,
            tenant_id: caller.tenant_id,
            name,
            status: status.as_str().to_string(),
            meta_phone_number_id: stored_phone_number_id(state, id).await?,
            created_at: now,
            updated_at: now,
        },
    };
    Ok(Created(view_with_pacing(state, row).await?))
}

/// Stores a Cloud API number's credentials (the plan's session limit checked again under the
/// per-tenant lock): nothing to set up on WuzAPI, the number can send at once. Its pacing is
/// Meta's throughput unless the request gave one.
async fn store_cloud_link(
    state: &AppState,
    caller: &crate::auth::Caller,
    id: Uuid,
    link: cloud::CloudLink,
    session_limit: Option<(herald_scheduler::quota::Plan, i64)>,
    pacing: Option<Pacing>,
) -> Result<SessionStatus, ApiError> {
    let mut tx = state.pool.begin().await?;
    if let Some((plan, limit)) = session_limit {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('herald-sessions:' || $1::text))")
            .bind(caller.tenant_id)
            .execute(&mut *tx)
            .await?;
        plan_session_limit(&mut tx, caller.tenant_id, plan, limit).await?;
    }
    let token =
        herald_gateway::cloud_api::credentials_token(&link.phone_number_id, &link.access_token);
    sqlx::query(
        "INSERT INTO session_credentials (session_id, tenant_id, gateway_token, hmac_key, provider,
                                          meta_phone_number_id, meta_access_token, meta_linked_by,
                                          meta_app_secret, meta_verify_token, meta_waba_id)
         VALUES ($1, $2, $3, $4, 'cloud_api', $5, $6, 'graph', $7, $8, $9)",
    )
    .bind(id)
    .bind(caller.tenant_id)
    .bind(&token)
    // no WuzAPI posts for this session: its WuzAPI webhook demands a key no one has
    .bind(new_secret())
    .bind(&link.phone_number_id)
    .bind(&link.access_token)
    .bind(&link.app_secret)
    .bind(new_secret())
    .bind(&link.waba_id)
    .execute(&mut *tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
            ownership::phone_number_id_taken()
        }
        _ => e.into(),
    })?;
    herald_scheduler::pacing::set_session(
        &mut tx,
        id,
        caller.tenant_id,
        pacing.unwrap_or(cloud::CLOUD_PACING),
    )
    .await?;
    tx.commit().await?;
    Ok(SessionStatus::Connected)
}

/// Sets the number up on the gateway and stores its credentials (with the plan's session limit
/// checked again under a per-tenant lock); the status the gateway reported.
#[allow(clippy::too_many_arguments)]
async fn store_link(
    state: &AppState,
    caller: &crate::auth::Caller,
    id: Uuid,
    token: Option<String>,
    meta_phone_number_id: Option<String>,
    meta_access_token: Option<String>,
    session_limit: Option<(herald_scheduler::quota::Plan, i64)>,
    pacing: Pacing,
) -> Result<SessionStatus, ApiError> {
    let created = token.is_none();
    let user = match token {
        Some(token) => link_existing_user(state, id, token).await?,
        None => create_gateway_user(state, id).await?,
    };
    let mut tx = state.pool.begin().await?;
    if let Some((plan, limit)) = session_limit {
        // one tenant's session creations in a row, so two at once cannot both pass the limit
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('herald-sessions:' || $1::text))")
            .bind(caller.tenant_id)
            .execute(&mut *tx)
            .await?;
        plan_session_limit(&mut tx, caller.tenant_id, plan, limit).await?;
    }
    if created {
        // a token Herald made cannot be taken, but it is claimed like any other
        sqlx::query(
            "INSERT INTO gateway_token_claims (token_sha256, session_id, tenant_id) VALUES ($1, $2, $3)",
        )
        .bind(ownership::token_sha256(&user.token))
        .bind(id)
        .bind(caller.tenant_id)
        .execute(&mut *tx)
        .await?;
    }
    let linked_by = meta_phone_number_id.as_ref().map(|_| "graph");
    sqlx::query(
        "INSERT INTO session_credentials (session_id, tenant_id, gateway_token, hmac_key, gateway_user_id,
                                          meta_phone_number_id, meta_access_token, meta_linked_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(caller.tenant_id)
    .bind(&user.token)
    .bind(&user.hmac_key)
    .bind(&user.user_id)
    .bind(&meta_phone_number_id)
    .bind(&meta_access_token)
    .bind(linked_by)
    .execute(&mut *tx)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
            ownership::phone_number_id_taken()
        }
        _ => e.into(),
    })?;
    herald_scheduler::pacing::set_session(&mut tx, id, caller.tenant_id, pacing).await?;
    tx.commit().await?;
    Ok(user.status)
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
#[endpoint(tags("sessions"), request_body = UpdateSession, status_codes(200, 400, 401, 404, 409, 422), security(["bearer" = []], ["api_key" = []]))]
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
    let pacing = body.pacing.map(|p| p.parse("pacing")).transpose()?;
    let mut tx = state.pool.begin().await?;
    let mut safety = safe_sending::of_session(&mut tx, id)
        .await?
        .unwrap_or_else(|| NumberSafety::none(row.created_at.date_naive()));
    if body.safety.is_some() || body.linked_since.is_some() || body.send_window.is_some() {
        apply_session_safety(
            &mut safety,
            body.safety,
            body.linked_since,
            body.send_window,
        )?;
        safe_sending::set_session(&mut tx, id, caller.tenant_id, &safety).await?;
    }
    if let Some(pacing) = pacing {
        herald_scheduler::pacing::set_session(&mut tx, id, caller.tenant_id, pacing).await?;
    }
    let pacing = herald_scheduler::pacing::of_session(&mut tx, id).await?;
    let safety = safe_sending::of_session(&mut tx, id).await?;
    tx.commit().await?;
    let info = cloud::providers(&state.pool, &[id]).await?;
    Ok(Json(view(
        &state,
        row,
        pacing,
        safety.as_ref(),
        info.get(&id),
    )))
}

/// This tenant's linked numbers, newest first.
#[endpoint(tags("sessions"), status_codes(200, 400, 401, 429), security(["bearer" = []], ["api_key" = []]))]
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
    let safety = safe_sending::of_sessions(&state.pool, &ids).await?;
    let info = cloud::providers(&state.pool, &ids).await?;
    Ok(Json(ListOf {
        items: page
            .items
            .into_iter()
            .map(|r| {
                let p = pacing.get(&r.id).copied();
                let s = safety.get(&r.id);
                let i = info.get(&r.id);
                view(&state, r, p, s, i)
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One linked number.
#[endpoint(tags("sessions"), status_codes(200, 401, 404, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn get(id: PathParam<String>, depot: &mut Depot) -> Result<Json<SessionView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let row = read::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(view_with_pacing(&state, row).await?))
}

/// Unlinks a number: Herald forgets its gateway token and QR code, deletes the WuzAPI user if
/// Herald created it, and campaigns on it stop sending. `?force=true` deletes the session even
/// when the gateway cannot delete its user (e.g. the gateway is gone for good).
#[endpoint(tags("sessions"), status_codes(204, 400, 401, 404, 409, 502), security(["bearer" = []], ["api_key" = []]))]
pub async fn delete(
    id: PathParam<String>,
    force: QueryParam<bool, false>,
    depot: &mut Depot,
) -> Result<NoContent, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let credentials = credentials(&state, caller.tenant_id, id).await?;
    if let Some(user_id) = &credentials.gateway_user_id {
        match state.gateway.delete_user(user_id).await {
            Ok(true) => tracing::info!(session_id = %id, user_id, "deleted the WuzAPI user"),
            Ok(false) => {
                tracing::info!(session_id = %id, user_id, "the WuzAPI user was already gone")
            }
            Err(e) if force.into_inner().unwrap_or(false) => {
                tracing::warn!(session_id = %id, user_id, error = %e.message(), "WuzAPI user not deleted; session deleted anyway (force)")
            }
            Err(e) => return Err(gateway_failure("delete the WuzAPI user", &e)),
        }
    }
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
    state.webhook_credentials.forget(id);
    // the token is free for whoever links it next
    ownership::release(&state, id).await?;
    sqlx::query("DELETE FROM session_qr WHERE session_id = $1")
        .bind(id)
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
    Ok(NoContent)
}
