//! Herald's domain: value types, aggregates, commands and events, and the event-store layer.
//! It knows nothing of HTTP or of read models.
//!
//! Layout
//! - [`phone`]: E.164 phone numbers, normalised with the tenant's default region.
//! - [`template_body`]: message bodies with `{{ variables }}` (minijinja), written in the bounded
//!   language of [`template_language`].
//! - [`template`], [`session`], [`campaign`], [`delivery`], [`contact`]: the aggregates, each small
//!   (docs/decisions/0051): a campaign never holds its recipient list; each recipient is a `Delivery`.
//! - [`conversation`]: one chat of a linked number (session + chat JID), built from webhooks.
//! - [`text`]: the one character Postgres cannot store (NUL): found, or removed.
//! - [`store`]: cqrs-es on Herald's `events` table, and the batch paths (multi-row inserts).
//! - [`opt_out`]: where an opt-out came from, a tenant's keywords and the whole-message matcher.
//! - [`failure`]: whether a failure is passing (retry) or the data's own (park).
pub mod campaign;
pub mod contact;
pub mod conversation;
pub mod delivery;
mod error;
pub mod failure;
pub mod fair_pool;
pub mod opt_out;
pub mod phone;
pub mod schedule;
pub mod session;
pub mod store;
pub mod template;
pub mod template_body;
pub mod template_error;
pub mod template_language;
pub mod text;

pub use error::DomainError;
