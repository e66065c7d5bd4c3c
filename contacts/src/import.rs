//! A streamed contact import (docs/contacts.md, decision 0025): a CSV arriving as a stream of
//! byte chunks, applied batch by batch.
//!
//! Three parts run at once, joined by small bounded channels, so memory is bounded by a batch
//! whatever the file's size:
//! - the pump reads the chunks as they arrive and counts their bytes;
//! - the reader ([`csv_file::read_batches`], on a blocking thread: phone parsing is CPU work)
//!   parses rows as they arrive and hands them out in batches of at most 2,000 rows;
//! - the writer applies each batch in its own transaction ([`book`]), and counts what happened.
//!
//! Batches are applied in file order, so when the import stops part-way (a limit, an unreadable
//! row, the upload failing) the rows applied are exactly those before the row where it stopped;
//! [`ContactsError::Stopped`] says through which line. Applying a row twice changes nothing
//! (merges by phone are idempotent), so re-running the same file is safe.

use std::io;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::{Stream, StreamExt};
use herald_projections::contacts as read;
use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::book::{self, Applied};
use crate::csv_file::{self, Batch, ChunkReader, RejectedRow, Stop};
use crate::error::{ContactsError, ImportProgress};

/// Rejected rows listed in the report (all are counted).
pub const MAX_REJECTED_LISTED: usize = 1_000;
/// Body chunks waiting for the reader.
const CHUNKS_IN_FLIGHT: usize = 16;
/// Longest wait for the contacts read model after an import (read-your-writes).
const PROJECTED_WAIT: Duration = Duration::from_secs(5);

/// An import's limits (`HERALD_IMPORT_MAX_ROWS`, `HERALD_IMPORT_MAX_BYTES`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_rows: usize,
    pub max_bytes: u64,
}

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    /// Contacts the import created.
    pub imported: usize,
    /// Rows that merged into a contact that already existed (or into an earlier row of the file).
    pub matched: usize,
    /// Rows refused, with their line number (the header is row 1); the first
    /// [`MAX_REJECTED_LISTED`] are listed.
    pub rejected: Vec<RejectedRow>,
    /// All rows refused.
    pub rejected_count: usize,
    /// Rows refused but not listed (`rejected_count` minus the listed ones).
    pub rejected_omitted: usize,
}

/// What the writer has done so far.
#[derive(Default)]
struct Totals {
    report: Report,
    /// Data rows applied (in committed batches).
    rows: usize,
    /// Line where the last applied row starts (1: none yet).
    through_line: u64,
    batches: usize,
}

impl Totals {
    fn reject(&mut self, row: RejectedRow) {
        self.report.rejected_count += 1;
        if self.report.rejected.len() < MAX_REJECTED_LISTED {
            self.report.rejected.push(row);
        } else {
            self.report.rejected_omitted += 1;
        }
    }

    fn stopped(&self, cause: ContactsError) -> ContactsError {
        ContactsError::Stopped {
            cause: Box::new(cause),
            applied: ImportProgress {
                rows: self.rows,
                through_line: self.through_line,
                imported: self.report.imported,
                matched: self.report.matched,
                rejected_count: self.report.rejected_count,
            },
        }
    }
}

/// One batch in one transaction.
async fn apply(pool: &PgPool, batch: Batch, totals: &mut Totals) -> Result<(), ContactsError> {
    let (upserts, pending): (Vec<_>, Vec<_>) = batch
        .contacts
        .into_iter()
        .map(|p| (p.upsert, (p.line, p.input, p.rows)))
        .unzip();
    let applied = book::upsert_each(pool, &upserts).await?;
    let mut rejected = batch.rejected;
    for (outcome, (line, input, rows)) in applied.into_iter().zip(pending) {
        match outcome {
            Applied::Created => {
                totals.report.imported += 1;
                totals.report.matched += rows - 1;
            }
            Applied::Existed { .. } => totals.report.matched += rows,
            Applied::Refused(reason) => {
                let reason = if rows > 1 {
                    format!("{reason} (with {} later rows for this phone)", rows - 1)
                } else {
                    reason
                };
                // the phone's later rows share the reason; the first one is listed
                totals.report.rejected_count += rows - 1;
                totals.report.rejected_omitted += rows - 1;
                rejected.push(RejectedRow {
                    row: line,
                    input,
                    reason,
                });
            }
        }
    }
    rejected.sort_by_key(|r| r.row);
    for row in rejected {
        totals.reject(row);
    }
    totals.rows += batch.rows;
    totals.through_line = batch.last_line;
    totals.batches += 1;
    Ok(())
}

