//! Single sends (`POST /api/v1/messages`): one message to one recipient, accepted with its quota
//! and put on herald-scheduler's dispatch queue like a campaign's recipient, and written into the
//! chat with that recipient. It runs without a request: herald-api checks the request, prepares
//! an image through herald-media, and calls [`single::accept_retrying`] (docs/decisions/0067).
//!
//! # Layout
//! - [`single`]: accepting one message: its `Delivery`, its queue row and quota, its chat line;
//!   [`single::accept_retrying`] runs it in a transaction of its own, again when a chat writer raced it.
//! - here: [`Error`], what accepting can fail with.
//!
//! The queue row's content type, [`SingleContent`], is the queue's format and lives in
//! herald-scheduler (`single_content`); it is re-exported here for callers.
pub mod single;

pub use herald_scheduler::single_content::SingleContent;

/// What accepting a single send can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is not allowed (not found, invalid, wrong state): the caller's to fix.
    #[error(transparent)]
    Domain(#[from] herald_domain::DomainError),
    #[error(transparent)]
    Store(#[from] herald_domain::store::StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}
