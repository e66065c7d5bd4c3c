//! Safe sending in the API (docs/safe-sending.md): the `send_window` and `safety` shapes that
//! campaigns and sessions take and show, and `PATCH /api/v1/campaigns/{id}` (name, window,
//! pacing for what is not sent yet). The rules themselves live in the scheduler
//! (`herald_scheduler::safe_sending`, the claim's `dispatch/safety.rs`).

use chrono::{NaiveDate, Utc};
use herald_domain::campaign::{Campaign, CampaignCommand};
use herald_domain::schedule::SendWindow;
use herald_projections::campaigns as read;
use herald_scheduler::safe_sending::{self, NumberSafety, MAX_DAILY_CAP};
use salvo::oapi::extract::PathParam;
use salvo::oapi::ToSchema;
use salvo::prelude::*;
use serde::{Deserialize, Serialize};

use super::campaigns::CampaignView;
use super::sessions::PacingBody;
use crate::auth::caller;
use crate::error::{json_body, ApiError};
use crate::state::AppState;

/// `{"days": ["mon", ...], "start": "09:00", "end": "18:00", "timezone"?}`: when sending is
/// allowed. `start` later than `end` runs overnight (22:00–06:00 is from 22:00 on a listed day
/// to 06:00 the next morning); `00:00`–`24:00` is the whole day. Without `timezone`, UTC.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendWindowBody {
    /// `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun` (at least one).
    days: Vec<String>,
    /// `HH:MM`, local time in `timezone`.
    start: String,
    /// `HH:MM` (`24:00` for the end of the day), local time in `timezone`.
    end: String,
    /// An IANA zone (`Asia/Jakarta`) or an offset (`+07:00`).
    timezone: Option<String>,
}

impl SendWindowBody {
    /// Checks the window; errors name `<prefix>.<field>`.
    pub fn parse(self, prefix: &str) -> Result<SendWindow, ApiError> {
        SendWindow::parse(&self.days, &self.start, &self.end, self.timezone.as_deref())
            .map_err(|e| ApiError::validation(&format!("{prefix}.{}", e.field), e.message))
    }
}

/// A send window as stored (days in week order, times as `HH:MM`, the zone's canonical name).
#[derive(Serialize, ToSchema)]
pub struct SendWindowView {
    days: Vec<String>,
    start: String,
    end: String,
    timezone: Option<String>,
}

impl From<&SendWindow> for SendWindowView {
    fn from(w: &SendWindow) -> Self {
        let json = w.to_json();
        let text = |k: &str| json[k].as_str().unwrap_or_default().to_string();
        SendWindowView {
            days: json["days"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            start: text("start"),
            end: text("end"),
            timezone: json["timezone"].as_str().map(str::to_string),
        }
    }
}

/// A `send_window` field that may be `null` (remove it) or absent (leave it).
pub fn window_field(
    raw: Option<serde_json::Value>,
    prefix: &str,
) -> Result<Option<Option<SendWindow>>, ApiError> {
    match raw {
        None => Ok(None),
        Some(serde_json::Value::Null) => Ok(Some(None)),
        Some(value) => {
            let body: SendWindowBody = serde_json::from_value(value).map_err(|e| {
                ApiError::validation(
                    prefix,
                    format!("must be {{\"days\", \"start\", \"end\", \"timezone\"?}}: {e}"),
                )
            })?;
            Ok(Some(Some(body.parse(prefix)?)))
        }
    }
}

/// `{"daily_cap": n|null, "warmup": bool, "typing": bool}`: a number's safety settings.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SafetyBody {
    /// Campaign messages a day at most (none when null or absent).
    #[salvo(schema(value_type = Option<i64>))]
    daily_cap: Option<serde_json::Value>,
    /// Warm a new number up: 20 messages a day on days 1–3, 50 on days 4–7, 150 on days 8–14.
    warmup: Option<bool>,
    /// WuzAPI numbers: show "typing…" before each paced send.
    typing: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct SafetyView {
    daily_cap: Option<i32>,
    warmup: bool,
    typing: bool,
}

/// Reads `safety`, `linked_since` and `send_window` of a session request onto `current`.
pub fn apply_session_safety(
    current: &mut NumberSafety,
    safety: Option<SafetyBody>,
    linked_since: Option<String>,
    send_window: Option<serde_json::Value>,
) -> Result<(), ApiError> {
    if let Some(s) = safety {
        current.daily_cap = match s.daily_cap {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let n = v.as_i64().filter(|n| (0..=MAX_DAILY_CAP).contains(n));
                let n = n.ok_or_else(|| {
                    ApiError::validation(
                        "safety.daily_cap",
                        format!("must be a whole number from 0 to {MAX_DAILY_CAP}, or null"),
                    )
                })?;
                Some(n as i32)
            }
        };
        current.warmup = s.warmup.unwrap_or(false);
        current.typing = s.typing.unwrap_or(false);
    }
    if let Some(d) = linked_since {
        current.linked_since = NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
            .map_err(|_| ApiError::validation("linked_since", "must be a date as YYYY-MM-DD"))?;
    }
    if let Some(w) = window_field(send_window, "send_window")? {
        current.send_window = w;
    }
    Ok(())
}

/// What a session shows of its safety.
#[derive(Serialize, ToSchema)]
pub struct SessionSafetyView {
    pub safety: SafetyView,
    /// The day the number started sending (day 1 of its warm-up).
    pub linked_since: NaiveDate,
    /// The default send window of its campaigns (`null`: none).
    pub send_window: Option<SendWindowView>,
}

impl From<&NumberSafety> for SessionSafetyView {
    fn from(s: &NumberSafety) -> Self {
        SessionSafetyView {
            safety: SafetyView {
                daily_cap: s.daily_cap,
                warmup: s.warmup,
                typing: s.typing,
            },
            linked_since: s.linked_since,
            send_window: s.send_window.as_ref().map(Into::into),
        }
    }
}

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
