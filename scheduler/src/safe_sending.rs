//! The safe-sending settings the API reads and writes (docs/safe-sending.md): a number's safety
//! (`daily_cap`, `warmup`, `typing`, `linked_since`) and default send window, a campaign's own
//! window, and what the campaign page shows (recipients waiting for a window or a cap, the next
//! opening). The dispatcher enforces them at claim time (`dispatch/safety.rs`).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Offset, Utc};
use herald_domain::schedule::{SendWindow, Zone};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The largest `daily_cap` accepted (a number sending more than this a day is not a WhatsApp
/// number anyone keeps).
pub const MAX_DAILY_CAP: i64 = 100_000;

/// A linked number's safety settings (no row: none of them).
#[derive(Debug, Clone, PartialEq)]
pub struct NumberSafety {
    pub daily_cap: Option<i32>,
    pub warmup: bool,
    pub typing: bool,
    /// The day the number started sending; the warm-up counts its days from it (day 1).
    pub linked_since: NaiveDate,
    /// The default send window of the number's campaigns.
    pub send_window: Option<SendWindow>,
}

impl NumberSafety {
    /// What a number has before anyone sets anything: no cap, no warm-up, no typing, no window.
    pub fn none(linked_since: NaiveDate) -> NumberSafety {
        NumberSafety {
            daily_cap: None,
            warmup: false,
            typing: false,
            linked_since,
            send_window: None,
        }
    }
}

type SafetyRow = (
    Uuid,
    Option<i32>,
    bool,
    bool,
    NaiveDate,
    Option<Json<serde_json::Value>>,
);

fn from_row(row: SafetyRow) -> (Uuid, NumberSafety) {
    let (id, daily_cap, warmup, typing, linked_since, window) = row;
    let send_window = window.and_then(|Json(w)| serde_json::from_value(w).ok());
    (
        id,
        NumberSafety {
            daily_cap,
            warmup,
            typing,
            linked_since,
            send_window,
        },
    )
}

/// The safety settings of these numbers (those that have any).
pub async fn of_sessions(
    pool: &PgPool,
    sessions: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, NumberSafety>> {
    let rows: Vec<SafetyRow> = sqlx::query_as(
        "SELECT session_id, daily_cap, warmup, typing, linked_since, send_window
           FROM session_safety WHERE session_id = ANY($1)",
    )
    .bind(sessions)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(from_row).collect())
}

/// One number's safety settings.
pub async fn of_session(
    conn: &mut PgConnection,
    session_id: Uuid,
) -> sqlx::Result<Option<NumberSafety>> {
    let row: Option<SafetyRow> = sqlx::query_as(
        "SELECT session_id, daily_cap, warmup, typing, linked_since, send_window
           FROM session_safety WHERE session_id = $1",
    )
    .bind(session_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| from_row(r).1))
}

