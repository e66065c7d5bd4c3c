//! Real-time events (docs/events.md): `GET /api/v1/events`, a Server-Sent Events stream of the
//! caller's tenant, and `POST /api/v1/events/token`, the short-lived token a browser's
//! `EventSource` (which cannot send headers) passes as `?access_token=`.
//!
//! Stream tokens are signed with a key derived from the JWT secret for this purpose only, and
//! carry their own audience: an access token is refused in the URL and a stream token is refused
//! as a Bearer token, so a URL that ends up in a proxy's log opens nothing but one tenant's
//! event stream, for a few minutes.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use herald_projections::notify::{Kind, Notifications, Received};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use salvo::oapi::extract::QueryParam;
use salvo::prelude::*;
use salvo::sse::{SseEvent, SseKeepAlive};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::{caller, caller_from};
use crate::config::Secret;
use crate::error::ApiError;
use crate::state::AppState;

/// How long a stream token can open a stream (an open stream stays open).
pub const STREAM_TOKEN_TTL_SECS: i64 = 300;
const STREAM_AUDIENCE: &str = "herald-events";

#[derive(Debug, Serialize, Deserialize)]
struct StreamClaims {
    tid: Uuid,
    aud: String,
    iat: i64,
    exp: i64,
}

/// The signing key of stream tokens: never the access tokens' key itself.
fn stream_key(secret: &Secret) -> Vec<u8> {
    Sha256::new()
        .chain_update(b"herald event-stream token key\0")
        .chain_update(secret.expose().as_bytes())
        .finalize()
        .to_vec()
}

fn issue_stream_token(secret: &Secret, tenant_id: Uuid) -> Result<String, ApiError> {
    let now = Utc::now().timestamp();
    let claims = StreamClaims {
        tid: tenant_id,
        aud: STREAM_AUDIENCE.into(),
        iat: now,
        exp: now + STREAM_TOKEN_TTL_SECS,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&stream_key(secret)),
    )
    .map_err(|e| ApiError::Unexpected(e.into()))
}

fn verify_stream_token(secret: &Secret, token: &str) -> Option<Uuid> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.algorithms = vec![Algorithm::HS256];
    validation.leeway = 5;
    validation.set_audience(&[STREAM_AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "aud"]);
    jsonwebtoken::decode::<StreamClaims>(
        token,
        &DecodingKey::from_secret(&stream_key(secret)),
        &validation,
    )
    .ok()
    .map(|d| d.claims.tid)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamToken {
    /// Pass as `GET /api/v1/events?access_token=<token>`.
    pub token: String,
    /// Seconds during which the token can open a stream.
    pub expires_in: i64,
}

/// A short-lived token for `GET /api/v1/events?access_token=` (browsers' `EventSource` cannot
/// send headers). It opens the caller's event stream and nothing else.
#[endpoint(tags("events"), status_codes(200, 401), security(["bearer" = []], ["api_key" = []]))]
pub async fn create_token(depot: &mut Depot) -> Result<Json<StreamToken>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    Ok(Json(StreamToken {
        token: issue_stream_token(&state.settings.jwt_secret, caller.tenant_id)?,
        expires_in: STREAM_TOKEN_TTL_SECS,
    }))
}

/// `?kinds=a,b`: which kinds to stream (all when absent).
fn parse_kinds(raw: Option<&str>) -> Result<HashSet<Kind>, ApiError> {
    let Some(raw) = raw.filter(|r| !r.trim().is_empty()) else {
        return Ok(Kind::ALL.into_iter().collect());
    };
    raw.split(',')
        .map(|k| {
            Kind::parse(k.trim()).ok_or_else(|| ApiError::BadRequest {
                code: "invalid_query",
                message: format!(
                    "kinds: unknown kind {:?}; known: {}",
                    k.trim(),
                    Kind::ALL.map(|k| k.as_str()).join(", ")
                ),
                details: None,
            })
        })
        .collect()
}

