//! The real `herald` binary as a child process, for the tests of what production does to it
//! (kill -9, SIGTERM, a role without the others, NATS going away): start it with settings,
//! find its address in its log, drive it over HTTP like a user.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::phones;

pub const JWT_SECRET: &str = "crash-test-secret-crash-test-secret-0123";

/// One running `herald serve` process.
pub struct Herald {
    pub child: Child,
    /// `http://addr` of what it serves: the API, or a worker's health and metrics.
    pub base: String,
}

/// The settings every test process gets; `env` adds to or overrides them.
fn base_env(db_url: &str, gateway_url: &str) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", db_url),
        ("HERALD_LISTEN", "127.0.0.1:0"),
        ("HERALD_WORKER_LISTEN", "127.0.0.1:0"),
        ("HERALD_WUZAPI_URL", gateway_url),
        ("HERALD_JWT_SECRET", JWT_SECRET),
        ("HERALD_DEFAULT_PLAN", "unlimited"),
        ("RUST_LOG", "info"),
        ("NO_COLOR", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Starts `herald serve --role <role>` and waits until it logs the address it listens on.
pub async fn start(db_url: &str, gateway_url: &str, role: &str, env: &[(&str, &str)]) -> Herald {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .args(["serve", "--role", role])
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in base_env(db_url, gateway_url) {
        command.env(k, v);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("herald starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let base = loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("herald logs its address in time")
            .expect("stdout readable")
            .expect("herald exited before listening");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == ':')
                .collect();
            break format!("http://{addr}");
        }
    };
    // keep draining its output so the pipe never fills
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Herald { child, base }
}

impl Herald {
    /// SIGTERM, as an orchestrator stops a process.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM sent");
    }
}

/// A POST answered 2xx; its JSON.
pub async fn post_ok(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Value {
    let mut req = client.post(url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.expect("sent");
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    assert!(status.is_success(), "{status}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// A signed-up user with a session (unpaced) and a text template: `(token, session, template)`.
pub async fn account_with_session(
    client: &reqwest::Client,
    base: &str,
    email: &str,
) -> (String, String, String) {
    let account = post_ok(
        client,
        format!("{base}/api/v1/auth/register"),
        None,
        json!({"email": email, "password": "long enough"}),
    )
    .await;
    let token = account["access_token"].as_str().expect("token").to_string();
    let session = post_ok(
        client,
        format!("{base}/api/v1/sessions"),
        Some(&token),
        json!({"name": "n", "gateway_token": format!("{email}-token"),
               "pacing": {"min_interval_ms": 0, "max_interval_ms": 0}}),
    )
    .await;
    let template = post_ok(
        client,
        format!("{base}/api/v1/templates"),
        Some(&token),
        json!({"name": "t", "type": "text", "body": "Hi {{ phone }}"}),
    )
    .await;
    let id = |v: &Value| v["id"].as_str().expect("id").to_string();
    (token, id(&session), id(&template))
}

/// A campaign to `total` phones; its id.
pub async fn start_campaign(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    (session, template): (&str, &str),
    total: usize,
) -> String {
    let campaign = post_ok(
        client,
        format!("{base}/api/v1/campaigns"),
        Some(token),
        json!({"name": "c", "template_id": template, "session_id": session,
               "recipients": phones(total)}),
    )
    .await;
    campaign["id"].as_str().expect("id").to_string()
}

/// Polls the campaign until it is `completed` (or `within` passes); its last state.
pub async fn wait_completed(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    within: Duration,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let res = client
            .get(format!("{base}/api/v1/campaigns/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .expect("sent");
        // 404 until a worker has projected the campaign (a worker started just now)
        if res.status() == StatusCode::NOT_FOUND && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(res.status(), StatusCode::OK);
        let c: Value = res.json().await.expect("json");
        if c["status"] == "completed" || tokio::time::Instant::now() > deadline {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the simulator has accepted at least `n` sends.
pub async fn wait_accepted(sim: &herald_simulator::RunningSimulator, n: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while sim.stats().accepted < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the campaign never got going ({} sent)",
            sim.stats().accepted
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
