//! Campaigns, from the moment one is accepted: writing it with its recipients and queue rows,
//! its audience of tagged contacts, pausing, resuming and cancelling it, and what happens to it
//! when the ticker starts it. None of it needs a request: herald-api translates HTTP into these
//! calls, and herald-scheduler's ticker reaches [`starts`] through its port (docs/decisions/0067).
//!
//! # Layout
//! - [`intake`]: accepting a campaign a user asks for: recipients normalised and de-duplicated,
//!   template, session and audience checked, then written in one transaction.
//! - [`write`]: one campaign, its recipients and its `dispatch_queue` rows in the caller's
//!   transaction (the batch path of docs/decisions/0052); [`write::message_from_template`] is what
//!   a template sends.
//! - [`audience`]: a campaign's tagged contacts, resolved now or when it starts.
//! - [`control`]: pause, resume and cancel, each one transaction with its queue changes (the
//!   queue's cancel sweep is herald-scheduler's `sweep`).
//! - [`starts`]: the ticker's [`herald_scheduler::ticker::CampaignStarts`], a deferred audience
//!   resolved and a recurring campaign's run written.
//! - here: [`Error`], what these can fail with.
//!
//! Dependencies point down: herald-api → herald-campaigns → herald-scheduler (the queue, pacing,
//! quotas), herald-media (a template's stored image) → herald-domain.
pub mod audience;
pub mod control;
pub mod intake;
pub mod starts;
pub mod write;

pub use write::{message_from_template, write, NewCampaign, Recipient};

/// What writing or controlling a campaign can fail with.
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
    /// The queue's cancel sweep failed.
    #[error(transparent)]
    Queue(#[from] herald_scheduler::Error),
}
