//! The WhatsApp Cloud API webhook (Meta): the verification handshake and signed notifications.
//!
//! - `GET /api/v1/webhooks/meta?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...`
//!   answers the challenge as `text/plain` when the token equals `HERALD_META_VERIFY_TOKEN`;
//!   403 otherwise; 404 when no token is configured.
//! - `POST /api/v1/webhooks/meta` must carry `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the
//!   raw body under HERALD_META_APP_SECRET>` (401 when missing or wrong, nothing stored; 404 when
//!   no secret is configured). Each `entry[].changes[]` is stored as its own inbox row for the
//!   session whose `meta_phone_number_id` equals `value.metadata.phone_number_id`; a change for a
//!   number no session stands for is stored already processed and ignored. Meta gets 200 either
//!   way, so it never retries what Herald cannot use.
//! - `GET|POST /api/v1/webhooks/meta/{session_id}`: the same for one Cloud API session
//!   (`provider: "cloud_api"`, docs/cloud-api.md), with the verify token Herald generated for it
//!   and its own app secret; only changes for its phone number id are stored for it. A session
//!   that is not a Cloud API session (or does not exist) is 404.

use herald_gateway::meta;
use salvo::http::header::{CONTENT_TYPE, USER_AGENT};
use salvo::prelude::*;
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::collections::HashMap;
use uuid::Uuid;

use super::webhooks::WebhookAck;
use crate::error::ApiError;
use crate::state::AppState;

/// Cloud API notifications are small (statuses and message metadata; media come by id).
const MAX_META_BODY: usize = 4 * 1024 * 1024;

/// Whether two secrets are equal, without an early exit on the first differing byte (compares
/// their SHA-256 digests, so lengths leak nothing either).
fn same_secret(a: &str, b: &str) -> bool {
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// The Cloud API's verification handshake: echoes `hub.challenge` for the right verify token.
#[endpoint(
    tags("webhooks"),
    status_codes(200, 400, 403, 404),
    parameters(
        ("hub.mode" = Option<String>, Query, description = "`subscribe`"),
        ("hub.verify_token" = Option<String>, Query, description = "the verify token set in Meta's webhook settings"),
        ("hub.challenge" = Option<String>, Query, description = "echoed back as text/plain when the token is right"),
    ),
    responses((status_code = 200, description = "the challenge, as text/plain", content_type = "text/plain", body = String))
)]
pub async fn verify(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
) -> Result<(), ApiError> {
    let state = AppState::from_depot(depot)?;
    let Some(expected) = state.settings.meta_verify_token.as_ref() else {
        return Err(ApiError::NotFound);
    };
    handshake(expected.expose(), req, res)
}

/// Answers `hub.challenge` when `hub.verify_token` is `expected`.
fn handshake(expected: &str, req: &Request, res: &mut Response) -> Result<(), ApiError> {
    let mode = req.query::<String>("hub.mode").unwrap_or_default();
    let token = req.query::<String>("hub.verify_token").unwrap_or_default();
    let challenge = req.query::<String>("hub.challenge").unwrap_or_default();
    if mode != "subscribe" || !same_secret(&token, expected) {
        return Err(ApiError::Forbidden {
            code: "verification_failed",
            message:
                "hub.mode must be subscribe and hub.verify_token must be Herald's verify token"
                    .into(),
        });
    }
    // Meta sends a number; refuse anything else rather than echo arbitrary text back
    if challenge.is_empty()
        || challenge.len() > 256
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "hub.challenge must be 1 to 256 letters, digits, - or _",
        ));
    }
    res.render(Text::Plain(challenge));
    Ok(())
}

/// Receives a Cloud API notification (statuses and messages of the business numbers).
#[endpoint(tags("webhooks"), status_codes(200, 400, 401, 404, 413))]
pub async fn notify(req: &mut Request, depot: &mut Depot) -> Result<Json<WebhookAck>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let Some(secret) = state.settings.meta_app_secret.as_ref() else {
        return Err(ApiError::NotFound);
    };
    receive(&state, req, secret.expose(), None).await
}

