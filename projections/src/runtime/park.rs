//! Poison events: a batch that fails on its own is split down to the event that fails, which is
//! parked in `parked_events` with its error while every other event is applied
//! (docs/decisions/0035-poison-events-are-parked.md).
//!
//! - The split halves the failing range, applying each half with its checkpoint in its own
//!   transaction, in the store's order. When a left half applies whole, the right half is known to
//!   fail and is split at once without being tried whole: a batch of 2,000 events with one bad
//!   event takes about 11 rollbacks, no sleeps in between.
//! - The single event left is tried alone [`ATTEMPTS_ALONE`] times; if it still fails, it is
//!   parked in the transaction that moves the checkpoint past it.
//! - A transient failure (see `herald_domain::failure::is_transient`) at any point stops the
//!   split and is returned: the runner backs off and tries again from the checkpoint reached, and
//!   nothing is parked for it.
//! - `herald projections retry` marks parked events (`retry_requested_at`); the instance holding
//!   the projector applies them ([`apply_requested`]), out of order, each in its own transaction.

use sqlx::{Connection, PgConnection, Row};

use super::{apply_chunk, ensure_checkpoint, move_checkpoint, Chunk, Projector, StoredEvent};

/// How many times the last event of a failing range is tried alone before it is parked.
pub const ATTEMPTS_ALONE: u32 = 3;

/// How a range of the failing batch is to be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Known to fail: split it without trying it whole.
    Failing,
    /// The left half of a split: try it whole.
    Left,
    /// The right half: known to fail when its left half applied whole, else try it whole.
    Right,
}

/// Splits the failing `events` (the whole batch after `checkpoint`; `end` is the batch's last
/// position) down to the events that fail alone, parks those and applies the rest.
pub(super) async fn isolate(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    checkpoint: &mut (i64, i64),
    events: &[StoredEvent],
    end: (i64, i64),
    error: anyhow::Error,
) -> anyhow::Result<Chunk> {
    let name = projector.name();
    tracing::warn!(projector = name, events = events.len(), error = %format!("{error:#}"),
        "projector batch failed; splitting it to find the event that fails");
    let end_of = |hi: usize| {
        if hi == events.len() {
            end
        } else {
            events[hi - 1].position()
        }
    };
    // ranges still to handle, the next one on top: the store's order is kept
    let mut todo = vec![(0, events.len(), Mode::Failing)];
    let mut left_applied = false;
    let mut steps = 0u32;
    while let Some((lo, hi, mode)) = todo.pop() {
        let known_failing = match mode {
            Mode::Failing => true,
            Mode::Right => left_applied,
            Mode::Left => false,
        };
        left_applied = false;
        let mut failed_alone = 0;
        let mut last_error = None;
        if !known_failing {
            steps += 1;
            match apply_chunk(conn, projector, checkpoint, &events[lo..hi], end_of(hi)).await {
                Ok(Chunk::Applied) => {
                    left_applied = mode == Mode::Left;
                    continue;
                }
                Ok(Chunk::Reset) => return Ok(Chunk::Reset),
                Err(e) if herald_domain::failure::is_transient(&*e) => return Err(e),
                Err(e) => {
                    if hi - lo == 1 {
                        failed_alone = 1;
                    }
                    last_error = Some(e);
                }
            }
        }
        if hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            todo.push((mid, hi, Mode::Right));
            todo.push((lo, mid, Mode::Left));
            continue;
        }
        // one event: try it alone, then park it
        let event = &events[lo];
        let mut applied = false;
        while failed_alone < ATTEMPTS_ALONE {
            steps += 1;
            match apply_chunk(
                conn,
                projector,
                checkpoint,
                std::slice::from_ref(event),
                end_of(hi),
            )
            .await
            {
                Ok(Chunk::Applied) => {
                    applied = true;
                    break;
                }
                Ok(Chunk::Reset) => return Ok(Chunk::Reset),
                Err(e) if herald_domain::failure::is_transient(&*e) => return Err(e),
                Err(e) => {
                    failed_alone += 1;
                    last_error = Some(e);
                }
            }
        }
        if applied {
            continue;
        }
        let error = last_error.map_or_else(|| format!("{error:#}"), |e| format!("{e:#}"));
        steps += 1;
        if park(conn, projector, checkpoint, event, end_of(hi), &error).await? == Chunk::Reset {
            return Ok(Chunk::Reset);
        }
    }
    tracing::info!(projector = name, steps, "failing batch split and applied");
    Ok(Chunk::Applied)
}

