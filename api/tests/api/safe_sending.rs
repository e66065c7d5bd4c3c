//! Safe sending end to end with the simulator (docs/safe-sending.md): a send window that opens
//! mid-test by PATCH sends everyone exactly once; a LoggedOut webhook mid-campaign pauses it with
//! `session_disconnected`, and after Connected and resume nobody is sent twice; a day-one number
//! with warm-up sends 20 and holds the rest.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, phones, spawn_app};
use crate::session_lifecycle::{credentials, post_event};

const EVERY_DAY: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// How many times the simulator accepted a message for each phone.
fn per_phone(messages: &[(String, String, String)]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for (phone, _, _) in messages {
        *counts.entry(phone.clone()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn a_campaign_outside_its_window_waits_and_a_patched_window_sends_everyone_once() {
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("window@b.co", "Halo").await;
    // the number's default window: one hour, starting two hours from now (UTC), every day
    let now = Utc::now();
    let start = (now + chrono::Duration::hours(2))
        .format("%H:00")
        .to_string();
    let end = (now + chrono::Duration::hours(3))
        .format("%H:00")
        .to_string();
    let res = app
        .patch(
            &format!("/api/v1/sessions/{session}"),
            &account.token,
            &json!({"send_window": {"days": EVERY_DAY, "start": start, "end": end, "timezone": "UTC"}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let shown: Value = res.json().await.expect("json");
    assert_eq!(shown["send_window"]["start"], start.as_str(), "{shown}");

    let id = app
        .create_campaign(
            &account,
            &json!({"name": "night owls", "template_id": template, "session_id": session,
                    "recipients": phones(5)}),
        )
        .await;
    let waiting = app
        .wait_campaign(&account, &id, Duration::from_secs(15), |c| {
            c["counts"]["waiting_window"] == 5
        })
        .await;
    assert_eq!(waiting["counts"]["waiting_window"], 5, "{waiting}");
    assert_eq!(waiting["status"], "running");
    let next: chrono::DateTime<Utc> = waiting["next_window_at"]
        .as_str()
        .expect("next_window_at while closed")
        .parse()
        .expect("a time");
    assert!(
        next > now && next <= now + chrono::Duration::hours(2),
        "{next}"
    );
    assert!(
        app.sim_messages().await.is_empty(),
        "nothing outside the window"
    );

    // a window that is not a window is refused, naming the field
    let bad = app
        .patch(
            &format!("/api/v1/campaigns/{id}"),
            &account.token,
            &json!({"send_window": {"days": ["someday"], "start": "09:00", "end": "18:00"}}),
        )
        .await;
    let (code, body) = error_code(bad, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(code, "validation_failed", "{body}");
    assert!(body.to_string().contains("send_window.days"), "{body}");

    // the campaign's own window, open all day: everyone goes, once
    let res = app
        .patch(
            &format!("/api/v1/campaigns/{id}"),
            &account.token,
            &json!({"name": "early birds",
                    "send_window": {"days": EVERY_DAY, "start": "00:00", "end": "24:00"}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let patched: Value = res.json().await.expect("json");
    assert_eq!(patched["name"], "early birds", "{patched}");
    assert_eq!(patched["send_window"]["end"], "24:00", "{patched}");
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(20), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["sent"], 5, "{done}");
    assert_eq!(done["counts"]["waiting_window"], 0, "{done}");
    assert!(done["next_window_at"].is_null(), "{done}");
    let counts = per_phone(&app.sim_messages().await);
    assert_eq!(counts.len(), 5);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_logged_out_number_pauses_its_campaign_and_resume_after_connected_resends_nobody() {
    let app = spawn_app().await;
    let account = app.register("breaker@b.co").await;
    // paced, so the campaign is still running when the number logs out
    let session = app
        .link_session_paced(&account, "breaker-token", 250, 250)
        .await;
    let template = app.create_template(&account, "Halo").await;
    let (_, _, key) = credentials(&app, &session).await;
    let key = key.expect("a webhook key");
    let id = app
        .create_campaign(
            &account,
            &json!({"name": "flash sale", "template_id": template, "session_id": session,
                    "recipients": phones(12)}),
        )
        .await;
    app.wait_campaign(&account, &id, Duration::from_secs(15), |c| {
        c["counts"]["sent"].as_i64().unwrap_or(0) >= 2
    })
    .await;

    let logged_out = json!({"type": "LoggedOut", "event": {"OnConnect": false, "Reason": 401}});
    assert_eq!(
        post_event(&app, &session, &logged_out, Some(&key)).await,
        StatusCode::OK
    );
    let paused = app
        .wait_campaign(&account, &id, Duration::from_secs(15), |c| {
            c["status"] == "paused"
        })
        .await;
    assert_eq!(paused["status"], "paused", "{paused}");
    assert_eq!(paused["pause_reason"], "session_disconnected", "{paused}");
    // nothing more goes out while it is paused
    let sent_while_paused = app.sim_messages().await.len();
    assert!(sent_while_paused < 12, "it paused before the end");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(app.sim_messages().await.len(), sent_while_paused);

    let connected = json!({"type": "Connected", "event": {}});
    assert_eq!(
        post_event(&app, &session, &connected, Some(&key)).await,
        StatusCode::OK
    );
    crate::session_lifecycle::wait_status(&app, &account, &session, "connected").await;
    // connecting again does not resume by itself: resume is explicit
    let still = app
        .get_json(&format!("/api/v1/campaigns/{id}"), &account.token)
        .await;
    assert_eq!(still["status"], "paused", "{still}");
    let res = app
        .post_empty(&format!("/api/v1/campaigns/{id}/resume"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let resumed: Value = res.json().await.expect("json");
    assert!(resumed["pause_reason"].is_null(), "{resumed}");
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(30), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["sent"], 12, "{done}");
    let counts = per_phone(&app.sim_messages().await);
    assert_eq!(counts.len(), 12, "nobody lost");
    assert!(
        counts.values().all(|n| *n == 1),
        "nobody sent twice: {counts:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_day_one_number_with_warm_up_sends_20_and_holds_the_rest() {
    let app = spawn_app().await;
    let account = app.register("warmup@b.co").await;
    let res = app
        .post(
            "/api/v1/sessions",
            &account.token,
            &json!({"name": "new number", "gateway_token": "warmup-token",
                    "pacing": {"min_interval_ms": 0, "max_interval_ms": 0},
                    "safety": {"warmup": true, "daily_cap": 500}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let linked: Value = res.json().await.expect("json");
    assert_eq!(linked["safety"]["warmup"], true, "{linked}");
    assert_eq!(linked["safety"]["daily_cap"], 500, "{linked}");
    assert_eq!(
        linked["linked_since"],
        Utc::now().date_naive().to_string(),
        "{linked}"
    );
    let session = linked["id"].as_str().expect("id").to_string();
    let template = app.create_template(&account, "Halo").await;
    let id = app
        .create_campaign(
            &account,
            &json!({"name": "first day", "template_id": template, "session_id": session,
                    "recipients": phones(25)}),
        )
        .await;
    let held = app
        .wait_campaign(&account, &id, Duration::from_secs(20), |c| {
            c["counts"]["sent"] == 20 && c["counts"]["waiting_cap"] == 5
        })
        .await;
    assert_eq!(held["counts"]["sent"], 20, "{held}");
    assert_eq!(held["counts"]["waiting_cap"], 5, "{held}");
    assert_eq!(held["status"], "running");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.sim_messages().await.len(),
        20,
        "the rest wait for tomorrow"
    );

    // a bad cap is refused with the field named
    let bad = app
        .patch(
            &format!("/api/v1/sessions/{session}"),
            &account.token,
            &json!({"safety": {"daily_cap": -1}}),
        )
        .await;
    let (code, body) = error_code(bad, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(code, "validation_failed");
    assert!(body.to_string().contains("safety.daily_cap"), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn a_typing_number_shows_typing_before_each_paced_send() {
    let app = spawn_app().await;
    let account = app.register("typing@b.co").await;
    let res = app
        .post(
            "/api/v1/sessions",
            &account.token,
            &json!({"name": "human number", "gateway_token": "typing-token",
                    "pacing": {"min_interval_ms": 1000, "max_interval_ms": 1000},
                    "safety": {"typing": true}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let linked: Value = res.json().await.expect("json");
    assert_eq!(linked["safety"]["typing"], true, "{linked}");
    let session = linked["id"].as_str().expect("id").to_string();
    let template = app.create_template(&account, "Halo").await;
    let id = app
        .create_campaign(
            &account,
            &json!({"name": "typed", "template_id": template, "session_id": session,
                    "recipients": phones(2)}),
        )
        .await;
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(20), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["sent"], 2, "{done}");
    assert_eq!(
        app.sim.stats().composing,
        2,
        "POST /chat/presence composing, once per send"
    );
    app.stop().await;
}
