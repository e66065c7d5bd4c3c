//! `herald-bench-outbound`: outbound delivery keeps up with dispatch (target in docs/design.md,
//! issue 17 item 6: "with one endpoint subscribed to `delivery.status`, a 20,000-recipient
//! campaign's events are all delivered within 5 s of the last send").
//!
//! One process, a fresh database `herald_bench_<random>` (dropped at the end): the WuzAPI
//! simulator (no latency, no receipts), a small local HTTP/1.1 receiver (kept-alive connections,
//! answers 200 at once, keeps every `webhook-id` it got), and Herald (`Application::build`, role
//! `all`, private webhook URLs allowed for the local receiver, pacing off). It registers one
//! endpoint for `delivery.status`, starts a campaign to `--recipients` recipients, and waits until
//! the receiver has every recipient's `sending` and `sent` (2 per recipient). Reported:
//! - the last send: the newest `DeliverySent` event's `recorded_at` (its transaction's start);
//! - when the receiver got the last of those messages, and the lag between the two (target ≤ 5 s);
//! - messages received, distinct ids (must be 2 × recipients) and duplicates (allowed: at least
//!   once, but counted).
//!
//! Exit status 0 when every message arrived (and, with `--enforce-target`, within 5 s), 1 when
//! not, 2 when the run itself failed.
//!
//!     cargo run --release -p herald-bench --bin herald-bench-outbound -- --recipients 20000

#[path = "bench/common.rs"]
mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;
use herald_api::{Application, Role, Settings};
use herald_simulator::{self as simulator, SimulatorConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "herald-bench-outbound",
    about = "Outbound webhooks keep up with a campaign's dispatch"
)]
struct Args {
    /// Recipients of the campaign.
    #[arg(long, default_value_t = 20_000)]
    recipients: usize,
    /// Admin connection; the benchmark creates (and drops) its own database there.
    #[arg(
        long,
        env = "HERALD_BENCH_DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Exit 1 when the last message arrives more than 5 s after the last send.
    #[arg(long)]
    enforce_target: bool,
}

const TARGET_SECS: f64 = 5.0;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match common::start("herald-bench-outbound") {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        match run(&args).await {
            Ok(problems) if problems.is_empty() => std::process::ExitCode::SUCCESS,
            Ok(problems) => {
                eprintln!("\nherald-bench-outbound: FAILED:");
                for p in problems {
                    eprintln!("  - {p}");
                }
                std::process::ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("herald-bench-outbound: error: {e:#}");
                std::process::ExitCode::from(2)
            }
        }
    })
}

async fn run(args: &Args) -> anyhow::Result<Vec<String>> {
    let (name, db_url) = common::create_database(&args.database_url).await?;
    let result = run_in(args, &db_url).await;
    common::drop_database(&args.database_url, &name).await?;
    result
}

/// What the receiver got.
#[derive(Default)]
struct Received {
    requests: AtomicUsize,
    ids: Mutex<HashSet<String>>,
    /// When the newest distinct id arrived.
    last_new: Mutex<Option<DateTime<Utc>>>,
}

/// An endpoint on 127.0.0.1 that answers every POST 200 at once, over kept-alive connections.
async fn receiver(got: Arc<Received>) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let got = got.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut length, mut id) = (0usize, None);
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = l.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            } else if name.eq_ignore_ascii_case("webhook-id") {
                                id = Some(value.trim().to_string());
                            }
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    got.requests.fetch_add(1, Ordering::Relaxed);
                    if let Some(id) = id {
                        let new = got.ids.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
                        if new {
                            *got.last_new.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(Utc::now());
                        }
                    }
                    if write
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok((url, task))
}