/// Sets a number's safety settings. Recipients waiting for the number's window or cap are due
/// again at once, so the claim applies the new settings to them.
pub async fn set_session(
    conn: &mut PgConnection,
    session_id: Uuid,
    tenant_id: Uuid,
    safety: &NumberSafety,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO session_safety (session_id, tenant_id, daily_cap, warmup, typing, linked_since, send_window)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (session_id) DO UPDATE
            SET daily_cap = EXCLUDED.daily_cap, warmup = EXCLUDED.warmup, typing = EXCLUDED.typing,
                linked_since = EXCLUDED.linked_since, send_window = EXCLUDED.send_window
          WHERE session_safety.tenant_id = EXCLUDED.tenant_id",
    )
    .bind(session_id)
    .bind(tenant_id)
    .bind(safety.daily_cap)
    .bind(safety.warmup)
    .bind(safety.typing)
    .bind(safety.linked_since)
    .bind(safety.send_window.as_ref().map(|w| Json(w.to_json())))
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE dispatch_queue SET not_before = now(), waiting_window = false, waiting_cap = false
          WHERE session_id = $1 AND tenant_id = $2 AND (waiting_window OR waiting_cap)
            AND state = 'ready' AND not_before <> 'infinity'",
    )
    .bind(session_id)
    .bind(tenant_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A campaign's own send window.
pub async fn campaign_window(
    conn: &mut PgConnection,
    campaign_id: Uuid,
) -> sqlx::Result<Option<SendWindow>> {
    let row: Option<Json<serde_json::Value>> =
        sqlx::query_scalar("SELECT send_window FROM campaign_send_windows WHERE campaign_id = $1")
            .bind(campaign_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(row.and_then(|Json(w)| serde_json::from_value(w).ok()))
}

/// Sets (or with `None` removes) a campaign's own window. Its recipients waiting for a window
/// are due again at once, so the claim applies the new one to them.
pub async fn set_campaign_window(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    campaign_id: Uuid,
    window: Option<&SendWindow>,
) -> sqlx::Result<()> {
    match window {
        Some(w) => {
            sqlx::query(
                "INSERT INTO campaign_send_windows (campaign_id, tenant_id, send_window)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (campaign_id) DO UPDATE SET send_window = EXCLUDED.send_window
                  WHERE campaign_send_windows.tenant_id = EXCLUDED.tenant_id",
            )
            .bind(campaign_id)
            .bind(tenant_id)
            .bind(Json(w.to_json()))
            .execute(&mut *conn)
            .await?;
        }
        None => {
            sqlx::query(
                "DELETE FROM campaign_send_windows WHERE campaign_id = $1 AND tenant_id = $2",
            )
            .bind(campaign_id)
            .bind(tenant_id)
            .execute(&mut *conn)
            .await?;
        }
    }
    sqlx::query(
        "UPDATE dispatch_queue SET not_before = now(), waiting_window = false
          WHERE campaign_id = $1 AND tenant_id = $2 AND waiting_window AND state = 'ready'
            AND not_before <> 'infinity'",
    )
    .bind(campaign_id)
    .bind(tenant_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What the campaign page shows about safe sending.
#[derive(Debug, Clone, Default)]
pub struct CampaignSafety {
    /// The campaign's own window (`None`: it follows its number's).
    pub own_window: Option<SendWindow>,
    /// Recipients waiting for their window, and for their number's daily cap.
    pub waiting_window: i64,
    pub waiting_cap: i64,
    /// When the window that applies to it (its own, else its number's) opens next, if it is
    /// closed now.
    pub next_window_at: Option<DateTime<Utc>>,
}

/// A campaign, its own window and its number's.
type WindowsRow = (
    Uuid,
    Option<Json<serde_json::Value>>,
    Option<Json<serde_json::Value>>,
);

/// [`CampaignSafety`] of each campaign (`(campaign, its session)`), in three queries.
pub async fn of_campaigns(
    pool: &PgPool,
    campaigns: &[(Uuid, Uuid)],
    now: DateTime<Utc>,
) -> sqlx::Result<HashMap<Uuid, CampaignSafety>> {
    let ids: Vec<Uuid> = campaigns.iter().map(|(c, _)| *c).collect();
    let sessions: Vec<Uuid> = campaigns.iter().map(|(_, s)| *s).collect();
    let waiting: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT campaign_id, count(*) FILTER (WHERE waiting_window),
                count(*) FILTER (WHERE waiting_cap)
           FROM dispatch_queue WHERE campaign_id = ANY($1) AND (waiting_window OR waiting_cap)
          GROUP BY campaign_id",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let windows: Vec<WindowsRow> = sqlx::query_as(
        "SELECT k.c, w.send_window, s.send_window
               FROM UNNEST($1::uuid[], $2::uuid[]) AS k(c, s)
               LEFT JOIN campaign_send_windows w ON w.campaign_id = k.c
               LEFT JOIN session_safety s ON s.session_id = k.s",
    )
    .bind(&ids)
    .bind(&sessions)
    .fetch_all(pool)
    .await?;
    let read = |w: Option<Json<serde_json::Value>>| -> Option<SendWindow> {
        w.and_then(|Json(v)| serde_json::from_value(v).ok())
    };
    let mut out: HashMap<Uuid, CampaignSafety> = HashMap::new();
    for (id, own, session) in windows {
        let own = read(own);
        let applies = own.clone().or_else(|| read(session));
        let utc = Zone::Fixed(Utc.fix());
        let next_window_at = applies
            .filter(|w| !w.is_open(now, utc))
            .and_then(|w| w.next_opening(now, utc));
        out.insert(
            id,
            CampaignSafety {
                own_window: own,
                next_window_at,
                ..Default::default()
            },
        );
    }
    for (id, window, cap) in waiting {
        let entry = out.entry(id).or_default();
        entry.waiting_window = window;
        entry.waiting_cap = cap;
    }
    Ok(out)
}

/// Sets a campaign's own pacing for what is not sent yet: its queued recipients take it at once
/// (and no longer follow their number's).
pub async fn set_campaign_pacing(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    campaign_id: Uuid,
    session_id: Uuid,
    pacing: crate::pacing::Pacing,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO campaign_pacing (campaign_id, min_interval_ms, max_interval_ms)
         VALUES ($1, $2, $3)
         ON CONFLICT (campaign_id) DO UPDATE
            SET min_interval_ms = EXCLUDED.min_interval_ms, max_interval_ms = EXCLUDED.max_interval_ms",
    )
    .bind(campaign_id)
    .bind(pacing.min_interval_ms)
    .bind(pacing.max_interval_ms)
    .execute(&mut *conn)
    .await?;
    // the claim paces through the session's row: make sure there is one (an unpaced one)
    sqlx::query(
        "INSERT INTO session_pacing (session_id, tenant_id, min_interval_ms, max_interval_ms)
         VALUES ($1, $2, 0, 0) ON CONFLICT (session_id) DO NOTHING",
    )
    .bind(session_id)
    .bind(tenant_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE dispatch_queue SET pace_min_ms = $3, pace_max_ms = $4, pace_from_session = false
          WHERE campaign_id = $1 AND tenant_id = $2",
    )
    .bind(campaign_id)
    .bind(tenant_id)
    .bind(pacing.min_interval_ms)
    .bind(pacing.max_interval_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
