//! Pause, resume and cancel in the middle of a campaign.

use std::time::Duration;

use crate::helpers::{error_code, phones, spawn_app_slow_dispatch, Account, TestApp};
use herald_simulator::SimulatorConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOTAL: usize = 300;

async fn start_slow_campaign(email: &str) -> (TestApp, Account, String) {
    let app = spawn_app_slow_dispatch(SimulatorConfig {
        latency_ms: 20,
        ..SimulatorConfig::default()
    })
    .await;
    let (account, session, template) = app.ready_tenant(email, "Hi {{ phone }}").await;
    let id = app
        .create_campaign(&account, &json!({"name": "slow", "template_id": template, "session_id": session, "recipients": phones(TOTAL)}))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.sim.stats().accepted < 30 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the campaign never got going"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (app, account, id)
}

async fn act(app: &TestApp, account: &Account, id: &str, action: &str) -> reqwest::Response {
    app.post_empty(&format!("/api/v1/campaigns/{id}/{action}"), &account.token)
        .await
}

#[tokio::test]
async fn a_paused_campaign_sends_nothing_more_and_resume_finishes_without_resending() {
    let (app, account, id) = start_slow_campaign("pause@b.co").await;
    let res = act(&app, &account, &id, "pause").await;
    assert_eq!(res.status(), StatusCode::OK);
    let paused: Value = res.json().await.expect("json");
    assert_eq!(paused["status"], "paused");

    // sends already on their way finish and are recorded; then nothing more goes out
    let quiet = app
        .wait_campaign(&account, &id, Duration::from_secs(20), |c| {
            c["counts"]["sending"] == 0
        })
        .await;
    assert_eq!(quiet["counts"]["sending"], 0, "{quiet}");
    let settled = app.sim.stats().accepted;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        app.sim.stats().accepted,
        settled,
        "a paused campaign sent more"
    );
    assert!(settled < TOTAL as u64, "paused before the end ({settled})");
    // pausing again changes nothing
    assert_eq!(
        act(&app, &account, &id, "pause").await.status(),
        StatusCode::OK
    );

    let res = act(&app, &account, &id, "resume").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.expect("json")["status"],
        "running"
    );
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(60), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["counts"]["sent"], TOTAL, "{done}");
    let stats = app.sim.stats();
    assert_eq!(stats.accepted, TOTAL as u64);
    assert_eq!(stats.duplicate_ids, 0, "resume resent nobody");

    // a completed campaign cannot be paused
    let res = act(&app, &account, &id, "pause").await;
    assert_eq!(
        error_code(res, StatusCode::CONFLICT).await.0,
        "invalid_state"
    );
    app.stop().await;
}

#[tokio::test]
async fn cancel_skips_every_recipient_not_yet_sent() {
    let (app, account, id) = start_slow_campaign("cancel@b.co").await;
    let other = app.register("not-mine@b.co").await;
    assert_eq!(
        act(&app, &other, &id, "cancel").await.status(),
        StatusCode::NOT_FOUND
    );

    let res = act(&app, &account, &id, "cancel").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<Value>().await.expect("json")["status"],
        "cancelled"
    );

    // once the sends in flight are recorded, every recipient is final
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(30), |c| {
            c["counts"]["queued"] == 0 && c["counts"]["sending"] == 0
        })
        .await;
    assert_eq!(done["status"], "cancelled", "{done}");
    let sent = done["counts"]["sent"].as_u64().expect("sent");
    let skipped = done["counts"]["skipped"].as_u64().expect("skipped");
    assert_eq!(sent + skipped, TOTAL as u64, "{done}");
    assert!(skipped > 0, "{done}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.sim.stats().accepted,
        sent,
        "what the gateway got is what shows as sent"
    );

    let page: Value = app
        .get_json(
            &format!("/api/v1/campaigns/{id}/recipients?status=skipped&limit=5"),
            &account.token,
        )
        .await;
    for r in page["items"].as_array().expect("items") {
        assert_eq!(r["error"], "campaign cancelled");
    }
    // cancelled is final
    let res = act(&app, &account, &id, "resume").await;
    assert_eq!(
        error_code(res, StatusCode::CONFLICT).await.0,
        "invalid_state"
    );
    assert_eq!(
        act(&app, &account, &id, "cancel").await.status(),
        StatusCode::OK
    );
    app.stop().await;
}
