//! The request side of number ownership (docs/decisions/0041): linking attempts counted by the
//! tenant and the client address, and the rules (`herald_accounts::ownership`) handed this
//! process's pool and Meta client.

use herald_accounts::ownership::{self, OwnershipError};
use herald_accounts::throttle::{self, Scope};
use salvo::Request;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

pub(super) use herald_accounts::ownership::token_sha256;

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
    let client = crate::throttle::client_of(req, &state.settings.trusted_proxies);
    Ok(throttle::attempt(
        &state.pool,
        Scope::LinkAddress,
        &client,
        limits.link_address,
    )
    .await?)
}

/// Claims `token` for the new session `session_id`: 409 `gateway_token_taken` when any session
/// (of any tenant, this one included) holds it.
pub(super) async fn claim_token(
    state: &AppState,
    tenant_id: Uuid,
    session_id: Uuid,
    token: &str,
) -> Result<(), ApiError> {
    Ok(ownership::claim_token(&state.pool, tenant_id, session_id, token).await?)
}

/// Gives up the claim of a session whose linking failed, or that was deleted.
pub(super) async fn release(state: &AppState, session_id: Uuid) -> Result<(), ApiError> {
    Ok(ownership::release(&state.pool, session_id).await?)
}

/// `meta_access_token`: `None` when absent or blank; 422 when it cannot be a token.
pub(super) fn parse_access_token(raw: Option<String>) -> Result<Option<String>, ApiError> {
    Ok(ownership::parse_access_token(raw)?)
}

/// Meta must say the access token may use the phone number id: otherwise 422 naming
/// `meta_access_token`, or 502 `meta_unavailable` when Meta could not answer.
pub(super) async fn prove_phone_number_id(
    state: &AppState,
    phone_number_id: &str,
    access_token: Option<&str>,
) -> Result<(), ApiError> {
    Ok(ownership::prove_phone_number_id(&state.meta_graph, phone_number_id, access_token).await?)
}

/// 409 `phone_number_id_taken` when a session already stands for the id.
pub(super) async fn phone_number_id_free(
    state: &AppState,
    phone_number_id: &str,
) -> Result<(), ApiError> {
    Ok(ownership::phone_number_id_free(&state.pool, phone_number_id).await?)
}

pub(crate) fn phone_number_id_taken() -> ApiError {
    OwnershipError::PhoneNumberIdTaken.into()
}