/// Parks `event` and moves the checkpoint past it (to `to`), in one transaction.
async fn park(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    checkpoint: &mut (i64, i64),
    event: &StoredEvent,
    to: (i64, i64),
    error: &str,
) -> anyhow::Result<Chunk> {
    let name = projector.name();
    let mut tx = conn.begin().await?;
    sqlx::query(
        "INSERT INTO parked_events (projector, tx_id, global_position, aggregate_type,
                                    aggregate_id, sequence, event_type, error)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (projector, global_position) DO UPDATE
            SET error = EXCLUDED.error, parked_at = now(), retry_requested_at = NULL",
    )
    .bind(name)
    .bind(event.tx_id)
    .bind(event.global_position)
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(event.sequence)
    .bind(&event.event_type)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    if !move_checkpoint(&mut tx, name, *checkpoint, to).await? {
        tx.rollback().await?;
        *checkpoint = ensure_checkpoint(conn, name).await?;
        return Ok(Chunk::Reset);
    }
    tx.commit().await?;
    *checkpoint = to;
    metrics::counter!("herald_projection_parked_total", "projector" => name).increment(1);
    tracing::error!(
        projector = name,
        tx_id = event.tx_id,
        global_position = event.global_position,
        aggregate_type = %event.aggregate_type,
        aggregate_id = %event.aggregate_id,
        sequence = event.sequence,
        event_type = %event.event_type,
        error,
        "event parked: it fails on its own; the projector goes on past it (`herald projections parked`)"
    );
    refresh_gauge(conn, name).await;
    Ok(Chunk::Applied)
}

/// Sets `herald_projection_parked_events{projector}` to the number parked now.
pub(super) async fn refresh_gauge(conn: &mut PgConnection, name: &'static str) {
    let count: Result<i64, _> =
        sqlx::query_scalar("SELECT count(*) FROM parked_events WHERE projector = $1")
            .bind(name)
            .fetch_one(&mut *conn)
            .await;
    match count {
        Ok(n) => {
            metrics::gauge!("herald_projection_parked_events", "projector" => name).set(n as f64)
        }
        Err(e) => tracing::warn!(projector = name, error = %e, "cannot count parked events"),
    }
}

/// What a retry of one parked event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// Applied; no longer parked.
    Applied,
    /// Failed again; still parked with this error.
    Failed(String),
}

/// Applies the parked events of `projector` an operator asked to retry, each alone in its own
/// transaction; on the connection holding the projector's lock. A transient failure leaves the
/// request in place (tried again on the next call) and is returned.
pub(crate) async fn apply_requested(
    conn: &mut PgConnection,
    projector: &dyn Projector,
) -> anyhow::Result<Vec<(i64, Retried)>> {
    let name = projector.name();
    let requested: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT tx_id, global_position FROM parked_events
          WHERE projector = $1 AND retry_requested_at IS NOT NULL
          ORDER BY tx_id, global_position",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    let mut done = Vec::with_capacity(requested.len());
    for position in requested {
        let result = apply_parked(conn, projector, position).await;
        let outcome = match result {
            Ok(()) => {
                tracing::info!(
                    projector = name,
                    global_position = position.1,
                    "parked event applied"
                );
                Retried::Applied
            }
            Err(e) if herald_domain::failure::is_transient(&*e) => return Err(e),
            Err(e) => {
                let error = format!("{e:#}");
                sqlx::query(
                    "UPDATE parked_events SET retries = retries + 1, retried_at = now(),
                            error = $3, retry_requested_at = NULL
                      WHERE projector = $1 AND global_position = $2",
                )
                .bind(name)
                .bind(position.1)
                .bind(&error)
                .execute(&mut *conn)
                .await?;
                tracing::error!(
                    projector = name,
                    global_position = position.1,
                    error,
                    "parked event failed again; it stays parked"
                );
                Retried::Failed(error)
            }
        };
        done.push((position.1, outcome));
    }
    if !done.is_empty() {
        refresh_gauge(conn, name).await;
    }
    Ok(done)
}

/// Applies one parked event and unparks it, in one transaction (the checkpoint stays: it is
/// past the event already).
async fn apply_parked(
    conn: &mut PgConnection,
    projector: &dyn Projector,
    (tx_id, global_position): (i64, i64),
) -> anyhow::Result<()> {
    let mut tx = conn.begin().await?;
    let row = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, payload::text AS payload,
                recorded_at
           FROM events WHERE tx_id = $1::text::xid8 AND global_position = $2",
    )
    .bind(tx_id)
    .bind(global_position)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| anyhow::anyhow!("event {global_position} is no longer in the event store"))?;
    let event = StoredEvent {
        tx_id,
        global_position,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        payload: row.try_get("payload")?,
        recorded_at: row.try_get("recorded_at")?,
    };
    herald_domain::store::plan_as_key_lookups(&mut tx).await?;
    projector
        .apply(&mut tx, std::slice::from_ref(&event))
        .await?;
    sqlx::query("DELETE FROM parked_events WHERE projector = $1 AND global_position = $2")
        .bind(projector.name())
        .bind(global_position)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    projector.committed();
    Ok(())
}
