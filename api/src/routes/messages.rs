//! Single sends (`POST /api/v1/messages`, docs/decisions/0011): one message through the campaign
//! dispatch path (queue, leases, pacing, retries, statuses, receipts), its quota taken at once.

use chrono::{DateTime, Utc};
use herald_domain::phone::Phone;
use herald_domain::session::Session;
use herald_domain::store;
use herald_media::ImageSource;
use herald_messages::single::{self, Accepted, NewMessage};
use herald_messages::SingleContent;
use salvo::oapi::extract::PathParam;
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::parse_id;
use super::reply::Accepted as Queued;
use crate::auth::caller;
use crate::error::{parse_json, ApiError};
use crate::state::AppState;

/// Longest text WhatsApp takes.
const MAX_BODY_CHARS: usize = 4_096;
/// Longest image caption WhatsApp takes.
const MAX_CAPTION_CHARS: usize = 1_024;
const MAX_KEY_LEN: usize = 255;
/// Bodies may carry `image_base64`: 16 MB of image is about 22.4 MB of base64, plus the rest
/// (as for templates).
const BODY_LIMIT: usize = 23 * 1024 * 1024;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    session_id: String,
    /// Any common form: `+62 812-3456-7890`, `0812...` (the tenant's region), `62812...`.
    to: String,
    /// `text` or `image`.
    #[serde(rename = "type")]
    kind: String,
    /// Text messages: the text, sent as given (at most 4,096 characters).
    body: Option<String>,
    /// Image messages: an http(s) URL Herald fetches once, now, under the same rules as image
    /// templates (public addresses only; at most 16 MB; JPEG, PNG, WebP or GIF; at most 8,192
    /// pixels a side). See docs/images.md.
    image_url: Option<String>,
    /// Image messages: the image itself, as raw base64 or a `data:image/...;base64,` URL.
    image_base64: Option<String>,
    /// Image messages: an optional caption, plain text sent as given (no template variables; at
    /// most 1,024 characters).
    caption: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct MessageAccepted {
    /// Herald's id of this send (`GET /api/v1/messages/{id}`).
    id: Uuid,
    /// The WhatsApp message id Herald gives the gateway (receipts carry it).
    message_id: String,
    status: String,
}

/// The message as requested, checked; an image is fetched and processed only once every cheap
/// check has passed.
enum Draft {
    Ready(SingleContent),
    Image {
        source: ImageSource,
        field: &'static str,
        caption: Option<String>,
    },
}

fn draft(body: &SendMessage) -> Result<Draft, ApiError> {
    match body.kind.as_str() {
        "text" => {
            if body.image_url.is_some() || body.image_base64.is_some() || body.caption.is_some() {
                return Err(ApiError::validation(
                    "image_url",
                    "a text message takes `body` only (no image_url, image_base64 or caption)",
                ));
            }
            let text = body
                .body
                .as_deref()
                .filter(|b| !b.trim().is_empty())
                .ok_or_else(|| ApiError::validation("body", "is required for a text message"))?;
            if text.chars().count() > MAX_BODY_CHARS {
                return Err(ApiError::validation(
                    "body",
                    format!("must be at most {MAX_BODY_CHARS} characters"),
                ));
            }
            Ok(Draft::Ready(SingleContent::Text {
                body: text.to_string(),
            }))
        }
        "image" => {
            if body.body.is_some() {
                return Err(ApiError::validation(
                    "body",
                    "an image message has a caption, not a body",
                ));
            }
            let caption = body.caption.as_deref().filter(|c| !c.trim().is_empty());
            if caption.is_some_and(|c| c.chars().count() > MAX_CAPTION_CHARS) {
                return Err(ApiError::validation(
                    "caption",
                    format!("must be at most {MAX_CAPTION_CHARS} characters"),
                ));
            }
            let (source, field) = match (&body.image_url, &body.image_base64) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::validation(
                        "image_url",
                        "give image_url or image_base64, not both",
                    ))
                }
                (Some(url), None) => (ImageSource::Url(url.clone()), "image_url"),
                (None, Some(data)) => (ImageSource::Base64(data.clone()), "image_base64"),
                (None, None) => {
                    return Err(ApiError::validation(
                        "image_url",
                        "an image message needs image_url or image_base64",
                    ))
                }
            };
            Ok(Draft::Image {
                source,
                field,
                caption: caption.map(str::to_string),
            })
        }
        other => Err(ApiError::validation(
            "type",
            format!("must be `text` or `image`, not {other:?}"),
        )),
    }
}

