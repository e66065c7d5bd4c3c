//! Safe sending in the API (docs/safe-sending.md): the `send_window` and `safety` shapes that
//! campaigns and sessions take and show (`PATCH /api/v1/campaigns/{id}` is in
//! `campaign_patch.rs`). The rules themselves live in the scheduler
//! (`herald_scheduler::safe_sending`, the claim's `dispatch/safety.rs`).

use chrono::NaiveDate;
use herald_domain::schedule::SendWindow;
use herald_scheduler::safe_sending::{NumberSafety, MAX_DAILY_CAP};
use salvo::oapi::ToSchema;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

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
