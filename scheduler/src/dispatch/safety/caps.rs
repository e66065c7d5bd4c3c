//! Claim check: per-number daily caps and the warm-up ramp (docs/safe-sending.md, "Number
//! safety"). Counted per number and local day in `session_daily_sends`, granted by one upsert
//! per batch that hands out at most what the day's cap leaves, so any number of instances agree.
//! Recipients over the cap wait, flagged `waiting_cap`, until the number's next local midnight
//! (in its send window's zone, else UTC).
//!
//! Only a recipient's first claim counts (a retry or an in-doubt resend was counted already),
//! and only campaign recipients (single sends and replies are conversations).

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use herald_domain::schedule::{SendWindow, Zone};
use sqlx::types::Json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::super::Claimed;
use super::Wait;

/// The warm-up ramp: (last day of the step, messages a day). Day 1 is the day the number was
/// linked. From vendors' anti-ban guides, not WhatsApp's own figures (docs/safe-sending.md).
pub const WARMUP: [(i64, i64); 3] = [(3, 20), (7, 50), (14, 150)];

/// The most a number may send on its `day`-th day (1 = the day it was linked): the warm-up step
/// while it lasts (lowered to `daily_cap` when that is lower), then `daily_cap`. `None`: no cap.
pub fn day_cap(warmup: bool, daily_cap: Option<i64>, day: i64) -> Option<i64> {
    let ramp = warmup
        .then(|| {
            WARMUP
                .iter()
                .find(|(last, _)| day <= *last)
                .map(|(_, n)| *n)
        })
        .flatten();
    match (ramp, daily_cap) {
        (Some(r), Some(c)) => Some(r.min(c)),
        (r, c) => r.or(c),
    }
}

/// A number's safety settings as the claim needs them.
struct Safety {
    cap: i64,
    day: NaiveDate,
    next_day: DateTime<Utc>,
}

type SafetyRow = (
    Uuid,
    Option<i32>,
    bool,
    NaiveDate,
    Option<Json<serde_json::Value>>,
);

/// Each capped number's cap today, its local day and when the next one starts.
async fn caps_today(
    conn: &mut PgConnection,
    sessions: &[Uuid],
    now: DateTime<Utc>,
) -> sqlx::Result<HashMap<Uuid, Safety>> {
    let rows: Vec<SafetyRow> = sqlx::query_as(
        "SELECT session_id, daily_cap, warmup, linked_since, send_window FROM session_safety
          WHERE session_id = ANY($1) AND (daily_cap IS NOT NULL OR warmup)",
    )
    .bind(sessions)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = HashMap::new();
    for (session, daily_cap, warmup, linked_since, window) in rows {
        let zone = window
            .and_then(|Json(w)| serde_json::from_value::<SendWindow>(w).ok())
            .and_then(|w| w.zone())
            .unwrap_or(Zone::Fixed(utc()));
        let local = zone.to_local(now);
        let day = local.date();
        let day_number = (day - linked_since).num_days() + 1;
        let Some(cap) = day_cap(warmup, daily_cap.map(i64::from), day_number) else {
            continue;
        };
        let next_day = day
            .checked_add_signed(Duration::days(1))
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .and_then(|midnight| zone.resolve_local(midnight))
            .unwrap_or(now + Duration::days(1));
        out.insert(session, Safety { cap, day, next_day });
    }
    Ok(out)
}

