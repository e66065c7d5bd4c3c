//! The safety checks of a claimed batch (docs/safe-sending.md, docs/decisions/0064): each runs
//! inside the claim's transaction, set-based (one query per batch, never one per recipient), and
//! takes out of the batch the recipients that must not be sent now, putting them back in the
//! queue. The claim calls each with one line:
//!
//! - [`halts`]: the number was reported logged out or disconnected: its campaigns' recipients go
//!   back and the circuit breaker ([`breaker`]) pauses those campaigns after the claim commits.
//! - [`window`]: outside the campaign's (or its number's) send window, due recipients wait for
//!   the next opening (`waiting_window`).
//! - [`caps`]: over the number's daily cap or warm-up ramp, they wait for the next local day
//!   (`waiting_cap`).
//!
//! Only campaign recipients are checked: single sends and chat replies are conversations.
//! Recipients put back keep their attempt count as it was before the claim.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::Claimed;

pub mod breaker;
pub mod caps;
pub mod halts;
pub mod window;

/// Why recipients wait (the queue flag that counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// For their campaign's window: `keys` are campaigns.
    Window,
    /// For their number's cap: `keys` are numbers, and only first-time recipients wait (a retry
    /// was counted already).
    Cap,
}

/// Puts claimed recipients back as they were before the claim (ready, the attempt not counted).
async fn put_back(conn: &mut PgConnection, rows: &[&Claimed]) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let campaigns: Vec<Uuid> = rows.iter().map(|c| c.campaign_id).collect();
    let phones: Vec<&str> = rows.iter().map(|c| c.phone.as_str()).collect();
    sqlx::query(
        "UPDATE dispatch_queue q
            SET state = 'ready', attempts = q.attempts - 1, lease_until = NULL
           FROM UNNEST($1::uuid[], $2::text[]) AS r(c, p)
          WHERE q.campaign_id = r.c AND q.phone = r.p",
    )
    .bind(&campaigns)
    .bind(&phones)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Parks the due, ready campaign recipients of each key (`keys[i]`: a campaign or a number, see
/// [`Wait`]) until `due[i]`, flagged with `wait`, so they are not claimed again and again
/// before then. Returns how many wait.
async fn park(
    conn: &mut PgConnection,
    keys: &[Uuid],
    due: &[DateTime<Utc>],
    wait: Wait,
) -> sqlx::Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    let (column, flag, first_only) = match wait {
        Wait::Window => ("campaign_id", "waiting_window", ""),
        Wait::Cap => (
            "session_id",
            "waiting_cap",
            "AND q.attempts = 0 AND NOT q.in_doubt",
        ),
    };
    let parked = sqlx::query(&format!(
        "UPDATE dispatch_queue q SET not_before = r.due, {flag} = true
           FROM UNNEST($1::uuid[], $2::timestamptz[]) AS r(k, due)
          WHERE q.{column} = r.k AND q.state = 'ready' AND q.content IS NULL
            AND q.not_before <= now() {first_only}"
    ))
    .bind(keys)
    .bind(due)
    .execute(&mut *conn)
    .await?;
    Ok(parked.rows_affected())
}

/// Takes `held` out of `claimed` and puts them back; returns the rest.
async fn hold_back(
    conn: &mut PgConnection,
    claimed: Vec<Claimed>,
    held: impl Fn(&Claimed) -> bool,
) -> sqlx::Result<(Vec<Claimed>, Vec<Claimed>)> {
    let (back, keep): (Vec<Claimed>, Vec<Claimed>) = claimed.into_iter().partition(held);
    put_back(conn, &back.iter().collect::<Vec<_>>()).await?;
    Ok((keep, back))
}

/// The recipients that were waiting for a window or a cap and are on their way now: their flags
/// go (they are no longer counted as waiting).
pub(super) async fn clear_waiting(conn: &mut PgConnection, kept: &[Claimed]) -> sqlx::Result<()> {
    let waiting: Vec<&Claimed> = kept
        .iter()
        .filter(|c| c.waiting_window || c.waiting_cap)
        .collect();
    if waiting.is_empty() {
        return Ok(());
    }
    let campaigns: Vec<Uuid> = waiting.iter().map(|c| c.campaign_id).collect();
    let phones: Vec<&str> = waiting.iter().map(|c| c.phone.as_str()).collect();
    sqlx::query(
        "UPDATE dispatch_queue q SET waiting_window = false, waiting_cap = false
           FROM UNNEST($1::uuid[], $2::text[]) AS r(c, p)
          WHERE q.campaign_id = r.c AND q.phone = r.p",
    )
    .bind(&campaigns)
    .bind(&phones)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
