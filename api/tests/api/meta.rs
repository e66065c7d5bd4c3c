//! The WhatsApp Cloud API webhook: Meta's verification handshake, `X-Hub-Signature-256`,
//! statuses moving deliveries like WuzAPI receipts, messages feeding chats, and notifications
//! for numbers no session stands for. Payloads follow the Cloud API's documented shape.

use std::time::Duration;

use herald_gateway::meta;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, phones, spawn_app, spawn_app_configured, Account, TestApp};
use crate::webhooks::{eventually, inbox_rows, recipients, run_campaign};

const VERIFY_TOKEN: &str = "meta-verify-token-for-tests";
const APP_SECRET: &str = "meta-app-secret-for-tests";
const NUMBER_ID: &str = "106540352242922";

/// The access token the fake Graph API accepts for `NUMBER_ID`.
const ACCESS_TOKEN: &str = "EAAG-test-access-token";

async fn meta_app() -> TestApp {
    let graph = crate::fake_graph::spawn(&[(NUMBER_ID, ACCESS_TOKEN)]).await;
    spawn_app_configured(move |s| {
        s.meta_graph_url = graph.url;
        s.meta_verify_token = Some(herald_api::config::Secret::new(VERIFY_TOKEN));
        s.meta_app_secret = Some(herald_api::config::Secret::new(APP_SECRET));
    })
    .await
}

