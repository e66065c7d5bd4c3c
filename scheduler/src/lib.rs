//! Herald's sending side: dispatch workers that move due recipients through the gateway.
//!
//! Layout
//! - [`audience`]: a campaign's tagged contacts, resolved when it starts.
//! - [`campaigns`]: writing a campaign, its recipients and its queue rows in one transaction.
//! - [`dispatch`]: the write-ahead dispatch queue, leases, outcomes, campaign completion.
//! - [`control`]: pause, resume and cancel, each one transaction with its queue changes.
//! - [`ticker`]: starts scheduled campaigns when their time comes, once across instances.
//! - [`media`]: images for image templates: SSRF-safe fetching, decoding with limits, JPEG
//!   re-encoding, the `media` table and the dispatcher's per-process image cache.
//! - [`quota`]: plans and the per-window message quota; [`pacing`]: the pace of each linked
//!   number; [`single`]: one message sent through the campaign path.
//! - [`frequency_cap`]: a tenant's cap on campaign messages per contact, enforced at claim time.
pub mod audience;
pub mod campaigns;
pub mod control;
pub mod dispatch;
pub mod frequency_cap;
pub mod media;
pub mod pacing;
pub mod quota;
pub mod single;
pub mod ticker;

pub use dispatch::{DispatchConfig, Dispatcher};

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
}