/// Server-Sent Events of the caller's tenant: `campaign.progress`, `campaign.status`,
/// `delivery.status`, `message.received`, `session.status` (docs/events.md). Authenticate with
/// `Authorization: Bearer`, `X-API-Key`, or `?access_token=` from `POST /api/v1/events/token`.
/// A comment line is sent every 15 s when nothing else is; a client that falls behind gets a
/// `stream.lagged` event saying how many notifications it missed. A tenant has at most 20 (default)
/// streams open at once (`HERALD_SSE_STREAMS_PER_TENANT`): one more answers 429
/// `too_many_streams` with `Retry-After`.
#[endpoint(
    tags("events"),
    status_codes(200, 400, 401, 429, 503),
    security(["bearer" = []], ["api_key" = []], ["stream_token" = []]),
    responses((status_code = 200, description = "text/event-stream of the caller's tenant"))
)]
pub async fn stream_events(
    kinds: QueryParam<String, false>,
    access_token: QueryParam<String, false>,
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
) -> Result<(), ApiError> {
    let state = AppState::from_depot(depot)?;
    let has_header =
        req.headers().contains_key("authorization") || req.headers().contains_key("x-api-key");
    let tenant_id = match access_token.as_deref() {
        Some(token) if !has_header => verify_stream_token(&state.settings.jwt_secret, token)
            .ok_or_else(|| {
                ApiError::Unauthorized("invalid or expired stream token (access_token)".into())
            })?,
        _ => caller_from(req, &state).await?.tenant_id,
    };
    let kinds = parse_kinds(kinds.as_deref())?;
    // held by the stream: it goes when the stream ends, however it ends (decision 0043)
    let slot = state.pools.streams.try_acquire(tenant_id).map_err(|r| {
        crate::pools::over_cap(
            "too_many_streams",
            format!(
                "this tenant already has {} event streams open; close one first",
                state.pools.streams.limits().per_key
            ),
            "event streams",
            r,
        )
    })?;
    let notifications = depot
        .get_typed::<Notifications>()
        .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("notifications missing")))?
        .clone();
    let subscription = notifications.subscribe(tenant_id).await.map_err(|e| {
        tracing::warn!(error = %format!("{e:#}"), "event subscription failed");
        ApiError::Unavailable("real-time events are unavailable right now".into())
    })?;
    let events = subscription.filter_map(move |received| {
        let _slot = &slot;
        let event = match received {
            Received::Notification(n) if kinds.contains(&n.kind) => {
                match serde_json::to_string(&*n) {
                    Ok(json) => Some(
                        SseEvent::default()
                            .name(n.kind.as_str())
                            .id(n.id.clone())
                            .text(json),
                    ),
                    Err(_) => None,
                }
            }
            Received::Notification(_) => None,
            Received::Lagged(missed) => Some(
                SseEvent::default()
                    .name("stream.lagged")
                    .text(serde_json::json!({ "missed": missed }).to_string()),
            ),
        };
        futures::future::ready(event.map(Ok::<_, Infallible>))
    });
    // the first line tells the client the stream is open (and how soon to reconnect)
    let hello = futures::stream::once(futures::future::ready(Ok(SseEvent::default()
        .comment("herald events")
        .retry(Duration::from_secs(3)))));
    res.headers_mut().insert(
        "x-accel-buffering",
        salvo::http::HeaderValue::from_static("no"),
    );
    SseKeepAlive::new(hello.chain(events))
        .comment(" keep-alive")
        .max_interval(Duration::from_secs(
            state.settings.sse_keepalive_secs.max(1),
        ))
        .stream(res);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_tokens_open_streams_only() {
        let secret = Secret::new("x".repeat(40));
        let tenant = Uuid::new_v4();
        let token = issue_stream_token(&secret, tenant).expect("token");
        assert_eq!(verify_stream_token(&secret, &token), Some(tenant));
        // another secret, or an ordinary access token, is not a stream token
        assert_eq!(
            verify_stream_token(&Secret::new("y".repeat(40)), &token),
            None
        );
        let access = crate::tokens::JwtKeys::new(&secret)
            .issue(Uuid::new_v4(), tenant, 0)
            .expect("access token");
        assert_eq!(verify_stream_token(&secret, &access), None);
        assert_eq!(verify_stream_token(&secret, "garbage"), None);
    }

    #[test]
    fn kinds_filter_parses_and_names_unknown_kinds() {
        assert_eq!(parse_kinds(None).expect("all").len(), Kind::ALL.len());
        let some = parse_kinds(Some("campaign.progress, delivery.status")).expect("two");
        assert_eq!(some.len(), 2);
        assert!(some.contains(&Kind::DeliveryStatus));
        let err = parse_kinds(Some("campaign.progress,nope")).expect_err("unknown");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
