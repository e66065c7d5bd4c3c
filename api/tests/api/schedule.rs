//! Campaigns at a time in the marketer's own time zone.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, phones, spawn_app};

fn instant(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

#[tokio::test]
async fn a_scheduled_campaign_waits_and_starts_on_time_once_across_two_instances() {
    let app = spawn_app().await;
    let second = app.second_instance().await;
    let (account, session, template) = app.ready_tenant("later@b.co", "Hi {{ phone }}").await;
    // four seconds from now, written as a Jakarta marketer would, with its own offset
    let wib = FixedOffset::east_opt(7 * 3600).expect("offset");
    let due = (Utc::now() + chrono::Duration::seconds(4)).with_timezone(&wib);
    let send_at = due.format("%Y-%m-%dT%H:%M:%S%:z").to_string();
    let res = app
        .post(
            "/api/v1/campaigns",
            &account.token,
            &json!({"name": "later", "template_id": template, "session_id": session,
                    "recipients": phones(20), "send_at": send_at}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.expect("json");
    assert_eq!(created["status"], "scheduled");
    let scheduled_at = instant(&created["scheduled_at"]);
    assert_eq!(
        scheduled_at.timestamp(),
        due.timestamp(),
        "scheduled_at is the same instant, in UTC"
    );
    let id = created["id"].as_str().expect("id").to_string();

    // just before its time: still waiting, nothing sent
    let before = scheduled_at - chrono::Duration::milliseconds(800);
    if let Ok(wait) = (before - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
    let waiting: Value = app
        .get_json(&format!("/api/v1/campaigns/{id}"), &account.token)
        .await;
    let accepted_before = app.sim.stats().accepted;
    let answered_at = Utc::now();
    // only an answer that came back before the due time says anything about "before"
    if answered_at < scheduled_at {
        assert_eq!(waiting["status"], "scheduled");
        assert_eq!(waiting["counts"]["queued"], 20);
        assert_eq!(accepted_before, 0, "nothing goes out before its time");
    }

    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(20), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["counts"]["sent"], 20);
    let started = instant(&done["started_at"]);
    assert!(
        started >= scheduled_at,
        "started {started} before {scheduled_at}"
    );
    assert!(
        // the ticker fires every second; the margin is for a loaded test machine
        started - scheduled_at < chrono::Duration::milliseconds(2500),
        "started within about a second ({started})"
    );
    assert_eq!(app.sim.stats().accepted, 20);
    assert_eq!(app.sim.stats().duplicate_ids, 0);
    let starts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'CampaignStarted'",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(starts, 1, "two instances, one start");
    second.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn send_at_is_read_in_the_campaigns_time_zone() {
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("tz@b.co", "Hi").await;
    let tomorrow = (Utc::now() + chrono::Duration::days(2)).date_naive();
    let res = app
        .post(
            "/api/v1/campaigns",
            &account.token,
            &json!({"name": "wib", "template_id": template, "session_id": session, "recipients": phones(1),
                    "send_at": format!("{tomorrow} 09:00"), "timezone": "Asia/Jakarta"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.expect("json");
    assert_eq!(created["status"], "scheduled");
    let expected = tomorrow.and_hms_opt(2, 0, 0).expect("time").and_utc();
    assert_eq!(
        instant(&created["scheduled_at"]),
        expected,
        "09:00 WIB is 02:00 UTC"
    );

    // cancelled before its time: nobody is sent anything
    let id = created["id"].as_str().expect("id");
    let res = app
        .post_empty(&format!("/api/v1/campaigns/{id}/cancel"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let cancelled: Value = res.json().await.expect("json");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["counts"]["skipped"], 1);
    assert_eq!(app.sim.stats().accepted, 0);
    app.stop().await;
}

#[tokio::test]
async fn bad_times_and_zones_are_rejected_with_the_field_named() {
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("badtime@b.co", "Hi").await;
    let base = json!({"name": "x", "template_id": template, "session_id": session, "recipients": phones(1)});
    let cases = [
        (
            json!({"send_at": "2020-01-01 09:00", "timezone": "Asia/Jakarta"}),
            "send_at",
        ),
        (json!({"send_at": "2031-01-01 09:00"}), "timezone"),
        (
            json!({"send_at": "2031-01-01 09:00", "timezone": "Mars/Base"}),
            "timezone",
        ),
        (
            json!({"send_at": "next tuesday-ish", "timezone": "Asia/Jakarta"}),
            "send_at",
        ),
        (
            json!({"send_at": "2031-02-30 09:00", "timezone": "Asia/Jakarta"}),
            "send_at",
        ),
    ];
    for (extra, field) in cases {
        let mut body = base.clone();
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let res = app.post("/api/v1/campaigns", &account.token, &body).await;
        let (code, err) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(code, "validation_failed");
        assert_eq!(err["error"]["details"]["field"], field, "{body} → {err}");
    }
    app.stop().await;
}
