//! Inbound WuzAPI webhooks: the three encodings with the captured payloads, HMAC signatures,
//! the inbox (dedup, retries, restarts) and receipts moving recipients to delivered and read.

use std::collections::HashMap;
use std::time::Duration;

use herald_api::{Application, Role, Settings};
use herald_gateway::webhook::{self, Encoding, ReceiptState};
use herald_scheduler::DispatchConfig;
use herald_simulator::{ReceiptSettings, SimulatorConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{error_code, phones, spawn_app, spawn_app_with, Account, TestApp};

/// The payloads captured from a real WuzAPI deployment (api/tests/fixtures, docs/wuzapi.md).
pub(crate) fn samples() -> serde_json::Map<String, Value> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{dir}/tests/fixtures/wuzapi-webhooks.json"))
        .expect("the captured WuzAPI payloads");
    match serde_json::from_str(&text).expect("samples are JSON") {
        Value::Object(map) => map,
        other => panic!("samples are not an object: {other}"),
    }
}

fn receipts_on() -> SimulatorConfig {
    SimulatorConfig {
        receipts: ReceiptSettings::on(),
        ..SimulatorConfig::default()
    }
}

pub(crate) async fn hmac_key(app: &TestApp, session: &str) -> String {
    let id: Uuid = session.parse().expect("uuid");
    let key: Option<String> =
        sqlx::query_scalar("SELECT hmac_key FROM session_credentials WHERE session_id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .expect("credentials");
    key.expect("a linked session has a key")
}

pub(crate) fn hook_path(session: &str) -> String {
    format!("/api/v1/webhooks/wuzapi/{session}")
}

/// Posts a raw body with a content type and an optional signature, like a gateway would.
pub(crate) async fn post_hook(
    app: &TestApp,
    session: &str,
    content_type: &str,
    body: Vec<u8>,
    signature: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&hook_path(session)))
        .header("content-type", content_type)
        .body(body);
    if let Some(signature) = signature {
        request = request.header(webhook::SIGNATURE_HEADER, signature);
    }
    request.send().await.expect("request sent")
}

/// An event posted exactly as WuzAPI would, signed with `key`.
pub(crate) async fn post_event(
    app: &TestApp,
    session: &str,
    key: &str,
    event: &Value,
    encoding: Encoding,
) -> reqwest::Response {
    let post = webhook::encode_post(event, encoding, "1", "main number", Some(key));
    post_hook(
        app,
        session,
        post.content_type,
        post.body,
        post.signature.as_deref(),
    )
    .await
}

/// A multipart post as WuzAPI sends media: the fields, plus a `file` text field and file part,
/// signed over Go's JSON of the text fields.
fn multipart(event: &Value, key: &str) -> (String, Vec<u8>, String) {
    let boundary = "herald-test-boundary-7MA4YWxkTrZu0gW";
    let fields = [
        ("jsonData", event.to_string()),
        ("userID", "1".to_string()),
        ("instanceName", "main number".to_string()),
        ("file", "/tmp/media/photo.jpg".to_string()),
    ];
    let mut body = Vec::new();
    for (name, value) in &fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10]);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let map: std::collections::BTreeMap<&str, &str> =
        fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let signature = webhook::sign(key, webhook::go_json_string_map(&map).as_bytes());
    (
        format!("multipart/form-data; boundary={boundary}"),
        body,
        signature,
    )
}

/// One `webhook_inbox` row, as the tests look at it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct InboxRow {
    pub event_type: String,
    pub note: Option<String>,
    pub processed: bool,
    pub attempts: i32,
    pub last_error: Option<String>,
}

