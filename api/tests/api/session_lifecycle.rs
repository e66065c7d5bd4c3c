//! The whole life of a linked number: a WuzAPI user created through the admin API, connect, the
//! QR code, the phone's scan (the simulator's `/sim/scan`), session webhooks moving the status,
//! logout, and delete removing the WuzAPI user; plus gateway failures, tenant isolation and
//! forged session webhooks.

use std::time::Duration;

use herald_domain::session::{Session, SessionCommand, SessionStatus};
use herald_gateway::webhook::{self, Encoding};
use herald_simulator::SimulatorConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{error_code, spawn_app, spawn_app_with_admin_token, Account, TestApp};

pub(crate) const ADMIN: &str = "wuzapi-admin-secret";

pub(crate) fn with_admin() -> SimulatorConfig {
    SimulatorConfig {
        admin_token: Some(ADMIN.into()),
        ..SimulatorConfig::default()
    }
}

/// The payloads captured from a real WuzAPI deployment (api/tests/fixtures, docs/wuzapi.md).
fn sample(key: &str) -> Value {
    let dir = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{dir}/tests/fixtures/wuzapi-webhooks.json"))
        .expect("the captured WuzAPI payloads");
    let all: Value = serde_json::from_str(&text).expect("samples are JSON");
    all[key].clone()
}

/// The simulator's users as `/admin/users` lists them.
pub(crate) async fn sim_users(app: &TestApp) -> Vec<Value> {
    let listing: Value = app
        .client
        .get(format!("{}/admin/users", app.sim.base_url()))
        .header("Authorization", ADMIN)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    listing["data"].as_array().cloned().unwrap_or_default()
}

async fn session(app: &TestApp, account: &Account, id: &str) -> Value {
    app.get_json(&format!("/api/v1/sessions/{id}"), &account.token)
        .await
}

