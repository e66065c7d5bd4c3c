//! End-to-end tests of Herald over HTTP: a real server on port 0, a fresh migrated database per
//! test, and the WuzAPI simulator (a real HTTP server) as the gateway.

mod account_protection;
mod accounts;
mod admin;
mod audiences;
mod bad_input;
mod campaigns;
mod chats;
mod contacts;
mod contacts_import;
mod control;
mod crash;
mod dashboard;
mod dispatch;
mod events;
mod fake_graph;
mod health;
mod helpers;
mod images;
mod live_progress_receipts_and_chats_story;
mod media_lifetime;
mod messages;
mod meta;
mod number_ownership;
mod openapi;
mod pacing;
mod quotas;
mod recurrence;
mod schedule;
mod session_lifecycle;
mod sessions;
mod templates;
mod vip_image_campaign_story;
mod webhooks;
