//! `PATCH /api/v1/campaigns/{id}` `{"name"?, "send_window"?, "pacing"?}`: changes a campaign for
//! what is not sent yet (docs/safe-sending.md). The window and pacing are stored by the scheduler
//! (`herald_scheduler::safe_sending`), the name by the `Campaign` aggregate.

use chrono::Utc;
use herald_domain::campaign::{Campaign, CampaignCommand};
use herald_projections::campaigns as read;
use herald_scheduler::safe_sending;
use salvo::oapi::extract::PathParam;
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::Deserialize;

use super::campaigns::CampaignView;
use super::safe_sending::{window_field, SendWindowBody};
use super::sessions::PacingBody;
use crate::auth::caller;
use crate::error::{json_body, ApiError};
use crate::state::AppState;

/// `{"name"?, "send_window"?, "pacing"?}`: changes what is not sent yet.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCampaign {
    name: Option<String>,
    /// A send window, or `null` to follow the number's again.
    #[salvo(schema(value_type = Option<SendWindowBody>))]
    send_window: Option<serde_json::Value>,
    pacing: Option<PacingBody>,
}

/// Changes a campaign's name, send window or pacing. The window and pacing apply to every
/// recipient not sent yet (waiting ones are looked at again at once); nobody is sent twice.
#[endpoint(tags("campaigns"), request_body = UpdateCampaign, status_codes(200, 400, 401, 404, 409, 422), security(["bearer" = []], ["api_key" = []]))]
pub async fn update_campaign(
    id: PathParam<String>,
    req: &mut Request,
    depot: &mut Depot,
) -> Result<Json<CampaignView>, ApiError> {
    let state = AppState::from_depot(depot)?;
    let caller = caller(depot)?;
    let raw_id = id.into_inner();
    let id = super::parse_id(&raw_id)?;
    let body: UpdateCampaign = json_body(req, 64 * 1024).await?;
    let window = window_field(body.send_window, "send_window")?;
    let pacing = body.pacing.map(|p| p.parse("pacing")).transpose()?;
    let row = read::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if matches!(row.status.as_str(), "completed" | "cancelled" | "failed")
        && (window.is_some() || pacing.is_some())
    {
        return Err(ApiError::Conflict {
            code: "invalid_state",
            message: format!("a {} campaign has nothing left to send", row.status),
        });
    }
    let mut tx = state.pool.begin().await?;
    if let Some(name) = body.name {
        let command = CampaignCommand::Rename {
            tenant_id: caller.tenant_id,
            name,
            at: Utc::now(),
        };
        let mut outcomes = herald_domain::store::execute_batch::<Campaign>(
            &mut tx,
            vec![(id.to_string(), command)],
            &(),
        )
        .await?;
        if let Some(Err(e)) = outcomes.pop() {
            return Err(e.into());
        }
    }
    if let Some(w) = &window {
        safe_sending::set_campaign_window(&mut tx, caller.tenant_id, id, w.as_ref()).await?;
    }
    if let Some(p) = pacing {
        safe_sending::set_campaign_pacing(&mut tx, caller.tenant_id, id, row.session_id, p).await?;
    }
    tx.commit().await?;
    state
        .wait_projected(read::NAME, <Campaign as cqrs_es::Aggregate>::TYPE, &raw_id)
        .await?;
    let row = read::get(&state.pool, caller.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    super::campaigns::view_of(&state, row).await.map(Json)
}
