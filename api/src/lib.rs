//! Herald's HTTP API and the wiring of the whole process.
//!
//! Layout
//! - [`app`]: [`app::Application`] builds Herald for a role (api, worker, all).
//! - [`config`]: settings from the environment; secrets never print.
//! - [`routes`]: salvo endpoints, each in the OpenAPI document (`/api/v1/openapi.json`, `/docs`).
//! - [`intake`]: a campaign request's shapes, translated into `herald-campaigns`' intake (the
//!   campaign, single-send and media flows run without a request in `herald-campaigns`,
//!   `herald-messages` and `herald-media`).
//! - [`contact_import`]: the import endpoint's shapes and its body adapted to a chunk stream; the
//!   contact book itself (bulk writes, CSV reading, imports) is the `herald-contacts` crate.
//! - The webhook inbox (its writer, processor and the sessions' webhook credentials) runs
//!   without a request: the `herald-inbox` crate; this crate only starts it and hands it what
//!   the webhook endpoints receive.
//! - [`plans`]: the plan shapes `GET /api/v1/me` shows; the rules (expired subscriptions, API
//!   calls per window, usage) are `herald-accounts`, with the attempt counters and number
//!   ownership.
//! - [`pools`]: image fetching, password hashing, event streams and imports shared fairly.
//! - [`auth`], [`error`], [`state`]: who is calling (access tokens, API keys), the error
//!   envelope, shared state; [`tokens`]: signing and checking access tokens.
//! - [`throttle`]: the client address a request's attempts count by.
//! - [`secret_strength`]: the production check of `HERALD_JWT_SECRET`.
//! - [`url_text`]: path and query text holding NUL refused before any handler.
pub mod app;
pub mod auth;
pub mod config;
pub mod contact_import;
pub mod error;
pub mod intake;
pub mod plans;
pub mod pools;
pub mod routes;
pub mod secret_strength;
pub mod state;
pub mod throttle;
pub mod tokens;
pub mod url_text;

pub use app::{Application, Role};
pub use config::Settings;