pub(crate) async fn inbox_rows(app: &TestApp) -> Vec<InboxRow> {
    sqlx::query_as(
        "SELECT event_type, note, processed_at IS NOT NULL AS processed, attempts, last_error
           FROM webhook_inbox_status ORDER BY id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("inbox")
}

/// Makes the event store refuse events of `event_type` with "injected failure" (as a
/// constraint or a full disk would), until [`accept_events_again`].
async fn refuse_events(app: &TestApp, event_type: &str) {
    sqlx::raw_sql(&format!(
        "CREATE FUNCTION test_refuse_events() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.event_type = '{event_type}' THEN RAISE EXCEPTION 'injected failure'; END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER test_refuse_events BEFORE INSERT ON events
           FOR EACH ROW EXECUTE FUNCTION test_refuse_events();"
    ))
    .execute(&app.pool)
    .await
    .expect("trigger");
}

async fn accept_events_again(app: &TestApp) {
    sqlx::raw_sql("DROP TRIGGER test_refuse_events ON events")
        .execute(&app.pool)
        .await
        .expect("drop trigger");
}

/// Polls `check` until it holds or `timeout` passes; returns whether it held.
pub(crate) async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every recipient of a campaign, by phone.
pub(crate) async fn recipients(
    app: &TestApp,
    account: &Account,
    campaign: &str,
) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/campaigns/{campaign}/recipients?limit=500&cursor={c}"),
            None => format!("/api/v1/campaigns/{campaign}/recipients?limit=500"),
        };
        let page: Value = app.get_json(&path, &account.token).await;
        for r in page["items"].as_array().expect("items") {
            out.insert(r["phone"].as_str().expect("phone").to_string(), r.clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// Creates and runs a campaign to `n` recipients; returns its id once every recipient is final.
pub(crate) async fn run_campaign(
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
            &json!({"name": "receipts", "template_id": template, "session_id": session,
                    "recipients": phones(n)}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    let done = app
        .wait_campaign(account, &id, Duration::from_secs(60), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    id
}

#[tokio::test]
async fn linking_sets_a_random_signing_key_on_the_gateway() {
    let app = spawn_app().await;
    let account = app.register("keys@b.co").await;
    let first = app.link_session(&account, "key-token-1").await;
    let second = app.link_session(&account, "key-token-2").await;
    let (a, b) = (hmac_key(&app, &first).await, hmac_key(&app, &second).await);
    assert!(a.len() >= 32 && b.len() >= 32);
    assert_ne!(a, b, "one key per session");
    // the API never shows it
    let view: Value = app
        .get_json(&format!("/api/v1/sessions/{first}"), &account.token)
        .await;
    assert!(!view.to_string().contains(&a), "{view}");
    app.stop().await;
}

#[tokio::test]
async fn captured_payloads_are_accepted_as_form_json_and_multipart() {
    let app = spawn_app().await;
    let account = app.register("encodings@b.co").await;
    let session = app.link_session(&account, "enc-token").await;
    let key = hmac_key(&app, &session).await;
    let samples = samples();
    assert_eq!(samples.len(), 9);
    for (name, event) in &samples {
        for encoding in [Encoding::Form, Encoding::Json] {
            let res = post_event(&app, &session, &key, event, encoding).await;
            assert_eq!(res.status(), StatusCode::OK, "{name} as {encoding:?}");
            let ack: Value = res.json().await.expect("json");
            assert_eq!(ack["status"], "stored", "{name} as {encoding:?}");
        }
        let (content_type, body, signature) = multipart(event, &key);
        let res = post_hook(&app, &session, &content_type, body, Some(&signature)).await;
        assert_eq!(res.status(), StatusCode::OK, "{name} as multipart");
    }
    // everything is processed: messages recorded, the receipts kept on the chat message they
    // are for (sent from the phone, not by Herald), other types ignored, never an error
    let all_done = eventually(Duration::from_secs(10), || async {
        inbox_rows(&app).await.iter().all(|r| r.processed)
    })
    .await;
    let rows = inbox_rows(&app).await;
    assert!(all_done, "{rows:?}");
    assert_eq!(rows.len(), 27);
    // a JSON post is its own event and is stored once, as the body; a form's or multipart's
    // event is kept beside its raw body
    let stored: Vec<(String, bool)> =
        sqlx::query_as("SELECT headers->>'encoding', event IS NULL FROM webhook_inbox ORDER BY id")
            .fetch_all(&app.pool)
            .await
            .expect("stored rows");
    for (encoding, body_only) in &stored {
        assert_eq!(*body_only, encoding == "json", "{encoding}: {stored:?}");
    }
    for row in &rows {
        assert_eq!(row.last_error, None, "{row:?}");
        let note = row.note.as_deref().unwrap_or_default();
        match row.event_type.as_str() {
            "Message" => assert!(
                note == "outgoing message recorded" || note == "incoming message recorded",
                "{row:?}"
            ),
            "ReadReceipt" => assert!(note.ends_with("receipt for 1 message(s)"), "{row:?}"),
            // session events move the session's status (or find it unchanged)
            "Connected" | "QR" => assert!(note.starts_with("session "), "{row:?}"),
            other => assert_eq!(note, format!("ignored: {other}")),
        }
    }
    // three encodings of each message are one chat line each; the receipts reached the phone's
    // own message (the inbox is done; the read model follows shortly)
    let chat_messages = || async {
        sqlx::query_as::<_, (String, String, String)>(
            "SELECT message_id, direction, status FROM chat_messages ORDER BY message_id",
        )
        .fetch_all(&app.pool)
        .await
        .expect("chat messages")
    };
    eventually(Duration::from_secs(10), || async {
        chat_messages().await.iter().any(|m| m.2 == "read")
    })
    .await;
    let chat_messages = chat_messages().await;
    assert_eq!(
        chat_messages,
        vec![
            (
                "3F22EDC72EE0C9FE9720".into(),
                "incoming".into(),
                "received".into()
            ),
            (
                "53829C3632356D0F08BFB6BDB41A706F".into(),
                "outgoing".into(),
                "read".into()
            ),
        ]
    );
    let unmatched: i64 = sqlx::query_scalar("SELECT count(*) FROM unmatched_receipts")
        .fetch_one(&app.pool)
        .await
        .expect("unmatched");
    assert_eq!(unmatched, 0);
    app.stop().await;
}

#[tokio::test]
async fn unknown_sessions_are_404_and_malformed_posts_400() {
    let app = spawn_app().await;
    let account = app.register("malformed@b.co").await;
    let session = app.link_session(&account, "malformed-token").await;
    let key = hmac_key(&app, &session).await;
    let event = samples()["message_read"].clone();

    let body = serde_json::to_vec(&event).expect("json");
    let signature = webhook::sign(&key, &body);
    for unknown in [Uuid::new_v4().to_string(), "not-a-uuid".to_string()] {
        let res = post_hook(
            &app,
            &unknown,
            "application/json",
            body.clone(),
            Some(&signature),
        )
        .await;
        assert_eq!(error_code(res, StatusCode::NOT_FOUND).await.0, "not_found");
    }
    // deleting the session makes its webhook unknown too, at once, even right after a post
    // for it was accepted (the endpoint keeps sessions' credentials in memory for a while)
    let gone = app.link_session(&account, "gone-token").await;
    let gone_key = hmac_key(&app, &gone).await;
    let gone_signature = webhook::sign(&gone_key, &body);
    let res = post_hook(
        &app,
        &gone,
        "application/json",
        body.clone(),
        Some(&gone_signature),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .delete(&format!("/api/v1/sessions/{gone}"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = post_hook(
        &app,
        &gone,
        "application/json",
        b"{\"type\": \"Connected\", \"event\": {}}".to_vec(),
        Some(&webhook::sign(
            &gone_key,
            b"{\"type\": \"Connected\", \"event\": {}}",
        )),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let signed = |body: &[u8]| webhook::sign(&key, body);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "application/json",
            b"{\"type\": ".to_vec(),
            "invalid_webhook",
        ),
        ("application/json", b"[1, 2]".to_vec(), "invalid_webhook"),
        (
            "application/json",
            br#"{"event": {}}"#.to_vec(),
            "invalid_webhook",
        ),
        (
            "application/json",
            br#"{"type": 7}"#.to_vec(),
            "invalid_webhook",
        ),
        (
            "application/x-www-form-urlencoded",
            b"userID=1&instanceName=x".to_vec(),
            "invalid_webhook",
        ),
        (
            "application/x-www-form-urlencoded",
            b"jsonData=%7Bnope".to_vec(),
            "invalid_webhook",
        ),
        (
            "multipart/form-data; boundary=zzz",
            b"--zzz\r\ngarbage".to_vec(),
            "invalid_webhook",
        ),
        (
            "application/json",
            br#"{"type": "Mes\u0000sage"}"#.to_vec(),
            "invalid_webhook",
        ),
        (
            "application/json",
            br#"{"type": "ReadReceipt", "state": "Read", "event": {"MessageIDs": "A"}}"#.to_vec(),
            "invalid_webhook",
        ),
        ("text/plain", b"hello".to_vec(), "unsupported_content_type"),
    ];
    for (content_type, body, code) in cases {
        let signature = signed(&body);
        let res = post_hook(&app, &session, content_type, body, Some(&signature)).await;
        let (got, envelope) = error_code(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(got, code, "{content_type}: {envelope}");
    }
    let stored: Vec<String> = inbox_rows(&app)
        .await
        .into_iter()
        .map(|row| row.event_type)
        .collect();
    assert_eq!(
        stored,
        vec!["ReadReceipt".to_string()],
        "only the gone session's one valid post is stored, nothing malformed"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_duplicate_post_is_stored_once() {
    let app = spawn_app().await;
    let account = app.register("dup@b.co").await;
    let session = app.link_session(&account, "dup-token").await;
    let key = hmac_key(&app, &session).await;
    let event = samples()["typing_start"].clone();
    let mut answers = Vec::new();
    for _ in 0..3 {
        let res = post_event(&app, &session, &key, &event, Encoding::Form).await;
        assert_eq!(res.status(), StatusCode::OK);
        let ack: Value = res.json().await.expect("json");
        answers.push(ack["status"].as_str().expect("status").to_string());
    }
    assert_eq!(answers, vec!["stored", "duplicate", "duplicate"]);
    assert_eq!(inbox_rows(&app).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn forged_or_unsigned_receipts_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("forged@b.co", "Hi").await;
    let key = hmac_key(&app, &session).await;
    let campaign = run_campaign(&app, &account, &session, &template, 1).await;
    let (phone, _, message_id) = app.sim_messages().await.remove(0);
    let read = webhook::receipt_event(
        ReceiptState::Read,
        &[message_id.as_str()],
        "x@lid",
        chrono::Utc::now(),
    );

    let forged = webhook::encode_post(&read, Encoding::Json, "1", "x", Some(&"f".repeat(64)));
    let unsigned = webhook::encode_post(&read, Encoding::Form, "1", "x", None);
    let genuine = webhook::encode_post(&read, Encoding::Json, "1", "x", Some(&key));
    let other_body = webhook::encode_post(
        &samples()["typing_stop"],
        Encoding::Json,
        "1",
        "x",
        Some(&key),
    );
    let attempts = [
        (forged.body.clone(), forged.signature.clone()),
        (unsigned.body.clone(), None),
        (genuine.body.clone(), other_body.signature.clone()),
        (genuine.body.clone(), Some("not hex".to_string())),
        (
            genuine.body.clone(),
            genuine.signature.clone().map(|s| format!("sha256={s}")),
        ),
    ];
    for (body, signature) in attempts {
        let res = post_hook(
            &app,
            &session,
            "application/json",
            body,
            signature.as_deref(),
        )
        .await;
        assert_eq!(
            error_code(res, StatusCode::UNAUTHORIZED).await.0,
            "unauthorized"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        inbox_rows(&app).await.is_empty(),
        "nothing forged is stored"
    );
    let r = &recipients(&app, &account, &campaign).await[&phone];
    assert_eq!(r["status"], "sent", "{r}");
    assert_eq!(r["read_at"], Value::Null);

    // the genuine one goes through
    let res = post_hook(
        &app,
        &session,
        genuine.content_type,
        genuine.body,
        genuine.signature.as_deref(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let read_now = eventually(Duration::from_secs(10), || async {
        recipients(&app, &account, &campaign).await[&phone]["status"] == "read"
    })
    .await;
    assert!(read_now);
    app.stop().await;
}

/// The issue's acceptance path: the simulator's Delivered and Read receipts turn a finished
/// campaign's recipients into `delivered` then `read`, with their times, and the counts follow.
#[tokio::test]
async fn simulator_receipts_make_every_recipient_delivered_then_read() {
    let app = spawn_app_with(receipts_on()).await;
    let (account, session, template) = app.ready_tenant("receipts@b.co", "Hi {{ phone }}").await;
    let n = 60;
    let campaign = run_campaign(&app, &account, &session, &template, n).await;
    let done = app
        .wait_campaign(&account, &campaign, Duration::from_secs(30), |c| {
            c["counts"]["read"] == n
        })
        .await;
    assert_eq!(done["counts"]["read"], n, "{done}");
    for status in [
        "queued",
        "sending",
        "sent",
        "delivered",
        "failed",
        "skipped",
    ] {
        assert_eq!(done["counts"][status], 0, "{status}: {done}");
    }
    let all = recipients(&app, &account, &campaign).await;
    assert_eq!(all.len(), n);
    for r in all.values() {
        assert_eq!(r["status"], "read", "{r}");
        let at = |field: &str| {
            r[field]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .unwrap_or_else(|| panic!("{field} missing in {r}"))
        };
        assert!(
            at("sent_at") <= at("delivered_at") + chrono::Duration::seconds(1),
            "{r}"
        );
        assert!(at("delivered_at") < at("read_at"), "{r}");
    }
    // the gateway's receipts were posted form-encoded and signed, each stored once
    assert_eq!(app.sim.receipt_stats().posted, 2 * n as u64);
    assert_eq!(app.sim.receipt_stats().failed, 0);
    let rows = inbox_rows(&app).await;
    assert_eq!(rows.len(), 2 * n);
    assert!(
        rows.iter()
            .all(|r| r.processed && r.event_type == "ReadReceipt"),
        "{rows:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn duplicates_and_read_before_delivered_end_in_the_same_state() {
    let app = spawn_app_with(SimulatorConfig {
        receipts: ReceiptSettings {
            duplicates: true,
            read_first: true,
            encoding: Encoding::Json,
            ..ReceiptSettings::on()
        },
        ..SimulatorConfig::default()
    })
    .await;
    let (account, session, template) = app.ready_tenant("order@b.co", "Hi").await;
    let n = 40;
    let campaign = run_campaign(&app, &account, &session, &template, n).await;
    // every receipt arrives: Read first, then the late Delivered, each twice
    let all_posted = eventually(Duration::from_secs(20), || async {
        app.sim.receipt_stats().posted == 4 * n as u64
    })
    .await;
    assert!(all_posted, "{:?}", app.sim.receipt_stats());
    let settled = eventually(Duration::from_secs(20), || async {
        let rows = inbox_rows(&app).await;
        rows.len() == 2 * n && rows.iter().all(|r| r.processed)
    })
    .await;
    assert!(settled, "{:?}", inbox_rows(&app).await);
    let done = app
        .wait_campaign(&account, &campaign, Duration::from_secs(10), |c| {
            c["counts"]["read"] == n
        })
        .await;
    assert_eq!(done["counts"]["read"], n, "{done}");
    assert_eq!(done["counts"]["delivered"], 0, "{done}");
    let settled = eventually(Duration::from_secs(10), || async {
        recipients(&app, &account, &campaign)
            .await
            .values()
            .all(|r| r["delivered_at"].is_string())
    })
    .await;
    assert!(settled);
    for r in recipients(&app, &account, &campaign).await.values() {
        assert_eq!(r["status"], "read", "never back to delivered: {r}");
        // compare instants, not strings: RFC 3339 fractions vary in length
        let time = |key: &str| {
            chrono::DateTime::parse_from_rfc3339(r[key].as_str().expect("a timestamp"))
                .expect("RFC 3339")
        };
        let (delivered, read) = (time("delivered_at"), time("read_at"));
        assert!(
            delivered < read,
            "the late Delivered keeps its own, earlier time: {r}"
        );
    }
    // each fact is one event, however many posts carried it
    let events: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event_type, count(*) FROM events
          WHERE event_type IN ('DeliveryDelivered', 'DeliveryRead') GROUP BY event_type ORDER BY 1",
    )
    .fetch_all(&app.pool)
    .await
    .expect("events");
    assert_eq!(
        events,
        vec![
            ("DeliveryDelivered".to_string(), n as i64),
            ("DeliveryRead".to_string(), n as i64)
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_failed_processing_is_retried_until_it_succeeds() {
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("retry@b.co", "Hi").await;
    let key = hmac_key(&app, &session).await;
    let campaign = run_campaign(&app, &account, &session, &template, 1).await;
    let (phone, _, message_id) = app.sim_messages().await.remove(0);

    // the event store refuses receipt events for a while (a constraint, a full disk, ...)
    refuse_events(&app, "DeliveryDelivered").await;
    let delivered = webhook::receipt_event(
        ReceiptState::Delivered,
        &[message_id.as_str()],
        "x@lid",
        chrono::Utc::now(),
    );
    let res = post_event(&app, &session, &key, &delivered, Encoding::Form).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "stored even though processing will fail"
    );
    let failed = eventually(Duration::from_secs(10), || async {
        inbox_rows(&app).await.iter().any(|r| {
            !r.processed
                && r.attempts >= 1
                && r.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("injected failure"))
        })
    })
    .await;
    assert!(failed, "{:?}", inbox_rows(&app).await);
    assert_eq!(
        recipients(&app, &account, &campaign).await[&phone]["status"],
        "sent"
    );

    accept_events_again(&app).await;
    let applied = eventually(Duration::from_secs(20), || async {
        recipients(&app, &account, &campaign).await[&phone]["status"] == "delivered"
    })
    .await;
    assert!(applied, "{:?}", inbox_rows(&app).await);
    let rows = inbox_rows(&app).await;
    assert!(
        rows[0].processed && rows[0].last_error.is_none(),
        "{rows:?}"
    );
    app.stop().await;
}

/// One post fails on its own every time (the event store refuses its event, as a trigger or a
/// constraint would): the posts after it are applied all the same, and after its attempts it
/// ends parked, listed, and processed once retried with the cause gone (docs/decisions/0036).
#[tokio::test]
async fn a_post_that_fails_on_its_own_does_not_hold_back_the_others_and_ends_parked() {
    use herald_projections::maintenance::Selection;
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("poison@b.co", "Hi").await;
    let key = hmac_key(&app, &session).await;
    let campaign = run_campaign(&app, &account, &session, &template, 3).await;
    let sent = app.sim_messages().await;
    assert_eq!(sent.len(), 3);

    refuse_events(&app, "DeliveryRead").await;
    let now = chrono::Utc::now();
    let read = webhook::receipt_event(ReceiptState::Read, &[sent[0].2.as_str()], "x@lid", now);
    let res = post_event(&app, &session, &key, &read, Encoding::Form).await;
    assert_eq!(res.status(), StatusCode::OK);
    for (_, _, message_id) in &sent[1..] {
        let delivered = webhook::receipt_event(
            ReceiptState::Delivered,
            &[message_id.as_str()],
            "x@lid",
            now,
        );
        let res = post_event(&app, &session, &key, &delivered, Encoding::Form).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let others = eventually(Duration::from_secs(10), || async {
        let r = recipients(&app, &account, &campaign).await;
        sent[1..]
            .iter()
            .all(|(phone, _, _)| r[phone]["status"] == "delivered")
    })
    .await;
    assert!(others, "{:?}", inbox_rows(&app).await);
    assert_eq!(
        recipients(&app, &account, &campaign).await[&sent[0].0]["status"],
        "sent"
    );
    let rows = inbox_rows(&app).await;
    assert!(
        !rows[0].processed
            && rows[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("injected failure")),
        "{rows:?}"
    );
    assert!(rows[1..].iter().all(|r| r.processed), "{rows:?}");

    // as if it had failed 7 times already: the 8th failure of its own parks it
    sqlx::query(
        "UPDATE webhook_inbox_retries SET attempts = 7, next_attempt_at = now()
          WHERE inbox_id = (SELECT min(id) FROM webhook_inbox)",
    )
    .execute(&app.pool)
    .await
    .expect("attempts");
    let parked = eventually(Duration::from_secs(10), || async {
        herald_inbox::parked_posts(&app.pool)
            .await
            .expect("parked")
            .len()
            == 1
    })
    .await;
    assert!(parked, "{:?}", inbox_rows(&app).await);
    let posts = herald_inbox::parked_posts(&app.pool).await.expect("parked");
    assert_eq!(posts[0].attempts, 8);
    assert_eq!(posts[0].event_type, "ReadReceipt");
    assert!(herald_inbox::format_parked_posts(&posts).contains("injected failure"));
    // parked: no longer retried on its own
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(inbox_rows(&app).await[0].attempts, 8);

    accept_events_again(&app).await;
    let retried = herald_inbox::retry_parked(&app.pool, &Selection::All)
        .await
        .expect("retry");
    assert_eq!(retried, 1);
    let applied = eventually(Duration::from_secs(10), || async {
        recipients(&app, &account, &campaign).await[&sent[0].0]["status"] == "read"
    })
    .await;
    assert!(applied, "{:?}", inbox_rows(&app).await);
    assert!(herald_inbox::parked_posts(&app.pool)
        .await
        .expect("parked")
        .is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_receipt_for_a_message_not_known_yet_is_applied_once_it_is() {
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("early@b.co", "Hi").await;
    let key = hmac_key(&app, &session).await;
    let campaign = run_campaign(&app, &account, &session, &template, 1).await;
    let (phone, _, message_id) = app.sim_messages().await.remove(0);
    // as if the receipt beat the index row (a gateway that chose its own id, recorded later)
    let index: (String, Uuid, Uuid) = sqlx::query_as(
        "DELETE FROM message_index WHERE message_id = $1 RETURNING delivery_id, tenant_id, session_id",
    )
    .bind(&message_id)
    .fetch_one(&app.pool)
    .await
    .expect("indexed at dispatch");
    assert_eq!(index.0, format!("{campaign}:{phone}"));

    let read = webhook::receipt_event(
        ReceiptState::Read,
        &[message_id.as_str()],
        "x@lid",
        chrono::Utc::now(),
    );
    let res = post_event(&app, &session, &key, &read, Encoding::Json).await;
    assert_eq!(res.status(), StatusCode::OK);
    let waiting = eventually(Duration::from_secs(10), || async {
        inbox_rows(&app).await.iter().any(|r| {
            !r.processed
                && r.attempts >= 1
                && r.last_error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("waiting for"))
        })
    })
    .await;
    assert!(waiting, "{:?}", inbox_rows(&app).await);
    assert_eq!(
        recipients(&app, &account, &campaign).await[&phone]["status"],
        "sent"
    );

    sqlx::query("INSERT INTO message_index (message_id, delivery_id, tenant_id, session_id) VALUES ($1, $2, $3, $4)")
        .bind(&message_id)
        .bind(&index.0)
        .bind(index.1)
        .bind(index.2)
        .execute(&app.pool)
        .await
        .expect("index");
    let applied = eventually(Duration::from_secs(20), || async {
        recipients(&app, &account, &campaign).await[&phone]["status"] == "read"
    })
    .await;
    assert!(applied, "{:?}", inbox_rows(&app).await);
    let r = &recipients(&app, &account, &campaign).await[&phone];
    assert!(
        r["read_at"].is_string() && r["delivered_at"].is_null(),
        "{r}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_receipt_for_another_sessions_message_never_matches() {
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("scoped@b.co", "Hi").await;
    let campaign = run_campaign(&app, &account, &session, &template, 1).await;
    let (phone, _, message_id) = app.sim_messages().await.remove(0);
    // another tenant's session, signing correctly, names this message id
    let intruder = app.register("intruder@b.co").await;
    let other = app.link_session(&intruder, "intruder-token").await;
    let key = hmac_key(&app, &other).await;
    let read = webhook::receipt_event(
        ReceiptState::Read,
        &[message_id.as_str()],
        "x@lid",
        chrono::Utc::now(),
    );
    let res = post_event(&app, &other, &key, &read, Encoding::Form).await;
    assert_eq!(res.status(), StatusCode::OK);
    let waiting = eventually(Duration::from_secs(10), || async {
        inbox_rows(&app).await.iter().any(|r| r.attempts >= 1)
    })
    .await;
    assert!(waiting);
    assert_eq!(
        recipients(&app, &account, &campaign).await[&phone]["status"],
        "sent"
    );
    app.stop().await;
}

/// A post acknowledged while no processor runs (an API-only process, or workers down) is
/// processed once one starts: the inbox is the durable hand-over.
#[tokio::test]
async fn posts_stored_while_no_worker_runs_are_processed_when_one_starts() {
    let app = spawn_app().await;
    let db_url = herald_migrations::testing::fresh_database_url()
        .await
        .expect("fresh database");
    let settings = Settings::for_tests(&db_url, &app.sim.base_url());
    let api_only =
        Application::build_with_dispatch(settings.clone(), Role::Api, DispatchConfig::default())
            .await
            .expect("api starts");
    let base = format!("http://{}", api_only.addr().expect("serves http"));
    let pool = api_only.pool().clone();
    let session = Uuid::new_v4();
    let key = "k".repeat(40);
    sqlx::query("INSERT INTO session_credentials (session_id, tenant_id, gateway_token, hmac_key) VALUES ($1, $2, 'tok', $3)")
        .bind(session)
        .bind(Uuid::new_v4())
        .bind(&key)
        .execute(&pool)
        .await
        .expect("credentials");
    let event = samples()["session_connected"].clone();
    let post = webhook::encode_post(&event, Encoding::Form, "1", "x", Some(&key));
    let res = app
        .client
        .post(format!("{base}/api/v1/webhooks/wuzapi/{session}"))
        .header("content-type", post.content_type)
        .header(webhook::SIGNATURE_HEADER, post.signature.expect("signed"))
        .body(post.body)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_inbox_status WHERE processed_at IS NULL")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(pending, 1, "no worker in this process");

    let worker =
        Application::build_with_dispatch(settings, Role::Worker, DispatchConfig::default())
            .await
            .expect("worker starts");
    let processed = eventually(Duration::from_secs(10), || async {
        let note: Option<String> = sqlx::query_scalar(
            "SELECT note FROM webhook_inbox_status WHERE processed_at IS NOT NULL",
        )
        .fetch_optional(&pool)
        .await
        .expect("query");
        // credentials only, no Session stream: processed as a session that no longer exists
        note.as_deref() == Some("ignored: the session no longer exists")
    })
    .await;
    assert!(processed);
    worker.stop().await;
    api_only.stop().await;
    app.stop().await;
}

/// A send that failed in a passing way is retried; if the gateway's receipt shows the message
/// arrived meanwhile, the retry is dropped (never sent twice) and the campaign still completes.
#[tokio::test]
async fn a_receipt_for_a_message_being_retried_stops_the_resend() {
    let app = spawn_app_with(SimulatorConfig {
        error_rate: 1.0,
        ..SimulatorConfig::default()
    })
    .await;
    let (account, session, template) = app.ready_tenant("retried@b.co", "Hi").await;
    let key = hmac_key(&app, &session).await;
    let campaign = app
        .create_campaign(
            &account,
            &json!({"name": "flaky", "template_id": template, "session_id": session,
                    "recipients": phones(1)}),
        )
        .await;
    // the message id is indexed when the send is first claimed
    let index_row = || async {
        sqlx::query_scalar::<_, String>("SELECT message_id FROM message_index")
            .fetch_optional(&app.pool)
            .await
            .expect("index")
    };
    let claimed = eventually(Duration::from_secs(10), || async {
        index_row().await.is_some()
    })
    .await;
    assert!(claimed);
    let message_id = index_row().await.expect("indexed");
    let delivered = webhook::receipt_event(
        ReceiptState::Delivered,
        &[message_id.as_str()],
        "x@lid",
        chrono::Utc::now(),
    );
    let res = post_event(&app, &session, &key, &delivered, Encoding::Json).await;
    assert_eq!(res.status(), StatusCode::OK);
    let done = app
        .wait_campaign(&account, &campaign, Duration::from_secs(20), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["counts"]["delivered"], 1, "{done}");
    assert_eq!(done["counts"]["failed"], 0, "{done}");
    let stats = app.sim.stats();
    assert_eq!(
        stats.accepted, 0,
        "the gateway never got it twice: {stats:?}"
    );
    assert!(stats.failed >= 1);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_posts_are_answered_truthfully_and_each_body_stored_once() {
    let app = spawn_app().await;
    let account = app.register("burst@b.co").await;
    let session = app.link_session(&account, "burst-token").await;
    let key = hmac_key(&app, &session).await;
    // 200 distinct receipts for unknown ids, each posted twice, all at once: the inbox writer
    // batches them, and still answers every post truthfully and stores each body once.
    let events: Vec<Value> = (0..200)
        .map(|i| {
            webhook::receipt_event(
                ReceiptState::Delivered,
                &[format!("BURST{i:04}").as_str()],
                "6281200000000@s.whatsapp.net",
                chrono::Utc::now(),
            )
        })
        .collect();
    let posts = events
        .iter()
        .chain(events.iter())
        .map(|event| post_event(&app, &session, &key, event, Encoding::Json));
    let answers = futures::future::join_all(posts).await;
    let mut stored = 0;
    let mut duplicate = 0;
    for res in answers {
        assert_eq!(res.status(), StatusCode::OK);
        let ack: Value = res.json().await.expect("json");
        match ack["status"].as_str() {
            Some("stored") => stored += 1,
            Some("duplicate") => duplicate += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((stored, duplicate), (200, 200));
    assert_eq!(inbox_rows(&app).await.len(), 200);
    app.stop().await;
}

/// docs/webhooks.md tells operators to replay stored posts by adding them to
/// `webhook_inbox_retries`. The processor's log cursor is long past an old post; the retry must
/// still be found, processed again, and leave the log going on.
#[tokio::test]
async fn a_post_replayed_long_after_newer_ones_is_processed_again() {
    let app = spawn_app().await;
    let account = app.register("replay@b.co").await;
    let session = app.link_session(&account, "replay-token").await;
    let key = hmac_key(&app, &session).await;
    let presence = |n: usize| json!({"type": "ChatPresence", "event": {"n": n}});
    let res = post_event(&app, &session, &key, &presence(0), Encoding::Json).await;
    assert_eq!(res.status(), StatusCode::OK);
    let processed = |n: usize| {
        let app = &app;
        async move { inbox_rows(app).await.iter().filter(|r| r.processed).count() == n }
    };
    assert!(eventually(Duration::from_secs(10), || processed(1)).await);
    // newer posts, well after the first, move the processor's starting point past it
    tokio::time::sleep(Duration::from_millis(600)).await;
    for n in 1..=5 {
        let res = post_event(&app, &session, &key, &presence(n), Encoding::Json).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert!(eventually(Duration::from_secs(10), || processed(6)).await);

    let first_done: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT processed_at FROM webhook_inbox_status ORDER BY id LIMIT 1")
            .fetch_one(&app.pool)
            .await
            .expect("first outcome");
    // as docs/webhooks.md says, word for word
    let replayed = sqlx::query(
        "INSERT INTO webhook_inbox_retries (inbox_id)
         SELECT id FROM webhook_inbox WHERE id = (SELECT min(id) FROM webhook_inbox)
         ON CONFLICT DO NOTHING",
    )
    .execute(&app.pool)
    .await
    .expect("replay")
    .rows_affected();
    assert_eq!(replayed, 1);
    assert!(
        eventually(Duration::from_secs(10), || processed(6)).await,
        "the replayed post is processed again: {:?}",
        inbox_rows(&app).await
    );
    let first = inbox_rows(&app).await.remove(0);
    assert_eq!(
        first.note.as_deref(),
        Some("ignored: ChatPresence"),
        "{first:?}"
    );
    let again: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT processed_at FROM webhook_inbox_status ORDER BY id LIMIT 1")
            .fetch_one(&app.pool)
            .await
            .expect("second outcome");
    assert!(
        again > first_done,
        "processed a second time: {first_done} then {again}"
    );
    // and the log goes on after it
    let res = post_event(&app, &session, &key, &presence(6), Encoding::Json).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(eventually(Duration::from_secs(10), || processed(7)).await);
    app.stop().await;
}

/// The inbox is read as a log in commit order (docs/decisions/0033): a post whose transaction
/// commits after a later post's must still be processed, not skipped because the processor has
/// already read past its id.
#[tokio::test]
async fn a_post_committed_late_is_not_skipped() {
    let app = spawn_app().await;
    let account = app.register("late@b.co").await;
    let session = app.link_session(&account, "late-token").await;
    let key = hmac_key(&app, &session).await;
    let session_id: Uuid = session.parse().expect("uuid");
    let tenant_id: Uuid =
        sqlx::query_scalar("SELECT tenant_id FROM session_credentials WHERE session_id = $1")
            .bind(session_id)
            .fetch_one(&app.pool)
            .await
            .expect("tenant");

    // a writer takes an id, then is slow to commit
    let mut slow = app.pool.begin().await.expect("begin");
    let body = json!({"type": "ChatPresence", "event": {"slow": true}}).to_string();
    let slow_id: i64 = sqlx::query_scalar(
        "INSERT INTO webhook_inbox (source, session_id, tenant_id, body_sha256, content_type, body, event_type)
         VALUES ('wuzapi', $1, $2, sha256($3::bytea), 'application/json', $3::bytea, 'ChatPresence')
         RETURNING id",
    )
    .bind(session_id)
    .bind(tenant_id)
    .bind(body.as_bytes())
    .fetch_one(&mut *slow)
    .await
    .expect("slow insert");

    // meanwhile a later post is stored and answered; it waits behind the open transaction
    let presence = json!({"type": "ChatPresence", "event": {"fast": true}});
    let res = post_event(&app, &session, &key, &presence, Encoding::Json).await;
    assert_eq!(res.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    slow.commit().await.expect("commit");

    let both = eventually(Duration::from_secs(10), || async {
        let rows = inbox_rows(&app).await;
        rows.len() == 2 && rows.iter().all(|r| r.processed)
    })
    .await;
    assert!(both, "{:?}", inbox_rows(&app).await);
    let note: Option<String> =
        sqlx::query_scalar("SELECT note FROM webhook_inbox_status WHERE id = $1")
            .bind(slow_id)
            .fetch_one(&app.pool)
            .await
            .expect("note");
    assert_eq!(note.as_deref(), Some("ignored: ChatPresence"));
    app.stop().await;
}

/// A post that keeps failing waits in `webhook_inbox_retries`; the posts after it in the log are
/// processed meanwhile.
#[tokio::test]
async fn a_failing_post_does_not_hold_back_the_posts_after_it() {
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("holdback@b.co", "Hi").await;
    let key = hmac_key(&app, &session).await;
    let campaign = run_campaign(&app, &account, &session, &template, 1).await;
    let (phone, _, message_id) = app.sim_messages().await.remove(0);
    refuse_events(&app, "DeliveryRead").await;
    let at = chrono::Utc::now();
    let read = webhook::receipt_event(ReceiptState::Read, &[message_id.as_str()], "x@lid", at);
    let delivered =
        webhook::receipt_event(ReceiptState::Delivered, &[message_id.as_str()], "x@lid", at);
    for event in [&read, &delivered] {
        let res = post_event(&app, &session, &key, event, Encoding::Json).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let delivered_applied = eventually(Duration::from_secs(10), || async {
        recipients(&app, &account, &campaign).await[&phone]["status"] == "delivered"
    })
    .await;
    assert!(delivered_applied, "{:?}", inbox_rows(&app).await);
    let rows = inbox_rows(&app).await;
    assert!(
        !rows[0].processed
            && rows[0].attempts >= 1
            && rows[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("injected failure")),
        "the read receipt waits for a retry: {rows:?}"
    );
    assert!(rows[1].processed, "{rows:?}");

    accept_events_again(&app).await;
    let read_applied = eventually(Duration::from_secs(20), || async {
        recipients(&app, &account, &campaign).await[&phone]["status"] == "read"
    })
    .await;
    assert!(read_applied, "{:?}", inbox_rows(&app).await);
    assert!(inbox_rows(&app).await.iter().all(|r| r.processed));
    app.stop().await;
}