/// Reads the chunks into the reader's channel until they end, pass `max_bytes`, fail, or the
/// reader stops listening. The caller ends the stream with [`Stop::BodyStalled`] or
/// [`Stop::BodyFailed`] when the upload stalls or breaks: what came before is applied.
async fn pump<B, S>(body: S, chunks: mpsc::Sender<io::Result<B>>, max_bytes: u64)
where
    B: AsRef<[u8]>,
    S: Stream<Item = Result<B, Stop>>,
{
    let mut body = std::pin::pin!(body);
    let mut seen = 0u64;
    loop {
        let chunk = tokio::select! {
            chunk = body.next() => chunk,
            _ = chunks.closed() => return,
        };
        let item = match chunk {
            None => return,
            Some(Err(stop)) => Err(io::Error::other(stop)),
            Some(Ok(data)) => {
                seen += data.as_ref().len() as u64;
                if seen > max_bytes {
                    Err(io::Error::other(Stop::TooManyBytes(max_bytes)))
                } else {
                    Ok(data)
                }
            }
        };
        let last = item.is_err();
        if chunks.send(item).await.is_err() || last {
            return;
        }
    }
}

fn stop_error(stop: Stop) -> ContactsError {
    match stop {
        Stop::TooManyRows(max) => ContactsError::TooLarge(format!(
            "an import takes at most {max} rows; split the file"
        )),
        Stop::TooManyBytes(max) => {
            ContactsError::TooLarge(format!("an import is at most {max} bytes; split the file"))
        }
        Stop::BodyFailed(m) => ContactsError::BodyFailed(m),
        Stop::BodyStalled => ContactsError::BodyStalled,
        other @ (Stop::RowTooLong(_) | Stop::Unreadable(..)) => {
            ContactsError::invalid("csv", other.to_string())
        }
    }
}

/// Read-your-writes: waits (at most [`PROJECTED_WAIT`]) until the contacts read model has
/// applied the newest event in the store.
async fn wait_projected(pool: &PgPool) -> Result<(), ContactsError> {
    let newest: Option<(i64, i64)> = sqlx::query_as(
        "SELECT tx_id::text::bigint, global_position FROM events
          ORDER BY tx_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let Some(position) = newest else {
        return Ok(());
    };
    if !herald_projections::runtime::wait_for(pool, read::NAME, position, PROJECTED_WAIT).await? {
        tracing::warn!(
            projector = read::NAME,
            "read model is lagging more than 5 s behind"
        );
    }
    Ok(())
}

/// Imports `body` (a CSV, as a stream of chunks) into `tenant_id`'s contacts.
pub async fn import<B, S>(
    pool: &PgPool,
    tenant_id: Uuid,
    region: String,
    body: S,
    limits: Limits,
) -> Result<Report, ContactsError>
where
    B: AsRef<[u8]> + Send + 'static,
    S: Stream<Item = Result<B, Stop>>,
{
    let started = Instant::now();
    let at = Utc::now();
    let (chunk_tx, chunk_rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    // one batch waiting while one is written: reading runs ahead of writing by one batch at most
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(1);
    let max_rows = limits.max_rows;
    let reader = tokio::task::spawn_blocking(move || {
        csv_file::read_batches(
            ChunkReader::new(chunk_rx),
            tenant_id,
            &region,
            at,
            max_rows,
            |batch| batch_tx.blocking_send(batch).is_ok(),
        )
    });
    let mut totals = Totals {
        through_line: 1,
        ..Totals::default()
    };
    let totals_ref = &mut totals;
    let writer = async move {
        let mut outcome = Ok(());
        while let Some(batch) = batch_rx.recv().await {
            if let Err(e) = apply(pool, batch, totals_ref).await {
                outcome = Err(e);
                break;
            }
        }
        // the reader's next batch fails to send, so it stops, and so does the pump
        drop(batch_rx);
        outcome
    };
    let (written, ()) = tokio::join!(writer, pump(body, chunk_tx, limits.max_bytes));
    let read = reader
        .await
        .map_err(|e| anyhow::anyhow!("the CSV reader failed: {e}"))?;
    if totals.rows > 0 && written.is_ok() {
        // read-your-writes for what was applied, complete or not
        wait_projected(pool).await?;
    }
    let result = match (written, read) {
        (Err(e), _) if totals.rows > 0 => Err(totals.stopped(e)),
        (Err(e), _) => Err(e),
        // a bad header: nothing was read, so nothing was applied
        (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(outcome)) => match outcome.stop {
            Some(stop) => Err(totals.stopped(stop_error(stop))),
            None => Ok(()),
        },
    };
    tracing::info!(
        total_ms = started.elapsed().as_millis() as u64,
        rows = totals.rows,
        batches = totals.batches,
        imported = totals.report.imported,
        matched = totals.report.matched,
        rejected = totals.report.rejected_count,
        stopped = result.is_err(),
        "contacts imported"
    );
    result.map(|()| totals.report)
}
