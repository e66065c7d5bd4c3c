//! Herald's sending side: dispatch workers that move due recipients through the gateway.
//!
//! Layout
//! - [`dispatch`]: the write-ahead dispatch queue, leases, outcomes, campaign completion.
//! - [`control`]: pause, resume and cancel, each one transaction with its queue changes.
pub mod control;
pub mod dispatch;

pub use dispatch::{DispatchConfig, Dispatcher};
