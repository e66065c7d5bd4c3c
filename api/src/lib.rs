//! Herald's HTTP API and the wiring of the whole process.
//!
//! Layout
//! - [`app`]: [`app::Application`] builds Herald for a role (api, worker, all).
//! - [`config`]: settings from the environment; secrets never print.
//! - [`routes`]: salvo endpoints, each in the OpenAPI document (`/api/v1/openapi.json`, `/docs`).
//! - [`intake`]: accepting a campaign in one batch transaction.
//! - [`plans`]: plan limits, expired subscriptions, API calls per window, usage.
//! - [`inbox`]: the webhook inbox processor (stored gateway posts → receipts on deliveries).
//! - [`auth`], [`error`], [`state`]: tokens and keys, the error envelope, shared state.
pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod inbox;
pub mod intake;
pub mod plans;
pub mod routes;
pub mod state;

pub use app::{Application, Role};
pub use config::Settings;
