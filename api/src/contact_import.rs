//! `POST /api/v1/contacts/import`'s glue (docs/contacts.md, decision 0025): the answer's shapes,
//! and salvo's request body adapted to the stream of chunks the import reads. The import itself
//! runs without a request (`herald_contacts::import`).

use futures::{Stream, StreamExt};
use herald_contacts::csv_file::Stop;
use herald_contacts::import::{self, Report};
use salvo::http::{Body, ReqBody};
use salvo::oapi::ToSchema;
use serde::Serialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

pub use herald_contacts::import::Limits;

/// A body chunk, as the server read it (no copy on the way to the reader).
type Chunk = <ReqBody as Body>::Data;

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

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct RejectedRow {
    /// The row's line number in the file (where it starts); the header is row 1.
    pub row: u64,
    /// The row's phone cell (or the row, when it has none).
    pub input: String,
    pub reason: String,
}

impl From<Report> for ImportView {
    fn from(r: Report) -> Self {
        ImportView {
            imported: r.imported,
            matched: r.matched,
            rejected: r
                .rejected
                .into_iter()
                .map(|row| RejectedRow {
                    row: row.row,
                    input: row.input,
                    reason: row.reason,
                })
                .collect(),
            rejected_count: r.rejected_count,
            rejected_omitted: r.rejected_omitted,
        }
    }
}

/// The request body as the import reads it: its data chunks, trailers skipped. A client that
/// stops sending is cut off by the server's body idle timeout (`HERALD_BODY_IDLE_TIMEOUT_SECS`),
/// which ends the stream with [`Stop::BodyStalled`] (the answer is 408); any other failure with
/// [`Stop::BodyFailed`].
fn chunks(body: ReqBody) -> impl Stream<Item = Result<Chunk, Stop>> {
    body.filter_map(|frame| async move {
        match frame {
            Err(e) if crate::error::is_body_timeout(&e) => Some(Err(Stop::BodyStalled)),
            Err(e) => Some(Err(Stop::BodyFailed(e.to_string()))),
            Ok(frame) => frame.into_data().ok().map(Ok),
        }
    })
}

/// Imports `body` (a CSV) into `tenant_id`'s contacts.
pub async fn import(
    state: &AppState,
    tenant_id: Uuid,
    region: String,
    body: ReqBody,
    limits: Limits,
) -> Result<ImportView, ApiError> {
    Ok(
        import::import(&state.pool, tenant_id, region, chunks(body), limits)
            .await?
            .into(),
    )
}
