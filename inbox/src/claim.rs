//! Claiming a batch: in one transaction, the log's next posts after the cursor (behind the
//! cursor's lock, so one process reads the log at a time, in commit order) or the retries that
//! are due (`FOR UPDATE SKIP LOCKED`), each post parsed ([`crate::parse`]), applied
//! ([`crate::apply`]) and its outcome recorded ([`crate::record`]), then the cursor moved past
//! the batch.

use std::collections::HashMap;

use herald_domain::delivery::Delivery;
use herald_domain::store::{self, KnownAggregates, StoreError};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::apply::apply;
use crate::cursor::{lock_cursor, move_cursor, Source};
use crate::parse::{classify, Claimed};
use crate::record::finish;
use crate::InboxConfig;

/// Why a batch did not commit.
pub(crate) struct BatchFailure {
    /// The rows it had claimed (`None`: it failed before claiming any).
    pub(crate) ids: Option<Vec<i64>>,
    pub(crate) error: anyhow::Error,
    pub(crate) retryable: bool,
}

impl BatchFailure {
    fn before_claim(error: impl Into<anyhow::Error>) -> Self {
        BatchFailure {
            ids: None,
            error: error.into(),
            retryable: false,
        }
    }
}

/// Which rows of the source a batch takes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Claim<'a> {
    /// Up to a batch: the log's next rows, or the retries due, oldest first.
    Batch,
    /// These rows of a failed batch (splitting it): from the log, the rows up to the last of
    /// them, only if it is still there after the cursor; from the retries, those of them still
    /// due.
    Range(&'a [i64]),
}

/// The columns a batch reads of each post: the event as text (a JSON post's body is its event).
pub(crate) const POST_COLUMNS: &str =
    "w.id, w.session_id, w.tenant_id, w.event_type, w.received_at,
    CASE WHEN w.session_id IS NOT NULL
         THEN COALESCE(w.event::text, convert_from(w.body, 'UTF8')) END AS event";

