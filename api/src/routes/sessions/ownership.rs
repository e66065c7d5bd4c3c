//! A number belongs to one tenant (docs/decisions/0041): a WuzAPI token is claimed by one
//! session before the gateway is touched, a Cloud API phone number id needs Meta's word (or the
//! operator's), and linking attempts are counted so tokens cannot be guessed.

use herald_gateway::meta_graph::Proof;
use salvo::Request;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;
use crate::throttle::{self, Scope};

/// A claim older than this whose session never got its credentials (the process died
/// mid-link) no longer holds its token.
const STALE_CLAIM_SECS: f64 = 600.0;

pub(super) fn token_sha256(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Counts one linking attempt of the tenant and of the client address (429 over the limits).
pub(super) async fn count_attempt(
    state: &AppState,
    req: &Request,
    tenant_id: Uuid,
) -> Result<(), ApiError> {
    let limits = &state.settings.throttles;
    throttle::attempt(
        &state.pool,
        Scope::LinkTenant,
        &tenant_id.to_string(),
        limits.link_tenant,
    )
    .await?;
    let client = throttle::client_of(req, &state.settings.trusted_proxies);
    throttle::attempt(
        &state.pool,
        Scope::LinkAddress,
        &client,
        limits.link_address,
    )
    .await
}

/// Claims `token` for the new session `session_id`: 409 `gateway_token_taken` when any session
/// (of any tenant, this one included) holds it. The primary key decides between simultaneous
/// claims.
pub(super) async fn claim_token(
    state: &AppState,
    tenant_id: Uuid,
    session_id: Uuid,
    token: &str,
) -> Result<(), ApiError> {
    let hash = token_sha256(token);
    sqlx::query(
        "DELETE FROM gateway_token_claims c
          WHERE token_sha256 = $1 AND claimed_at < now() - make_interval(secs => $2)
            AND NOT EXISTS (SELECT 1 FROM session_credentials s WHERE s.session_id = c.session_id)",
    )
    .bind(&hash)
    .bind(STALE_CLAIM_SECS)
    .execute(&state.pool)
    .await?;
    let claimed = sqlx::query(
        "INSERT INTO gateway_token_claims (token_sha256, session_id, tenant_id) VALUES ($1, $2, $3)
         ON CONFLICT (token_sha256) DO NOTHING",
    )
    .bind(&hash)
    .bind(session_id)
    .bind(tenant_id)
    .execute(&state.pool)
    .await?
    .rows_affected();
    if claimed == 1 {
        return Ok(());
    }
    let holder: Option<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT session_id, tenant_id FROM gateway_token_claims WHERE token_sha256 = $1",
    )
    .bind(&hash)
    .fetch_optional(&state.pool)
    .await?;
    Err(match holder {
        // the tenant's own number: say which session has it
        Some((session, tenant)) if tenant == tenant_id => ApiError::Conflict {
            code: "gateway_token_taken",
            message: format!("this WuzAPI token is already linked as your session {session}"),
        },
        _ => ApiError::Conflict {
            code: "gateway_token_taken",
            message: "this WuzAPI token is already linked to a session".into(),
        },
    })
}

/// Gives up the claim of a session whose linking failed, or that was deleted.
pub(super) async fn release(state: &AppState, session_id: Uuid) -> Result<(), ApiError> {
    sqlx::query("DELETE FROM gateway_token_claims WHERE session_id = $1")
        .bind(session_id)
        .execute(&state.pool)
        .await?;
    Ok(())
}

/// `meta_access_token`: `None` when absent or blank.
pub(super) fn parse_access_token(raw: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(token) = raw.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if token.len() > 1024 || token.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::validation(
            "meta_access_token",
            "is not a valid Meta access token",
        ));
    }
    Ok(Some(token))
}

/// Meta must say the access token may use the phone number id: otherwise 422 naming
/// `meta_access_token`, or 502 `meta_unavailable` when Meta could not answer.
pub(super) async fn prove_phone_number_id(
    state: &AppState,
    phone_number_id: &str,
    access_token: Option<&str>,
) -> Result<(), ApiError> {
    let Some(token) = access_token else {
        return Err(ApiError::validation(
            "meta_access_token",
            "is required with meta_phone_number_id: an access token Meta accepts for that number proves it is yours (or ask the operator to set the id)",
        ));
    };
    match state.meta_graph.check(phone_number_id, token).await {
        Proof::Accepted => Ok(()),
        Proof::Refused(reason) => Err(ApiError::validation(
            "meta_access_token",
            format!("Meta does not accept this access token for this phone number id ({reason})"),
        )),
        Proof::Unavailable(reason) => Err(ApiError::GatewayUnavailable(format!(
            "Meta's Graph API could not confirm the phone number id: {reason}"
        ))),
    }
}

/// 409 `phone_number_id_taken` when a session already stands for the id.
pub(super) async fn phone_number_id_free(
    state: &AppState,
    phone_number_id: &str,
) -> Result<(), ApiError> {
    let taken: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM session_credentials WHERE meta_phone_number_id = $1")
            .bind(phone_number_id)
            .fetch_optional(&state.pool)
            .await?;
    match taken {
        Some(_) => Err(phone_number_id_taken()),
        None => Ok(()),
    }
}

pub(crate) fn phone_number_id_taken() -> ApiError {
    ApiError::Conflict {
        code: "phone_number_id_taken",
        message: "another session already stands for this meta_phone_number_id".into(),
    }
}
