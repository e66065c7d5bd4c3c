//! Plans and quotas (decision 7): the hourly message quota reserved before each batch, recipients
//! over it waiting (`counts.waiting_quota`) until the window turns or the plan grows; expired
//! subscriptions; session limits; API calls per hour.

use std::time::Duration;

use crate::helpers::{error_code, phones, spawn_app_configured, Account, TestApp, ADMIN_TOKEN};
use herald_api::config::Secret;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn basic_app() -> TestApp {
    spawn_app_configured(|s| {
        s.default_plan = "basic".into();
        s.admin_token = Some(Secret::new(ADMIN_TOKEN));
    })
    .await
}

async fn campaign(
    app: &TestApp,
    account: &Account,
    session: &str,
    template: &str,
    n: usize,
) -> String {
    let res = app
        .post(
            "/api/v1/campaigns",
            &account.token,
            &json!({"name": "quota", "template_id": template, "session_id": session, "recipients": phones(n)}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string()
}

/// The "done when": a basic tenant's 150-recipient campaign sends 100 and shows 50
/// waiting for quota; the operator upgrades the plan and the 50 go, without a restart.
#[tokio::test]
async fn a_basic_tenant_sends_100_of_150_and_the_rest_go_when_the_plan_grows() {
    let app = basic_app().await;
    let (account, session, template) = app.ready_tenant("basic@b.co", "Hi {{ phone }}").await;
    let id = campaign(&app, &account, &session, &template, 150).await;
    let waiting = app
        .wait_campaign(&account, &id, Duration::from_secs(20), |c| {
            c["counts"]["sent"] == 100 && c["counts"]["waiting_quota"] == 50
        })
        .await;
    assert_eq!(waiting["counts"]["sent"], 100, "{waiting}");
    assert_eq!(waiting["counts"]["waiting_quota"], 50, "{waiting}");
    assert_eq!(waiting["counts"]["queued"], 50, "{waiting}");
    assert_eq!(waiting["status"], "running", "{waiting}");
    // the list shows it too
    let list: Value = app.get_json("/api/v1/campaigns", &account.token).await;
    assert_eq!(list["items"][0]["counts"]["waiting_quota"], 50, "{list}");
    // and nothing more goes while the window lasts
    let later = app
        .wait_campaign(&account, &id, Duration::from_millis(800), |c| {
            c["counts"]["sent"] != 100
        })
        .await;
    assert_eq!(later["counts"]["sent"], 100, "{later}");
    assert_eq!(app.sim.stats().accepted, 100);
    let me: Value = app.get_json("/api/v1/me", &account.token).await;
    assert_eq!(me["plan"]["name"], "basic", "{me}");
    assert_eq!(me["plan"]["limits"]["messages_per_hour"], 100, "{me}");
    assert_eq!(me["usage"]["messages"], 100, "{me}");
    assert!(me["usage"]["resets_at"].is_string(), "{me}");

    let tenant = app
        .set_plan(&account.tenant_id, &json!({"plan": "pro"}))
        .await;
    assert_eq!(tenant["plan"]["name"], "pro", "{tenant}");
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(20), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["counts"]["sent"], 150, "{done}");
    assert_eq!(done["counts"]["waiting_quota"], 0, "{done}");
    assert_eq!(app.sim.stats().accepted, 150);
    assert_eq!(app.sim.stats().duplicate_ids, 0);
    app.stop().await;
}

/// With a short window (the test knob `HERALD_QUOTA_WINDOW_SECS`), waiting recipients go when
/// the window turns, and no window grants more than the plan allows.
#[tokio::test]
async fn waiting_recipients_go_when_the_window_turns() {
    let app = spawn_app_configured(|s| {
        s.default_plan = "basic".into();
        s.quota_window_secs = 2;
    })
    .await;
    let (account, session, template) = app.ready_tenant("window@b.co", "Hi {{ phone }}").await;
    let id = campaign(&app, &account, &session, &template, 250).await;
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(30), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["sent"], 250, "{done}");
    let windows: Vec<i64> =
        sqlx::query_scalar("SELECT messages FROM quota_usage ORDER BY window_start")
            .fetch_all(&app.pool)
            .await
            .expect("usage");
    assert!(windows.len() >= 3, "{windows:?}");
    assert!(windows.iter().all(|m| *m <= 100), "{windows:?}");
    assert_eq!(windows.iter().sum::<i64>(), 250);
    app.stop().await;
}