/// A Cloud API session's own callback: Meta's handshake with the session's verify token.
#[endpoint(
    tags("webhooks"),
    status_codes(200, 400, 403, 404),
    parameters(
        ("session_id" = String, Path, description = "the Cloud API session"),
        ("hub.mode" = Option<String>, Query, description = "`subscribe`"),
        ("hub.verify_token" = Option<String>, Query, description = "the session's verify_token"),
        ("hub.challenge" = Option<String>, Query, description = "echoed back as text/plain when the token is right"),
    ),
    responses((status_code = 200, description = "the challenge, as text/plain", content_type = "text/plain", body = String))
)]
pub async fn verify_session(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
) -> Result<(), ApiError> {
    let state = AppState::from_depot(depot)?;
    let session = cloud_session(&state, req).await?;
    handshake(&session.verify_token, req, res)
}

/// A Cloud API session's own callback: notifications signed with the session's app secret.
#[endpoint(
    tags("webhooks"),
    status_codes(200, 400, 401, 404, 413),
    parameters(("session_id" = String, Path, description = "the Cloud API session"))
)]
pub async fn notify_session(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Json<WebhookAck>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let session = cloud_session(&state, req).await?;
    let own = (
        session.phone_number_id.clone(),
        (session.id, session.tenant_id),
    );
    receive(&state, req, &session.app_secret, Some(own)).await
}

/// What a Cloud API session's callback needs of it.
struct CloudSession {
    id: Uuid,
    tenant_id: Uuid,
    phone_number_id: String,
    app_secret: String,
    verify_token: String,
}