/// The message to queue: an image is fetched (or decoded), processed and stored now, by the
/// pipeline image templates use; a refusal is 422 `invalid_image` naming the field.
async fn content(
    state: &AppState,
    tenant_id: Uuid,
    draft: Draft,
) -> Result<SingleContent, ApiError> {
    match draft {
        Draft::Ready(content) => Ok(content),
        Draft::Image {
            source,
            field,
            caption,
        } => {
            // stored (and marked used) before the queue row refers to it: decision 0024
            let prepared =
                super::templates::prepare_and_store_image(state, tenant_id, source, field).await?;
            Ok(SingleContent::Image {
                media: prepared.sha256,
                caption,
            })
        }
    }
}

fn idempotency_key(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| {
            !k.is_empty() && k.len() <= MAX_KEY_LEN && k.chars().all(|c| c.is_ascii_graphic())
        })
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                format!("Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
            )
        })?;
    Ok(Some(key.to_string()))
}

/// The first answer stored under the key, when the request is the same; 422 when it is not.
async fn replay(
    state: &AppState,
    tenant_id: Uuid,
    key: &str,
    hash: &[u8],
) -> Result<Option<MessageAccepted>, ApiError> {
    let stored: Option<(Vec<u8>, serde_json::Value)> = sqlx::query_as(
        "SELECT request_hash, body FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
    )
    .bind(tenant_id)
    .bind(key)
    .fetch_optional(&state.pool)
    .await?;
    let Some((stored_hash, body)) = stored else {
        return Ok(None);
    };
    if stored_hash != hash {
        return Err(ApiError::Unprocessable {
            code: "idempotency_key_reused",
            message: "this Idempotency-Key was used before with a different request body".into(),
            details: Some(serde_json::json!({"field": "Idempotency-Key"})),
        });
    }
    let answer: MessageAccepted =
        serde_json::from_value(body).map_err(|e| ApiError::Unexpected(e.into()))?;
    Ok(Some(answer))
}

