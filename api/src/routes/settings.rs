//! A tenant's safe-sending settings (docs/safe-sending.md): `GET|PUT /api/v1/settings/opt-out`
//! (stop and start keywords, the confirmation text) and `GET|PUT /api/v1/settings/sending` (the
//! frequency cap). Validation is the domain's; storage is `herald_optouts` and
//! `herald_scheduler::frequency_cap`.

use herald_domain::opt_out::OptOutSettings;
use herald_scheduler::frequency_cap::{self, FrequencyCap};
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::{Deserialize, Serialize};

use crate::auth::caller;
use crate::error::{json_body, ApiError};
use crate::state::AppState;

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptOutSettingsView {
    /// An incoming message that is one of these (whole, trimmed, any case, without accents or
    /// trailing punctuation) opts its phone out. Stored normalised (lowercase, no accents).
    stop_keywords: Vec<String>,
    /// One of these opts it back in.
    start_keywords: Vec<String>,
    /// To be sent once to a phone that has just opted out by keyword (stored; not sent yet, see
    /// docs/safe-sending.md); `null`: none.
    #[serde(default)]
    confirmation_text: Option<String>,
}

impl From<OptOutSettings> for OptOutSettingsView {
    fn from(s: OptOutSettings) -> Self {
        OptOutSettingsView {
            stop_keywords: s.stop_keywords,
            start_keywords: s.start_keywords,
            confirmation_text: s.confirmation_text,
        }
    }
}

/// The keywords that opt a phone out of campaigns and back in; the defaults cover English,
/// Indonesian, Spanish and Portuguese.
#[endpoint(tags("settings"), status_codes(200, 401, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn get_opt_out(depot: &mut Depot) -> Result<Json<OptOutSettingsView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let settings = herald_optouts::settings::load(&state.pool, caller.tenant_id).await?;
    Ok(Json(settings.into()))
}

/// Replaces the keywords and the confirmation text (at most 50 keywords a list, 32 characters
/// each; a word cannot be both a stop and a start keyword).
#[endpoint(tags("settings"), request_body = OptOutSettingsView, status_codes(200, 400, 401, 422), security(["bearer" = []], ["api_key" = []]))]
pub async fn put_opt_out(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Json<OptOutSettingsView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let body: OptOutSettingsView = json_body(req, 64 * 1024).await?;
    let settings = OptOutSettings {
        stop_keywords: body.stop_keywords,
        start_keywords: body.start_keywords,
        confirmation_text: body.confirmation_text,
    }
    .validated()?;
    herald_optouts::settings::save(&state.pool, caller.tenant_id, &settings).await?;
    Ok(Json(settings.into()))
}

#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCapView {
    /// At most this many campaign messages per contact...
    messages: i32,
    /// ...within this many hours (1 to 720).
    hours: i32,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendingSettingsView {
    /// `null`: no cap. Over it, a campaign recipient is `skipped` with `error: "frequency_cap"`.
    frequency_cap: Option<FrequencyCapView>,
}

/// The tenant's sending settings: the frequency cap.
#[endpoint(tags("settings"), status_codes(200, 401, 429), security(["bearer" = []], ["api_key" = []]))]
pub async fn get_sending(depot: &mut Depot) -> Result<Json<SendingSettingsView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let cap = frequency_cap::load(&state.pool, caller.tenant_id).await?;
    Ok(Json(SendingSettingsView {
        frequency_cap: cap.map(|c| FrequencyCapView {
            messages: c.messages,
            hours: c.hours,
        }),
    }))
}

/// Sets or removes (`null`) the frequency cap. It counts campaign messages sent while a cap is
/// set; removing it forgets the counts.
#[endpoint(tags("settings"), request_body = SendingSettingsView, status_codes(200, 400, 401, 422), security(["bearer" = []], ["api_key" = []]))]
pub async fn put_sending(
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Json<SendingSettingsView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let body: SendingSettingsView = json_body(req, 16 * 1024).await?;
    let cap = body
        .frequency_cap
        .map(|c| {
            FrequencyCap {
                messages: c.messages,
                hours: c.hours,
            }
            .validated()
        })
        .transpose()?;
    frequency_cap::save(&state.pool, caller.tenant_id, cap).await?;
    Ok(Json(body))
}
