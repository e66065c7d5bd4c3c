//! `/api/v1/webhook-endpoints`: a tenant's outbound webhooks (docs/webhooks-out.md). The work is
//! `herald_outbound`'s; this module translates requests and answers.

use chrono::{DateTime, Utc};
use herald_outbound::endpoints::{self, Endpoint, EndpointChange, EndpointError, NewEndpoint};
use herald_outbound::queue::Attempt;
use salvo::oapi::extract::{PathParam, QueryParam};
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::reply::{Accepted, Created, NoContent};
use super::{parse_id, parse_limit, parse_time_cursor, ListOf};
use crate::auth::caller;
use crate::error::{json_body, ApiError};
use crate::state::AppState;

const SMALL_BODY: usize = 64 * 1024;

impl From<EndpointError> for ApiError {
    fn from(e: EndpointError) -> Self {
        match e {
            EndpointError::NotFound => ApiError::NotFound,
            EndpointError::Invalid { field, message } => ApiError::validation(field, message),
            EndpointError::TooMany => ApiError::Unprocessable {
                code: "too_many_endpoints",
                message: e.to_string(),
                details: None,
            },
            EndpointError::Disabled => ApiError::Conflict {
                code: "endpoint_disabled",
                message: e.to_string(),
            },
            EndpointError::Unexpected(e) => ApiError::Unexpected(e),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// `http(s)://...` on a public address (the SSRF rules of image URLs).
    url: String,
    /// Event types (`delivery.status`, `campaign.status`, `session.status`, `message.received`,
    /// `contact.opted_out`), or `["*"]` for all.
    events: Vec<String>,
    description: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchEndpoint {
    url: Option<String>,
    events: Option<Vec<String>>,
    /// A new description; `null` or `""` clears it.
    #[serde(default, deserialize_with = "present")]
    #[salvo(schema(value_type = Option<String>))]
    description: Option<Option<String>>,
    /// `true` turns a disabled endpoint (e.g. after a 410) back on; its waiting messages resume.
    enabled: Option<bool>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Re-deliver every subscribed event recorded at or after this time (at most 30 days ago).
    since: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointView {
    id: Uuid,
    url: String,
    events: Vec<String>,
    description: Option<String>,
    enabled: bool,
    /// Why Herald disabled the endpoint (it answered 410), when it did.
    disabled_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// An endpoint with its signing secret: only the answers of creation and rotation.
#[derive(Serialize, ToSchema)]
pub struct EndpointWithSecret {
    id: Uuid,
    url: String,
    events: Vec<String>,
    description: Option<String>,
    enabled: bool,
    disabled_reason: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// `whsec_<base64>`: verify deliveries with it (Standard Webhooks). Shown only now.
    secret: String,
}

fn with_secret(
    e: Endpoint,
    secret: &herald_outbound::signing::SigningSecret,
) -> EndpointWithSecret {
    EndpointWithSecret {
        id: e.id,
        url: e.url,
        events: e.events,
        description: e.description,
        enabled: e.enabled,
        disabled_reason: e.disabled_reason,
        created_at: e.created_at,
        updated_at: e.updated_at,
        secret: secret.expose().to_string(),
    }
}

#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    /// The `webhook-id` of the message.
    event_id: String,
    #[serde(rename = "type")]
    event_type: String,
    /// 1 for the first attempt.
    attempt: i32,
    /// The receiver's HTTP status; `null` when it did not answer.
    status_code: Option<i32>,
    /// Why it did not count as delivered; `null` when delivered.
    error: Option<String>,
    at: DateTime<Utc>,
    /// When the next attempt is due; `null` when none follows.
    next_attempt_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct TestQueued {
    /// The `webhook-id` of the test message (type `webhook.test`).
    event_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ReplayQueued {
    since: DateTime<Utc>,
    /// Messages queued for delivery.
    queued: u64,
}

fn view(e: Endpoint) -> EndpointView {
    EndpointView {
        id: e.id,
        url: e.url,
        events: e.events,
        description: e.description,
        enabled: e.enabled,
        disabled_reason: e.disabled_reason,
        created_at: e.created_at,
        updated_at: e.updated_at,
    }
}

fn attempt_view(a: Attempt) -> AttemptView {
    AttemptView {
        event_id: a.event_id,
        event_type: a.event_type,
        attempt: a.attempt,
        status_code: a.status_code,
        error: a.error,
        at: a.at,
        next_attempt_at: a.next_attempt_at,
    }
}

/// Registers an endpoint. The answer holds its signing secret, shown only this once.
#[endpoint(tags("webhook-endpoints"), request_body = CreateEndpoint, status_codes(201, 400, 401, 413, 422, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn create(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Created<EndpointWithSecret>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let body: CreateEndpoint = json_body(req, SMALL_BODY).await?;
    let (endpoint, secret) = endpoints::create(
        &state.pool,
        caller.tenant_id,
        NewEndpoint {
            url: body.url,
            events: body.events,
            description: body.description,
        },
        state.settings.outbound.allow_private,
    )
    .await?;
    Ok(Created(with_secret(endpoint, &secret)))
}

/// This tenant's endpoints, newest first (never their secrets).
#[endpoint(tags("webhook-endpoints"), status_codes(200, 400, 401, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn list(
    limit: QueryParam<String, false>,
    cursor: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<Json<ListOf<EndpointView>>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let limit = parse_limit(limit.as_deref())?;
    let cursor = parse_time_cursor(cursor.as_deref())?;
    let page = endpoints::list(&state.pool, caller.tenant_id, limit, cursor).await?;
    Ok(Json(ListOf {
        items: page.items.into_iter().map(view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One endpoint.
#[endpoint(tags("webhook-endpoints"), status_codes(200, 401, 404, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn get(id: PathParam<String>, depot: &mut Depot) -> Result<Json<EndpointView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    Ok(Json(view(
        endpoints::get(&state.pool, caller.tenant_id, id).await?,
    )))
}

/// Changes an endpoint's URL, events, description or `enabled`.
#[endpoint(tags("webhook-endpoints"), request_body = PatchEndpoint, status_codes(200, 400, 401, 404, 413, 422, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn update(
    id: PathParam<String>,
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Json<EndpointView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let body: PatchEndpoint = json_body(req, SMALL_BODY).await?;
    let endpoint = endpoints::update(
        &state.pool,
        caller.tenant_id,
        id,
        EndpointChange {
            url: body.url,
            events: body.events,
            description: body.description,
            enabled: body.enabled,
        },
        state.settings.outbound.allow_private,
    )
    .await?;
    Ok(Json(view(endpoint)))
}

/// Deletes an endpoint, its queue and its delivery log.
#[endpoint(tags("webhook-endpoints"), status_codes(204, 401, 404, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn delete(id: PathParam<String>, depot: &mut Depot) -> Result<NoContent, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    endpoints::delete(&state.pool, caller.tenant_id, id).await?;
    Ok(NoContent)
}

/// A new signing secret, shown only in this answer. The previous one keeps signing beside it
/// for 24 hours (both signatures in `webhook-signature`), so receivers can switch without loss.
#[endpoint(tags("webhook-endpoints"), status_codes(200, 401, 404, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn rotate_secret(
    id: PathParam<String>,
    depot: &mut Depot,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let (endpoint, secret) = endpoints::rotate_secret(&state.pool, caller.tenant_id, id).await?;
    Ok(Json(with_secret(endpoint, &secret)))
}

/// Queues a sample message (type `webhook.test`) for the endpoint, whatever its events.
#[endpoint(tags("webhook-endpoints"), status_codes(202, 401, 404, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn test(
    id: PathParam<String>,
    depot: &mut Depot,
) -> Result<Accepted<TestQueued>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let event_id = herald_outbound::queue::send_test(&state.pool, caller.tenant_id, id).await?;
    Ok(Accepted(TestQueued { event_id }))
}

