//! The circuit breaker (docs/safe-sending.md): every running campaign on a number pauses, with
//! `pause_reason`, when the number is logged out or disconnected (`session_disconnected`), when
//! 20 of its last 50 sends failed permanently (`failure_spike`), or when the gateway halts it
//! (`spam_rate_limit`, `gateway_auth`).
//!
//! A trip is the user's pause with a reason, in one transaction per number: `CampaignPaused`,
//! the `paused` hold, and the campaigns' ready rows parked (like herald-campaigns' `control.rs`). Nothing in flight
//! is lost: a recipient the gateway refused for a halt went back to the queue (never failed), a
//! lease still out finishes and records as usual, and resuming (`POST .../resume`) makes the
//! parked rows due again. A sent recipient has no queue row, so nothing is sent twice.

use chrono::Utc;
use herald_domain::campaign::{Campaign, CampaignCommand};
use herald_domain::store;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Permanent failures among a number's last [`WINDOW`] campaign sends that trip the breaker.
pub const SPIKE_FAILURES: i64 = 20;
/// How many of a number's latest campaign sends the failure spike looks at.
pub const WINDOW: i32 = 50;

/// A number whose campaigns must pause, and why.
#[derive(Debug, Clone)]
pub(crate) struct Trip {
    pub session_id: Uuid,
    /// `session_disconnected`, `failure_spike`, `spam_rate_limit` or `gateway_auth`.
    pub reason: String,
    /// Campaigns known to be on it (from the batch), besides those the read model shows running.
    pub campaigns: Vec<Uuid>,
}

impl super::super::Dispatcher {
    /// Trips the breaker for `trips`; a failure is logged (the rows stay queued, and the next
    /// claim of a halted number or the next refused send trips it again).
    pub(in crate::dispatch) async fn trip(&self, trips: Vec<Trip>) {
        if trips.is_empty() {
            return;
        }
        if let Err(e) = trip(&self.pool, trips).await {
            tracing::error!(error = %format!("{e:#}"), "the circuit breaker could not pause campaigns");
        }
    }
}

/// Pauses the running campaigns of each tripped number. Returns how many campaigns paused.
pub(crate) async fn trip(pool: &PgPool, trips: Vec<Trip>) -> anyhow::Result<usize> {
    let mut paused = 0;
    for t in trips {
        paused += trip_one(pool, &t).await?;
    }
    Ok(paused)
}

async fn trip_one(pool: &PgPool, t: &Trip) -> anyhow::Result<usize> {
    let mut campaigns: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM campaigns WHERE session_id = $1 AND status = 'running'")
            .bind(t.session_id)
            .fetch_all(pool)
            .await?;
    campaigns.extend(&t.campaigns);
    campaigns.sort();
    campaigns.dedup();
    let mut tx = pool.begin().await?;
    let now = Utc::now();
    let commands = campaigns
        .iter()
        .map(|id| {
            let trip = CampaignCommand::Trip {
                reason: t.reason.clone(),
                at: now,
            };
            (id.to_string(), trip)
        })
        .collect();
    let outcomes = store::execute_batch::<Campaign>(&mut tx, commands, &()).await?;
    let tripped: Vec<Uuid> = campaigns
        .iter()
        .zip(outcomes)
        .filter_map(|(id, o)| matches!(o, Ok(events) if !events.is_empty()).then_some(*id))
        .collect();
    // after the events: the first write of this transaction must be the append
    if !tripped.is_empty() {
        sqlx::query(
            "INSERT INTO campaign_holds (campaign_id, reason)
             SELECT c, 'paused' FROM UNNEST($1::uuid[]) AS c
             ON CONFLICT (campaign_id) DO UPDATE SET reason = 'paused', since = now()",
        )
        .bind(&tripped)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE dispatch_queue SET not_before = 'infinity'
              WHERE campaign_id = ANY($1) AND state = 'ready'",
        )
        .bind(&tripped)
        .execute(&mut *tx)
        .await?;
    }
    // a resumed campaign starts with a clean record
    sqlx::query("UPDATE session_send_health SET recent = '{}' WHERE session_id = $1")
        .bind(t.session_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    for id in &tripped {
        tracing::warn!(campaign = %id, session = %t.session_id, reason = %t.reason, "circuit breaker paused a campaign");
    }
    metrics::counter!("herald_circuit_breaker_trips_total").increment(tripped.len() as u64);
    Ok(tripped.len())
}

/// Adds a batch's campaign send outcomes (`true`: failed permanently) to each number's record of
/// its last [`WINDOW`] sends, in one statement; returns the numbers that reached the failure
/// spike. `outcomes` are in send order.
pub(crate) async fn record_outcomes(
    conn: &mut PgConnection,
    outcomes: &[(Uuid, bool)],
) -> sqlx::Result<Vec<Uuid>> {
    if outcomes.is_empty() {
        return Ok(Vec::new());
    }
    let sessions: Vec<Uuid> = outcomes.iter().map(|(s, _)| *s).collect();
    let failed: Vec<bool> = outcomes.iter().map(|(_, f)| *f).collect();
    let order: Vec<i32> = (0..outcomes.len() as i32).collect();
    sqlx::query_scalar(
        "WITH new AS (
            SELECT s, array_agg(f ORDER BY o) AS fs
              FROM UNNEST($1::uuid[], $2::bool[], $3::int[]) AS r(s, f, o) GROUP BY s
         ), merged AS (
            INSERT INTO session_send_health AS h (session_id, recent)
            SELECT s, fs[greatest(1, cardinality(fs) - $4 + 1):] FROM new
            ON CONFLICT (session_id) DO UPDATE
               SET recent = (h.recent || EXCLUDED.recent)
                            [greatest(1, cardinality(h.recent || EXCLUDED.recent) - $4 + 1):]
            RETURNING h.session_id, h.recent
         )
         SELECT session_id FROM merged
          WHERE (SELECT count(*) FROM unnest(recent) AS x WHERE x) >= $5",
    )
    .bind(&sessions)
    .bind(&failed)
    .bind(&order)
    .bind(WINDOW)
    .bind(SPIKE_FAILURES)
    .fetch_all(&mut *conn)
    .await
}