/// Polls the session until its status is `want`; panics with the last answer otherwise.
pub(crate) async fn wait_status(app: &TestApp, account: &Account, id: &str, want: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let body = session(app, account, id).await;
        if body["status"] == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never became {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until every stored webhook is processed; returns `(event_type, note)` in order.
async fn processed_inbox(app: &TestApp, at_least: usize) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<(String, Option<String>, bool)> = sqlx::query_as(
            "SELECT event_type, note, processed_at IS NOT NULL FROM webhook_inbox_status ORDER BY id",
        )
        .fetch_all(&app.pool)
        .await
        .expect("inbox");
        if rows.len() >= at_least && rows.iter().all(|r| r.2) {
            return rows
                .into_iter()
                .map(|(t, n, _)| (t, n.unwrap_or_default()))
                .collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "inbox not processed: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn credentials(
    app: &TestApp,
    id: &str,
) -> (String, Option<String>, Option<String>) {
    sqlx::query_as(
        "SELECT gateway_token, gateway_user_id, hmac_key FROM session_credentials WHERE session_id = $1",
    )
    .bind(id.parse::<Uuid>().expect("uuid"))
    .fetch_one(&app.pool)
    .await
    .expect("credentials")
}

pub(crate) async fn post_event(
    app: &TestApp,
    id: &str,
    event: &Value,
    key: Option<&str>,
) -> StatusCode {
    let post = webhook::encode_post(event, Encoding::Form, "1", "main number", key);
    let mut request = app
        .client
        .post(app.url(&format!("/api/v1/webhooks/wuzapi/{id}")))
        .header("content-type", post.content_type)
        .body(post.body);
    if let Some(signature) = &post.signature {
        request = request.header(webhook::SIGNATURE_HEADER, signature);
    }
    request.send().await.expect("sent").status()
}

pub(crate) async fn sim_post(app: &TestApp, path: &str, body: Value) -> StatusCode {
    app.client
        .post(format!("{}{path}", app.sim.base_url()))
        .json(&body)
        .send()
        .await
        .expect("sent")
        .status()
}

#[tokio::test]
async fn a_new_number_is_linked_by_scanning_its_qr_code_and_unlinked_with_its_wuzapi_user() {
    let app = spawn_app_with_admin_token(with_admin(), ADMIN, false).await;
    let account = app.register("linker@b.co").await;

    // 1. create without a gateway token: Herald makes the WuzAPI user
    let res = app
        .post("/api/v1/sessions", &account.token, &json!({"name": "Shop"}))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["status"], "disconnected");
    let shown = created.to_string();
    let (token, user_id, key) = credentials(&app, &id).await;
    assert!(key.is_some_and(|k| k.len() >= 32), "a signing key");
    assert!(!shown.contains(&token), "the user token is never shown");
    let user_id = user_id.expect("Herald keeps the WuzAPI user id");
    let users = sim_users(&app).await;
    assert_eq!(users.len(), 1, "{users:?}");
    let hook = format!("{}/api/v1/webhooks/wuzapi/{id}", app.base);
    assert_eq!(users[0]["id"], user_id.as_str());
    assert_eq!(users[0]["token"], token.as_str());
    assert_eq!(users[0]["webhook"], hook.as_str());
    assert_eq!(users[0]["connected"], false);
    // the webhook and its signing key are registered on the gateway
    let webhook: Value = app
        .client
        .get(format!("{}/webhook", app.sim.base_url()))
        .header("Token", &token)
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(webhook["data"]["webhook"], hook.as_str());
    assert!(webhook["data"]["subscribe"]
        .as_array()
        .expect("events")
        .iter()
        .any(|e| e == "QR"));
    let path = format!("/api/v1/sessions/{id}");

    // 2. before connecting there is no QR code
    let res = app.get(&format!("{path}/qr"), &account.token).await;
    assert_eq!(
        error_code(res, StatusCode::CONFLICT).await.0,
        "not_connected"
    );

    // 3. connect: the gateway posts its QR code (signed) and Herald keeps it
    let res = app
        .post_empty(&format!("{path}/connect"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let connected: Value = res.json().await.expect("json");
    assert_eq!(connected["status"], "qr_pending");
    let notes = processed_inbox(&app, 1).await;
    assert_eq!(notes[0].0, "QR", "{notes:?}");
    assert!(!notes[0].1.starts_with("malformed"), "{notes:?}");
    let stored: (String,) = sqlx::query_as("SELECT qr_code FROM session_qr")
        .fetch_one(&app.pool)
        .await
        .expect("the QR from the webhook is stored");
    let res = app.get(&format!("{path}/qr"), &account.token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let qr: Value = res.json().await.expect("json");
    assert_eq!(qr["qr_code"], stored.0.as_str());
    assert!(stored.0.starts_with("data:image/png;base64,"));
    // connecting again is not an error
    let res = app
        .post_empty(&format!("{path}/connect"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // 4. the phone scans it: the gateway's Connected webhook makes it connected
    assert_eq!(
        sim_post(&app, "/sim/scan", json!({"user_id": user_id})).await,
        StatusCode::OK
    );
    wait_status(&app, &account, &id, "connected").await;
    let res = app.get(&format!("{path}/qr"), &account.token).await;
    assert_eq!(
        error_code(res, StatusCode::CONFLICT).await.0,
        "already_logged_in"
    );
    let live = app
        .get_json(&format!("{path}/status"), &account.token)
        .await;
    assert_eq!(
        (&live["status"], &live["connected"], &live["logged_in"]),
        (&json!("connected"), &json!(true), &json!(true)),
        "{live}"
    );
    assert!(live["jid"]
        .as_str()
        .is_some_and(|j| j.ends_with("@s.whatsapp.net")));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM session_qr")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(left, 0, "a paired number's QR code is forgotten");

    // 5. logout: logged_out (and the gateway's LoggedOut webhook agrees)
    let res = app
        .post_empty(&format!("{path}/logout"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let out: Value = res.json().await.expect("json");
    assert_eq!(out["status"], "logged_out");
    let notes = processed_inbox(&app, 3).await;
    let types: Vec<&str> = notes.iter().map(|n| n.0.as_str()).collect();
    assert_eq!(types, ["QR", "Connected", "LoggedOut"], "{notes:?}");
    assert_eq!(session(&app, &account, &id).await["status"], "logged_out");
    let res = app
        .post_empty(&format!("{path}/logout"), &account.token)
        .await;
    assert_eq!(
        error_code(res, StatusCode::CONFLICT).await.0,
        "not_connected"
    );

    // the QR code never entered an event (events are published)
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE payload::text LIKE '%base64%' OR payload::text LIKE $1",
    )
    .bind(format!("%{token}%"))
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(leaked, 0);

    // 6. delete: the WuzAPI user Herald created goes too
    let res = app.delete(&path, &account.token).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(
        sim_users(&app).await.is_empty(),
        "the WuzAPI user is deleted"
    );
    assert_eq!(
        app.get(&path, &account.token).await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[tokio::test]
async fn an_existing_users_session_connects_without_error_and_is_not_deleted_on_the_gateway() {
    let app = spawn_app_with_admin_token(with_admin(), ADMIN, false).await;
    let account = app.register("existing@b.co").await;
    let id = app.link_session(&account, "existing-token").await;
    let path = format!("/api/v1/sessions/{id}");
    // the simulator's token users are connected and paired already
    let res = app
        .post_empty(&format!("{path}/connect"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["status"], "connected");
    let res = app
        .post_empty(&format!("{path}/logout"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .post_empty(&format!("{path}/connect"), &account.token)
        .await;
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        body["status"], "qr_pending",
        "logged out: a new QR is needed"
    );
    let res = app.delete(&path, &account.token).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        sim_users(&app).await.len(),
        1,
        "a user Herald did not create is not Herald's to delete"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_an_admin_token_the_gateway_token_is_required() {
    let app = spawn_app().await;
    let account = app.register("noadmin@b.co").await;
    let res = app
        .post("/api/v1/sessions", &account.token, &json!({"name": "Shop"}))
        .await;
    let (code, body) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(code, "validation_failed");
    assert_eq!(body["error"]["details"]["field"], "gateway_token");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("HERALD_WUZAPI_ADMIN_TOKEN"), "{message}");
    app.stop().await;
}

#[tokio::test]
async fn a_gateway_that_refuses_the_admin_token_is_a_502_with_its_message() {
    let app = spawn_app_with_admin_token(with_admin(), "not-the-admin-token", false).await;
    let account = app.register("wrongadmin@b.co").await;
    let res = app
        .post("/api/v1/sessions", &account.token, &json!({"name": "Shop"}))
        .await;
    let (code, body) = error_code(res, StatusCode::BAD_GATEWAY).await;
    assert_eq!(code, "gateway_error");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("unauthorized"), "{message}");
    assert!(!message.contains("not-the-admin-token"), "{message}");
    let list = app.get_json("/api/v1/sessions", &account.token).await;
    assert!(list["items"].as_array().expect("items").is_empty());
    app.stop().await;
}

/// A session linked while the gateway answered (events and credentials as linking writes them).
async fn linked_earlier(app: &TestApp, account: &Account, gateway_user_id: Option<&str>) -> String {
    let id = Uuid::new_v4();
    let tenant: Uuid = account.tenant_id.parse().expect("uuid");
    sqlx::query(
        "INSERT INTO session_credentials (session_id, tenant_id, gateway_token, hmac_key, gateway_user_id)
         VALUES ($1, $2, 'tok', $3, $4)",
    )
    .bind(id)
    .bind(tenant)
    .bind("k".repeat(64))
    .bind(gateway_user_id)
    .execute(&app.pool)
    .await
    .expect("credentials");
    let cqrs = herald_domain::store::cqrs::<Session>(app.pool.clone(), ());
    cqrs.execute(
        &id.to_string(),
        SessionCommand::Link {
            tenant_id: tenant,
            name: "earlier".into(),
            status: SessionStatus::Connected,
            at: chrono::Utc::now(),
        },
    )
    .await
    .expect("linked");
    let id = id.to_string();
    wait_status(app, account, &id, "connected").await;
    id
}

#[tokio::test]
async fn a_down_gateway_is_a_502_never_a_500() {
    let app = spawn_app_with_admin_token(with_admin(), ADMIN, true).await;
    let account = app.register("down@b.co").await;
    let res = app
        .post("/api/v1/sessions", &account.token, &json!({"name": "Shop"}))
        .await;
    assert_eq!(
        error_code(res, StatusCode::BAD_GATEWAY).await.0,
        "gateway_unavailable"
    );
    let id = linked_earlier(&app, &account, Some("7")).await;
    let path = format!("/api/v1/sessions/{id}");
    for res in [
        app.post_empty(&format!("{path}/connect"), &account.token)
            .await,
        app.get(&format!("{path}/qr"), &account.token).await,
        app.get(&format!("{path}/status"), &account.token).await,
        app.post_empty(&format!("{path}/logout"), &account.token)
            .await,
        app.delete(&path, &account.token).await,
    ] {
        let url = res.url().to_string();
        let (code, _) = error_code(res, StatusCode::BAD_GATEWAY).await;
        assert_eq!(code, "gateway_unavailable", "{url}");
    }
    // the recorded status is still there to read
    assert_eq!(session(&app, &account, &id).await["status"], "connected");
    // a session whose gateway is gone for good can still be deleted
    let res = app
        .delete(&format!("{path}?force=true"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&path, &account.token).await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[tokio::test]
async fn another_tenant_gets_404_on_every_session_route() {
    let app = spawn_app_with_admin_token(with_admin(), ADMIN, false).await;
    let owner = app.register("owner@b.co").await;
    let res = app
        .post("/api/v1/sessions", &owner.token, &json!({"name": "Shop"}))
        .await;
    let created: Value = res.json().await.expect("json");
    let id = created["id"].as_str().expect("id");
    let other = app.register("intruder@b.co").await;
    let path = format!("/api/v1/sessions/{id}");
    for res in [
        app.get(&path, &other.token).await,
        app.post_empty(&format!("{path}/connect"), &other.token)
            .await,
        app.get(&format!("{path}/qr"), &other.token).await,
        app.get(&format!("{path}/status"), &other.token).await,
        app.post_empty(&format!("{path}/logout"), &other.token)
            .await,
        app.delete(&path, &other.token).await,
    ] {
        let url = res.url().to_string();
        assert_eq!(
            error_code(res, StatusCode::NOT_FOUND).await.0,
            "not_found",
            "{url}"
        );
    }
    let list = app.get_json("/api/v1/sessions", &other.token).await;
    assert!(list["items"].as_array().expect("items").is_empty());
    // nothing happened to the owner's number
    let users = sim_users(&app).await;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["connected"], false);
    assert_eq!(session(&app, &owner, id).await["status"], "disconnected");
    app.stop().await;
}

#[tokio::test]
async fn captured_session_webhooks_move_the_status_in_time_order() {
    let app = spawn_app().await;
    let account = app.register("captured@b.co").await;
    let id = app.link_session(&account, "captured-token").await;
    let (_, _, key) = credentials(&app, &id).await;
    let key = key.expect("key");
    let key = Some(key.as_str());
    let path = format!("/api/v1/sessions/{id}");

    // the number is unpaired from the phone: logged_out
    let unpaired = json!({"type": "LoggedOut", "event": {"OnConnect": false, "Reason": 401}});
    assert_eq!(post_event(&app, &id, &unpaired, key).await, StatusCode::OK);
    wait_status(&app, &account, &id, "logged_out").await;

    // the captured QR event: qr_pending, and GET /qr serves exactly its image
    let qr_event = sample("qr_code_event");
    assert_eq!(post_event(&app, &id, &qr_event, key).await, StatusCode::OK);
    wait_status(&app, &account, &id, "qr_pending").await;
    let qr = app.get_json(&format!("{path}/qr"), &account.token).await;
    assert_eq!(qr["qr_code"], qr_event["qrCodeBase64"], "{qr}");
    // it is served there and nowhere else
    let listed = app.get_json("/api/v1/sessions", &account.token).await;
    assert!(!listed.to_string().contains("base64"));
    assert!(!session(&app, &account, &id)
        .await
        .to_string()
        .contains("base64"));

    // the captured Connected without a time: connected, the QR is forgotten
    let empty = sample("session_connected_empty");
    assert_eq!(post_event(&app, &id, &empty, key).await, StatusCode::OK);
    wait_status(&app, &account, &id, "connected").await;
    // a retry of the very same body is stored once
    assert_eq!(post_event(&app, &id, &empty, key).await, StatusCode::OK);
    assert_eq!(processed_inbox(&app, 3).await.len(), 3);
    let qr_left: i64 = sqlx::query_scalar("SELECT count(*) FROM session_qr")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(qr_left, 0);

    // a QR code delivered after the Connected that followed it changes nothing, and is not kept
    let late_qr = json!({"type": "QR", "event": "code", "qrCodeBase64":
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="});
    assert_eq!(post_event(&app, &id, &late_qr, key).await, StatusCode::OK);
    let notes = processed_inbox(&app, 4).await;
    assert!(notes[3].1.contains("unchanged"), "{notes:?}");
    assert_eq!(session(&app, &account, &id).await["status"], "connected");
    let qr_left: i64 = sqlx::query_scalar("SELECT count(*) FROM session_qr")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(qr_left, 0, "a late QR code is not kept");

    // a LoggedOut timed before the last change arrives late: stale, nothing changes
    let late = json!({"type": "LoggedOut", "event": {"Reason": 401,
        "Timestamp": (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339()}});
    assert_eq!(post_event(&app, &id, &late, key).await, StatusCode::OK);
    // so is the captured Connected, timed in 2025, before this session was linked
    let old = sample("session_connected");
    assert_eq!(post_event(&app, &id, &old, key).await, StatusCode::OK);
    let notes = processed_inbox(&app, 6).await;
    assert!(notes[4].1.contains("unchanged"), "{notes:?}");
    assert!(notes[5].1.contains("unchanged"), "{notes:?}");
    assert_eq!(session(&app, &account, &id).await["status"], "connected");

    // a Disconnected now: disconnected; a QR timeout afterwards keeps it so
    let dropped = json!({"type": "Disconnected", "event": {}});
    assert_eq!(post_event(&app, &id, &dropped, key).await, StatusCode::OK);
    wait_status(&app, &account, &id, "disconnected").await;
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'Session' AND aggregate_id = $1",
    )
    .bind(&id)
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(
        events, 5,
        "linked, logged_out, qr_pending, connected, disconnected"
    );
    let leaked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text LIKE '%base64%'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(leaked, 0, "QR codes never enter events");
    app.stop().await;
}

#[tokio::test]
async fn forged_session_webhooks_change_nothing() {
    let app = spawn_app().await;
    let account = app.register("forged-session@b.co").await;
    let id = app.link_session(&account, "forged-token").await;
    let qr_event = sample("qr_code_event");
    let logged_out = json!({"type": "LoggedOut", "event": {}});
    for event in [&qr_event, &logged_out] {
        assert_eq!(
            post_event(&app, &id, event, None).await,
            StatusCode::UNAUTHORIZED
        );
        let wrong = "w".repeat(64);
        assert_eq!(
            post_event(&app, &id, event, Some(&wrong)).await,
            StatusCode::UNAUTHORIZED
        );
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_inbox")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(stored, 0);
    let qr: i64 = sqlx::query_scalar("SELECT count(*) FROM session_qr")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(qr, 0);
    assert_eq!(session(&app, &account, &id).await["status"], "connected");
    app.stop().await;
}