/// The path's Cloud API session: 404 for anything else (the answer says no more than that).
async fn cloud_session(state: &AppState, req: &Request) -> Result<CloudSession, ApiError> {
    let id = req
        .param::<String>("session_id")
        .and_then(|raw| Uuid::parse_str(&raw).ok())
        .ok_or(ApiError::NotFound)?;
    let row = sqlx::query(
        "SELECT tenant_id, meta_phone_number_id, meta_app_secret, meta_verify_token
           FROM session_credentials WHERE session_id = $1 AND provider = 'cloud_api'",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(ApiError::NotFound)?;
    let field = |name: &str| -> Result<String, ApiError> {
        row.try_get::<Option<String>, _>(name)?
            .ok_or(ApiError::NotFound)
    };
    Ok(CloudSession {
        id,
        tenant_id: row.try_get("tenant_id")?,
        phone_number_id: field("meta_phone_number_id")?,
        app_secret: field("meta_app_secret")?,
        verify_token: field("meta_verify_token")?,
    })
}

/// Verifies and stores one notification. `own`: a session's callback, whose rows are only the
/// changes for its own number (phone number id → session, tenant); without it every session
/// with a `meta_phone_number_id` is looked up.
async fn receive(
    state: &AppState,
    req: &mut Request,
    secret: &str,
    own: Option<(String, (Uuid, Uuid))>,
) -> Result<Json<WebhookAck>, ApiError> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header(CONTENT_TYPE.as_str()).unwrap_or_default();
    let user_agent = header(USER_AGENT.as_str());
    let signature = header(meta::SIGNATURE_HEADER);
    // bounded (and timed) before the signature is checked
    let body = match req.payload_with_max_size(MAX_META_BODY).await {
        Ok(bytes) => bytes.clone(),
        Err(e) => return Err(crate::error::body_error(e, MAX_META_BODY)),
    };
    let Some(signature) = signature else {
        return Err(rejected(
            "Cloud API notifications must be signed (X-Hub-Signature-256)",
        ));
    };
    if !meta::verify_signature(secret, &signature, &body) {
        return Err(rejected("the X-Hub-Signature-256 does not match the body"));
    }
    // what WhatsApp sends is kept with its NULs removed, never refused for them (decision 0037)
    let notification = herald_gateway::webhook::parse_event(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_webhook",
            format!("the notification is not valid JSON: {e}"),
        )
    })?;
    let changes =
        meta::changes(&notification).map_err(|e| ApiError::bad_request("invalid_webhook", e.0))?;

    // which session stands for each business number (one query)
    let numbers: Vec<String> = changes
        .iter()
        .filter_map(|c| c.phone_number_id.clone())
        .collect();
    let sessions: HashMap<String, (Uuid, Uuid)> = match own {
        Some((number, session)) => HashMap::from([(number, session)]),
        None => sessions_of(state, &numbers).await?,
    };

    let headers = sqlx::types::Json(serde_json::json!({
        "content-type": content_type,
        "user-agent": user_agent,
        "x-hub-signature-256": signature,
    }));
    let mut stored = 0usize;
    let mut tx = state.pool.begin().await?;
    for (i, change) in changes.iter().enumerate() {
        // one row per change; a retry of the same body hashes to the same rows
        let mut hasher = Sha256::new();
        hasher.update(&body);
        hasher.update(format!("#change={i}").as_bytes());
        let sha = hasher.finalize().to_vec();
        let event_type = format!("meta:{}", change.field);
        let session = change
            .phone_number_id
            .as_ref()
            .and_then(|n| sessions.get(n))
            .copied();
        let note = match (&session, &change.phone_number_id) {
            (Some(_), _) => None,
            (None, Some(n)) => Some(format!(
                "ignored: no session has Cloud API phone number id {n}"
            )),
            (None, None) => Some(format!(
                "ignored: {event_type} is not about one phone number"
            )),
        };
        // a change no session is for is done as it is stored (the processor steps over rows
        // without a session): its outcome is written with it
        let inserted: Option<i64> = sqlx::query_scalar(
            "WITH post AS (
                 INSERT INTO webhook_inbox (source, session_id, tenant_id, body_sha256, content_type,
                                            headers, body, event, event_type)
                 VALUES ('meta', $1, $2, $3, $4, $5, $6, $7::json, $8)
                 ON CONFLICT DO NOTHING
                 RETURNING id),
             outcome AS (
                 INSERT INTO webhook_inbox_outcomes (inbox_id, note)
                 SELECT id, $9 FROM post WHERE $9::text IS NOT NULL)
             SELECT id FROM post",
        )
        .bind(session.map(|s| s.0))
        .bind(session.map(|s| s.1))
        .bind(sha)
        .bind(&content_type)
        .bind(&headers)
        .bind(body.as_ref())
        .bind(change.change.to_string())
        .bind(&event_type)
        .bind(note)
        .fetch_optional(&mut *tx)
        .await?;
        stored += usize::from(inserted.is_some());
    }
    tx.commit().await?;
    let status = if stored > 0 || changes.is_empty() {
        "stored"
    } else {
        "duplicate"
    };
    metrics::counter!("herald_webhooks_received_total", "result" => status).increment(1);
    Ok(Json(WebhookAck::new(status)))
}

/// Which session stands for each of these business numbers (one query).
async fn sessions_of(
    state: &AppState,
    numbers: &[String],
) -> Result<HashMap<String, (Uuid, Uuid)>, ApiError> {
    Ok(sqlx::query(
        "SELECT meta_phone_number_id, session_id, tenant_id FROM session_credentials
          WHERE meta_phone_number_id = ANY($1)",
    )
    .bind(numbers)
    .fetch_all(&state.pool)
    .await?
    .into_iter()
    .map(|r| -> sqlx::Result<_> {
        Ok((
            r.try_get("meta_phone_number_id")?,
            (r.try_get("session_id")?, r.try_get("tenant_id")?),
        ))
    })
    .collect::<sqlx::Result<_>>()?)
}

fn rejected(message: &str) -> ApiError {
    metrics::counter!("herald_webhooks_received_total", "result" => "unauthorized").increment(1);
    ApiError::Unauthorized(message.to_string())
}
