//! `POST /api/v1/contacts/import`, streamed (docs/contacts.md, decision 0025).
//!
//! Three parts run at once, joined by small bounded channels, so memory is bounded by a batch
//! whatever the file's size:
//! - the pump (this task) reads the request body chunk by chunk and counts its bytes;
//! - the reader ([`contact_csv::read_batches`], on a blocking thread: phone parsing is CPU work)
//!   parses rows as they arrive and hands them out in batches of at most 2,000 rows;
//! - the writer (this task) applies each batch in its own transaction (`contact_book`), and
//!   counts what happened.
//!
//! Batches are applied in file order, so when the import stops part-way (a limit, an unreadable
//! row, the body failing) the rows applied are exactly those before the row where it stopped;
//! the error's `details.applied` says through which line. Applying a row twice changes nothing
//! (merges by phone are idempotent), so re-running the same file is safe.

use std::io;
use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;
use salvo::http::{Body, ReqBody};
use salvo::oapi::ToSchema;
use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::contact_book::{self, Applied};
use crate::contact_csv::{self, Batch, ChunkReader, RejectedRow, Stop};
use crate::error::ApiError;
use crate::state::AppState;
use herald_projections::contacts as read;

/// A body chunk, as the server read it (no copy on the way to the reader).
type Chunk = <ReqBody as Body>::Data;

/// Rejected rows listed in the answer (all are counted).
pub const MAX_REJECTED_LISTED: usize = 1_000;
/// Body chunks waiting for the reader.
const CHUNKS_IN_FLIGHT: usize = 16;

/// An import's limits (`HERALD_IMPORT_MAX_ROWS`, `HERALD_IMPORT_MAX_BYTES`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_rows: usize,
    pub max_bytes: u64,
}

#[derive(Serialize, ToSchema, Debug, Default)]
pub struct ImportView {
    /// Contacts the import created.
    pub imported: usize,
    /// Rows that merged into a contact that already existed (or into an earlier row of the file).
    pub matched: usize,
    /// Rows refused, with their line number (the header is row 1); the first 1,000 are listed.
    pub rejected: Vec<RejectedRow>,
    /// All rows refused.
    pub rejected_count: usize,
    /// Rows refused but not listed (`rejected_count` minus the listed ones).
    pub rejected_omitted: usize,
}

/// What the writer has done so far.
#[derive(Default)]
struct Totals {
    view: ImportView,
    /// Data rows applied (in committed batches).
    rows: usize,
    /// Line where the last applied row starts (1: none yet).
    through_line: u64,
    batches: usize,
}

impl Totals {
    fn reject(&mut self, row: RejectedRow) {
        self.view.rejected_count += 1;
        if self.view.rejected.len() < MAX_REJECTED_LISTED {
            self.view.rejected.push(row);
        } else {
            self.view.rejected_omitted += 1;
        }
    }

    /// `details.applied` of an import that stopped part-way.
    fn applied(&self) -> serde_json::Value {
        json!({
            "rows": self.rows,
            "through_line": self.through_line,
            "imported": self.view.imported,
            "matched": self.view.matched,
            "rejected_count": self.view.rejected_count,
        })
    }

    fn stopped(&self, cause: ApiError) -> ApiError {
        let message = if self.rows == 0 {
            format!("{}; nothing was imported", cause.body().error.message)
        } else {
            format!(
                "{}; the {} rows through line {} were imported and nothing after (re-running the \
                 file is safe: rows already applied change nothing)",
                cause.body().error.message,
                self.rows,
                self.through_line
            )
        };
        ApiError::PartlyApplied {
            cause: Box::new(cause),
            message,
            applied: self.applied(),
        }
    }
}

