use std::collections::HashSet;
use std::time::Duration;

use crate::helpers::{phones, spawn_app_with};
use herald_simulator::SimulatorConfig;
use serde_json::{json, Value};

/// A flaky gateway (15% errors, 5% rate limits): the campaign still completes, every recipient
/// is sent, and no phone is accepted twice.
#[tokio::test]
async fn a_flaky_gateway_loses_nobody_and_sends_nobody_twice() {
    let app = spawn_app_with(SimulatorConfig {
        error_rate: 0.15,
        rate_limit_rate: 0.05,
        seed: Some(7),
        ..SimulatorConfig::default()
    })
    .await;
    let (account, session, template) = app.ready_tenant("flaky@b.co", "Hi {{ phone }}").await;
    let numbers = phones(200);
    let id = app
        .create_campaign(&account, &json!({"name": "flaky", "template_id": template, "session_id": session, "recipients": numbers}))
        .await;
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(90), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["counts"]["sent"], 200, "{done}");

    let stats = app.sim.stats();
    assert!(
        stats.failed + stats.rate_limited > 0,
        "the gateway did fail some sends"
    );
    assert_eq!(stats.accepted, 200);
    assert_eq!(stats.duplicate_ids, 0);
    let accepted: HashSet<String> = app
        .sim_messages()
        .await
        .into_iter()
        .map(|(p, _, _)| p)
        .collect();
    assert_eq!(accepted.len(), 200);

    // retried recipients show their attempts
    let page: Value = app
        .get_json(
            &format!("/api/v1/campaigns/{id}/recipients?limit=500"),
            &account.token,
        )
        .await;
    let attempts: i64 = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["attempts"].as_i64().expect("attempts"))
        .sum();
    assert!(
        attempts > 200,
        "some recipients needed more than one attempt"
    );
    app.stop().await;
}

/// A gateway that fails every send: after the bounded attempts each recipient is `failed` with
/// the gateway's reason, and the campaign completes anyway.
#[tokio::test]
async fn permanent_failures_fail_the_recipient_with_the_reason() {
    let app = spawn_app_with(SimulatorConfig::default()).await;
    let (account, session, template) = app.ready_tenant("dead@b.co", "Hi").await;
    // The session's gateway user disappears: the token now belongs to no session.
    sqlx::query("DELETE FROM session_credentials")
        .execute(&app.pool)
        .await
        .expect("delete");
    let id = app
        .create_campaign(&account, &json!({"name": "doomed", "template_id": template, "session_id": session, "recipients": phones(3)}))
        .await;
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(30), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["failed"], 3, "{done}");
    let page: Value = app
        .get_json(
            &format!("/api/v1/campaigns/{id}/recipients?status=failed"),
            &account.token,
        )
        .await;
    for r in page["items"].as_array().expect("items") {
        assert_eq!(r["error"], "the campaign's session no longer exists");
        assert!(r["failed_at"].is_string());
    }
    app.stop().await;
}

/// A permanent gateway refusal (a 4xx other than 429) fails the recipient at once, after one
/// attempt, with the gateway's own message. Here the simulator answers 400 `missing Body in
/// Payload` to recipients whose text renders empty (`{{ name }}` without a name).
#[tokio::test]
async fn a_permanent_gateway_error_fails_the_recipient_at_once_with_its_message() {
    let app = spawn_app_with(SimulatorConfig::default()).await;
    let (account, session, template) = app.ready_tenant("perm@b.co", "{{ name }}").await;
    let id = app
        .create_campaign(&account, &json!({"name": "perm", "template_id": template, "session_id": session,
                    "recipients": [{"phone": "6281200000001", "vars": {"name": "Sari"}}, "6281200000002"]}))
        .await;
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(20), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["sent"], 1, "{done}");
    assert_eq!(done["counts"]["failed"], 1, "{done}");
    let page: Value = app
        .get_json(
            &format!("/api/v1/campaigns/{id}/recipients?status=failed"),
            &account.token,
        )
        .await;
    let failed = &page["items"][0];
    assert_eq!(failed["phone"], "6281200000002", "{page}");
    assert_eq!(failed["attempts"], 1, "{page}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("missing Body in Payload")),
        "{page}"
    );
    assert_eq!(app.sim.stats().accepted, 1);
    app.stop().await;
}
