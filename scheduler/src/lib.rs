//! Herald's sending side: the dispatch queue and the workers that move due recipients through the
//! gateway, at each number's pace and within each tenant's quota, and the ticker that starts what
//! is scheduled. What puts work on the queue lives above it: campaigns in herald-campaigns, single
//! sends in herald-messages (docs/decisions/0067).
//!
//! Layout
//! - [`dispatch`]: the write-ahead dispatch queue, leases, outcomes, campaign completion.
//! - [`sweep`]: the cancel sweep, a cancelled campaign's ready rows skipped in chunks.
//! - [`single_content`]: what a single send's queue row carries.
//! - [`ticker`]: starts scheduled campaigns and recurring runs when their time comes, once across
//!   instances, through the [`ticker::CampaignStarts`] port herald-campaigns implements.
//! - [`quota`]: plans and the per-window message quota; [`pacing`]: the pace of each linked
//!   number.
pub mod dispatch;
pub mod pacing;
pub mod quota;
pub mod single_content;
pub mod sweep;
pub mod ticker;

pub use dispatch::{DispatchConfig, Dispatcher};

/// What sweeping the queue can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] herald_domain::store::StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}
