//! `GET|POST|PUT|DELETE /api/v1/sessions/{id}/gateway/{path}`: a WuzAPI feature Herald has no
//! endpoint for, reached with the session's own token (the caller never sees it). Which paths may
//! pass, and the forwarding, live in the gateway crate (`herald_gateway::passthrough`); this only
//! translates: the raw path as it arrived (never a decoded or normalised one), the tenant's
//! session, the hourly quota for `chat/send/...`, and WuzAPI's status and body back
//! (docs/gateway-passthrough.md).

use chrono::Utc;
use herald_gateway::passthrough::{self, ForwardRequest, Refusal};
use salvo::http::header::CONTENT_TYPE;
use salvo::http::{HeaderValue, StatusCode};
use salvo::prelude::*;

use super::{gateway_failure, wuzapi_credentials};
use crate::auth::caller;
use crate::error::ApiError;
use crate::routes::parse_id;
use crate::state::AppState;

/// Largest request body forwarded (an image send carries its data URL).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Forwards the request to the session's WuzAPI user and answers what WuzAPI answered. 403
/// `gateway_path_forbidden` for a path outside `chat/`, `user/`, `group/`, `newsletter/` and
/// `session/status`, or one that could leave its prefix; 409 `not_a_wuzapi_session` for a
/// Cloud API session; 429 `quota_exceeded` when a `chat/send/...` is over the hourly quota;
/// 502 when WuzAPI cannot be reached.
#[endpoint(
    tags("sessions"),
    status_codes(200, 400, 401, 403, 404, 409, 413, 429, 502),
    parameters(
        ("id" = String, Path, description = "the session"),
        ("path" = String, Path, description = "the WuzAPI path, e.g. `user/info` or `group/list`"),
    ),
    responses((status_code = 200, description = "WuzAPI's own status and body, passed back as they came")),
    security(["bearer" = []], ["api_key" = []])
)]
pub async fn forward(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
) -> Result<(), ApiError> {
    pass(req, depot, res).await
}

/// [`forward`] for `GET` (which has no body to be too large).
#[endpoint(
    tags("sessions"),
    status_codes(200, 400, 401, 403, 404, 409, 429, 502),
    parameters(
        ("id" = String, Path, description = "the session"),
        ("path" = String, Path, description = "the WuzAPI path, e.g. `user/info` or `group/list`"),
    ),
    responses((status_code = 200, description = "WuzAPI's own status and body, passed back as they came")),
    security(["bearer" = []], ["api_key" = []])
)]
pub async fn forward_get(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
) -> Result<(), ApiError> {
    pass(req, depot, res).await
}

async fn pass(req: &mut Request, depot: &mut Depot, res: &mut Response) -> Result<(), ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let raw_id = req.param::<String>("id").unwrap_or_default();
    let id = parse_id(&raw_id)?;
    // the path exactly as it arrived, still encoded: what WuzAPI would see
    let prefix = format!("/api/v1/sessions/{raw_id}/gateway/");
    let raw_path = req
        .uri()
        .path()
        .strip_prefix(&prefix)
        .unwrap_or_default()
        .to_string();
    let path = passthrough::allowed_path(&raw_path).map_err(|refusal| ApiError::Forbidden {
        code: "gateway_path_forbidden",
        message: match refusal {
            Refusal::NotAllowed => "only chat/..., user/..., group/..., newsletter/... and session/status can be reached through the gateway pass-through".to_string(),
            Refusal::Unsafe(why) => format!("the path cannot be forwarded: {why}"),
        },
    })?;
    let credentials =
        wuzapi_credentials(&state, caller.tenant_id, id, "WuzAPI to pass requests to").await?;
    let query = req.uri().query().unwrap_or_default().to_string();
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match req.payload_with_max_size(MAX_BODY).await {
        Ok(bytes) => bytes.to_vec(),
        Err(e) => return Err(crate::error::body_error(e, MAX_BODY)),
    };
    if passthrough::sends_a_message(&path) {
        take_quota(&state, caller.tenant_id).await?;
    }
    let forwarded = state
        .gateway
        .forward(
            &credentials.token,
            ForwardRequest {
                method: req.method().clone(),
                path,
                query,
                content_type,
                body,
            },
        )
        .await
        .map_err(|e| gateway_failure("answer the forwarded request", &e))?;
    res.status_code(
        StatusCode::from_u16(forwarded.status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
    );
    if let Some(value) = forwarded
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        res.headers_mut().insert(CONTENT_TYPE, value);
    }
    res.body(forwarded.body);
    Ok(())
}

/// One message of the tenant's hourly quota, or 429 `quota_exceeded` (counted before the send:
/// a send WuzAPI then refuses still counts).
async fn take_quota(state: &AppState, tenant_id: uuid::Uuid) -> Result<(), ApiError> {
    let plan = crate::plans::require_active(state, tenant_id).await?;
    let (window_start, window_end) = crate::plans::window(state).around(Utc::now());
    match plan.plan.limits().messages_per_window {
        Some(limit) => {
            let mut tx = state.pool.begin().await?;
            let granted =
                herald_scheduler::quota::grant(&mut tx, tenant_id, window_start, 1, limit).await?;
            tx.commit().await?;
            if granted < 1 {
                let retry = (window_end - Utc::now()).num_seconds().max(1) as u64;
                return Err(ApiError::TooManyRequests {
                    code: "quota_exceeded",
                    message: format!(
                        "the {} plan's message quota for this hour is used up; it resets at {}",
                        plan.plan.as_str(),
                        window_end.to_rfc3339()
                    ),
                    details: Some(serde_json::json!({"limit": limit, "resets_at": window_end})),
                    retry_after_secs: retry,
                });
            }
        }
        None => {
            herald_scheduler::quota::count_unlimited(&state.pool, tenant_id, window_start, 1)
                .await?
        }
    }
    Ok(())
}