/// Grants each number's wanted count from what its day's cap leaves, in one upsert for the
/// batch; returns the grants.
async fn grant(
    conn: &mut PgConnection,
    wanted: &HashMap<Uuid, i64>,
    caps: &HashMap<Uuid, Safety>,
) -> sqlx::Result<HashMap<Uuid, i64>> {
    let (mut sessions, mut days, mut wants, mut limits) = (vec![], vec![], vec![], vec![]);
    for (s, n) in wanted {
        if let Some(safety) = caps.get(s) {
            sessions.push(*s);
            days.push(safety.day);
            wants.push(i32::try_from(*n).unwrap_or(i32::MAX));
            limits.push(i32::try_from(safety.cap).unwrap_or(i32::MAX));
        }
    }
    sqlx::query(
        "INSERT INTO session_daily_sends (session_id, day)
         SELECT * FROM UNNEST($1::uuid[], $2::date[]) ON CONFLICT DO NOTHING",
    )
    .bind(&sessions)
    .bind(&days)
    .execute(&mut *conn)
    .await?;
    let granted: Vec<(Uuid, i32)> = sqlx::query_as(
        "UPDATE session_daily_sends t
            SET last_grant = GREATEST(0, LEAST(r.n, r.cap - t.sent)),
                sent = t.sent + GREATEST(0, LEAST(r.n, r.cap - t.sent))
           FROM UNNEST($1::uuid[], $2::date[], $3::int[], $4::int[]) AS r(s, d, n, cap)
          WHERE t.session_id = r.s AND t.day = r.d
      RETURNING t.session_id, t.last_grant",
    )
    .bind(&sessions)
    .bind(&days)
    .bind(&wants)
    .bind(&limits)
    .fetch_all(&mut *conn)
    .await?;
    Ok(granted
        .into_iter()
        .map(|(s, n)| (s, i64::from(n)))
        .collect())
}

/// Holds back the first-time campaign recipients over their number's cap today, and parks the
/// number's other due first-time campaign recipients until its next local day.
pub(in crate::dispatch) async fn check(
    conn: &mut PgConnection,
    claimed: Vec<Claimed>,
) -> sqlx::Result<Vec<Claimed>> {
    let counted = |c: &Claimed| c.needs_quota();
    let mut wanted: HashMap<Uuid, i64> = HashMap::new();
    for c in claimed.iter().filter(|c| counted(c)) {
        *wanted.entry(c.session_id).or_default() += 1;
    }
    if wanted.is_empty() {
        return Ok(claimed);
    }
    let sessions: Vec<Uuid> = wanted.keys().copied().collect();
    let now = Utc::now();
    let caps = caps_today(conn, &sessions, now).await?;
    if caps.is_empty() {
        return Ok(claimed);
    }
    let mut left = grant(conn, &wanted, &caps).await?;
    let mut refused: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    let mut over = std::collections::HashSet::new();
    for c in claimed.iter().filter(|c| counted(c)) {
        let Some(safety) = caps.get(&c.session_id) else {
            continue;
        };
        let n = left.entry(c.session_id).or_insert(0);
        if *n > 0 {
            *n -= 1;
        } else {
            over.insert((c.campaign_id, c.phone.clone()));
            refused.insert(c.session_id, safety.next_day);
        }
    }
    if refused.is_empty() {
        return Ok(claimed);
    }
    let (keep, _back) = super::hold_back(conn, claimed, |c| {
        over.contains(&(c.campaign_id, c.phone.clone()))
    })
    .await?;
    let (numbers, due): (Vec<Uuid>, Vec<DateTime<Utc>>) = refused.into_iter().unzip();
    let parked = super::park(conn, &numbers, &due, Wait::Cap).await?;
    tracing::info!(
        numbers = numbers.len(),
        parked,
        "recipients wait for their number's daily cap"
    );
    Ok(keep)
}

fn utc() -> chrono::FixedOffset {
    use chrono::Offset;
    Utc.fix()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_up_ramps_20_50_150_then_the_daily_cap() {
        let caps: Vec<Option<i64>> = (1..=16).map(|d| day_cap(true, Some(500), d)).collect();
        assert_eq!(&caps[0..3], &[Some(20); 3]);
        assert_eq!(&caps[3..7], &[Some(50); 4]);
        assert_eq!(&caps[7..14], &[Some(150); 7]);
        assert_eq!(&caps[14..], &[Some(500); 2]);
        // a lower daily cap wins during the warm-up; without one, no cap after it
        assert_eq!(day_cap(true, Some(10), 2), Some(10));
        assert_eq!(day_cap(true, None, 15), None);
        assert_eq!(day_cap(false, Some(300), 1), Some(300));
        assert_eq!(day_cap(false, None, 1), None);
    }
}
