//! Herald's sending side: dispatch workers that move due recipients through the gateway.
//!
//! Layout
//! - [`campaigns`]: writing a campaign, its recipients and its queue rows in one transaction.
//! - [`dispatch`]: the write-ahead dispatch queue, leases, outcomes, campaign completion.
//! - [`control`]: pause, resume and cancel, each one transaction with its queue changes.
//! - [`ticker`]: starts scheduled campaigns when their time comes, once across instances.
pub mod campaigns;
pub mod control;
pub mod dispatch;
pub mod ticker;

pub use dispatch::{DispatchConfig, Dispatcher};