/// One batch in one transaction.
async fn apply(state: &AppState, batch: Batch, totals: &mut Totals) -> Result<(), ApiError> {
    let (upserts, pending): (Vec<_>, Vec<_>) = batch
        .contacts
        .into_iter()
        .map(|p| (p.upsert, (p.line, p.input, p.rows)))
        .unzip();
    let applied = contact_book::upsert_each(&state.pool, &upserts).await?;
    let mut rejected = batch.rejected;
    for (outcome, (line, input, rows)) in applied.into_iter().zip(pending) {
        match outcome {
            Applied::Created => {
                totals.view.imported += 1;
                totals.view.matched += rows - 1;
            }
            Applied::Existed { .. } => totals.view.matched += rows,
            Applied::Refused(reason) => {
                let reason = if rows > 1 {
                    format!("{reason} (with {} later rows for this phone)", rows - 1)
                } else {
                    reason
                };
                // the phone's later rows share the reason; the first one is listed
                totals.view.rejected_count += rows - 1;
                totals.view.rejected_omitted += rows - 1;
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

/// Reads the body into the chunk channel until it ends, passes `max_bytes`, fails, or the reader
/// stops listening. A client that stops sending is cut off by the server's body idle timeout
/// (`HERALD_BODY_IDLE_TIMEOUT_SECS`), which fails the read: what came before is applied, as for a
/// dropped upload, and the answer is 408.
async fn pump(body: ReqBody, chunks: mpsc::Sender<io::Result<Chunk>>, max_bytes: u64) {
    let mut body = std::pin::pin!(body);
    let mut seen = 0u64;
    loop {
        let frame = tokio::select! {
            frame = body.next() => frame,
            _ = chunks.closed() => return,
        };
        let item = match frame {
            None => return,
            Some(Err(e)) if crate::error::is_body_timeout(&e) => {
                Err(io::Error::other(Stop::BodyStalled))
            }
            Some(Err(e)) => Err(io::Error::other(Stop::BodyFailed(e.to_string()))),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    seen += data.len() as u64;
                    if seen > max_bytes {
                        Err(io::Error::other(Stop::TooManyBytes(max_bytes)))
                    } else {
                        Ok(data)
                    }
                }
                Err(_) => continue, // trailers
            },
        };
        let last = item.is_err();
        if chunks.send(item).await.is_err() || last {
            return;
        }
    }
}

fn stop_error(stop: Stop) -> ApiError {
    match stop {
        Stop::TooManyRows(max) => ApiError::PayloadTooLarge(format!(
            "an import takes at most {max} rows; split the file"
        )),
        Stop::TooManyBytes(max) => {
            ApiError::PayloadTooLarge(format!("an import is at most {max} bytes; split the file"))
        }
        Stop::BodyFailed(m) => {
            ApiError::bad_request("invalid_body", format!("cannot read the body: {m}"))
        }
        Stop::BodyStalled => ApiError::BodyTimeout,
        other @ (Stop::RowTooLong(_) | Stop::Unreadable(..)) => {
            ApiError::validation("csv", other.to_string())
        }
    }
}

/// Imports `body` (a CSV) into `tenant_id`'s contacts.
pub async fn import(
    state: &AppState,
    tenant_id: Uuid,
    region: String,
    body: ReqBody,
    limits: Limits,
) -> Result<ImportView, ApiError> {
    let started = Instant::now();
    let at = Utc::now();
    let (chunk_tx, chunk_rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    // one batch waiting while one is written: reading runs ahead of writing by one batch at most
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(1);
    let max_rows = limits.max_rows;
    let reader = tokio::task::spawn_blocking(move || {
        contact_csv::read_batches(
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
            if let Err(e) = apply(state, batch, totals_ref).await {
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
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("the CSV reader failed: {e}")))?;
    if totals.rows > 0 && written.is_ok() {
        // read-your-writes for what was applied, complete or not
        state.wait_projected_everything(read::NAME).await?;
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
        imported = totals.view.imported,
        matched = totals.view.matched,
        rejected = totals.view.rejected_count,
        stopped = result.is_err(),
        "contacts imported"
    );
    result.map(|()| totals.view)
}
