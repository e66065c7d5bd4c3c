//! A number belongs to one tenant (docs/decisions/0041): a WuzAPI token is claimed by one
//! session before the gateway is touched, and a Cloud API phone number id needs Meta's word (or
//! the operator's). Linking attempts are counted by [`crate::throttle`].

use herald_gateway::meta_graph::{GraphClient, Proof};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// A claim older than this whose session never got its credentials (the process died
/// mid-link) no longer holds its token.
const STALE_CLAIM_SECS: f64 = 600.0;

/// Why a number cannot be linked.
#[derive(Debug, thiserror::Error)]
pub enum OwnershipError {
    /// A session already holds the WuzAPI token; `own_session` when it is the tenant's own.
    #[error("this WuzAPI token is already linked to a session")]
    TokenTaken { own_session: Option<Uuid> },
    #[error("another session already stands for this meta_phone_number_id")]
    PhoneNumberIdTaken,
    #[error("is not a valid Meta access token")]
    InvalidAccessToken,
    #[error("is required with meta_phone_number_id: an access token Meta accepts for that number proves it is yours (or ask the operator to set the id)")]
    AccessTokenRequired,
    /// Meta answered, and not for this number (its reason, never the token).
    #[error("Meta does not accept this access token for this phone number id ({0})")]
    MetaRefused(String),
    #[error("Meta's Graph API could not confirm the phone number id: {0}")]
    MetaUnavailable(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub fn token_sha256(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Claims `token` for the new session `session_id`: [`OwnershipError::TokenTaken`] when any
/// session (of any tenant, this one included) holds it. The primary key decides between
/// simultaneous claims.
pub async fn claim_token(
    pool: &PgPool,
    tenant_id: Uuid,
    session_id: Uuid,
    token: &str,
) -> Result<(), OwnershipError> {
    let hash = token_sha256(token);
    sqlx::query(
        "DELETE FROM gateway_token_claims c
          WHERE token_sha256 = $1 AND claimed_at < now() - make_interval(secs => $2)
            AND NOT EXISTS (SELECT 1 FROM session_credentials s WHERE s.session_id = c.session_id)",
    )
    .bind(&hash)
    .bind(STALE_CLAIM_SECS)
    .execute(pool)
    .await?;
    let claimed = sqlx::query(
        "INSERT INTO gateway_token_claims (token_sha256, session_id, tenant_id) VALUES ($1, $2, $3)
         ON CONFLICT (token_sha256) DO NOTHING",
    )
    .bind(&hash)
    .bind(session_id)
    .bind(tenant_id)
    .execute(pool)
    .await?
    .rows_affected();
    if claimed == 1 {
        return Ok(());
    }
    let holder: Option<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT session_id, tenant_id FROM gateway_token_claims WHERE token_sha256 = $1",
    )
    .bind(&hash)
    .fetch_optional(pool)
    .await?;
    Err(OwnershipError::TokenTaken {
        // the tenant's own number: it may be told which session has it
        own_session: holder
            .filter(|(_, tenant)| *tenant == tenant_id)
            .map(|(session, _)| session),
    })
}

/// Gives up the claim of a session whose linking failed, or that was deleted.
pub async fn release(pool: &PgPool, session_id: Uuid) -> Result<(), OwnershipError> {
    sqlx::query("DELETE FROM gateway_token_claims WHERE session_id = $1")
        .bind(session_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// `meta_access_token`: `None` when absent or blank.
pub fn parse_access_token(raw: Option<String>) -> Result<Option<String>, OwnershipError> {
    let Some(token) = raw.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if token.len() > 1024 || token.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(OwnershipError::InvalidAccessToken);
    }
    Ok(Some(token))
}

/// Meta must say the access token may use the phone number id.
pub async fn prove_phone_number_id(
    graph: &GraphClient,
    phone_number_id: &str,
    access_token: Option<&str>,
) -> Result<(), OwnershipError> {
    let Some(token) = access_token else {
        return Err(OwnershipError::AccessTokenRequired);
    };
    match graph.check(phone_number_id, token).await {
        Proof::Accepted => Ok(()),
        Proof::Refused(reason) => Err(OwnershipError::MetaRefused(reason)),
        Proof::Unavailable(reason) => Err(OwnershipError::MetaUnavailable(reason)),
    }
}

/// [`OwnershipError::PhoneNumberIdTaken`] when a session already stands for the id.
pub async fn phone_number_id_free(
    pool: &PgPool,
    phone_number_id: &str,
) -> Result<(), OwnershipError> {
    let taken: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM session_credentials WHERE meta_phone_number_id = $1")
            .bind(phone_number_id)
            .fetch_optional(pool)
            .await?;
    match taken {
        Some(_) => Err(OwnershipError::PhoneNumberIdTaken),
        None => Ok(()),
    }
}
