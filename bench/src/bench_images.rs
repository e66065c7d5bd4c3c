//! `herald-bench-images`: shows that an image campaign fetches and processes its image once
//! (target in docs/design.md: "an image campaign to 10,000 recipients: image fetched and processed once").
//!
//! One process, a fresh database `herald_bench_<random>` (dropped at the end): the WuzAPI
//! simulator, a tiny local HTTP server holding one 4000 × 3000 PNG and counting requests, and
//! Herald (`Application::build`, private media URLs allowed for the local server). It creates an
//! image template from the server's URL, starts a campaign to `--recipients` recipients with
//! personal captions, waits until every recipient is sent, and reports:
//! - requests the image server got (must be 1),
//! - `herald_media_prepared_total` (images processed; must be 1),
//! - `herald_media_loads_total` (dispatcher reads of the stored JPEG; must be 1: one process),
//! - sends the simulator accepted with that image's hash, and duplicates (must be N and 0).
//!
//! Exit status 0 when all hold, 1 when one does not, 2 when the run itself failed.
//!
//!     cargo run --release -p herald-bench --bin herald-bench-images -- --recipients 10000

#[path = "bench/common.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use herald_api::{Application, Role, Settings};
use herald_simulator::{self as simulator, SimulatorConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "herald-bench-images",
    about = "An image campaign: the image is fetched and processed once"
)]
struct Args {
    /// Recipients of the image campaign.
    #[arg(long, default_value_t = 10_000)]
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
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match common::start("herald-bench-images") {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        match run(&args).await {
            Ok(problems) if problems.is_empty() => std::process::ExitCode::SUCCESS,
            Ok(problems) => {
                eprintln!("\nherald-bench-images: FAILED:");
                for p in problems {
                    eprintln!("  - {p}");
                }
                std::process::ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("herald-bench-images: error: {e:#}");
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

/// Serves `png` at `/promo.png` on 127.0.0.1, counting requests.
async fn image_server(
    png: Arc<Vec<u8>>,
) -> anyhow::Result<(String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/promo.png", listener.local_addr()?);
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let png = png.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16_384 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    png.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.write_all(&png).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok((url, hits, task))
}

async fn run_in(args: &Args, db_url: &str) -> anyhow::Result<Vec<String>> {
    let sim = simulator::spawn("127.0.0.1:0", SimulatorConfig::default()).await?;
    let png = Arc::new(herald_media::testing::png_bomb(4_000, 3_000));
    let (image_url, hits, server) = image_server(png.clone()).await?;
    let settings = Settings::for_tests(db_url, &sim.base_url());
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
        // pacing off, as in herald-bench's dispatch: the number is Herald's, not the pacing's
        json!({"name": "bench number", "gateway_token": "bench-token",
               "pacing": {"min_interval_ms": 0, "max_interval_ms": 0}}),
    )
    .await?;
    let started = Instant::now();
    let template = post(
        "/api/v1/templates",
        Some(&token),
        json!({"name": "bench image", "type": "image", "image_url": image_url,
               "caption": "Hello {{ name }}, this week only"}),
    )
    .await?;
    let template_secs = started.elapsed().as_secs_f64();
    let sha = template["image"]["sha256"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("template without image: {template}"))?
        .to_string();

    let recipients: Vec<Value> = (0..args.recipients)
        .map(|i| json!({"phone": format!("62812{:08}", i), "vars": {"name": format!("Customer {i}")}}))
        .collect();
    let started = Instant::now();
    let campaign = post(
        "/api/v1/campaigns",
        Some(&token),
        json!({"name": "bench image campaign", "template_id": template["id"],
               "session_id": session["id"], "recipients": recipients}),
    )
    .await?;
    let id = campaign["id"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no campaign id"))?
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let done = loop {
        let c: Value = http
            .get(format!("{base}/api/v1/campaigns/{id}"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        if c["status"] == "completed" {
            break c;
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out: {c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let campaign_secs = started.elapsed().as_secs_f64();

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let listed: Value = http
        .get(format!(
            "{}/sim/messages?limit={}",
            sim.base_url(),
            args.recipients + 10
        ))
        .send()
        .await?
        .json()
        .await?;
    let items = listed["items"].as_array().cloned().unwrap_or_default();
    let with_image = items
        .iter()
        .filter(|m| m["kind"] == "image" && m["image_sha256"] == sha.as_str())
        .count();
    let personal = items
        .iter()
        .filter(|m| {
            m["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Hello Customer "))
        })
        .count();
    let stats = sim.stats();

    let n = args.recipients as f64;
    let rows = [
        ("recipients", n),
        (
            "sent (read model)",
            done["counts"]["sent"].as_f64().unwrap_or(0.0),
        ),
        ("image server requests", hits.load(Ordering::SeqCst) as f64),
        (
            "herald_media_fetches_total",
            metric("herald_media_fetches_total"),
        ),
        (
            "herald_media_prepared_total",
            metric("herald_media_prepared_total"),
        ),
        (
            "herald_media_loads_total",
            metric("herald_media_loads_total"),
        ),
        ("simulator sends with the image", with_image as f64),
        ("simulator sends with a personal caption", personal as f64),
        ("simulator duplicate ids", stats.duplicate_ids as f64),
    ];
    println!(
        "herald-bench-images: one PNG of {} bytes (4000 × 3000)",
        png.len()
    );
    println!(
        "  template created (fetch + decode + resize + JPEG) in {template_secs:.3} s; JPEG {} bytes, {}×{}",
        template["image"]["bytes"], template["image"]["width"], template["image"]["height"]
    );
    println!("  campaign accepted and every recipient sent in {campaign_secs:.2} s");
    for (what, value) in rows {
        println!("  {what:<42} {value}");
    }
    let mut problems = Vec::new();
    let expect = |problems: &mut Vec<String>, what: &str, got: f64, want: f64| {
        if (got - want).abs() > f64::EPSILON {
            problems.push(format!("{what}: {got}, expected {want}"));
        }
    };
    expect(&mut problems, "image server requests", rows[2].1, 1.0);
    expect(&mut problems, "images processed", rows[4].1, 1.0);
    expect(&mut problems, "dispatcher loads", rows[5].1, 1.0);
    expect(&mut problems, "sent", rows[1].1, n);
    expect(&mut problems, "sends with the image", rows[6].1, n);
    expect(&mut problems, "personal captions", rows[7].1, n);
    expect(&mut problems, "duplicates", rows[8].1, 0.0);

    app.stop().await;
    sim.stop().await;
    server.abort();
    Ok(problems)
}
