//! Opt-outs (docs/safe-sending.md): a phone that says "STOP" gets no more campaigns from that
//! tenant, until it says "START".
//!
//! Layout
//! - [`settings`]: a tenant's stop and start keywords and its confirmation text
//!   (`opt_out_settings`; no row: the defaults of `herald_domain::opt_out`).
//! - [`record`]: opting phones out and in: each change is the contact's event
//!   (`ContactOptedOut` / `ContactOptedIn`, creating the contact when there is none) and the
//!   `opt_outs` row the dispatcher's claim reads, written in the caller's transaction, for a
//!   whole batch at once (the inbox's keywords, an import) or for one phone (the API).
//!
//! The matcher itself is pure and lives in the domain (`herald_domain::opt_out`); the inbox finds
//! the keywords in incoming messages, the dispatcher skips opted-out recipients at claim time.

pub mod record;
pub mod settings;

pub use record::{opt_in, opt_out, Change, Error};
