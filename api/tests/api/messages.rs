//! Single sends: `POST /api/v1/messages` through the campaign dispatch path, followed with
//! `GET /api/v1/messages/{id}`; quota at request time; Idempotency-Key; image sends processed
//! once at request time by the image templates' pipeline.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::{error_code, phones, spawn_app, spawn_app_configured, Account, TestApp};
use crate::images::{b64, invalid_image, png, sim_items, ImageServer, Reply};
use reqwest::StatusCode;
use serde_json::{json, Value};

pub(crate) async fn send(
    app: &TestApp,
    account: &Account,
    key: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/api/v1/messages"))
        .bearer_auth(&account.token)
        .json(body);
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    req.send().await.expect("sent")
}

pub(crate) async fn wait_message(
    app: &TestApp,
    account: &Account,
    id: &str,
    status: &str,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let m: Value = app
            .get_json(&format!("/api/v1/messages/{id}"), &account.token)
            .await;
        if m["status"] == status || tokio::time::Instant::now() > deadline {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a text that goes out at once and waits until it is `sent`; on a paced session the next
/// send then waits a whole interval. Returns the message's id.
pub(crate) async fn send_first_and_wait_sent(
    app: &TestApp,
    account: &Account,
    session: &str,
    to: &str,
) -> String {
    let res = send(
        app,
        account,
        None,
        &json!({"session_id": session, "to": to, "type": "text", "body": "first"}),
    )
    .await;
    let id = res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        wait_message(app, account, &id, "sent").await["status"],
        "sent"
    );
    id
}

#[tokio::test]
async fn a_single_send_goes_through_dispatch_and_can_be_followed() {
    let app = spawn_app().await;
    let (account, session, _) = app.ready_tenant("single@b.co", "unused").await;
    let res = send(
        &app,
        &account,
        None,
        &json!({"session_id": session, "to": "+62 812-0000-1111", "type": "text", "body": "Your code is 4411"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let accepted: Value = res.json().await.expect("json");
    assert_eq!(accepted["status"], "queued");
    let id = accepted["id"].as_str().expect("id");
    let sent = wait_message(&app, &account, id, "sent").await;
    assert_eq!(sent["status"], "sent", "{sent}");
    assert_eq!(sent["to"], "6281200001111");
    assert_eq!(sent["message_id"], accepted["message_id"]);
    assert_eq!(sent["attempts"], 1);
    assert!(sent["sent_at"].is_string(), "{sent}");
    let got = app.sim_messages().await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "6281200001111");
    assert_eq!(got[0].1, "Your code is 4411");
    assert_eq!(Some(got[0].2.as_str()), accepted["message_id"].as_str());
    // single sends are not campaigns
    let list: Value = app.get_json("/api/v1/campaigns", &account.token).await;
    assert!(
        list["items"].as_array().expect("items").is_empty(),
        "{list}"
    );
    // another tenant cannot see it
    let other = app.register("other@b.co").await;
    let res = app
        .get(&format!("/api/v1/messages/{id}"), &other.token)
        .await;
    assert_eq!(error_code(res, StatusCode::NOT_FOUND).await.0, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_answer_the_first_answer_once() {
    let app = spawn_app().await;
    let (account, session, _) = app.ready_tenant("idem@b.co", "unused").await;
    let body =
        json!({"session_id": session, "to": "6281200002222", "type": "text", "body": "once"});
    let first = send(&app, &account, Some("order-42"), &body).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.expect("json");
    // the same body in another key order is the same request
    let reordered =
        json!({"body": "once", "type": "text", "to": "6281200002222", "session_id": session});
    let again = send(&app, &account, Some("order-42"), &reordered).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    let again: Value = again.json().await.expect("json");
    assert_eq!(again, first);
    let other_body =
        json!({"session_id": session, "to": "6281200002222", "type": "text", "body": "twice"});
    let res = send(&app, &account, Some("order-42"), &other_body).await;
    assert_eq!(
        error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await.0,
        "idempotency_key_reused"
    );
    // keys are per tenant: another tenant's same key is its own
    let (other, other_session, _) = app.ready_tenant("idem2@b.co", "unused").await;
    let res = send(
        &app,
        &other,
        Some("order-42"),
        &json!({"session_id": other_session, "to": "6281200003333", "type": "text", "body": "mine"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let theirs: Value = res.json().await.expect("json");
    assert_ne!(theirs["id"], first["id"]);
    let id = first["id"].as_str().expect("id");
    wait_message(&app, &account, id, "sent").await;
    let id2 = theirs["id"].as_str().expect("id");
    wait_message(&app, &other, id2, "sent").await;
    assert_eq!(app.sim.stats().accepted, 2, "one send per key and tenant");
    let res = app
        .client
        .post(app.url("/api/v1/messages"))
        .bearer_auth(&account.token)
        .header("idempotency-key", "")
        .json(&body)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}

#[tokio::test]
async fn a_single_send_over_quota_is_429_with_when_it_resets() {
    let app = spawn_app_configured(|s| s.default_plan = "basic".into()).await;
    let (account, session, template) = app.ready_tenant("over@b.co", "Hi {{ phone }}").await;
    let id = app
        .create_campaign(&account, &json!({"name": "fill", "template_id": template, "session_id": session, "recipients": phones(99)}))
        .await;
    app.wait_campaign(&account, &id, Duration::from_secs(20), |c| {
        c["status"] == "completed"
    })
    .await;
    let body =
        json!({"session_id": session, "to": "6281299999999", "type": "text", "body": "last one"});
    assert_eq!(
        send(&app, &account, None, &body).await.status(),
        StatusCode::ACCEPTED
    );
    let res = send(&app, &account, None, &body).await;
    let retry: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=3600).contains(&retry));
    let (code, err) = error_code(res, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(code, "quota_exceeded");
    assert!(err["error"]["details"]["resets_at"].is_string(), "{err}");
    let me: Value = app.get_json("/api/v1/me", &account.token).await;
    assert_eq!(me["usage"]["messages"], 100, "{me}");
    app.stop().await;
}

#[tokio::test]
async fn bad_single_sends_are_4xx_naming_the_field() {
    let app = spawn_app().await;
    let (account, session, _) = app.ready_tenant("badmsg@b.co", "unused").await;
    let (_other, other_session, _) = app.ready_tenant("badmsg2@b.co", "unused").await;
    for (body, field) in [
        (
            json!({"session_id": session, "to": "not a phone", "type": "text", "body": "x"}),
            "to",
        ),
        (
            json!({"session_id": session, "to": "6281200001111", "type": "text"}),
            "body",
        ),
        (
            json!({"session_id": session, "to": "6281200001111", "type": "text", "body": "  "}),
            "body",
        ),
        (
            json!({"session_id": session, "to": "6281200001111", "type": "video", "body": "x"}),
            "type",
        ),
        (
            json!({"session_id": session, "to": "6281200001111", "type": "image"}),
            "image_url",
        ),
        (
            json!({"session_id": "nope", "to": "6281200001111", "type": "text", "body": "x"}),
            "session_id",
        ),
        (
            json!({"session_id": session, "to": "6281200001111", "type": "text", "body": "x", "extra": 1}),
            "extra",
        ),
        (
            json!({"to": "6281200001111", "type": "text", "body": "x"}),
            "session_id",
        ),
    ] {
        let res = send(&app, &account, None, &body).await;
        let (code, err) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(code, "validation_failed", "{body}");
        assert_eq!(err["error"]["details"]["field"], field, "{body} → {err}");
    }
    // another tenant's session, or none: 404
    for s in [
        other_session.as_str(),
        "7b0c3a6e-0d55-4a8e-9a53-3d2f1c1d9e00",
    ] {
        let res = send(
            &app,
            &account,
            None,
            &json!({"session_id": s, "to": "6281200001111", "type": "text", "body": "x"}),
        )
        .await;
        assert_eq!(error_code(res, StatusCode::NOT_FOUND).await.0, "not_found");
    }
    for id in ["7b0c3a6e-0d55-4a8e-9a53-3d2f1c1d9e00", "not-a-uuid"] {
        let res = app
            .get(&format!("/api/v1/messages/{id}"), &account.token)
            .await;
        assert_eq!(error_code(res, StatusCode::NOT_FOUND).await.0, "not_found");
    }
    let res = app
        .post_raw("/api/v1/messages", &account.token, "{not json")
        .await;
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await.0,
        "invalid_json"
    );
    assert_eq!(app.sim.stats().accepted, 0);
    app.stop().await;
}

/// Receipts find a single send by its message id like a campaign's recipient, and single sends
/// keep their session's pace.
#[tokio::test]
async fn single_sends_get_receipts_and_keep_the_sessions_pace() {
    use herald_simulator::{ReceiptSettings, SimulatorConfig};
    let app = crate::helpers::spawn_app_with(SimulatorConfig {
        receipts: ReceiptSettings::on(),
        ..SimulatorConfig::default()
    })
    .await;
    let account = app.register("pace@b.co").await;
    let session = app
        .link_session_paced(&account, "pace-token", 400, 500)
        .await;
    let mut ids = Vec::new();
    // two texts and an image: an image send keeps the pace and gets receipts like a text
    let image = b64(&png(60, 40));
    for (to, body) in [
        (
            "6281200000011",
            json!({"session_id": session, "to": "6281200000011", "type": "text", "body": "hello"}),
        ),
        (
            "6281200000012",
            json!({"session_id": session, "to": "6281200000012", "type": "image", "image_base64": image, "caption": "hello"}),
        ),
        (
            "6281200000013",
            json!({"session_id": session, "to": "6281200000013", "type": "text", "body": "hello"}),
        ),
    ] {
        assert_eq!(body["to"], to);
        let res = send(&app, &account, None, &body).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let body: Value = res.json().await.expect("json");
        ids.push(body["id"].as_str().expect("id").to_string());
    }
    for id in &ids {
        let read = wait_message(&app, &account, id, "read").await;
        assert_eq!(read["status"], "read", "{read}");
        assert!(
            read["delivered_at"].is_string() || read["read_at"].is_string(),
            "{read}"
        );
    }
    let times = app.sim_message_times().await;
    assert_eq!(times.len(), 3);
    let kinds: Vec<Value> = sim_items(&app)
        .await
        .iter()
        .map(|m| m["kind"].clone())
        .collect();
    assert!(kinds.contains(&json!("image")), "{kinds:?}");
    for w in times.windows(2) {
        let gap = (w[1].1 - w[0].1).num_milliseconds();
        assert!(gap >= 400, "sends {gap} ms apart");
    }
    app.stop().await;
}

/// An image single send: fetched and processed once while the request runs, stored by hash,
/// sent as the processed JPEG with its caption as given; the Idempotency-Key replays without
/// fetching again.
#[tokio::test]
async fn an_image_single_send_is_processed_once_and_sent_with_its_caption() {
    let app = spawn_app().await;
    let server = ImageServer::start().await;
    let url = server.serve(
        "/receipt.png",
        Reply::Body("image/png", Arc::new(png(2_000, 1_000))),
    );
    let (account, session, _) = app.ready_tenant("imgsingle@b.co", "unused").await;
    // the caption is plain text: braces are sent as they are
    let body = json!({"session_id": session, "to": "+62 812-0000-4444", "type": "image",
                      "image_url": url, "caption": "Your receipt, {{ name }}"});
    let res = send(&app, &account, Some("receipt-7"), &body).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let accepted: Value = res.json().await.expect("json");
    assert_eq!(accepted["status"], "queued");
    assert_eq!(server.hits("/receipt.png"), 1, "fetched during the request");
    let id = accepted["id"].as_str().expect("id").to_string();
    let sent = wait_message(&app, &account, &id, "sent").await;
    assert_eq!(sent["status"], "sent", "{sent}");
    assert_eq!(sent["type"], "image", "{sent}");
    assert_eq!(sent["to"], "6281200004444");
    let stored: Vec<(String, i32, i32)> = sqlx::query_as("SELECT sha256, width, height FROM media")
        .fetch_all(&app.pool)
        .await
        .expect("media");
    assert_eq!(stored.len(), 1, "stored once by hash");
    assert_eq!((stored[0].1, stored[0].2), (1600, 800), "scaled down");
    let items = sim_items(&app).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["kind"], "image");
    assert_eq!(items[0]["phone"], "6281200004444");
    assert_eq!(items[0]["id"], accepted["message_id"]);
    assert_eq!(items[0]["text"], "Your receipt, {{ name }}");
    assert_eq!(
        items[0]["image_sha256"],
        stored[0].0.as_str(),
        "the processed JPEG"
    );

    // the same key and body: the first answer, and no second fetch or send
    let again = send(&app, &account, Some("receipt-7"), &body).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.json::<Value>().await.expect("json"), accepted);
    // the same key with another body: refused before anything is fetched
    let mut other = body.clone();
    other["caption"] = json!("Another caption");
    let res = send(&app, &account, Some("receipt-7"), &other).await;
    assert_eq!(
        error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await.0,
        "idempotency_key_reused"
    );
    assert_eq!(server.total(), 1, "never fetched again");

    // base64 (raw or a data URL) without a caption
    let inline = format!("data:image/png;base64,{}", b64(&png(120, 80)));
    let res = send(
        &app,
        &account,
        None,
        &json!({"session_id": session, "to": "6281200005555", "type": "image", "image_base64": inline}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let second = res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let sent = wait_message(&app, &account, &second, "sent").await;
    assert_eq!(sent["status"], "sent", "{sent}");
    let items = sim_items(&app).await;
    assert_eq!(items.len(), 2);
    let inline_item = items
        .iter()
        .find(|i| i["phone"] == "6281200005555")
        .expect("sent");
    assert_eq!(inline_item["kind"], "image");
    assert_eq!(inline_item["text"], "");
    assert_eq!(app.sim.stats().accepted, 2);
    let me: Value = app.get_json("/api/v1/me", &account.token).await;
    assert_eq!(me["usage"]["messages"], 2, "one message each: {me}");
    server.stop();
    app.stop().await;
}

/// A refused image is a 422 `invalid_image` with the reason, like an image template's: nothing
/// is queued, no quota is taken, and the refusal is not kept under its Idempotency-Key.
#[tokio::test]
async fn refused_images_are_422_and_nothing_is_queued_or_counted() {
    let app = spawn_app_configured(|s| s.default_plan = "basic".into()).await;
    let server = ImageServer::start().await;
    let (account, session, _) = app.ready_tenant("imgbad@b.co", "unused").await;
    let bomb = herald_media::testing::png_bomb(40_000, 40_000);
    let cases = [
        (
            json!({"image_url": "http://169.254.169.254/latest/meta-data/"}),
            "image_url",
            "url_refused",
            "link-local",
        ),
        (
            json!({"image_url": server.serve("/bomb.png", Reply::Body("image/png", Arc::new(bomb.clone())))}),
            "image_url",
            "too_large",
            "40000×40000",
        ),
        (
            json!({"image_url": server.serve("/text.png", Reply::Body("image/png", Arc::new(b"hello".to_vec())))}),
            "image_url",
            "not_a_valid_image",
            "not an image",
        ),
        (
            json!({"image_url": server.url("/missing.png")}),
            "image_url",
            "fetch_failed",
            "HTTP 404",
        ),
        (
            json!({"image_base64": b64(&bomb)}),
            "image_base64",
            "too_large",
            "40000×40000",
        ),
        (
            json!({"image_base64": "bm90IGFuIGltYWdl"}),
            "image_base64",
            "not_a_valid_image",
            "not an image",
        ),
    ];
    for (image, field, kind, expected) in cases {
        let mut body =
            json!({"session_id": session, "to": "6281200006666", "type": "image", "caption": "x"});
        for (k, v) in image.as_object().expect("object") {
            body[k] = v.clone();
        }
        let res = send(&app, &account, Some("pic-1"), &body).await;
        let (got, reason) = invalid_image(res, field).await;
        assert_eq!(got, kind, "{image}: {reason}");
        assert!(reason.contains(expected), "{image}: {reason}");
    }
    // requests that are wrong on their face cost no fetch
    let fine = server.serve("/fine.png", Reply::Body("image/png", Arc::new(png(40, 40))));
    let long = "x".repeat(1_025);
    for (body, field) in [
        (
            json!({"session_id": session, "to": "6281200006666", "type": "image", "image_url": fine, "body": "hi"}),
            "body",
        ),
        (
            json!({"session_id": session, "to": "6281200006666", "type": "image", "image_url": fine, "image_base64": "AAAA"}),
            "image_url",
        ),
        (
            json!({"session_id": session, "to": "6281200006666", "type": "image", "image_url": fine, "caption": long}),
            "caption",
        ),
        (
            json!({"session_id": session, "to": "6281200006666", "type": "text", "body": "hi", "image_base64": "AAAA"}),
            "image_url",
        ),
        (
            json!({"session_id": session, "to": "not a phone", "type": "image", "image_url": fine}),
            "to",
        ),
    ] {
        let res = send(&app, &account, None, &body).await;
        let (code, err) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(code, "validation_failed", "{body}");
        assert_eq!(err["error"]["details"]["field"], field, "{body} → {err}");
    }
    assert_eq!(server.hits("/fine.png"), 0, "nothing fetched for them");
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM dispatch_queue")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    let singles: i64 = sqlx::query_scalar("SELECT count(*) FROM single_messages")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!((queued, singles), (0, 0), "nothing queued");
    let me: Value = app.get_json("/api/v1/me", &account.token).await;
    assert_eq!(me["usage"]["messages"], 0, "no quota taken: {me}");
    // the refusals were not kept under the key: fixed, the same key sends
    let body = json!({"session_id": session, "to": "6281200006666", "type": "image", "image_url": fine, "caption": "x"});
    let res = send(&app, &account, Some("pic-1"), &body).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id = res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let sent = wait_message(&app, &account, &id, "sent").await;
    assert_eq!(sent["status"], "sent", "{sent}");
    assert_eq!(app.sim.stats().accepted, 1, "only the good one was sent");
    server.stop();
    app.stop().await;
}

/// An image that is gone when its single send is dispatched (a database restored without it)
/// fails the message with the reason instead of sending something else.
#[tokio::test]
async fn an_image_single_send_whose_image_is_gone_fails_with_the_reason() {
    let app = spawn_app().await;
    let account = app.register("imggone@b.co").await;
    // an hour between sends: the image send waits behind the first message
    let session = app
        .link_session_paced(&account, "imggone-token", 3_600_000, 3_600_000)
        .await;
    send_first_and_wait_sent(&app, &account, &session, "6281200008001").await;
    let res = send(
        &app,
        &account,
        None,
        &json!({"session_id": session, "to": "6281200008002", "type": "image",
                "image_base64": b64(&png(64, 64)), "caption": "gone"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id = res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    sqlx::query("DELETE FROM media")
        .execute(&app.pool)
        .await
        .expect("deleted");
    let res = app
        .patch(
            &format!("/api/v1/sessions/{session}"),
            &account.token,
            &json!({"pacing": {"min_interval_ms": 0, "max_interval_ms": 0}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let failed = wait_message(&app, &account, &id, "failed").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("no longer stored")),
        "{failed}"
    );
    assert_eq!(app.sim.stats().accepted, 1, "only the text was sent");
    app.stop().await;
}

/// Several sends to one person at the same moment all write the same chat: each is accepted (or,
/// if it lost every retry, a clear 409 to try again), never a 500, and every accepted one is sent.
#[tokio::test]
async fn simultaneous_sends_to_one_chat_are_accepted_or_409_never_500() {
    let app = spawn_app().await;
    let (account, session, _) = app.ready_tenant("burst@b.co", "unused").await;
    let sends = (0..10).map(|i| {
        let (app, account, session) = (&app, &account, &session);
        async move {
            let body = json!({"session_id": session, "to": "6281200009009", "type": "text",
                              "body": format!("order {i} is on its way")});
            let res = send(app, account, None, &body).await;
            let status = res.status();
            let answer: Value = res.json().await.expect("json");
            (status, answer)
        }
    });
    let answers = futures::future::join_all(sends).await;
    let mut accepted = Vec::new();
    for (status, answer) in &answers {
        match *status {
            StatusCode::ACCEPTED => accepted.push(answer["id"].as_str().expect("id").to_string()),
            StatusCode::CONFLICT => assert_eq!(answer["error"]["code"], "concurrent_update"),
            other => panic!("a simultaneous send answered {other}: {answer}"),
        }
    }
    assert!(!accepted.is_empty(), "{answers:?}");
    for id in &accepted {
        let sent = wait_message(&app, &account, id, "sent").await;
        assert_eq!(sent["status"], "sent", "{sent}");
    }
    assert_eq!(app.sim.stats().accepted, accepted.len() as u64);
    app.stop().await;
}