/// Sends one text or image message through the same dispatch path as campaigns (pacing,
/// retries, statuses, receipts). An image (`image_url` or `image_base64`) is fetched and
/// processed during the request, like an image template's: a refused one is 422
/// `invalid_image` with the reason, and nothing is queued. Counts against the quota now: over
/// it, 429 `quota_exceeded` with `resets_at` and `Retry-After`. `Idempotency-Key`: the same key
/// and body answer the first answer again (nothing is fetched again).
#[endpoint(tags("messages"), request_body = SendMessage, status_codes(202, 400, 401, 403, 404, 409, 413, 422, 429, 503), security(["bearer" = []], ["api_key" = []]))]
pub async fn send(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Queued<MessageAccepted>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let key = idempotency_key(req)?;
    let bytes = crate::error::read_body(req, BODY_LIMIT).await?;
    // the request as JSON, keys ordered: the same body in another layout is the same request
    let canonical: serde_json::Value = parse_json(&bytes)?;
    let hash = Sha256::digest(canonical.to_string().as_bytes()).to_vec();
    if let Some(key) = &key {
        if let Some(answer) = replay(&state, caller.tenant_id, key, &hash).await? {
            return Ok(Queued(answer));
        }
    }
    let body: SendMessage = parse_json(&bytes)?;
    let session_id: Uuid = body
        .session_id
        .trim()
        .parse()
        .map_err(|_| ApiError::validation("session_id", "is not a UUID"))?;
    let draft = draft(&body)?;
    let region: String = sqlx::query_scalar("SELECT default_region FROM tenants WHERE id = $1")
        .bind(caller.tenant_id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or(ApiError::NotFound)?;
    let phone = Phone::parse(&body.to, &region)
        .map_err(|_| ApiError::validation("to", "is not a valid phone number"))?;
    match store::load::<Session>(&state.pool, &session_id.to_string()).await? {
        Some((s, _)) if s.visible_to(caller.tenant_id) => {}
        _ => return Err(ApiError::NotFound),
    }
    let plan = crate::plans::require_active(&state, caller.tenant_id).await?;
    let content = content(&state, caller.tenant_id, draft).await?;
    let id = Uuid::new_v4();
    // a message of the same chat recorded at the same moment is tried again (herald-messages);
    // once the attempts are used up the answer is 409 `concurrent_update`
    let (mut tx, accepted) = single::accept_retrying(
        &state.pool,
        NewMessage {
            id,
            tenant_id: caller.tenant_id,
            session_id,
            phone,
            content,
            quota_limit: plan.plan.limits().messages_per_window,
            window: crate::plans::window(&state),
            at: Utc::now(),
        },
    )
    .await?;
    let message_id = match accepted {
        Accepted::Queued { message_id } => message_id,
        Accepted::OverQuota { resets_at } => {
            drop(tx); // rolls back: nothing was queued
            let retry = (resets_at - Utc::now()).num_seconds().max(1) as u64;
            return Err(ApiError::TooManyRequests {
                code: "quota_exceeded",
                message: format!(
                    "the {} plan's message quota for this hour is used up; it resets at {}",
                    plan.plan.as_str(),
                    resets_at.to_rfc3339()
                ),
                details: Some(serde_json::json!({
                    "limit": plan.plan.limits().messages_per_window, "resets_at": resets_at
                })),
                retry_after_secs: retry,
            });
        }
    };
    let answer = MessageAccepted {
        id,
        message_id,
        status: "queued".into(),
    };
    if let Some(key) = &key {
        let stored = sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status, body)
             VALUES ($1, $2, $3, 202, $4::jsonb) ON CONFLICT (tenant_id, key) DO NOTHING",
        )
        .bind(caller.tenant_id)
        .bind(key)
        .bind(&hash)
        .bind(serde_json::to_string(&answer).map_err(|e| ApiError::Unexpected(e.into()))?)
        .execute(&mut *tx)
        .await?;
        if stored.rows_affected() == 0 {
            // the same key won by a request running at the same time: its answer, not a second send
            drop(tx);
            if let Some(answer) = replay(&state, caller.tenant_id, key, &hash).await? {
                return Ok(Queued(answer));
            }
            return Err(ApiError::Conflict {
                code: "idempotency_key_in_use",
                message: "a request with this Idempotency-Key is still being processed".into(),
            });
        }
    }
    tx.commit().await?;
    Ok(Queued(answer))
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct MessageView {
    id: Uuid,
    session_id: Uuid,
    /// E.164 digits.
    to: String,
    #[serde(rename = "type")]
    kind: String,
    message_id: String,
    /// `queued`, `sending`, `sent`, `delivered`, `read` or `failed`.
    status: String,
    error: Option<String>,
    attempts: i32,
    created_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
    delivered_at: Option<DateTime<Utc>>,
    read_at: Option<DateTime<Utc>>,
    failed_at: Option<DateTime<Utc>>,
}

/// One single send with its status, attempts, error and times.
#[endpoint(tags("messages"), status_codes(200, 401, 404), security(["bearer" = []], ["api_key" = []]))]
pub async fn get(id: PathParam<String>, depot: &mut Depot) -> Result<Json<MessageView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let view: Option<MessageView> = sqlx::query_as(
        "SELECT m.id, m.session_id, m.phone AS to, m.kind, m.message_id,
                COALESCE(d.status, 'queued') AS status, d.error, COALESCE(d.attempts, 0) AS attempts,
                m.created_at, d.sent_at, d.delivered_at, d.read_at, d.failed_at
           FROM single_messages m
           LEFT JOIN deliveries d ON d.campaign_id = m.id AND d.phone = m.phone
          WHERE m.id = $1 AND m.tenant_id = $2",
    )
    .bind(id)
    .bind(caller.tenant_id)
    .fetch_optional(&state.pool)
    .await?;
    view.map(Json).ok_or(ApiError::NotFound)
}
