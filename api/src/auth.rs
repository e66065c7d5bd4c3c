//! Authentication: argon2 passwords, HS256 access tokens (algorithm pinned, expiry enforced), and
//! integrator API keys (stored as SHA-256). The `require_caller` hoop puts a [`Caller`] in the depot;
//! every query then scopes by `caller.tenant_id`.

use std::net::IpAddr;

use herald_domain::fair_pool::Permit;
use salvo::prelude::*;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;
pub use crate::tokens::{JwtKeys, TOKEN_TTL_SECS};

/// Who is calling. Every tenant-owned query takes `tenant_id` from here, never from the request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant_id: Uuid,
    /// The person behind an access token; `None` for an API key.
    pub user_id: Option<Uuid>,
}

/// Longest password Herald hashes: argon2 takes any length, so without a bound one request could
/// make the server hash megabytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// 422 naming `field` when the password is over [`MAX_PASSWORD_BYTES`]; checked before hashing.
pub fn bounded_password(field: &str, password: &str) -> Result<(), ApiError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::validation(
            field,
            format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Hashes a password with argon2 on a blocking thread, at most `HERALD_PASSWORD_HASHERS` at once
/// in the process and one at a time per client address (`pools::client_key`): a flood of
/// logins waits at most the pool's wait and then answers 503 `busy`, instead of starting a
/// blocking thread (a core and 19 MiB) per request (decision 0043).
pub async fn hash_password(
    state: &AppState,
    client: IpAddr,
    password: String,
) -> Result<String, ApiError> {
    let permit = hashing_permit(state, client).await?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
    })
    .await
    .map_err(|e| ApiError::Unexpected(e.into()))?
    .map_err(ApiError::Unexpected)
}

/// Checks a password against its argon2 hash, under the same bound as [`hash_password`].
pub async fn verify_password(
    state: &AppState,
    client: IpAddr,
    password: String,
    hash: String,
) -> Result<bool, ApiError> {
    let permit = hashing_permit(state, client).await?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        match PasswordHash::new(&hash) {
            Ok(parsed) => argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    })
    .await
    .map_err(|e| ApiError::Unexpected(e.into()))
}

/// Moved into the blocking closure, so it is held until the hash is done even when the request
/// goes away first (a dropped request does not stop a blocking thread).
async fn hashing_permit(state: &AppState, client: IpAddr) -> Result<Permit<IpAddr>, ApiError> {
    state
        .pools
        .hashing
        .acquire(client)
        .await
        .map_err(|r| crate::pools::busy("password checks", r))
}

/// A fresh API key: `hrld_` + 64 hex characters, its display prefix and its hash.
pub fn new_api_key() -> (String, String, Vec<u8>) {
    let key = format!("hrld_{}", hex::encode(rand::random::<[u8; 32]>()));
    let prefix = key[..13].to_string();
    let hash = Sha256::digest(key.as_bytes()).to_vec();
    (key, prefix, hash)
}

pub(crate) async fn caller_from(req: &Request, state: &AppState) -> Result<Caller, ApiError> {
    if let Some(value) = req.headers().get("authorization") {
        let value = value
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::Unauthorized("expected `Authorization: Bearer <token>`".into())
            })?;
        let claims = state
            .jwt
            .verify(token.trim())
            .ok_or_else(|| ApiError::Unauthorized("invalid or expired access token".into()))?;
        // one primary-key read per request, no cache: a password change or a removed user
        // ends the user's tokens at once, on every instance (decision 0042)
        let current: Option<i32> = sqlx::query_scalar(
            "SELECT credential_version FROM users WHERE id = $1 AND tenant_id = $2",
        )
        .bind(claims.sub)
        .bind(claims.tid)
        .fetch_optional(&state.pool)
        .await?;
        if current != Some(claims.ver) {
            return Err(ApiError::Unauthorized(
                "this access token was revoked (the password changed or the user was removed); sign in again"
                    .into(),
            ));
        }
        return Ok(Caller {
            tenant_id: claims.tid,
            user_id: Some(claims.sub),
        });
    }
    if let Some(value) = req.headers().get("x-api-key") {
        let key = value
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed X-API-Key header".into()))?;
        let hash = Sha256::digest(key.trim().as_bytes()).to_vec();
        let tenant: Option<Uuid> = sqlx::query_scalar(
            "SELECT tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(&state.pool)
        .await?;
        let tenant_id = tenant.ok_or_else(|| ApiError::Unauthorized("unknown API key".into()))?;
        return Ok(Caller {
            tenant_id,
            user_id: None,
        });
    }
    Err(ApiError::Unauthorized(
        "send `Authorization: Bearer <access_token>` or `X-API-Key: <key>`".into(),
    ))
}

/// Hoop for every tenant route: a valid token or key, or 401 with the envelope.
#[handler]
pub async fn require_caller(
    req: &mut Request,
    depot: &mut Depot,
    res: &mut Response,
    ctrl: &mut FlowCtrl,
) {
    let state = match depot.get_typed::<AppState>() {
        Ok(s) => s.clone(),
        Err(_) => {
            res.render(ApiError::Unexpected(anyhow::anyhow!("state missing")));
            ctrl.skip_rest();
            return;
        }
    };
    match caller_from(req, &state).await {
        Ok(caller) => {
            // API calls per window (limited plans), counted in Postgres across instances
            if let Err(e) = crate::plans::count_api_call(&state, caller.tenant_id).await {
                res.render(e);
                ctrl.skip_rest();
                return;
            }
            depot.insert_typed(caller);
        }
        Err(e) => {
            res.render(e);
            ctrl.skip_rest();
        }
    }
}

/// The caller put in the depot by [`require_caller`].
pub fn caller(depot: &Depot) -> Result<Caller, ApiError> {
    depot
        .get_typed::<Caller>()
        .cloned()
        .map_err(|_| ApiError::Unauthorized("authentication required".into()))
}
