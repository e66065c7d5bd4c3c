//! Pacing per linked number (decision 8): sends of one session spaced by a random interval
//! between min and max, across instances; a campaign's own pacing wins over its session's.

use std::time::Duration;

use crate::helpers::{error_code, phones, spawn_app, Account, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn start(app: &TestApp, account: &Account, body: Value) -> String {
    let res = app.post("/api/v1/campaigns", &account.token, &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string()
}

/// The gaps between consecutive sends the simulator received, in milliseconds.
async fn gaps_ms(app: &TestApp) -> Vec<i64> {
    let times = app.sim_message_times().await;
    times
        .windows(2)
        .map(|w| (w[1].1 - w[0].1).num_milliseconds())
        .collect()
}

#[tokio::test]
async fn a_paced_session_spaces_its_sends_by_at_least_the_minimum() {
    let app = spawn_app().await;
    let account = app.register("paced@b.co").await;
    let session = app
        .link_session_paced(&account, "paced-token", 300, 600)
        .await;
    let got: Value = app
        .get_json(&format!("/api/v1/sessions/{session}"), &account.token)
        .await;
    assert_eq!(
        got["pacing"],
        json!({"min_interval_ms": 300, "max_interval_ms": 600})
    );
    let template = app.create_template(&account, "Hi {{ phone }}").await;
    let id = start(
        &app,
        &account,
        json!({"name": "paced", "template_id": template, "session_id": session, "recipients": phones(6)}),
    )
    .await;
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(30), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["sent"], 6, "{done}");
    let gaps = gaps_ms(&app).await;
    assert_eq!(gaps.len(), 5);
    assert!(gaps.iter().all(|g| *g >= 300), "gaps {gaps:?}");
    app.stop().await;
}

#[tokio::test]
async fn pacing_holds_across_two_instances_on_one_database() {
    let app = spawn_app().await;
    let second = app.second_instance().await;
    let account = app.register("two@b.co").await;
    let session = app
        .link_session_paced(&account, "two-token", 300, 400)
        .await;
    let template = app.create_template(&account, "Hi {{ phone }}").await;
    let id = start(
        &app,
        &account,
        json!({"name": "two", "template_id": template, "session_id": session, "recipients": phones(8)}),
    )
    .await;
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(30), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["sent"], 8, "{done}");
    let gaps = gaps_ms(&app).await;
    assert_eq!(gaps.len(), 7);
    assert!(gaps.iter().all(|g| *g >= 300), "gaps {gaps:?}");
    assert_eq!(app.sim.stats().duplicate_ids, 0);
    second.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_campaigns_pacing_wins_over_its_sessions() {
    let app = spawn_app().await;
    let account = app.register("override@b.co").await;
    // no pacing given: the conservative default (3-8 s between sends)
    let res = app
        .post(
            "/api/v1/sessions",
            &account.token,
            &json!({"name": "default pace", "gateway_token": "override-token"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let session: Value = res.json().await.expect("json");
    assert_eq!(
        session["pacing"],
        json!({"min_interval_ms": 3000, "max_interval_ms": 8000})
    );
    let session = session["id"].as_str().expect("id").to_string();
    let template = app.create_template(&account, "Hi {{ phone }}").await;
    let id = start(
        &app,
        &account,
        json!({"name": "fast", "template_id": template, "session_id": session,
               "recipients": phones(5), "pacing": {"min_interval_ms": 200, "max_interval_ms": 250}}),
    )
    .await;
    // at the session's pace five sends take at least 12 s; at the campaign's, about one
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(8), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["pacing"],
        json!({"min_interval_ms": 200, "max_interval_ms": 250})
    );
    let gaps = gaps_ms(&app).await;
    assert!(gaps.iter().all(|g| *g >= 200), "gaps {gaps:?}");

    // changing the session's pacing: 0/0 is full speed
    let res = app
        .patch(
            &format!("/api/v1/sessions/{session}"),
            &account.token,
            &json!({"pacing": {"min_interval_ms": 0, "max_interval_ms": 0}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let id = start(
        &app,
        &account,
        json!({"name": "unpaced", "template_id": template, "session_id": session, "recipients": phones(50)}),
    )
    .await;
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(5), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done["pacing"].is_null(), "{done}");
    app.stop().await;
}

#[tokio::test]
async fn a_session_pacing_change_reaches_recipients_already_queued() {
    let app = spawn_app().await;
    let account = app.register("slow@b.co").await;
    // an hour between sends: the campaign would take days
    let session = app
        .link_session_paced(&account, "slow-token", 3_600_000, 3_600_000)
        .await;
    let template = app.create_template(&account, "Hi {{ phone }}").await;
    let id = start(
        &app,
        &account,
        json!({"name": "stuck", "template_id": template, "session_id": session, "recipients": phones(4)}),
    )
    .await;
    let first = app
        .wait_campaign(&account, &id, Duration::from_secs(10), |c| {
            c["counts"]["sent"] == 1
        })
        .await;
    assert_eq!(first["counts"]["sent"], 1, "{first}");
    let res = app
        .patch(
            &format!("/api/v1/sessions/{session}"),
            &account.token,
            &json!({"pacing": {"min_interval_ms": 0, "max_interval_ms": 0}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // the session's slot reserved at the hour-long pace is still running, so the rest goes once
    // it is released: PATCH also frees the slot
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(10), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["sent"], 4, "{done}");
    app.stop().await;
}

#[tokio::test]
async fn bad_pacing_is_a_422_naming_the_field_and_other_tenants_sessions_are_404() {
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("bad@b.co", "Hi").await;
    for (pacing, field) in [
        (
            json!({"min_interval_ms": 700, "max_interval_ms": 600}),
            "pacing.min_interval_ms",
        ),
        (
            json!({"min_interval_ms": -1, "max_interval_ms": 600}),
            "pacing.min_interval_ms",
        ),
        (
            json!({"min_interval_ms": 0, "max_interval_ms": 3_600_001}),
            "pacing.max_interval_ms",
        ),
        (
            json!({"min_interval_ms": "1", "max_interval_ms": 2}),
            "pacing.min_interval_ms",
        ),
        (json!({"min_interval_ms": 1}), "pacing.max_interval_ms"),
        (
            json!({"min_interval_ms": 1, "max_interval_ms": 2, "jitter": 1}),
            "pacing.jitter",
        ),
    ] {
        let res = app
            .post(
                "/api/v1/sessions",
                &account.token,
                &json!({"name": "x", "gateway_token": "t", "pacing": pacing}),
            )
            .await;
        let (code, err) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(code, "validation_failed");
        assert_eq!(err["error"]["details"]["field"], field, "{pacing} → {err}");

        let res = app
            .patch(
                &format!("/api/v1/sessions/{session}"),
                &account.token,
                &json!({"pacing": pacing}),
            )
            .await;
        let (_, err) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(err["error"]["details"]["field"], field, "{pacing} → {err}");

        let res = app
            .post(
                "/api/v1/campaigns",
                &account.token,
                &json!({"name": "c", "template_id": template, "session_id": session,
                        "recipients": phones(1), "pacing": pacing}),
            )
            .await;
        let (_, err) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(err["error"]["details"]["field"], field, "{pacing} → {err}");
    }
    let other = app.register("other@b.co").await;
    let res = app
        .patch(
            &format!("/api/v1/sessions/{session}"),
            &other.token,
            &json!({"pacing": {"min_interval_ms": 0, "max_interval_ms": 0}}),
        )
        .await;
    assert_eq!(error_code(res, StatusCode::NOT_FOUND).await.0, "not_found");
    // and the session kept its pacing
    let got: Value = app
        .get_json(&format!("/api/v1/sessions/{session}"), &account.token)
        .await;
    assert_eq!(
        got["pacing"],
        json!({"min_interval_ms": 0, "max_interval_ms": 0})
    );
    app.stop().await;
}
