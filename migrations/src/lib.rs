//! Herald's SQL migrations, embedded in the binary, and a per-test database helper.
//!
//! Migrations are never edited once applied; a change is a new file.

/// Every migration in `migrations/sql/`, applied by `herald serve` and `herald migrate`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./sql");

pub mod testing;
