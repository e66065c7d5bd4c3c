//! kill -9 in the middle of a campaign, then restart: every recipient ends final, none is lost,
//! and only recipients whose lease was in flight are sent again, with the same message id.

use std::collections::HashMap;
use std::time::Duration;

use herald_simulator::{self as simulator, SimulatorConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::process::Child;

use crate::helpers::phones;
use crate::real_server;

/// Small batches and little concurrency, so the kill lands mid-campaign.
const ENV: &[(&str, &str)] = &[
    ("HERALD_DISPATCH_WORKERS", "2"),
    ("HERALD_DISPATCH_BATCH", "20"),
    ("HERALD_DISPATCH_CONCURRENCY", "4"),
    ("HERALD_DISPATCH_LEASE_SECS", "2"),
    ("HERALD_DB_POOL", "8"),
];

async fn start_herald(db_url: &str, gateway_url: &str) -> (Child, String) {
    let herald = real_server::start(db_url, gateway_url, "all", ENV).await;
    (herald.child, herald.base)
}

async fn json_post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> Value {
    real_server::post_ok(client, url, token, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_campaign_loses_nobody_and_resends_only_in_doubt_leases() {
    let sim = simulator::spawn(
        "127.0.0.1:0",
        SimulatorConfig {
            latency_ms: 25,
            ..SimulatorConfig::default()
        },
    )
    .await
    .expect("simulator");
    let db_url = herald_migrations::testing::fresh_database_url()
        .await
        .expect("db");
    let client = reqwest::Client::new();

    let (mut herald, base) = start_herald(&db_url, &sim.base_url()).await;
    let account = json_post(
        &client,
        format!("{base}/api/v1/auth/register"),
        None,
        json!({"email": "crash@b.co", "password": "long enough"}),
    )
    .await;
    let token = account["access_token"].as_str().expect("token").to_string();
    let session = json_post(
        &client,
        format!("{base}/api/v1/sessions"),
        Some(&token),
        json!({"name": "n", "gateway_token": "crash-token",
               "pacing": {"min_interval_ms": 0, "max_interval_ms": 0}}),
    )
    .await;
    let template = json_post(
        &client,
        format!("{base}/api/v1/templates"),
        Some(&token),
        json!({"name": "t", "type": "text", "body": "Hi {{ phone }}"}),
    )
    .await;
    let total = 400;
    let campaign = json_post(
        &client,
        format!("{base}/api/v1/campaigns"),
        Some(&token),
        json!({"name": "crash", "template_id": template["id"], "session_id": session["id"], "recipients": phones(total)}),
    )
    .await;
    let id = campaign["id"].as_str().expect("id").to_string();

    // let it get going, then kill -9
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sim.stats().accepted < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the campaign never got going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    herald.kill().await.expect("SIGKILL");
    let at_kill = sim.stats().accepted;
    assert!(
        at_kill < total as u64,
        "killed mid-campaign ({at_kill} sent)"
    );

    let (mut herald, base) = start_herald(&db_url, &sim.base_url()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let done = loop {
        let res = client
            .get(format!("{base}/api/v1/campaigns/{id}"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("sent");
        assert_eq!(res.status(), StatusCode::OK);
        let c: Value = res.json().await.expect("json");
        if c["status"] == "completed" || tokio::time::Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["counts"]["sent"], total, "{done}");

    // every phone reached the gateway; any phone sent twice kept one message id
    let res: Value = client
        .get(format!("{}/sim/messages?limit=100000", sim.base_url()))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let mut ids: HashMap<String, Vec<String>> = HashMap::new();
    for m in res["items"].as_array().expect("items") {
        ids.entry(m["phone"].as_str().expect("phone").to_string())
            .or_default()
            .push(m["id"].as_str().expect("id").to_string());
    }
    assert_eq!(ids.len(), total, "nobody lost");
    for (phone, sent) in &ids {
        assert!(
            sent.iter().all(|i| i == &sent[0]),
            "{phone} was sent with different ids: {sent:?}"
        );
    }
    let resent: usize = ids.values().map(|v| v.len() - 1).sum();
    let in_doubt: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'DeliveryDispatched' AND payload->'DeliveryDispatched'->>'in_doubt' = 'true'",
    )
    .fetch_one(&sqlx::PgPool::connect(&db_url).await.expect("pool"))
    .await
    .expect("count");
    // at most the leases in flight at the kill: 2 workers × 20 recipients
    assert!(
        resent as i64 <= in_doubt,
        "resends ({resent}) only for in-doubt leases ({in_doubt})"
    );
    assert!(
        in_doubt <= 40,
        "only the leases in flight were in doubt ({in_doubt})"
    );
    assert_eq!(sim.stats().duplicate_ids as usize, resent);

    herald.kill().await.expect("stop");
    sim.stop().await;
}
