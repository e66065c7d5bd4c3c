//! Herald's roles in processes of their own (`herald serve --role api` and `--role worker`), as
//! in a multi-machine layout: every process serves `/health`, `/health/ready` and `/metrics`;
//! an API process whose projectors run elsewhere (here: nowhere yet) answers the writes it
//! stored with their 2xx, never a 404 or 500 because no worker projected them yet; a worker
//! started later projects and sends what the API stored.

use std::time::Duration;

use herald_simulator::{self as simulator, SimulatorConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::real_server::{self, account_with_session, post_ok, start_campaign, wait_completed};

/// The three probes of a process answer 200 (metrics in Prometheus' text format).
async fn probes_answer(client: &reqwest::Client, base: &str) {
    for path in ["/health", "/health/ready"] {
        let res = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), StatusCode::OK, "{base}{path}");
        assert_eq!(res.json::<Value>().await.expect("json")["status"], "ok");
    }
    let res = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK, "{base}/metrics");
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_process_answers_stored_writes_without_a_worker_and_a_worker_probes_too() {
    let sim = simulator::spawn("127.0.0.1:0", SimulatorConfig::default())
        .await
        .expect("simulator");
    let db_url = herald_migrations::testing::fresh_database_url()
        .await
        .expect("db");
    let client = reqwest::Client::new();
    let api = real_server::start(&db_url, &sim.base_url(), "api", &[]).await;
    probes_answer(&client, &api.base).await;

    // no worker runs: every write is stored and answered with its 2xx all the same
    let (token, session, template) = account_with_session(&client, &api.base, "apart@b.co").await;
    let res = client
        .post(format!("{}/api/v1/templates", api.base))
        .bearer_auth(&token)
        .json(&json!({"name": "second", "type": "text", "body": "Hello {{ name }}"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::CREATED);
    let second: Value = res.json().await.expect("json");
    assert_eq!(second["name"], "second");
    assert_eq!(second["body"], "Hello {{ name }}");
    assert_eq!(second["variables"], json!(["name"]), "{second}");
    let res = client
        .post(format!("{}/api/v1/contacts", api.base))
        .bearer_auth(&token)
        .json(&json!({"phone": "+62 812-3456-7890", "name": "Ayu", "tags": ["vip"]}))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::CREATED);
    let contact: Value = res.json().await.expect("json");
    assert_eq!(contact["phone"], "6281234567890", "{contact}");
    assert_eq!(contact["name"], "Ayu");
    assert_eq!(contact["tags"], json!(["vip"]));
    let campaign = start_campaign(&client, &api.base, &token, (&session, &template), 20).await;

    // a worker process of its own: it probes on its own port, then does the work
    let worker = real_server::start(&db_url, &sim.base_url(), "worker", &[]).await;
    assert_ne!(worker.base, api.base);
    probes_answer(&client, &worker.base).await;
    let done = wait_completed(
        &client,
        &api.base,
        &token,
        &campaign,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["counts"]["sent"], 20, "{done}");
    let third = post_ok(
        &client,
        format!("{}/api/v1/templates", api.base),
        Some(&token),
        json!({"name": "third", "type": "text", "body": "Hi"}),
    )
    .await;
    assert_eq!(third["name"], "third", "a write after the worker started");
    sim.stop().await;
}
