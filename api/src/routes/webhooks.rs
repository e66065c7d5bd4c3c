//! Inbound gateway webhooks (docs/decisions/0055). No JWT: the caller is the gateway, and what
//! authenticates it is the session's HMAC key (`x-hmac-signature`), set on WuzAPI when Herald
//! linked the session.
//!
//! The endpoint only verifies and stores: the raw post goes into `webhook_inbox` (deduplicated
//! per session by the SHA-256 of the body) and is acknowledged at once; the processor
//! (`crate::inbox`) turns it into commands. So the gateway never waits on Herald's write path,
//! and a post acknowledged is a post that cannot be lost.
//!
//! Answers: 200 stored (or already stored), 404 unknown session, 401 missing or wrong signature
//! (nothing stored), 400 not a WuzAPI event, 413 body over [`MAX_WEBHOOK_BODY`].

use herald_gateway::webhook::{self, Encoding};
use salvo::http::header::{CONTENT_TYPE, USER_AGENT};
use salvo::oapi::extract::PathParam;
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::parse_id;
use crate::error::ApiError;
use crate::state::AppState;
use herald_inbox::writer::{InboxRow, Stored};

/// Largest post accepted: media events carry their file inline (base64 in JSON, or a multipart
/// part), and WhatsApp media go up to 16 MB, about 22 MB once base64-encoded.
pub const MAX_WEBHOOK_BODY: usize = 32 * 1024 * 1024;

#[derive(Serialize, ToSchema)]
pub struct WebhookAck {
    /// `stored`, or `duplicate` when this very body was already stored for the session (a
    /// gateway retry); either way it will be processed exactly once.
    status: String,
}

impl WebhookAck {
    pub fn new(status: &str) -> Self {
        WebhookAck {
            status: status.to_string(),
        }
    }
}

/// Receives a WuzAPI event for a linked session: form (`jsonData`), JSON or multipart.
#[endpoint(tags("webhooks"), status_codes(200, 400, 401, 404, 413))]
pub async fn wuzapi(
    session_id: PathParam<String>,
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Json<WebhookAck>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let session_id = parse_id(&session_id.into_inner())?;
    let credentials = state
        .webhook_credentials
        .get(&state.pool, session_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let tenant_id = credentials.tenant_id;
    let hmac_key = &credentials.hmac_key;

    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header(CONTENT_TYPE.as_str()).unwrap_or_default();
    let signature = header(webhook::SIGNATURE_HEADER);
    let user_agent = header(USER_AGENT.as_str());
    let encoding = Encoding::from_content_type(&content_type);

    // bounded (and timed) before anything else looks at it, the signature included
    let body = match req.payload_with_max_size(MAX_WEBHOOK_BODY).await {
        Ok(bytes) => bytes.clone(),
        Err(e) => return Err(crate::error::body_error(e, MAX_WEBHOOK_BODY)),
    };
    // Form fields are read only when the encoding has them (after the raw body, which salvo
    // keeps, so both views are of the same bytes).
    let fields = match encoding {
        Some(Encoding::Form | Encoding::Multipart) => Some(form_fields(req).await),
        _ => None,
    };

    // Authenticate before looking inside: with a key, nothing unsigned or forged is stored.
    if let Some(key) = hmac_key {
        let signature = signature
            .as_deref()
            .ok_or_else(|| rejected("this session's webhooks must be signed (x-hmac-signature)"))?;
        let candidates = match (encoding, &fields) {
            (Some(encoding), Some(Ok(fields))) => webhook::signed_messages(encoding, &body, fields),
            (Some(encoding), _) => webhook::signed_messages(encoding, &body, &[]),
            (None, _) => vec![body.to_vec()],
        };
        let candidates: Vec<&[u8]> = candidates.iter().map(Vec::as_slice).collect();
        if !webhook::verify(key, signature, &candidates) {
            return Err(rejected("the x-hmac-signature does not match the body"));
        }
    }

    let encoding = encoding.ok_or_else(|| {
        ApiError::bad_request(
            "unsupported_content_type",
            "send application/x-www-form-urlencoded (jsonData), application/json or multipart/form-data",
        )
    })?;
    let event = match (encoding, fields) {
        (Encoding::Json, _) => webhook::event_from_json(&body),
        (_, Some(Ok(fields))) => match fields.iter().find(|(k, _)| k == "jsonData") {
            Some((_, json)) => webhook::event_from_json(json.as_bytes()),
            None => Err(webhook::Malformed("the form has no jsonData field".into())),
        },
        (_, Some(Err(reason))) => Err(webhook::Malformed(reason)),
        (_, None) => Err(webhook::Malformed("the form could not be read".into())),
    }
    .map_err(|e| ApiError::bad_request("invalid_webhook", e.0))?;
    let event_type = webhook::event_type(&event)
        .map_err(|e| ApiError::bad_request("invalid_webhook", e.0))?
        .to_string();
    // A receipt Herald could not apply is refused now, while the gateway can still be told.
    if event_type == "ReadReceipt" {
        webhook::parse_receipt(&event)
            .map_err(|e| ApiError::bad_request("invalid_webhook", e.0))?;
    }
    if event_type == "Message" {
        webhook::parse_message(&event)
            .map_err(|e| ApiError::bad_request("invalid_webhook", e.0))?;
    }

    let headers = serde_json::json!({
        "content-type": content_type,
        "encoding": encoding.as_str(),
        "user-agent": user_agent,
        "x-hmac-signature": signature,
    });
    let stored = state
        .inbox_writer
        .store(InboxRow {
            source: "wuzapi",
            session_id,
            tenant_id,
            body_sha256: Sha256::digest(&body).to_vec(),
            content_type,
            headers,
            body: body.to_vec(),
            // a JSON post is its event: stored once, as the body
            event: (encoding != Encoding::Json).then(|| event.to_string()),
            event_type,
        })
        .await
        .map_err(ApiError::Unexpected)?;
    let status = match stored {
        Stored::New => "stored",
        Stored::Duplicate => "duplicate",
    };
    metrics::counter!("herald_webhooks_received_total", "result" => status).increment(1);
    Ok(Json(WebhookAck {
        status: status.to_string(),
    }))
}

fn rejected(message: &str) -> ApiError {
    metrics::counter!("herald_webhooks_received_total", "result" => "unauthorized").increment(1);
    ApiError::Unauthorized(message.to_string())
}

/// Every text field of a form or multipart body (a field may repeat; values keep their order).
async fn form_fields(req: &mut Request) -> Result<Vec<(String, String)>, String> {
    match req.form_data_max_size(MAX_WEBHOOK_BODY).await {
        Ok(form) => Ok(form
            .fields
            .iter_all()
            .flat_map(|(k, values)| values.iter().map(move |v| (k.clone(), v.clone())))
            .collect()),
        Err(e) => Err(format!("the form cannot be read: {e}")),
    }
}