async fn run_in(args: &Args, db_url: &str) -> anyhow::Result<Vec<String>> {
    let sim = simulator::spawn("127.0.0.1:0", SimulatorConfig::default()).await?;
    let got = Arc::new(Received::default());
    let (hook_url, server) = receiver(got.clone()).await?;
    let mut settings = Settings::for_tests(db_url, &sim.base_url());
    settings.outbound.allow_private = true;
    settings.outbound.poll = Duration::from_millis(500);
    let app = Application::build(settings, Role::All).await?;
    let base = format!(
        "http://{}",
        app.addr()
            .ok_or_else(|| anyhow::anyhow!("Herald serves no HTTP"))?
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let post = |path: &str, token: Option<&str>, body: Value| {
        let mut req = http.post(format!("{base}{path}")).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let path = path.to_string();
        async move {
            let res = req.send().await?;
            let status = res.status();
            let value: Value = res.json().await?;
            anyhow::ensure!(status.is_success(), "{path} answered {status}: {value}");
            Ok::<Value, anyhow::Error>(value)
        }
    };

    let registered = post(
        "/api/v1/auth/register",
        None,
        json!({"email": "bench@example.com", "password": "benchmark-password"}),
    )
    .await?;
    let token = registered["access_token"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no token"))?
        .to_string();
    let session = post(
        "/api/v1/sessions",
        Some(&token),
        json!({"name": "bench number", "gateway_token": "bench-token",
               "pacing": {"min_interval_ms": 0, "max_interval_ms": 0}}),
    )
    .await?;
    let template = post(
        "/api/v1/templates",
        Some(&token),
        json!({"name": "bench", "type": "text", "body": "Hello {{ name }}, this week only"}),
    )
    .await?;
    post(
        "/api/v1/webhook-endpoints",
        Some(&token),
        json!({"url": hook_url, "events": ["delivery.status"]}),
    )
    .await?;

    let recipients: Vec<Value> = (0..args.recipients)
        .map(|i| json!({"phone": format!("62812{:08}", i), "vars": {"name": format!("Customer {i}")}}))
        .collect();
    let expected = 2 * args.recipients;
    let started = Instant::now();
    let campaign = post(
        "/api/v1/campaigns",
        Some(&token),
        json!({"name": "bench outbound", "template_id": template["id"],
               "session_id": session["id"], "recipients": recipients}),
    )
    .await?;
    let id: uuid::Uuid = campaign["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no campaign id"))?
        .parse()?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut problems = Vec::new();
    loop {
        let distinct = got.ids.lock().unwrap_or_else(|p| p.into_inner()).len();
        if distinct >= expected {
            break;
        }
        if Instant::now() >= deadline {
            problems.push(format!(
                "timed out: {distinct} of {expected} messages arrived in {} s",
                args.timeout_secs
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all_secs = started.elapsed().as_secs_f64();

    let pool = app.pool().clone();
    let (last_send,): (Option<DateTime<Utc>>,) = sqlx::query_as(
        "SELECT max(recorded_at) FROM events
          WHERE aggregate_type = 'Delivery' AND event_type = 'DeliverySent'
            AND aggregate_id LIKE $1",
    )
    .bind(format!("{id}:%"))
    .fetch_one(&pool)
    .await?;
    let (first_send,): (Option<DateTime<Utc>>,) = sqlx::query_as(
        "SELECT min(recorded_at) FROM events
          WHERE aggregate_type = 'Delivery' AND event_type = 'DeliveryDispatched'
            AND aggregate_id LIKE $1",
    )
    .bind(format!("{id}:%"))
    .fetch_one(&pool)
    .await?;
    let last_arrival = *got.last_new.lock().unwrap_or_else(|p| p.into_inner());
    let requests = got.requests.load(Ordering::Relaxed);
    let distinct = got.ids.lock().unwrap_or_else(|p| p.into_inner()).len();

    println!(
        "herald-bench-outbound: {} recipients, one endpoint on delivery.status ({expected} messages expected)",
        args.recipients
    );
    println!("  every message arrived {all_secs:.2} s after the campaign was POSTed");
    if let (Some(first), Some(last)) = (first_send, last_send) {
        let secs = (last - first).num_milliseconds() as f64 / 1000.0;
        println!(
            "  dispatch: first DeliveryDispatched → last DeliverySent {secs:.2} s ({:.0}/s)",
            args.recipients as f64 / secs.max(0.001)
        );
    }
    println!(
        "  messages received {requests}, distinct webhook-ids {distinct}, duplicates {}",
        requests.saturating_sub(distinct)
    );
    match (last_send, last_arrival) {
        (Some(send), Some(arrival)) => {
            let lag = (arrival - send).num_milliseconds() as f64 / 1000.0;
            let verdict = if lag <= TARGET_SECS { "met" } else { "MISSED" };
            println!("  last send → last message delivered: {lag:.2} s (target ≤ {TARGET_SECS} s: {verdict})");
            if args.enforce_target && lag > TARGET_SECS {
                problems.push(format!(
                    "the last message arrived {lag:.2} s after the last send"
                ));
            }
        }
        _ => problems.push("no send or no message to compare".into()),
    }
    if distinct != expected {
        problems.push(format!("{distinct} distinct messages, expected {expected}"));
    }

    app.stop().await;
    sim.stop().await;
    server.abort();
    Ok(problems)
}
