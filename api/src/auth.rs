//! Authentication: argon2 passwords, HS256 access tokens (algorithm pinned, expiry enforced), and
//! integrator API keys (stored as SHA-256). The `require_caller` hoop puts a [`Caller`] in the depot;
//! every query then scopes by `caller.tenant_id`.

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use salvo::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::Secret;
use crate::error::ApiError;
use crate::state::AppState;

/// Lifetime of an access token.
pub const TOKEN_TTL_SECS: i64 = 12 * 3600;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    tid: Uuid,
    iat: i64,
    exp: i64,
    /// The user's credential version when the token was issued; a token whose version is not
    /// the user's current one is refused (tokens from before versions existed carry 0).
    #[serde(default)]
    ver: i32,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn new(secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.validate_exp = true;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        }
    }

    /// A token for the user at its current `credential_version`.
    pub fn issue(
        &self,
        user_id: Uuid,
        tenant_id: Uuid,
        credential_version: i32,
    ) -> Result<String, ApiError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id,
            tid: tenant_id,
            iat: now,
            exp: now + TOKEN_TTL_SECS,
            ver: credential_version,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Unexpected(e.into()))
    }

    fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|d| d.claims)
    }
}

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

pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
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

pub async fn verify_password(password: String, hash: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
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