/// A tenant whose session stands for the Cloud API number `NUMBER_ID`, and a template.
async fn meta_tenant(app: &TestApp, email: &str) -> (Account, String, String) {
    let account = app.register(email).await;
    let res = app
        .post(
            "/api/v1/sessions",
            &account.token,
            &json!({"name": "cloud number", "gateway_token": format!("token-{email}"),
                    "meta_phone_number_id": NUMBER_ID, "meta_access_token": ACCESS_TOKEN}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["meta_phone_number_id"], NUMBER_ID);
    let session = body["id"].as_str().expect("id").to_string();
    let template = app.create_template(&account, "Hello {{ phone }}").await;
    (account, session, template)
}

/// A notification as Meta sends it: one entry, one `messages` change for `number`.
fn notification(number: &str, value: Value) -> Value {
    let mut value = value;
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] = json!({"display_phone_number": "15550783881", "phone_number_id": number});
    json!({"object": "whatsapp_business_account",
           "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]})
}

fn status(id: &str, status: &str, at: i64, recipient: &str) -> Value {
    let mut s = json!({"id": id, "status": status, "timestamp": at.to_string(), "recipient_id": recipient,
                       "pricing": {"billable": true, "pricing_model": "CBP", "category": "marketing"}});
    if status == "failed" {
        s["errors"] = json!([{"code": 131026, "title": "Message undeliverable",
                              "message": "Message undeliverable",
                              "error_data": {"details": "Message Undeliverable."}}]);
    }
    s
}

async fn post_signed(app: &TestApp, body: &[u8], signature: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/api/v1/webhooks/meta"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(signature) = signature {
        request = request.header(meta::SIGNATURE_HEADER, signature);
    }
    request.send().await.expect("request sent")
}

async fn post_notification(app: &TestApp, notification: &Value) -> Value {
    let body = serde_json::to_vec(notification).expect("json");
    let res = post_signed(app, &body, Some(&meta::sign(APP_SECRET, &body))).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.expect("json")
}

#[tokio::test]
async fn the_verification_handshake_echoes_the_challenge_for_the_right_token() {
    let app = meta_app().await;
    let url = |mode: &str, token: &str, challenge: &str| {
        app.url(&format!(
            "/api/v1/webhooks/meta?hub.mode={mode}&hub.verify_token={token}&hub.challenge={challenge}"
        ))
    };
    let res = app
        .client
        .get(url("subscribe", VERIFY_TOKEN, "1158201444"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain")));
    assert_eq!(res.text().await.expect("text"), "1158201444");
    for (mode, token) in [
        ("subscribe", "wrong-token"),
        ("unsubscribe", VERIFY_TOKEN),
        ("subscribe", ""),
    ] {
        let res = app
            .client
            .get(url(mode, token, "1158201444"))
            .send()
            .await
            .expect("sent");
        assert_eq!(
            error_code(res, StatusCode::FORBIDDEN).await.0,
            "verification_failed"
        );
    }
    let res = app
        .client
        .get(url("subscribe", VERIFY_TOKEN, "%3Cscript%3E"))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await.0,
        "invalid_query"
    );
    app.stop().await;

    // not configured: the endpoint is off
    let off = spawn_app().await;
    let res = off
        .client
        .get(off.url("/api/v1/webhooks/meta?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = post_signed(&off, b"{}", Some(&meta::sign(APP_SECRET, b"{}"))).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    off.stop().await;
}

#[tokio::test]
async fn unsigned_forged_and_malformed_notifications_change_nothing() {
    let app = meta_app().await;
    meta_tenant(&app, "forged@b.co").await;
    let body = serde_json::to_vec(&notification(
        NUMBER_ID,
        json!({"statuses": [status("wamid.X", "read", 1_750_857_384, "6281")]}),
    ))
    .expect("json");
    let res = post_signed(&app, &body, None).await;
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await.0,
        "unauthorized"
    );
    for forged in [
        meta::sign("another-secret", &body),
        crate::webhooks::hook_path("x"), // not a signature at all
        meta::sign(APP_SECRET, b"another body"),
        meta::sign(APP_SECRET, &body)
            .trim_start_matches("sha256=")
            .to_string(),
    ] {
        let res = post_signed(&app, &body, Some(&forged)).await;
        assert_eq!(
            error_code(res, StatusCode::UNAUTHORIZED).await.0,
            "unauthorized"
        );
    }
    assert!(inbox_rows(&app).await.is_empty());
    for bad in [
        &b"not json"[..],
        br#"{"object": "page", "entry": []}"#,
        br#"[]"#,
    ] {
        let res = post_signed(&app, bad, Some(&meta::sign(APP_SECRET, bad))).await;
        assert_eq!(
            error_code(res, StatusCode::BAD_REQUEST).await.0,
            "invalid_webhook"
        );
    }
    assert!(inbox_rows(&app).await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn statuses_move_deliveries_forward_like_wuzapi_receipts() {
    let app = meta_app().await;
    let (account, session, template) = meta_tenant(&app, "statuses@b.co").await;
    let campaign = run_campaign(&app, &account, &session, &template, 3).await;
    let before = recipients(&app, &account, &campaign).await;
    let phones = phones(3);
    let id = |i: usize| {
        before[&phones[i]]["message_id"]
            .as_str()
            .expect("id")
            .to_string()
    };
    let t0 = chrono::Utc::now().timestamp();
    // phone 0: read then delivered (any order); phone 1: delivered, twice; phone 2: sent again
    let first = notification(
        NUMBER_ID,
        json!({"statuses": [
            status(&id(0), "read", t0 + 20, &phones[0]),
            status(&id(1), "delivered", t0 + 10, &phones[1]),
            status(&id(2), "sent", t0 + 5, &phones[2])]}),
    );
    assert_eq!(post_notification(&app, &first).await["status"], "stored");
    assert_eq!(post_notification(&app, &first).await["status"], "duplicate");
    let second = notification(
        NUMBER_ID,
        json!({"statuses": [
            status(&id(0), "delivered", t0 + 10, &phones[0]),
            status(&id(1), "delivered", t0 + 99, &phones[1])]}),
    );
    assert_eq!(post_notification(&app, &second).await["status"], "stored");
    let settled = eventually(Duration::from_secs(15), || async {
        let r = recipients(&app, &account, &campaign).await;
        r[&phones[0]]["status"] == "read"
            && !r[&phones[0]]["delivered_at"].is_null()
            && r[&phones[1]]["status"] == "delivered"
    })
    .await;
    let after = recipients(&app, &account, &campaign).await;
    assert!(settled, "{after:?}");
    let at = |secs: i64| {
        chrono::DateTime::from_timestamp(secs, 0)
            .expect("time")
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    };
    assert_eq!(after[&phones[0]]["read_at"], at(t0 + 20));
    assert_eq!(after[&phones[0]]["delivered_at"], at(t0 + 10));
    assert_eq!(
        after[&phones[1]]["delivered_at"],
        at(t0 + 10),
        "the first receipt's time stays"
    );
    assert_eq!(after[&phones[2]]["status"], "sent");
    assert_eq!(after[&phones[2]]["sent_at"], before[&phones[2]]["sent_at"]);
    // WhatsApp could not deliver phone 2's message after all: failed, with Meta's reason; a
    // failure for the delivered phone 1 changes nothing
    let failed = notification(
        NUMBER_ID,
        json!({"statuses": [
            status(&id(2), "failed", t0 + 30, &phones[2]),
            status(&id(1), "failed", t0 + 30, &phones[1])]}),
    );
    post_notification(&app, &failed).await;
    let settled = eventually(Duration::from_secs(15), || async {
        recipients(&app, &account, &campaign).await[&phones[2]]["status"] == "failed"
    })
    .await;
    let after = recipients(&app, &account, &campaign).await;
    assert!(settled, "{after:?}");
    assert_eq!(
        after[&phones[2]]["error"],
        "131026 Message undeliverable: Message Undeliverable."
    );
    assert_eq!(after[&phones[2]]["failed_at"], at(t0 + 30));
    assert_eq!(after[&phones[1]]["status"], "delivered");
    let counts = app
        .get_json(&format!("/api/v1/campaigns/{campaign}"), &account.token)
        .await["counts"]
        .clone();
    assert_eq!(
        (
            counts["read"].as_i64(),
            counts["delivered"].as_i64(),
            counts["failed"].as_i64(),
            counts["sent"].as_i64()
        ),
        (Some(1), Some(1), Some(1), Some(0))
    );
    // the inbox says what it did
    let notes: Vec<String> = inbox_rows(&app)
        .await
        .into_iter()
        .filter_map(|r| r.note)
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("receipt for 3 message(s)")),
        "{notes:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn messages_feed_chats_and_unknown_numbers_are_stored_and_ignored() {
    let app = meta_app().await;
    let (account, session, _) = meta_tenant(&app, "cloudchat@b.co").await;
    let incoming = notification(
        NUMBER_ID,
        json!({"contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
               "messages": [
                 {"from": "16505551234", "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
                  "timestamp": "1749416383", "type": "text", "text": {"body": "Does it come in another color?"}},
                 {"from": "16505551234", "id": "wamid.IMAGE1", "timestamp": "1749416390", "type": "image",
                  "image": {"caption": "like this", "mime_type": "image/jpeg", "sha256": "x", "id": "1"}}]}),
    );
    assert_eq!(post_notification(&app, &incoming).await["status"], "stored");
    // the same message again in a new notification (Meta retried with another body)
    let mut again = incoming.clone();
    again["entry"][0]["id"] = json!("102290129340398 ");
    post_notification(&app, &again).await;
    // a number no session stands for: 200, stored, ignored
    let stranger = notification(
        "999999999999999",
        json!({"messages": [
        {"from": "16505550000", "id": "wamid.STRANGER", "timestamp": "1749416383", "type": "text",
         "text": {"body": "hello?"}}]}),
    );
    assert_eq!(post_notification(&app, &stranger).await["status"], "stored");

    let ok = eventually(Duration::from_secs(15), || async {
        inbox_rows(&app).await.iter().all(|r| r.processed)
    })
    .await;
    assert!(ok, "{:?}", inbox_rows(&app).await);
    // the inbox is done; the read model follows shortly
    let projected = eventually(Duration::from_secs(15), || async {
        let chats = app.get_json("/api/v1/chats", &account.token).await;
        chats["items"][0]["unread_count"] == 2
    })
    .await;
    let chats = app.get_json("/api/v1/chats", &account.token).await;
    assert!(projected, "{chats}");
    let items = chats["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{chats}");
    let chat = &items[0];
    assert_eq!(chat["session_id"], session.as_str());
    assert_eq!(chat["jid"], "16505551234@s.whatsapp.net");
    assert_eq!(chat["name"], "Sheena Nelson");
    assert_eq!(
        chat["unread_count"], 2,
        "the retried notification counts once"
    );
    assert_eq!(chat["last_message"]["type"], "image");
    assert_eq!(chat["last_message"]["text"], "like this");
    let rows = inbox_rows(&app).await;
    assert!(
        rows.iter().any(|r| r.note.as_deref()
            == Some("ignored: no session has Cloud API phone number id 999999999999999")),
        "{rows:?}"
    );
    let strangers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM chat_messages WHERE message_id = 'wamid.STRANGER'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(strangers, 0);

    // the number is one session's only: another session cannot claim it; bad ids are 422
    let res = app
        .post(
            "/api/v1/sessions",
            &account.token,
            &json!({"name": "twin", "gateway_token": "token-twin", "meta_phone_number_id": NUMBER_ID,
                    "meta_access_token": ACCESS_TOKEN}),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::CONFLICT).await.0,
        "phone_number_id_taken"
    );
    let res = app
        .post(
            "/api/v1/sessions",
            &account.token,
            &json!({"name": "bad", "gateway_token": "token-bad", "meta_phone_number_id": "+1 555"}),
        )
        .await;
    let (code, body) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(code, "validation_failed");
    assert_eq!(body["error"]["details"]["field"], "meta_phone_number_id");
    app.stop().await;
}
