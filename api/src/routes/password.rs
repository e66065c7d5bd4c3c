//! Changing one's password (`POST /api/v1/me/password`): every token issued before stops working
//! at once and the answer carries a fresh one (docs/accounts.md, decision 0042).

use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::Deserialize;
use uuid::Uuid;

use super::accounts::{TokenResponse, UserView};
use crate::auth::{self, caller, TOKEN_TTL_SECS};
use crate::error::{json_body, ApiError};
use crate::state::AppState;
use herald_accounts::throttle::{self, Scope};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    current_password: String,
    /// At least 8 characters, at most 1,024 bytes.
    new_password: String,
}

/// Changes the signed-in user's password. Tokens issued before (on every device) stop working;
/// the answer holds a fresh one. Wrong current passwords count as failed logins of the account
/// (429 with `Retry-After` over the limit). API keys cannot change a password (403).
#[endpoint(tags("accounts"), request_body = ChangePassword, status_codes(200, 400, 401, 403, 413, 422, 429), security(["bearer" = []]))]
pub async fn change_password(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Json<TokenResponse>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let Some(user_id) = caller.user_id else {
        return Err(ApiError::Forbidden {
            code: "user_token_required",
            message:
                "sign in as the user (an access token) to change its password; an API key cannot"
                    .into(),
        });
    };
    // as large as registration takes, so an over-long password is named (422), not just too big
    let body: ChangePassword = json_body(req, 64 * 1024).await?;
    auth::bounded_password("current_password", &body.current_password)?;
    auth::bounded_password("new_password", &body.new_password)?;
    if body.new_password.chars().count() < 8 {
        return Err(ApiError::validation(
            "new_password",
            "must be at least 8 characters",
        ));
    }
    let row: Option<(String, Option<String>, String, i32)> = sqlx::query_as(
        "SELECT email, name, password_hash, credential_version FROM users
          WHERE id = $1 AND tenant_id = $2",
    )
    .bind(user_id)
    .bind(caller.tenant_id)
    .fetch_optional(&state.pool)
    .await?;
    let (email, name, hash, version) =
        row.ok_or_else(|| ApiError::Unauthorized("the user no longer exists".into()))?;
    // a stolen token must not become a way to guess the password
    let key = email.to_lowercase();
    throttle::attempt(
        &state.pool,
        Scope::LoginAccount,
        &key,
        state.settings.throttles.login_account,
    )
    .await?;
    if !auth::verify_password(
        &state,
        crate::pools::client_key(req, &state.settings.trusted_proxies),
        body.current_password,
        hash,
    )
    .await?
    {
        return Err(ApiError::validation(
            "current_password",
            "is not this user's current password",
        ));
    }
    throttle::reset(&state.pool, Scope::LoginAccount, &key).await?;
    let new_hash = auth::hash_password(
        &state,
        crate::pools::client_key(req, &state.settings.trusted_proxies),
        body.new_password,
    )
    .await?;
    // only from the version just checked: of two changes at once, the second is refused
    let bumped: Option<i32> = sqlx::query_scalar(
        "UPDATE users SET password_hash = $3, credential_version = credential_version + 1
          WHERE id = $1 AND credential_version = $2
         RETURNING credential_version",
    )
    .bind(user_id)
    .bind(version)
    .bind(new_hash)
    .fetch_optional(&state.pool)
    .await?;
    let version = bumped.ok_or_else(|| {
        ApiError::Unauthorized("the password was changed meanwhile; sign in again".into())
    })?;
    tracing::info!(user = %user_id, "password changed; earlier tokens revoked");
    Ok(Json(token_response(
        &state,
        user_id,
        caller.tenant_id,
        email,
        name,
        version,
    )?))
}

fn token_response(
    state: &AppState,
    user_id: Uuid,
    tenant_id: Uuid,
    email: String,
    name: Option<String>,
    version: i32,
) -> Result<TokenResponse, ApiError> {
    Ok(TokenResponse {
        access_token: state.jwt.issue(user_id, tenant_id, version)?,
        user: UserView {
            id: user_id,
            email,
            name,
        },
        tenant_id,
        token_type: "Bearer".into(),
        expires_in: TOKEN_TTL_SECS,
    })
}
