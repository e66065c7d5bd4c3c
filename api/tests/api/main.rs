//! End-to-end tests of Herald over HTTP: a real server on port 0, a fresh migrated database per
//! test, and the WuzAPI simulator (a real HTTP server) as the gateway.

mod accounts;
mod campaigns;
mod control;
mod crash;
mod dispatch;
mod events;
mod health;
mod helpers;
mod recurrence;
mod schedule;
mod sessions;
mod templates;
mod webhooks;
