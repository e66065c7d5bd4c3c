//! Access tokens: HS256 with the algorithm pinned and expiry enforced, carrying the user's
//! credential version so a password change or a removed user ends every earlier token
//! (docs/accounts.md). Kept apart from [`crate::auth`], which checks requests, so the shared
//! state can hold the keys without depending on request handling.

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Secret;
use crate::error::ApiError;

/// Lifetime of an access token.
pub const TOKEN_TTL_SECS: i64 = 12 * 3600;

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) sub: Uuid,
    pub(crate) tid: Uuid,
    pub(crate) iat: i64,
    pub(crate) exp: i64,
    /// The user's credential version when the token was issued; a token whose version is not
    /// the user's current one is refused (tokens from before versions existed carry 0).
    #[serde(default)]
    pub(crate) ver: i32,
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

    pub(crate) fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|d| d.claims)
    }
}
