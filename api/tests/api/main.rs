//! End-to-end tests of Herald over HTTP: a real server on port 0, a fresh migrated database per
//! test, and the WuzAPI simulator (a real HTTP server) as the gateway.

mod accounts;
mod audiences;
mod admin;
mod campaigns;
mod contacts;
mod contacts_import;
mod chats;
mod control;
mod crash;
mod dispatch;
mod health;
mod helpers;
mod meta;
mod images;
mod messages;
mod pacing;
mod quotas;
mod recurrence;
mod schedule;
mod session_lifecycle;
mod sessions;
mod templates;
mod webhooks;
