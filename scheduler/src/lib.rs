//! Herald's sending side: dispatch workers that move due recipients through the gateway.
//!
//! Layout
//! - [`dispatch`]: the write-ahead dispatch queue, leases, outcomes, campaign completion.
pub mod dispatch;

pub use dispatch::{DispatchConfig, Dispatcher};
