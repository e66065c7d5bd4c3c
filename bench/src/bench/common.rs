//! What Herald's benchmark binaries (`herald-bench`, `herald-bench-images`,
//! `herald-bench-outbound`) share: logging, the runtime, and a throwaway database per run.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use uuid::Uuid;

/// Herald's logs on stderr (`RUST_LOG`, default warnings only), and a multi-threaded runtime;
/// `Err` is the exit status when the runtime cannot start (2: the benchmark could not run).
pub fn start(program: &str) -> Result<tokio::runtime::Runtime, std::process::ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sqlx::query=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("{program}: cannot start the runtime: {e}");
            std::process::ExitCode::from(2)
        })
}

/// A fresh database `herald_bench_<random>` on the admin server; returns its name and URL.
pub async fn create_database(admin_url: &str) -> anyhow::Result<(String, String)> {
    let admin = PgConnectOptions::from_str(admin_url)?;
    let mut conn = admin.connect().await?;
    let name = format!(
        "herald_bench_{}",
        &Uuid::new_v4().simple().to_string()[..12]
    );
    conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await?;
    conn.close().await?;
    Ok((
        name.clone(),
        herald_migrations::testing::with_database(admin_url, &name),
    ))
}

/// Drops a database [`create_database`] made, whoever is still connected to it.
pub async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = PgConnectOptions::from_str(admin_url)?.connect().await?;
    conn.execute(format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str())
        .await?;
    conn.close().await?;
    Ok(())
}
