//! The operator's endpoints (header `X-Admin-Token`): every tenant with its plan and usage, and
//! changing a tenant's plan. Off (404) unless `HERALD_ADMIN_TOKEN` is set.

use chrono::{DateTime, Utc};
use herald_scheduler::quota::{self, Plan};
use salvo::oapi::extract::{PathParam, QueryParam};
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::accounts::PlanView;
use super::reply::NoContent;
use super::{parse_id, parse_limit, parse_time_cursor, ListOf};
use crate::error::{json_body, ApiError};
use crate::plans::UsageView;
use crate::state::AppState;

/// Compares digests of both, so the time taken says nothing about the token.
fn same_token(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Hoop for the admin routes: 404 when the admin token is not configured, 401 without the right
/// `X-Admin-Token`.
#[handler]
pub async fn require_admin(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
    ctrl: &mut FlowCtrl,
) {
    let refuse = |res: &mut Response, ctrl: &mut FlowCtrl, e: ApiError| {
        res.render(e);
        ctrl.skip_rest();
    };
    let state = match AppState::from_depot(depot) {
        Ok(s) => s,
        Err(e) => return refuse(res, ctrl, e),
    };
    let Some(expected) = state.settings.admin_token.as_ref() else {
        return refuse(res, ctrl, ApiError::NotFound);
    };
    let given = req
        .headers()
        .get("x-admin-token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or_default();
    if given.is_empty() || !same_token(given, expected.expose()) {
        return refuse(
            res,
            ctrl,
            ApiError::Unauthorized("send the operator's token in X-Admin-Token".into()),
        );
    }
}

#[derive(Serialize, ToSchema)]
pub struct AdminTenantView {
    id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
    plan: PlanView,
    usage: UsageView,
}

async fn tenant_view(
    state: &AppState,
    id: Uuid,
    name: String,
    created_at: DateTime<Utc>,
) -> Result<AdminTenantView, ApiError> {
    let plan = crate::plans::tenant_plan(&state.pool, id).await?;
    Ok(AdminTenantView {
        id,
        name,
        created_at,
        plan: PlanView::of(&plan),
        usage: crate::plans::usage(state, id).await?,
    })
}

/// Every tenant, newest first, with its plan, expiry and usage in the current window.
#[endpoint(tags("admin"), status_codes(200, 401, 404), parameters(("X-Admin-Token" = String, Header, description = "the operator's token")))]
pub async fn list_tenants(
    limit: QueryParam<String, false>,
    cursor: QueryParam<String, false>,
    depot: &mut Depot,
) -> Result<Json<ListOf<AdminTenantView>>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let limit = parse_limit(limit.as_deref())?;
    let cursor = parse_time_cursor(cursor.as_deref())?;
    let rows: Vec<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, name, created_at FROM tenants
          WHERE ($1::timestamptz IS NULL OR (created_at, id) < ($1, $2))
          ORDER BY created_at DESC, id DESC LIMIT $3",
    )
    .bind(cursor.map(|c| c.0))
    .bind(cursor.map(|c| c.1))
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let page = herald_projections::Page::from_rows(rows, limit, |(id, _, at)| {
        herald_projections::time_cursor(*at, *id)
    });
    let mut items = Vec::with_capacity(page.items.len());
    for (id, name, created_at) in page.items {
        items.push(tenant_view(&state, id, name, created_at).await?);
    }
    Ok(Json(ListOf {
        items,
        next_cursor: page.next_cursor,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPlan {
    /// `basic`, `pro`, `max` or `unlimited`.
    plan: String,
    /// RFC 3339; absent or `null`: the plan does not expire.
    expires_at: Option<String>,
}

/// Sets a tenant's plan and expiry. Recipients waiting for quota (or for a renewal) are released
/// at once and go within the new plan's limits; no restart needed.
#[endpoint(tags("admin"), request_body = SetPlan, status_codes(200, 400, 401, 404, 422), parameters(("X-Admin-Token" = String, Header, description = "the operator's token")))]
pub async fn set_plan(
    id: PathParam<String>,
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Json<AdminTenantView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let id = parse_id(&id.into_inner())?;
    let body: SetPlan = json_body(req, 16 * 1024).await?;
    let plan = Plan::parse(body.plan.trim())
        .ok_or_else(|| ApiError::validation("plan", "must be one of basic, pro, max, unlimited"))?;
    let expires_at = match body.expires_at.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(
            DateTime::parse_from_rfc3339(raw)
                .map_err(|_| ApiError::validation("expires_at", "must be an RFC 3339 timestamp"))?
                .with_timezone(&Utc),
        ),
    };
    let row: Option<(String, DateTime<Utc>)> = sqlx::query_as(
        "UPDATE tenants SET plan = $2, plan_expires_at = $3 WHERE id = $1
         RETURNING name, created_at",
    )
    .bind(id)
    .bind(plan.as_str())
    .bind(expires_at)
    .fetch_optional(&state.pool)
    .await?;
    let (name, created_at) = row.ok_or(ApiError::NotFound)?;
    let released = quota::release_waiting(&state.pool, id).await?;
    tracing::info!(tenant = %id, plan = plan.as_str(), released, "plan changed by the operator");
    Ok(Json(tenant_view(&state, id, name, created_at).await?))
}

/// Removes a user: its access tokens stop working at once and it cannot sign in again. Its
/// tenant, the tenant's data and API keys stay (revoke keys with `DELETE /api-keys/{id}`).
#[endpoint(tags("admin"), status_codes(204, 401, 404), parameters(("X-Admin-Token" = String, Header, description = "the operator's token")))]
pub async fn delete_user(id: PathParam<String>, depot: &mut Depot) -> Result<NoContent, ApiError> {
    let state = AppState::from_depot(depot)?;
    let id = parse_id(&id.into_inner())?;
    let tenant: Option<Uuid> =
        sqlx::query_scalar("DELETE FROM users WHERE id = $1 RETURNING tenant_id")
            .bind(id)
            .fetch_optional(&state.pool)
            .await?;
    let tenant = tenant.ok_or(ApiError::NotFound)?;
    tracing::info!(user = %id, %tenant, "user removed by the operator; its tokens are revoked");
    Ok(NoContent)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetMetaPhoneNumberId {
    /// The Cloud API phone number id (digits) the session stands for; `null` clears it.
    meta_phone_number_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionNumberView {
    session_id: Uuid,
    tenant_id: Uuid,
    meta_phone_number_id: Option<String>,
}

/// Sets (or clears) the Cloud API phone number id a session stands for, without asking Meta:
/// the operator vouches for it (decision 0041). Still one session's only (409).
#[endpoint(tags("admin"), request_body = SetMetaPhoneNumberId, status_codes(200, 400, 401, 404, 409, 413, 422), parameters(("X-Admin-Token" = String, Header, description = "the operator's token")))]
pub async fn set_meta_phone_number_id(
    id: PathParam<String>,
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Json<SessionNumberView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let id = parse_id(&id.into_inner())?;
    let body: SetMetaPhoneNumberId = json_body(req, 16 * 1024).await?;
    let number = body
        .meta_phone_number_id
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if number
        .as_deref()
        .is_some_and(|n| !herald_gateway::meta::valid_phone_number_id(n))
    {
        return Err(ApiError::validation(
            "meta_phone_number_id",
            "must be the digits of a Cloud API phone number id",
        ));
    }
    // the access token proved the old id, not this one: it goes with the change
    let row: Option<Uuid> = sqlx::query_scalar(
        "UPDATE session_credentials
            SET meta_phone_number_id = $2,
                meta_linked_by = CASE WHEN $2::text IS NULL THEN NULL ELSE 'operator' END,
                meta_access_token = NULL
          WHERE session_id = $1
         RETURNING tenant_id",
    )
    .bind(id)
    .bind(&number)
    .fetch_optional(&state.pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
            super::sessions::phone_number_id_taken()
        }
        _ => e.into(),
    })?;
    let tenant_id = row.ok_or(ApiError::NotFound)?;
    tracing::info!(session = %id, tenant = %tenant_id, number = ?number, "Cloud API phone number id set by the operator");
    Ok(Json(SessionNumberView {
        session_id: id,
        tenant_id,
        meta_phone_number_id: number,
    }))
}
