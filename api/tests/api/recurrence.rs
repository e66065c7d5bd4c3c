//! Recurring campaigns: each occurrence of the cron (in the campaign's zone) starts one run with
//! the same template and audience, once across instances; after downtime a late occurrence fires
//! within the grace period and older ones are recorded as missed.

use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, phones, spawn_app, Account, TestApp};

fn instant(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not a timestamp: {v}"))
}

async fn create_recurring(app: &TestApp, email: &str, cron: &str) -> (Account, String, Value) {
    let (account, session, template) = app.ready_tenant(email, "Weekly hello {{ phone }}").await;
    let res = app
        .post(
            "/api/v1/campaigns",
            &account.token,
            &json!({"name": "Monday hello", "template_id": template, "session_id": session,
                    "recipients": phones(5), "recurrence": cron, "timezone": "Asia/Jakarta"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    (account, id, created)
}

async fn runs(app: &TestApp, account: &Account, parent: &str) -> Vec<Value> {
    let list: Value = app
        .get_json(
            &format!("/api/v1/campaigns?parent_id={parent}"),
            &account.token,
        )
        .await;
    list["items"].as_array().expect("items").clone()
}

async fn make_due(app: &TestApp, parent: &str, at: DateTime<Utc>) {
    sqlx::query("UPDATE recurring_campaigns SET next_at = $2 WHERE campaign_id = $1::uuid")
        .bind(parent)
        .bind(at)
        .execute(&app.pool)
        .await
        .expect("update");
}

async fn wait_runs(app: &TestApp, account: &Account, parent: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = runs(app, account, parent).await;
        if r.len() >= n || tokio::time::Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_monday_campaign_waits_for_monday_then_runs_once_across_two_instances() {
    let app = spawn_app().await;
    let second = app.second_instance().await;
    let (account, id, created) = create_recurring(&app, "weekly@b.co", "0 9 * * MON").await;
    assert_eq!(created["status"], "scheduled");
    let first = instant(&created["scheduled_at"]);
    // 09:00 in Jakarta (UTC+7) is 02:00 UTC, on a Monday, in the future
    assert_eq!(
        (first.hour(), first.minute(), first.weekday()),
        (2, 0, chrono::Weekday::Mon)
    );
    assert!(first > Utc::now());

    let parent: Value = app
        .get_json(&format!("/api/v1/campaigns/{id}"), &account.token)
        .await;
    assert_eq!(
        parent["recurrence"],
        json!({"cron": "0 9 * * MON", "timezone": "Asia/Jakarta"})
    );
    assert_eq!(parent["total_recipients"], 5);
    assert!(runs(&app, &account, &id).await.is_empty());

    // Monday comes (we move the clock of the schedule, not the world's)
    make_due(&app, &id, Utc::now() - chrono::Duration::seconds(30)).await;
    let started = wait_runs(&app, &account, &id, 1).await;
    assert_eq!(
        started.len(),
        1,
        "one run for one occurrence, two instances notwithstanding"
    );
    let run_id = started[0]["id"].as_str().expect("id").to_string();
    assert_eq!(started[0]["parent_id"], id.as_str());
    let done = app
        .wait_campaign(&account, &run_id, Duration::from_secs(20), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["sent"], 5, "{done}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(runs(&app, &account, &id).await.len(), 1, "and only one");
    assert_eq!(app.sim.stats().accepted, 5);

    let occurrences: Value = app
        .get_json(
            &format!("/api/v1/campaigns/{id}/occurrences"),
            &account.token,
        )
        .await;
    let items = occurrences["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], "fired");
    assert_eq!(items[0]["run_id"], run_id.as_str());
    let next: DateTime<Utc> =
        sqlx::query_scalar("SELECT next_at FROM recurring_campaigns WHERE campaign_id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .expect("next");
    assert!(
        next > Utc::now() && next.weekday() == chrono::Weekday::Mon,
        "next run next Monday ({next})"
    );

    // cancelling the recurring campaign stops future runs
    let res = app
        .post_empty(&format!("/api/v1/campaigns/{id}/cancel"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    make_due(&app, &id, Utc::now() - chrono::Duration::seconds(30)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        runs(&app, &account, &id).await.len(),
        1,
        "no run after cancel"
    );
    second.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn after_downtime_the_latest_occurrence_fires_late_once_and_older_ones_are_missed() {
    // The next occurrence of `*/5` must not come due while this test counts runs: started just
    // before a five-minute mark, it would rightly fire a second run.
    let into_slot = Utc::now().timestamp().rem_euclid(300);
    if into_slot > 270 {
        tokio::time::sleep(Duration::from_secs((302 - into_slot) as u64)).await;
    }
    let app = spawn_app().await;
    let (account, id, _) = create_recurring(&app, "downtime@b.co", "*/5 * * * *").await;
    // Herald was "down" for a day: ~288 occurrences passed; the latest is less than 5 min old
    make_due(&app, &id, Utc::now() - chrono::Duration::days(1)).await;
    let started = wait_runs(&app, &account, &id, 1).await;
    assert_eq!(started.len(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        runs(&app, &account, &id).await.len(),
        1,
        "one late run, not one per missed occurrence"
    );
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM campaign_occurrences WHERE campaign_id = $1::uuid GROUP BY status ORDER BY status",
    )
    .bind(&id)
    .fetch_all(&app.pool)
    .await
    .expect("counts");
    let fired = counts.iter().find(|(s, _)| s == "fired").map(|(_, n)| *n);
    let missed = counts
        .iter()
        .find(|(s, _)| s == "missed")
        .map(|(_, n)| *n)
        .unwrap_or(0);
    assert_eq!(fired, Some(1), "{counts:?}");
    assert!(
        (280..=290).contains(&missed),
        "every other occurrence recorded as missed: {counts:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_recurrences_are_rejected_with_the_field_named() {
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("badcron@b.co", "Hi").await;
    let base = json!({"name": "x", "template_id": template, "session_id": session, "recipients": phones(1)});
    for (extra, field) in [
        (json!({"recurrence": "0 9 * * MON"}), "timezone"),
        (
            json!({"recurrence": "not a cron", "timezone": "Asia/Jakarta"}),
            "recurrence",
        ),
        (
            json!({"recurrence": "0 0 9 * * MON", "timezone": "Asia/Jakarta"}),
            "recurrence",
        ),
        (
            json!({"recurrence": "* * * * *", "timezone": "Asia/Jakarta"}),
            "recurrence",
        ),
    ] {
        let mut body = base.clone();
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let res = app.post("/api/v1/campaigns", &account.token, &body).await;
        let (_, err) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(err["error"]["details"]["field"], field, "{body} → {err}");
    }
    app.stop().await;
}
