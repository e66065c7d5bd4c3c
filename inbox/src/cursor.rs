//! Where a batch comes from, and the log's cursor: the processor reads `webhook_inbox` after it
//! in commit order, one process at a time (the cursor's row lock), like a projector reads
//! `events` (docs/decisions/0033).

/// Where a batch comes from (docs/decisions/0033).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The next posts of the log, after the processor's cursor, in commit order.
    Log,
    /// Rows in `webhook_inbox_retries` whose next attempt is due.
    Retries,
}

/// Locks the log cursor for this transaction; `None` when another process holds it (it is
/// reading the log right now, so there is nothing for this one to do).
pub(crate) async fn lock_cursor(tx: &mut sqlx::PgConnection) -> sqlx::Result<Option<(i64, i64)>> {
    sqlx::query_as(
        "SELECT tx_id::text::bigint, id FROM webhook_inbox_cursor
          WHERE name = 'processor' FOR UPDATE SKIP LOCKED",
    )
    .fetch_optional(&mut *tx)
    .await
}

pub(crate) async fn move_cursor(tx: &mut sqlx::PgConnection, to: (i64, i64)) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE webhook_inbox_cursor SET tx_id = $1::text::xid8, id = $2, updated_at = now()
          WHERE name = 'processor'",
    )
    .bind(to.0)
    .bind(to.1)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
