//! Registration, login, the caller's account, and API keys.

use chrono::{DateTime, Utc};
use salvo::oapi::extract::PathParam;
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::reply::{Created, NoContent};
use super::{parse_id, ListOf};
use crate::auth::{self, caller, TOKEN_TTL_SECS};
use crate::error::{json_body, ApiError};
use crate::state::AppState;
use crate::throttle::client_of;
use herald_accounts::throttle::{self, Scope};

const SMALL_BODY: usize = 64 * 1024;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    email: String,
    /// At least 8 characters, at most 1,024 bytes.
    password: String,
    name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub(super) id: Uuid,
    pub(super) email: String,
    pub(super) name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub(super) user: UserView,
    pub(super) tenant_id: Uuid,
    pub(super) access_token: String,
    /// Always `Bearer`.
    pub(super) token_type: String,
    /// Seconds until the access token expires.
    pub(super) expires_in: i64,
}

fn normalise_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(ApiError::validation(
            "email",
            "is not a valid email address",
        ));
    }
    Ok(email)
}

/// Creates an account and its tenant, and signs in. At most 10 registrations an hour from one
/// client address (429 with `Retry-After`).
#[endpoint(tags("accounts"), request_body = RegisterRequest, status_codes(201, 400, 409, 413, 422, 429, 503))]
pub async fn register(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Created<TokenResponse>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let body: RegisterRequest = json_body(req, SMALL_BODY).await?;
    let email = normalise_email(&body.email)?;
    if body.password.chars().count() < 8 {
        return Err(ApiError::validation(
            "password",
            "must be at least 8 characters",
        ));
    }
    auth::bounded_password("password", &body.password)?;
    let name = body
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > 200) {
        return Err(ApiError::validation(
            "name",
            "must be at most 200 characters",
        ));
    }
    // counted before the hash, which is what an address could otherwise make Herald do at will
    let client = client_of(req, &state.settings.trusted_proxies);
    throttle::attempt(
        &state.pool,
        Scope::Register,
        &client,
        state.settings.throttles.register_address,
    )
    .await?;
    let hash = auth::hash_password(
        &state,
        crate::pools::client_key(req, &state.settings.trusted_proxies),
        body.password,
    )
    .await?;
    let tenant_id = Uuid::new_v4();
    let user_id = Uuid::new_v4();
    let mut tx = state.pool.begin().await?;
    sqlx::query("INSERT INTO tenants (id, name, plan) VALUES ($1, $2, $3)")
        .bind(tenant_id)
        .bind(name.clone().unwrap_or_else(|| email.clone()))
        .bind(&state.settings.default_plan)
        .execute(&mut *tx)
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO users (id, tenant_id, email, name, password_hash) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(user_id)
    .bind(tenant_id)
    .bind(&email)
    .bind(&name)
    .bind(hash)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.constraint() == Some("users_email_key") => {
            return Err(ApiError::Conflict {
                code: "email_taken",
                message: "an account with this email already exists".into(),
            })
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    let access_token = state.jwt.issue(user_id, tenant_id, 0)?;
    Ok(Created(TokenResponse {
        user: UserView {
            id: user_id,
            email,
            name,
        },
        tenant_id,
        access_token,
        token_type: "Bearer".into(),
        expires_in: TOKEN_TTL_SECS,
    }))
}

