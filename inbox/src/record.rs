//! Recording what became of each post: an outcome for a post done, a retry (with its backoff)
//! for one to try again, a failure counted and, after [`crate::InboxConfig::park_after_attempts`]
//! failures of its own, the post parked; and the pruning of processed posts.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgPool;

use crate::cursor::{lock_cursor, move_cursor, Source};
use crate::InboxConfig;

/// What became of a row in this batch.
pub(crate) enum Disposition {
    Processed(String),
    /// Unknown message ids, still within the grace period: try again after the delay.
    Wait(String, Duration),
}

/// Backoff before the `attempts`-th retry of a failed row: 1 s, 2 s, 4 s, ... at most 15 min.
pub(crate) fn failure_backoff(attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 11) - 1;
    Duration::from_secs((1u64 << exp).min(15 * 60))
}

/// Backoff while waiting for unknown message ids: 1 s doubling, at most 60 s.
pub(crate) fn unmatched_backoff(attempts: i32) -> Duration {
    failure_backoff(attempts).min(Duration::from_secs(60))
}

/// Records what became of the batch's rows: an outcome for each row done, a retry for each row
/// to try again; a few statements for the whole batch.
pub(crate) async fn finish(
    tx: &mut sqlx::PgConnection,
    source: Source,
    dispositions: &HashMap<i64, Disposition>,
) -> sqlx::Result<()> {
    let (mut done_ids, mut done_notes) = (Vec::new(), Vec::new());
    let (mut wait_ids, mut wait_notes, mut wait_after) = (Vec::new(), Vec::new(), Vec::new());
    for (id, d) in dispositions {
        match d {
            Disposition::Processed(note) => {
                done_ids.push(*id);
                done_notes.push(note.as_str());
            }
            Disposition::Wait(note, after) => {
                wait_ids.push(*id);
                wait_notes.push(note.as_str());
                wait_after.push(after.as_secs_f64());
            }
        }
    }
    if !done_ids.is_empty() {
        sqlx::query(
            "INSERT INTO webhook_inbox_outcomes (inbox_id, note)
             SELECT * FROM UNNEST($1::bigint[], $2::text[])
             ON CONFLICT (inbox_id) DO UPDATE SET note = EXCLUDED.note, processed_at = now()",
        )
        .bind(&done_ids)
        .bind(&done_notes)
        .execute(&mut *tx)
        .await?;
        if source == Source::Retries {
            sqlx::query("DELETE FROM webhook_inbox_retries WHERE inbox_id = ANY($1)")
                .bind(&done_ids)
                .execute(&mut *tx)
                .await?;
        }
        metrics::counter!("herald_webhook_inbox_processed_total").increment(done_ids.len() as u64);
    }
    if !wait_ids.is_empty() {
        sqlx::query(
            "INSERT INTO webhook_inbox_retries AS r (inbox_id, attempts, last_error, next_attempt_at)
             SELECT id, 1, note, now() + make_interval(secs => after)
               FROM UNNEST($1::bigint[], $2::text[], $3::float8[]) AS u(id, note, after)
             ON CONFLICT (inbox_id) DO UPDATE SET attempts = r.attempts + 1,
                    last_error = EXCLUDED.last_error, next_attempt_at = EXCLUDED.next_attempt_at",
        )
        .bind(&wait_ids)
        .bind(&wait_notes)
        .bind(&wait_after)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// A row that failed on its own: count the attempt, keep the error, try again after a backoff.
/// A row of the log becomes a retry, and the cursor moves past it, so the rows after it go on.
/// After [`InboxConfig::park_after_attempts`] attempts whose failure was the post's own (not a
/// transient one), the row is parked: kept, visible, and tried again only when an operator asks.
pub(crate) async fn record_failure(
    pool: &PgPool,
    config: &InboxConfig,
    source: Source,
    id: i64,
    error: &anyhow::Error,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    if source == Source::Log {
        let Some(cursor) = lock_cursor(&mut tx).await? else {
            return Ok(());
        };
        let position: Option<(i64, i64)> =
            sqlx::query_as("SELECT tx_id::text::bigint, id FROM webhook_inbox WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        // only the log's next row (the one that failed) is skipped: never one still unread
        // before it (rows without a session are only stepped over)
        let Some(position) = position.filter(|p| *p > cursor) else {
            return Ok(());
        };
        let unread_before: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM webhook_inbox
                             WHERE (tx_id, id) > ($1::text::xid8, $2)
                               AND (tx_id, id) < ($3::text::xid8, $4)
                               AND session_id IS NOT NULL)",
        )
        .bind(cursor.0)
        .bind(cursor.1)
        .bind(position.0)
        .bind(position.1)
        .fetch_one(&mut *tx)
        .await?;
        if unread_before {
            return Ok(());
        }
        move_cursor(&mut tx, position).await?;
    }
    let attempts: i32 = sqlx::query_scalar(
        "INSERT INTO webhook_inbox_retries AS r (inbox_id, attempts, last_error)
         VALUES ($1, 1, $2)
         ON CONFLICT (inbox_id) DO UPDATE SET attempts = r.attempts + 1, last_error = EXCLUDED.last_error
         RETURNING attempts",
    )
    .bind(id)
    .bind(format!("{error:#}"))
    .fetch_one(&mut *tx)
    .await?;
    let park = attempts >= config.park_after_attempts
        && !herald_domain::failure::is_transient(error.as_ref());
    let after = failure_backoff(attempts);
    sqlx::query(
        "UPDATE webhook_inbox_retries
            SET next_attempt_at = CASE WHEN $3 THEN 'infinity' ELSE now() + make_interval(secs => $2) END,
                parked_at = CASE WHEN $3 THEN now() END
          WHERE inbox_id = $1",
    )
    .bind(id)
    .bind(after.as_secs_f64())
    .bind(park)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    metrics::counter!("herald_webhook_inbox_failures_total").increment(1);
    if park {
        metrics::counter!("herald_webhook_inbox_parked_total").increment(1);
        tracing::error!(inbox_id = id, attempts, error = %format!("{error:#}"),
            "webhook post parked: it keeps failing on its own (`herald projections parked`)");
    } else {
        tracing::warn!(inbox_id = id, attempts, retry_in = ?after, error = %format!("{error:#}"), "webhook processing failed; will retry");
    }
    Ok(())
}

/// Deletes processed rows older than `retention` (and their outcomes), a bounded chunk at a time:
/// among the oldest rows, those the log has passed and no retry waits for.
pub(crate) async fn prune(pool: &PgPool, retention: Duration) -> sqlx::Result<()> {
    let deleted = sqlx::query(
        "WITH oldest AS (
             SELECT id, tx_id, received_at FROM webhook_inbox ORDER BY id LIMIT 10000),
         doomed AS (
             SELECT o.id FROM oldest o, webhook_inbox_cursor c
              WHERE c.name = 'processor' AND (o.tx_id, o.id) <= (c.tx_id, c.id)
                AND o.received_at < now() - make_interval(secs => $1)
                AND NOT EXISTS (SELECT 1 FROM webhook_inbox_retries r WHERE r.inbox_id = o.id)),
         outcomes AS (
             DELETE FROM webhook_inbox_outcomes x USING doomed WHERE x.inbox_id = doomed.id)
         DELETE FROM webhook_inbox w USING doomed WHERE w.id = doomed.id",
    )
    .bind(retention.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected();
    if deleted > 0 {
        tracing::info!(deleted, "pruned processed webhook inbox rows");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoffs_grow_and_are_capped() {
        assert_eq!(failure_backoff(1), Duration::from_secs(1));
        assert_eq!(failure_backoff(2), Duration::from_secs(2));
        assert_eq!(failure_backoff(5), Duration::from_secs(16));
        assert_eq!(failure_backoff(50), Duration::from_secs(15 * 60));
        assert_eq!(failure_backoff(0), Duration::from_secs(1));
        assert_eq!(unmatched_backoff(10), Duration::from_secs(60));
    }
}
