//! The edge (docs/decisions/0037): text Postgres cannot store (U+0000) is refused with 422
//! `invalid_text` naming the field on every channel a tenant writes through, and what WhatsApp
//! sends is kept with its NULs removed; a body that stalls is cut off with 408.

use std::time::Duration;

use herald_gateway::webhook::Encoding;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::contacts_import::parse_answer;
use crate::helpers::{error_code, spawn_app, spawn_app_configured, TestApp};
use crate::webhooks::{eventually, hmac_key, inbox_rows, post_event, samples};

/// Asserts 422 `invalid_text` naming `field`.
async fn refused(res: reqwest::Response, field: &str) {
    let (code, body) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(code, "invalid_text", "{body}");
    assert_eq!(body["error"]["details"]["field"], field, "{body}");
}

#[tokio::test]
async fn a_nul_is_refused_with_422_naming_the_field_on_every_channel() {
    let app = spawn_app().await;
    // registration (the account name)
    let res = app
        .post_public(
            "/api/v1/auth/register",
            &json!({"email": "nul@e.co", "password": "correct horse battery", "name": "A\u{0}"}),
        )
        .await;
    refused(res, "name").await;
    let (account, session, template) = app.ready_tenant("nul@e.co", "Hi {{ name }}").await;
    let token = &account.token;

    let cases = [
        (
            "/api/v1/contacts",
            json!({"phone": "6281234567890", "name": "Sa\u{0}ri"}),
            "name",
        ),
        (
            "/api/v1/contacts",
            json!({"phone": "6281234567890", "tags": ["ok", "v\u{0}ip"]}),
            "tags[1]",
        ),
        (
            "/api/v1/contacts",
            json!({"phone": "6281234567890", "fields": {"ci\u{0}ty": "x"}}),
            "fields.ci\\u0000ty",
        ),
        ("/api/v1/api-keys", json!({"name": "\u{0}"}), "name"),
        (
            "/api/v1/templates",
            json!({"name": "t", "type": "text", "body": "Hi\u{0}"}),
            "body",
        ),
        ("/api/v1/sessions", json!({"name": "n\u{0}"}), "name"),
        (
            "/api/v1/campaigns",
            json!({"name": "c", "template_id": template, "session_id": session,
                   "recipients": ["6281234567890", "6281234567891", "6281234567892",
                                  {"phone": "6281234567893", "vars": {"name": "Bu\u{0}di"}}]}),
            "recipients[3].vars.name",
        ),
        (
            "/api/v1/messages",
            json!({"session_id": session, "to": "6281234567890", "type": "text", "body": "x\u{0}"}),
            "body",
        ),
    ];
    for (path, body, field) in cases {
        refused(app.post(path, token, &body).await, field).await;
    }
    let res = app
        .patch(
            &format!("/api/v1/templates/{template}"),
            token,
            &json!({"name": "\u{0}"}),
        )
        .await;
    refused(res, "name").await;
    // the query string and the path
    // (a query parameter is 400, like every malformed query; a path segment names nothing: 404)
    let (code, body) = error_code(
        app.get("/api/v1/contacts?q=a%00b", token).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(code, "invalid_text", "{body}");
    assert_eq!(body["error"]["details"]["field"], "query.q", "{body}");
    let (code, body) = error_code(
        app.get("/api/v1/contacts/62812%00", token).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(code, "not_found", "{body}");
    // nothing of it was stored: no contact, no campaign, no key besides none
    let contacts = app.get_json("/api/v1/contacts", token).await;
    assert_eq!(contacts["items"], json!([]), "{contacts}");
    let campaigns = app.get_json("/api/v1/campaigns", token).await;
    assert_eq!(campaigns["items"], json!([]), "{campaigns}");
    // `\\u0000` (an escaped backslash) is ordinary text and kept as such
    let res = app
        .post(
            "/api/v1/contacts",
            token,
            &json!({"phone": "6281234567890", "name": "back\\u0000slash"}),
        )
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    let contact = app.get_json("/api/v1/contacts/6281234567890", token).await;
    assert_eq!(contact["name"], "back\\u0000slash");
    app.stop().await;
}

#[tokio::test]
async fn a_csv_row_with_a_nul_is_rejected_with_its_reason_and_the_rest_imported() {
    let app = spawn_app().await;
    let account = app.register("csvnul@e.co").await;
    let csv = "phone,name,city\n6281234567890,Sari,Bandung\n6281234567891,Bu\0di,Bogor\n";
    let res = crate::contacts_import::import(&app, &account.token, csv.to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    let rejected = body["rejected"].as_array().expect("rejected rows");
    assert_eq!(rejected.len(), 1, "{body}");
    assert_eq!(rejected[0]["row"], 3, "{body}");
    let reason = rejected[0]["reason"].as_str().expect("reason");
    assert!(
        reason.contains("U+0000") && reason.contains("name"),
        "{reason}"
    );
    let sari = app
        .get_json("/api/v1/contacts/6281234567890", &account.token)
        .await;
    assert_eq!(sari["name"], "Sari");
    let res = app
        .get("/api/v1/contacts/6281234567891", &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

/// The captured incoming message with NULs in the push name and the text.
fn incoming_with_nuls() -> Value {
    let mut event = samples()["message_received_incoming"].clone();
    event["event"]["Info"]["PushName"] = json!("M.\u{0} Yoga");
    event["event"]["Message"]["conversation"] = json!("owh\u{0} iya \u{200f}😀");
    event
}

#[tokio::test]
async fn what_whatsapp_sends_with_nuls_is_kept_without_them_and_every_read_model_keeps_up() {
    let app = spawn_app().await;
    let account = app.register("wanul@e.co").await;
    let session = app.link_session(&account, "token-wanul").await;
    let key = hmac_key(&app, &session).await;
    for encoding in [Encoding::Json, Encoding::Form] {
        let res = post_event(&app, &session, &key, &incoming_with_nuls(), encoding).await;
        assert_eq!(res.status(), StatusCode::OK, "{encoding:?}");
    }
    let done = eventually(Duration::from_secs(15), || async {
        inbox_rows(&app).await.iter().all(|r| r.processed)
    })
    .await;
    assert!(done, "{:?}", inbox_rows(&app).await);
    for row in inbox_rows(&app).await {
        assert_eq!(row.last_error, None, "{row:?}");
    }
    app.wait_projected("conversations").await;
    let chats = app.get_json("/api/v1/chats", &account.token).await;
    let chat = &chats["items"][0];
    assert_eq!(chat["name"], "M. Yoga", "{chats}");
    assert_eq!(
        chat["last_message"]["text"], "owh iya \u{200f}😀",
        "{chats}"
    );
    // a tenant's own write right after is projected too: nothing stalled behind the message
    let res = app
        .post(
            "/api/v1/contacts",
            &account.token,
            &json!({"phone": "6281234567890", "name": "after"}),
        )
        .await;
    assert!(res.status().is_success());
    let contact = app
        .get_json("/api/v1/contacts/6281234567890", &account.token)
        .await;
    assert_eq!(contact["name"], "after");
    app.stop().await;
}

/// Sends the head and `partial` of a body announced as `length` bytes, then nothing; returns
/// the answer and how long it took.
async fn stall(app: &TestApp, head: &str, partial: &[u8]) -> ((u16, Value), Duration) {
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let started = tokio::time::Instant::now();
    stream
        .write_all(head.replace("{addr}", &addr).as_bytes())
        .await
        .expect("head");
    stream.write_all(partial).await.expect("part of the body");
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => 0,
            Err(_) => panic!("no answer within 20 s: {:?}", String::from_utf8_lossy(&raw)),
        };
        raw.extend_from_slice(&buf[..n]);
        if let Some(answer) = parse_answer(&raw) {
            return (answer, started.elapsed());
        }
        assert!(
            n > 0,
            "closed without an answer: {:?}",
            String::from_utf8_lossy(&raw)
        );
    }
}

#[tokio::test]
async fn a_body_that_stalls_is_cut_off_with_408_json_webhook_and_csv_alike() {
    let app = spawn_app_configured(|s| s.body_idle_timeout_secs = 1).await;
    let account = app.register("stall@e.co").await;
    let session = app.link_session(&account, "token-stall").await;
    let token = &account.token;
    let json_head = format!(
        "POST /api/v1/contacts HTTP/1.1\r\nHost: {{addr}}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    let hook_head = format!(
        "POST /api/v1/webhooks/wuzapi/{session} HTTP/1.1\r\nHost: {{addr}}\r\n\
         Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
    );
    let csv_head = format!(
        "POST /api/v1/contacts/import HTTP/1.1\r\nHost: {{addr}}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: text/csv\r\nContent-Length: 100000\r\n\r\n"
    );
    for (head, partial) in [
        (json_head, &b"{\"phone\": "[..]),
        (hook_head, &b"{\"type\": \"Message\""[..]),
        (csv_head, &b"phone,name\n6281234567890,Sari\n"[..]),
    ] {
        let ((status, body), took) = stall(&app, &head, partial).await;
        assert_eq!(status, 408, "{head}: {body}");
        assert_eq!(body["error"]["code"], "body_timeout", "{body}");
        assert!(took < Duration::from_secs(10), "{took:?}");
    }
    // the rows before the stall were applied, as for any import that stops part-way
    let sari = app.get_json("/api/v1/contacts/6281234567890", token).await;
    assert_eq!(sari["name"], "Sari", "{sari}");
    app.stop().await;
}