/// Signs in with email and password. After 5 failed logins for one email, or 20 from one client
/// address, within 15 minutes, logins are refused with 429 and `Retry-After` until the window
/// ends, even with the right password; a successful login resets its account's count.
#[endpoint(tags("accounts"), request_body = LoginRequest, status_codes(200, 400, 401, 413, 422, 429, 503))]
pub async fn login(req: &mut Request, depot: &mut Depot) -> Result<Json<TokenResponse>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let body: LoginRequest = json_body(req, SMALL_BODY).await?;
    auth::bounded_password("password", &body.password)?;
    let wrong = || ApiError::Unauthorized("wrong email or password".into());
    let email = normalise_email(&body.email).map_err(|_| wrong())?;
    // every attempt counts before the password is checked, so simultaneous guesses cannot all
    // pass; a success takes its attempt back
    let client = client_of(req, &state.settings.trusted_proxies);
    let hasher = crate::pools::client_key(req, &state.settings.trusted_proxies);
    let limits = &state.settings.throttles;
    throttle::attempt(
        &state.pool,
        Scope::LoginAccount,
        &email,
        limits.login_account,
    )
    .await?;
    throttle::attempt(
        &state.pool,
        Scope::LoginAddress,
        &client,
        limits.login_address,
    )
    .await?;
    let row: Option<(Uuid, Uuid, Option<String>, String, i32)> = sqlx::query_as(
        "SELECT id, tenant_id, name, password_hash, credential_version FROM users WHERE lower(email) = $1",
    )
    .bind(&email)
    .fetch_optional(&state.pool)
    .await?;
    let Some((user_id, tenant_id, name, hash, version)) = row else {
        // same work as a real check, so timing does not reveal which emails exist
        auth::hash_password(&state, hasher, body.password).await?;
        return Err(wrong());
    };
    if !auth::verify_password(&state, hasher, body.password, hash).await? {
        return Err(wrong());
    }
    throttle::reset(&state.pool, Scope::LoginAccount, &email).await?;
    throttle::forgive(&state.pool, Scope::LoginAddress, &client).await?;
    let access_token = state.jwt.issue(user_id, tenant_id, version)?;
    Ok(Json(TokenResponse {
        user: UserView {
            id: user_id,
            email,
            name,
        },
        tenant_id,
        access_token,
        token_type: "Bearer".into(),
        expires_in: TOKEN_TTL_SECS,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TenantView {
    id: Uuid,
    name: String,
    plan: String,
    plan_expires_at: Option<DateTime<Utc>>,
    /// Region used to read national phone numbers (`0812...`), ISO 3166 alpha-2.
    default_region: String,
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    user: Option<UserView>,
    tenant: TenantView,
    /// The plan with its limits (`null`: no limit).
    plan: PlanView,
    /// Usage in the current window, and when it resets.
    usage: crate::plans::UsageView,
}

#[derive(Serialize, ToSchema)]
pub struct PlanView {
    /// `basic`, `pro`, `max` or `unlimited`.
    pub name: String,
    pub expires_at: Option<DateTime<Utc>>,
    /// An expired subscription can read but not send.
    pub expired: bool,
    pub limits: crate::plans::LimitsView,
}

impl PlanView {
    pub fn of(plan: &herald_scheduler::quota::TenantPlan) -> PlanView {
        PlanView {
            name: plan.plan.as_str().into(),
            expires_at: plan.expires_at,
            expired: plan.expired(Utc::now()),
            limits: crate::plans::limits_view(plan.plan),
        }
    }
}

/// The caller's user (absent for an API key), tenant, plan with its limits, and usage in the
/// current window with the time it resets.
#[endpoint(tags("accounts"), status_codes(200, 401, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn me(depot: &mut Depot) -> Result<Json<MeResponse>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let tenant: (Uuid, String, String, Option<DateTime<Utc>>, String) = sqlx::query_as(
        "SELECT id, name, plan, plan_expires_at, default_region FROM tenants WHERE id = $1",
    )
    .bind(caller.tenant_id)
    .fetch_optional(&state.pool)
    .await?
    .ok_or(ApiError::NotFound)?;
    let user = match caller.user_id {
        Some(id) => sqlx::query_as::<_, (Uuid, String, Option<String>)>(
            "SELECT id, email, name FROM users WHERE id = $1 AND tenant_id = $2",
        )
        .bind(id)
        .bind(caller.tenant_id)
        .fetch_optional(&state.pool)
        .await?
        .map(|(id, email, name)| UserView { id, email, name }),
        None => None,
    };
    let plan = crate::plans::tenant_plan(&state.pool, caller.tenant_id).await?;
    let usage = crate::plans::usage(&state, caller.tenant_id).await?;
    Ok(Json(MeResponse {
        plan: PlanView::of(&plan),
        usage,
        user,
        tenant: TenantView {
            id: tenant.0,
            name: tenant.1,
            plan: tenant.2,
            plan_expires_at: tenant.3,
            default_region: tenant.4,
        },
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyCreated {
    id: Uuid,
    name: String,
    /// Shown once; Herald keeps only a hash.
    key: String,
    prefix: String,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct ApiKeyView {
    id: Uuid,
    name: String,
    prefix: String,
    created_at: DateTime<Utc>,
}

/// Creates an integrator key for this tenant (header `X-API-Key`).
#[endpoint(tags("accounts"), request_body = CreateApiKey, status_codes(201, 400, 401, 422), security(["bearer" = []]))]
pub async fn create_api_key(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Created<ApiKeyCreated>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let body: CreateApiKey = json_body(req, SMALL_BODY).await?;
    let name = herald_domain::template::validate_name(&body.name)?;
    let (key, prefix, hash) = auth::new_api_key();
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(caller.tenant_id)
    .bind(&name)
    .bind(&prefix)
    .bind(hash)
    .execute(&state.pool)
    .await?;
    Ok(Created(ApiKeyCreated {
        id,
        name,
        key,
        prefix,
    }))
}

/// This tenant's active API keys (never the keys themselves).
#[endpoint(tags("accounts"), status_codes(200, 401, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn list_api_keys(depot: &mut Depot) -> Result<Json<ListOf<ApiKeyView>>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let items: Vec<ApiKeyView> = sqlx::query_as(
        "SELECT id, name, prefix, created_at FROM api_keys
          WHERE tenant_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 500",
    )
    .bind(caller.tenant_id)
    .fetch_all(&state.pool)
    .await?;
    Ok(Json(ListOf {
        items,
        next_cursor: None,
    }))
}

/// Revokes a key at once.
#[endpoint(tags("accounts"), status_codes(204, 401, 404), security(["bearer" = []], ["api_key" = []]))]
pub async fn delete_api_key(
    id: PathParam<String>,
    depot: &mut Depot,
) -> Result<NoContent, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let id = parse_id(&id.into_inner())?;
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(caller.tenant_id)
    .execute(&state.pool)
    .await?
    .rows_affected();
    if done == 0 {
        return Err(ApiError::NotFound);
    }
    Ok(NoContent)
}