#[tokio::test]
async fn an_expired_subscription_reads_but_does_not_send_and_its_campaign_waits() {
    let app = basic_app().await;
    let (account, session, template) = app.ready_tenant("expired@b.co", "Hi {{ phone }}").await;
    let id = campaign(&app, &account, &session, &template, 150).await;
    app.wait_campaign(&account, &id, Duration::from_secs(20), |c| {
        c["counts"]["sent"] == 100 && c["counts"]["waiting_quota"] == 50
    })
    .await;
    // a bigger plan, but expired: the running campaign's recipients still wait
    let tenant = app
        .set_plan(
            &account.tenant_id,
            &json!({"plan": "max", "expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(tenant["plan"]["expired"], true, "{tenant}");
    let res = app
        .post(
            "/api/v1/campaigns",
            &account.token,
            &json!({"name": "x", "template_id": template, "session_id": session, "recipients": phones(1)}),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::FORBIDDEN).await.0,
        "subscription_expired"
    );
    let res = app
        .post(
            "/api/v1/messages",
            &account.token,
            &json!({"session_id": session, "to": "6281200000001", "type": "text", "body": "hi"}),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::FORBIDDEN).await.0,
        "subscription_expired"
    );
    let res = app
        .post_empty(&format!("/api/v1/campaigns/{id}/resume"), &account.token)
        .await;
    assert_eq!(
        error_code(res, StatusCode::FORBIDDEN).await.0,
        "subscription_expired"
    );
    // reads work, and the waiting recipients stay waiting
    let still = app
        .wait_campaign(&account, &id, Duration::from_millis(800), |c| {
            c["counts"]["sent"] != 100
        })
        .await;
    assert_eq!(still["counts"]["sent"], 100, "{still}");
    assert_eq!(still["counts"]["waiting_quota"], 50, "{still}");
    let me: Value = app.get_json("/api/v1/me", &account.token).await;
    assert_eq!(me["plan"]["expired"], true, "{me}");
    assert_eq!(
        app.get("/api/v1/campaigns", &account.token).await.status(),
        StatusCode::OK
    );

    // renewed: they go
    app.set_plan(
        &account.tenant_id,
        &json!({"plan": "max", "expires_at": "2999-01-01T00:00:00Z"}),
    )
    .await;
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(20), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["sent"], 150, "{done}");
    app.stop().await;
}

#[tokio::test]
async fn sessions_are_limited_by_the_plan() {
    let app = basic_app().await;
    let account = app.register("limit@b.co").await;
    app.link_session(&account, "first").await;
    let res = app
        .post(
            "/api/v1/sessions",
            &account.token,
            &json!({"name": "second", "gateway_token": "second"}),
        )
        .await;
    let (code, err) = error_code(res, StatusCode::FORBIDDEN).await;
    assert_eq!(code, "plan_limit_reached");
    assert_eq!(err["error"]["details"]["max"], 1, "{err}");
    assert_eq!(err["error"]["details"]["limit"], "sessions", "{err}");
    // another tenant's sessions do not count against this one
    let other = app.register("limit2@b.co").await;
    app.link_session(&other, "other").await;
    app.set_plan(&account.tenant_id, &json!({"plan": "pro"}))
        .await;
    app.link_session(&account, "second").await;
    let me: Value = app.get_json("/api/v1/me", &account.token).await;
    assert_eq!(me["usage"]["sessions"], 2, "{me}");
    assert_eq!(me["plan"]["limits"]["sessions"], 5, "{me}");
    app.stop().await;
}

#[tokio::test]
async fn api_calls_over_the_plan_are_429_with_retry_after_across_instances() {
    let app = basic_app().await;
    let account = app.register("calls@b.co").await;
    let other = app.register("calls2@b.co").await;
    // 1,000 calls per hour on basic; /me is a call too
    use futures::StreamExt;
    let ok = futures::stream::iter(0..999)
        .map(|_| app.get("/api/v1/me", &account.token))
        .buffer_unordered(16)
        .filter(|res| std::future::ready(res.status() == StatusCode::OK))
        .count()
        .await;
    assert_eq!(ok, 999);
    let me: Value = app.get_json("/api/v1/me", &account.token).await;
    assert_eq!(me["usage"]["api_calls"], 1000, "{me}");
    let res = app.get("/api/v1/me", &account.token).await;
    let retry: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(
        error_code(res, StatusCode::TOO_MANY_REQUESTS).await.0,
        "rate_limited"
    );
    // counted in Postgres: another instance refuses too
    let second = app.second_instance().await;
    let base = format!("http://{}", second.addr().expect("http"));
    let res = app
        .client
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(&account.token)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // health is not a tenant call; another tenant is not limited
    assert_eq!(
        app.client
            .get(app.url("/health"))
            .send()
            .await
            .expect("sent")
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/v1/me", &other.token).await.status(),
        StatusCode::OK
    );
    // the operator lifts the limit
    app.set_plan(&account.tenant_id, &json!({"plan": "unlimited"}))
        .await;
    assert_eq!(
        app.get("/api/v1/me", &account.token).await.status(),
        StatusCode::OK
    );
    second.stop().await;
    app.stop().await;
}