/// The endpoint's delivery attempts, newest first.
#[endpoint(tags("webhook-endpoints"), status_codes(200, 400, 401, 404, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn deliveries(
    id: PathParam<String>,
    limit: QueryParam<String, false>,
    cursor: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<Json<ListOf<AttemptView>>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let limit = parse_limit(limit.as_deref())?;
    let cursor = parse_time_cursor(cursor.as_deref())?;
    let page =
        herald_outbound::queue::attempts(&state.pool, caller.tenant_id, id, limit, cursor).await?;
    Ok(Json(ListOf {
        items: page.items.into_iter().map(attempt_view).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Queues again every event the endpoint subscribes to since a time (at most 30 days back),
/// with the same `webhook-id`s as the first delivery. 409 when the endpoint is disabled.
#[endpoint(tags("webhook-endpoints"), request_body = ReplayRequest, status_codes(202, 400, 401, 404, 409, 413, 422, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn replay(
    id: PathParam<String>,
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Accepted<ReplayQueued>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let body: ReplayRequest = json_body(req, SMALL_BODY).await?;
    let queued =
        herald_outbound::replay::replay(&state.pool, caller.tenant_id, id, body.since).await?;
    Ok(Accepted(ReplayQueued {
        since: body.since,
        queued,
    }))
}
