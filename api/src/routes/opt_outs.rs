//! A person opting a contact out of campaigns, or back in (docs/safe-sending.md):
//! `POST /api/v1/contacts/{phone}/opt-out` and `/opt-in`. The work is `herald_optouts`'s; this
//! only translates.

use herald_domain::contact::ContactKey;
use herald_domain::opt_out::OptOutSource;
use salvo::oapi::extract::PathParam;
use salvo::prelude::*;

use super::contacts::{path_key, projected, view_of, ContactView};
use crate::auth::caller;
use crate::error::ApiError;
use crate::state::AppState;

fn phone_of(key: ContactKey) -> Result<herald_domain::phone::Phone, ApiError> {
    match key {
        ContactKey::Phone(p) => Ok(p),
        ContactKey::Lid(_) => Err(ApiError::validation(
            "phone",
            "only a phone number can opt out",
        )),
    }
}

/// Opts a phone out of every campaign of this tenant (it becomes a contact if it was none). Its
/// recipients not yet sent are skipped with `error: "opted_out"`. Single sends and chat replies
/// stay allowed. Opting out again changes nothing.
#[endpoint(tags("contacts"), status_codes(200, 401, 404, 409, 422), security(["bearer" = []], ["api_key" = []]))]
pub async fn opt_out(
    phone: PathParam<String>,
    depot: &mut Depot,
) -> Result<Json<ContactView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let key = path_key(&state, caller.tenant_id, &phone.into_inner()).await?;
    let p = phone_of(key.clone())?;
    herald_optouts::opt_out(&state.pool, caller.tenant_id, p, OptOutSource::Manual).await?;
    projected(&state, caller.tenant_id, &key).await?;
    Ok(Json(view_of(&state, caller.tenant_id, &key).await?))
}

/// Lets campaigns reach this contact again. A phone that is no contact is 404.
#[endpoint(tags("contacts"), status_codes(200, 401, 404, 409, 422), security(["bearer" = []], ["api_key" = []]))]
pub async fn opt_in(
    phone: PathParam<String>,
    depot: &mut Depot,
) -> Result<Json<ContactView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let key = path_key(&state, caller.tenant_id, &phone.into_inner()).await?;
    let p = phone_of(key.clone())?;
    herald_optouts::opt_in(&state.pool, caller.tenant_id, p, OptOutSource::Manual).await?;
    projected(&state, caller.tenant_id, &key).await?;
    Ok(Json(view_of(&state, caller.tenant_id, &key).await?))
}
