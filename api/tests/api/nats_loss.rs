//! NATS lost mid-run (a private `nats-server` this test starts and stops, never the machine's):
//! sending, receipts and the SSE stream carry on, `/health/ready` says NATS is down, and
//! publishing resumes when it is back, without restarting Herald.

use std::process::Stdio;
use std::time::Duration;

use herald_simulator::{ReceiptSettings, SimulatorConfig};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::events::final_progress;
use crate::helpers::{spawn_app_with_sim_and_settings, TestApp};

/// A NATS server of this test's own on `port`.
async fn start_nats(port: u16) -> Child {
    let child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("nats-server is installed (scripts/services.sh)");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nats-server started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Polls `/health/ready` until it answers `want`; the last body.
async fn ready_becomes(app: &TestApp, want: StatusCode) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let res = app
            .client
            .get(app.url("/health/ready"))
            .send()
            .await
            .expect("sent");
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if status == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health/ready stayed {status} ({body}), expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_receipts_and_sse_carry_on_without_nats_and_publishing_resumes() {
    let port = free_port();
    let mut nats = start_nats(port).await;
    let app = spawn_app_with_sim_and_settings(
        SimulatorConfig {
            receipts: ReceiptSettings::on(),
            ..SimulatorConfig::default()
        },
        |s| {
            s.nats_url = Some(format!("nats://127.0.0.1:{port}"));
            s.sse_keepalive_secs = 1;
        },
    )
    .await;
    ready_becomes(&app, StatusCode::OK).await;
    let (alice, session, template) = app.ready_tenant("nats-loss@b.co", "Hi").await;
    let mut sse = app.events(&alice, "").await;
    let n = 40u64;
    let first = app
        .start_campaign(&alice, &session, &template, n as usize)
        .await;
    sse.until(Duration::from_secs(60), final_progress(&first, n, "read"))
        .await;

    // NATS goes away
    nats.kill().await.expect("nats-server stopped");
    let body = ready_becomes(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        body.to_string().contains("NATS"),
        "readiness says NATS is down: {body}"
    );
    // sending and receipts carry on: a campaign sent and read with NATS down
    let second = app
        .start_campaign(&alice, &session, &template, n as usize)
        .await;
    let done = app
        .wait_campaign(&alice, &second, Duration::from_secs(60), |c| {
            c["counts"]["read"] == n
        })
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["counts"]["read"], n, "receipts applied: {done}");
    // the SSE stream is still open (its keep-alives flow; no event needs NATS to end it)
    assert!(sse.next(Duration::from_secs(2)).await.is_none());

    // NATS is back on the same address: Herald reconnects by itself and publishes again
    let _nats = start_nats(port).await;
    ready_becomes(&app, StatusCode::OK).await;
    let third = app
        .start_campaign(&alice, &session, &template, n as usize)
        .await;
    sse.until(Duration::from_secs(60), final_progress(&third, n, "read"))
        .await;
    app.stop().await;
}
