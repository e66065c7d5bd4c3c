//! Accounts as Herald keeps them, without a request (docs/accounts.md, docs/decisions/0070).
//!
//! - [`plans`]: what a tenant's plan allows: an expired subscription cannot send, API calls per
//!   window, the usage of the current window.
//! - [`throttle`]: attempt counters for logins, registrations and number links.
//! - [`ownership`]: a number belongs to one tenant (WuzAPI token claims, Cloud API phone number
//!   ids proven with Meta).
//!
//! Each module returns its own error type; the HTTP crate turns them into answers.
pub mod ownership;
pub mod plans;
pub mod throttle;
