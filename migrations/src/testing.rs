//! Fresh, migrated databases for tests: every test gets its own, so tests never share state.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Executor, PgPool};
use std::str::FromStr;

/// The admin URL tests use to create their databases.
pub fn admin_url() -> String {
    std::env::var("HERALD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_string())
}

/// A new database named `herald_test_<uuid>`, migrated; returns its URL.
pub async fn fresh_database_url() -> anyhow::Result<String> {
    let admin = PgConnectOptions::from_str(&admin_url())?;
    let name = format!("herald_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = admin.connect().await?;
    conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await?;
    let options = admin.database(&name);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.clone())
        .await?;
    super::MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(with_database(&admin_url(), &name))
}

/// `url` with its database name replaced by `name` (query parameters kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let prefix = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

/// A pool on a new, migrated database.
pub async fn fresh_database() -> anyhow::Result<PgPool> {
    let url = fresh_database_url().await?;
    Ok(PgPoolOptions::new()
        .max_connections(10)
        .connect(&url)
        .await?)
}
