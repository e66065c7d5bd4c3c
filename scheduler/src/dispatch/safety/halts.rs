//! Claim check: numbers the gateway reported logged out or disconnected (`session_halts`, written
//! by the webhook inbox from session events, removed when the number connects again). Their
//! campaign recipients go back to the queue, and the claim trips the circuit breaker for those
//! numbers once it has committed ([`super::breaker::trip`]).

use std::collections::HashMap;

use sqlx::PgConnection;
use uuid::Uuid;

use super::super::Claimed;
use super::breaker::Trip;

/// Holds back the campaign recipients of halted numbers; each halted number becomes a [`Trip`]
/// (with the campaigns seen in the batch, which the read model may not show running yet).
pub(in crate::dispatch) async fn check(
    conn: &mut PgConnection,
    claimed: Vec<Claimed>,
    trips: &mut Vec<Trip>,
) -> sqlx::Result<Vec<Claimed>> {
    let mut sessions: Vec<Uuid> = claimed
        .iter()
        .filter(|c| c.is_campaign())
        .map(|c| c.session_id)
        .collect();
    if sessions.is_empty() {
        return Ok(claimed);
    }
    sessions.sort();
    sessions.dedup();
    let halted: HashMap<Uuid, String> =
        sqlx::query_as("SELECT session_id, reason FROM session_halts WHERE session_id = ANY($1)")
            .bind(&sessions)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    if halted.is_empty() {
        return Ok(claimed);
    }
    let (keep, back) = super::hold_back(conn, claimed, |c| {
        c.is_campaign() && halted.contains_key(&c.session_id)
    })
    .await?;
    for (session_id, reason) in halted {
        let mut campaigns: Vec<Uuid> = back
            .iter()
            .filter(|c| c.session_id == session_id)
            .map(|c| c.campaign_id)
            .collect();
        campaigns.sort();
        campaigns.dedup();
        trips.push(Trip {
            session_id,
            reason,
            campaigns,
        });
    }
    Ok(keep)
}
