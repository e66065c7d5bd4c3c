//! Claim check: send windows. A campaign's own window (`campaign_send_windows`), else its
//! number's default (`session_safety.send_window`), read in the window's zone (UTC when it names
//! none). Outside it, the campaign's due recipients wait, flagged `waiting_window`, until the
//! next opening; a changed window makes them due again at once ([`crate::safe_sending`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use herald_domain::schedule::{SendWindow, Zone};
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::super::Claimed;
use super::Wait;

/// How long recipients of a window that never opens again wait before they are looked at again
/// (only a window whose every opening falls in DST gaps; no real zone has one).
const NEVER_OPENS_RECHECK: chrono::Duration = chrono::Duration::days(1);

/// The window each campaign follows (`None`: no window), in one query for the batch.
async fn windows(
    conn: &mut PgConnection,
    pairs: &[(Uuid, Uuid)],
) -> sqlx::Result<HashMap<Uuid, SendWindow>> {
    let campaigns: Vec<Uuid> = pairs.iter().map(|(c, _)| *c).collect();
    let sessions: Vec<Uuid> = pairs.iter().map(|(_, s)| *s).collect();
    let rows: Vec<(Uuid, Option<Json<serde_json::Value>>)> = sqlx::query_as(
        "SELECT k.c, COALESCE(w.send_window, s.send_window)
           FROM UNNEST($1::uuid[], $2::uuid[]) AS k(c, s)
           LEFT JOIN campaign_send_windows w ON w.campaign_id = k.c
           LEFT JOIN session_safety s ON s.session_id = k.s",
    )
    .bind(&campaigns)
    .bind(&sessions)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = HashMap::new();
    for (campaign, window) in rows {
        let Some(Json(value)) = window else { continue };
        // written by Herald after validation; one it cannot read any more sends as unwindowed
        match serde_json::from_value::<SendWindow>(value) {
            Ok(w) => {
                out.insert(campaign, w);
            }
            Err(e) => {
                tracing::warn!(campaign = %campaign, error = %e, "unreadable send window ignored")
            }
        }
    }
    Ok(out)
}

/// Holds back the campaign recipients outside their window and parks their campaigns' other
/// due recipients until the next opening.
pub(in crate::dispatch) async fn check(
    conn: &mut PgConnection,
    claimed: Vec<Claimed>,
) -> sqlx::Result<Vec<Claimed>> {
    let mut pairs: Vec<(Uuid, Uuid)> = claimed
        .iter()
        .filter(|c| c.is_campaign())
        .map(|c| (c.campaign_id, c.session_id))
        .collect();
    if pairs.is_empty() {
        return Ok(claimed);
    }
    pairs.sort();
    pairs.dedup();
    let windows = windows(conn, &pairs).await?;
    if windows.is_empty() {
        return Ok(claimed);
    }
    let now = Utc::now();
    let closed: HashMap<Uuid, DateTime<Utc>> = windows
        .iter()
        .filter(|(_, w)| !w.is_open(now, Zone::Fixed(utc())))
        .map(|(c, w)| {
            let opens = w
                .next_opening(now, Zone::Fixed(utc()))
                .unwrap_or(now + NEVER_OPENS_RECHECK);
            (*c, opens)
        })
        .collect();
    if closed.is_empty() {
        return Ok(claimed);
    }
    let (keep, _back) = super::hold_back(conn, claimed, |c| {
        c.is_campaign() && closed.contains_key(&c.campaign_id)
    })
    .await?;
    let (campaigns, due): (Vec<Uuid>, Vec<DateTime<Utc>>) = closed.into_iter().unzip();
    let parked = super::park(conn, &campaigns, &due, Wait::Window).await?;
    tracing::info!(
        campaigns = campaigns.len(),
        parked,
        "recipients wait for their send window"
    );
    Ok(keep)
}

fn utc() -> chrono::FixedOffset {
    use chrono::Offset;
    Utc.fix()
}