/// Processes one batch in one transaction. Returns how many rows it took.
pub(crate) async fn process_batch(
    pool: &PgPool,
    config: &InboxConfig,
    source: Source,
    claim: Claim<'_>,
    known: &mut KnownAggregates<Delivery>,
) -> Result<usize, BatchFailure> {
    let mut tx = pool.begin().await.map_err(BatchFailure::before_claim)?;
    store::plan_as_key_lookups(&mut tx)
        .await
        .map_err(BatchFailure::before_claim)?;
    // the log: behind the cursor's lock, so one process at a time reads it, in commit order
    let mut log_end = None;
    let rows = match source {
        Source::Log => {
            let Some(cursor) = lock_cursor(&mut tx)
                .await
                .map_err(BatchFailure::before_claim)?
            else {
                return Ok(0);
            };
            // one row alone: the rows up to it (those before it in the failed batch are done
            // already, or were stored without a session, which the log only steps over)
            let upto = match claim {
                Claim::Range(ids) => ids.last().copied(),
                Claim::Batch => None,
            };
            let rows = sqlx::query(&format!(
                "SELECT w.tx_id::text::bigint AS tx, 0 AS attempts, {POST_COLUMNS}
                   FROM webhook_inbox w
                  WHERE w.tx_id < pg_snapshot_xmin(pg_current_snapshot())
                    AND (w.tx_id, w.id) > ($1::text::xid8, $2)
                    AND ($4::bigint IS NULL
                         OR (w.tx_id, w.id) <= (SELECT tx_id, id FROM webhook_inbox WHERE id = $4))
                  ORDER BY w.tx_id, w.id
                  LIMIT $3"
            ))
            .bind(cursor.0)
            .bind(cursor.1)
            .bind(config.batch_size)
            .bind(upto)
            .fetch_all(&mut *tx)
            .await
            .map_err(BatchFailure::before_claim)?;
            if let (Some(id), Some(last)) = (upto, rows.last()) {
                let last: i64 = last.try_get("id").map_err(BatchFailure::before_claim)?;
                if last != id {
                    return Ok(0);
                }
            }
            if let Some(last) = rows.last() {
                log_end = Some((
                    last.try_get::<i64, _>("tx")
                        .map_err(BatchFailure::before_claim)?,
                    last.try_get::<i64, _>("id")
                        .map_err(BatchFailure::before_claim)?,
                ));
            }
            rows
        }
        Source::Retries => sqlx::query(&format!(
            "SELECT r.attempts, {POST_COLUMNS}
               FROM webhook_inbox_retries r JOIN webhook_inbox w ON w.id = r.inbox_id
              WHERE r.next_attempt_at <= now() AND r.parked_at IS NULL
                AND ($2::bigint[] IS NULL OR r.inbox_id = ANY($2))
              ORDER BY r.next_attempt_at, r.inbox_id
              LIMIT $1
              FOR UPDATE OF r SKIP LOCKED"
        ))
        .bind(match claim {
            Claim::Batch => config.batch_size,
            Claim::Range(ids) => ids.len() as i64,
        })
        .bind(match claim {
            Claim::Range(ids) => Some(ids),
            Claim::Batch => None,
        })
        .fetch_all(&mut *tx)
        .await
        .map_err(BatchFailure::before_claim)?,
    };
    if rows.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: i64 = row.try_get("id").map_err(BatchFailure::before_claim)?;
        ids.push(id);
    }
    let fail = |ids: &Vec<i64>, error: anyhow::Error| {
        let retryable = error
            .downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_retryable);
        BatchFailure {
            ids: Some(ids.clone()),
            error,
            retryable,
        }
    };
    let mut claimed = Vec::with_capacity(rows.len());
    let mut sessionless = Vec::new();
    for row in rows {
        let parsed = (|| -> anyhow::Result<Option<Claimed>> {
            // a post stored without a session (a Cloud API notification for a number no session
            // stands for) got its outcome when it was stored
            let Some(session_id) = row.try_get::<Option<Uuid>, _>("session_id")? else {
                return Ok(None);
            };
            let event: String = row.try_get("event")?;
            let event_type: String = row.try_get("event_type")?;
            Ok(Some(Claimed {
                id: row.try_get("id")?,
                session_id,
                tenant_id: row.try_get("tenant_id")?,
                received_at: row.try_get("received_at")?,
                attempts: row.try_get("attempts")?,
                action: classify(&event_type, &event),
            }))
        })();
        match parsed.map_err(|e| fail(&ids, e))? {
            Some(c) => claimed.push(c),
            None => sessionless.push(
                row.try_get::<i64, _>("id")
                    .map_err(|e| fail(&ids, e.into()))?,
            ),
        }
    }
    if source == Source::Retries && !sessionless.is_empty() {
        // replayed, but there is nothing to do: its outcome stays as it was stored
        sqlx::query("DELETE FROM webhook_inbox_retries WHERE inbox_id = ANY($1)")
            .bind(&sessionless)
            .execute(&mut *tx)
            .await
            .map_err(|e| fail(&ids, e.into()))?;
    }
    let deliveries = if claimed.is_empty() {
        HashMap::new()
    } else {
        let (dispositions, deliveries) = apply(&mut tx, config, &claimed, known)
            .await
            .map_err(|e| fail(&ids, e))?;
        finish(&mut tx, source, &dispositions)
            .await
            .map_err(|e| fail(&ids, e.into()))?;
        deliveries
    };
    if let Some(end) = log_end {
        move_cursor(&mut tx, end)
            .await
            .map_err(|e| fail(&ids, e.into()))?;
    }
    tx.commit().await.map_err(|e| fail(&ids, e.into()))?;
    // only now are the batch's deliveries as it left them for everyone
    known.remember(deliveries);
    Ok(ids.len())
}
