//! Conversations from WuzAPI `Message` webhooks: chats, unread counts, directions, groups,
//! device suffixes, `@lid` ids, media labels, paging, read markers, receipts on phone-sent
//! messages, and tenant isolation. Built on the captured payloads.

use std::time::Duration;

use herald_gateway::webhook::Encoding;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app, Account, TestApp};
use crate::webhooks::{eventually, hmac_key, inbox_rows, post_event, samples};

/// A linked session and its signing key.
async fn linked(app: &TestApp, email: &str) -> (Account, String, String) {
    let account = app.register(email).await;
    let session = app.link_session(&account, &format!("token-{email}")).await;
    let key = hmac_key(app, &session).await;
    (account, session, key)
}

/// The captured incoming message with `edit` applied to its `event.Info` and `event.Message`.
fn incoming(edit: impl FnOnce(&mut Value, &mut Value)) -> Value {
    let mut event = samples()["message_received_incoming"].clone();
    let mut info = event["event"]["Info"].take();
    let mut message = event["event"]["Message"].take();
    edit(&mut info, &mut message);
    event["event"]["Info"] = info;
    event["event"]["Message"] = message;
    event
}

/// Waits until every stored post is processed.
async fn processed(app: &TestApp) {
    let done = eventually(Duration::from_secs(15), || async {
        inbox_rows(app).await.iter().all(|r| r.processed)
    })
    .await;
    assert!(done, "{:?}", inbox_rows(app).await);
}

/// The tenant's chats (all pages of `limit`).
async fn chats(app: &TestApp, account: &Account, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/chats?{query}&cursor={c}"),
            None => format!("/api/v1/chats?{query}"),
        };
        let res = app.get(&path, &account.token).await;
        assert_eq!(res.status(), StatusCode::OK);
        let page: Value = res.json().await.expect("json");
        out.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// Waits for a chat that satisfies `check`, by jid.
async fn wait_chat(
    app: &TestApp,
    account: &Account,
    jid: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let all = chats(app, account, "limit=500").await;
        let chat = all.into_iter().find(|c| c["jid"] == jid);
        match chat {
            Some(c) if check(&c) => return c,
            last if tokio::time::Instant::now() >= deadline => {
                panic!("chat {jid} never satisfied the check; last seen {last:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn messages(app: &TestApp, account: &Account, chat: &str, query: &str) -> Value {
    let res = app
        .get(
            &format!("/api/v1/chats/{chat}/messages?{query}"),
            &account.token,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.expect("json")
}

#[tokio::test]
async fn an_incoming_message_is_an_unread_chat_once_whatever_the_duplicates() {
    let app = spawn_app().await;
    let (account, session, key) = linked(&app, "incoming@b.co").await;
    let event = samples()["message_received_incoming"].clone();
    // the same message as form, as JSON, and the form again (a gateway retry)
    for encoding in [Encoding::Form, Encoding::Json, Encoding::Form] {
        let res = post_event(&app, &session, &key, &event, encoding).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    processed(&app).await;
    let chat = wait_chat(&app, &account, "6281233784490@s.whatsapp.net", |c| {
        c["unread_count"] == 1
    })
    .await;
    assert_eq!(chat["session_id"], session.as_str());
    assert_eq!(chat["name"], "M. Yoga");
    assert_eq!(chat["is_group"], false);
    assert_eq!(chat["unread_count"], 1, "duplicates raise it once: {chat}");
    assert_eq!(chat["last_message"]["text"], "owh iya");
    assert_eq!(chat["last_message"]["type"], "text");
    assert_eq!(chat["last_message"]["direction"], "incoming");
    assert_eq!(chat["last_activity"], "2025-08-14T07:56:24Z");
    let id = chat["id"].as_str().expect("id");
    let page = messages(&app, &account, id, "").await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{page}");
    let m = &items[0];
    assert_eq!(m["id"], "3F22EDC72EE0C9FE9720");
    assert_eq!(m["direction"], "incoming");
    // the sender's device suffix is stripped
    assert_eq!(m["sender"], "6281233784490@s.whatsapp.net");
    assert_eq!(m["sender_name"], "M. Yoga");
    assert_eq!(
        (m["type"].as_str(), m["status"].as_str()),
        (Some("text"), Some("received"))
    );
    assert_eq!(page["next_cursor"], Value::Null);
    // one chat in the list, and GET by id agrees
    assert_eq!(
        chats(&app, &account, &format!("session_id={session}"))
            .await
            .len(),
        1
    );
    let one = app
        .get_json(&format!("/api/v1/chats/{id}"), &account.token)
        .await;
    assert_eq!(one["unread_count"], 1);
    app.stop().await;
}

#[tokio::test]
async fn messages_from_the_owners_phone_are_outgoing_and_never_unread() {
    let app = spawn_app().await;
    let (account, session, key) = linked(&app, "fromme@b.co").await;
    let own = samples()["message_received"].clone(); // IsFromMe: true, PushName is the owner's
    post_event(&app, &session, &key, &own, Encoding::Form).await;
    processed(&app).await;
    let chat = wait_chat(&app, &account, "6281233784490@s.whatsapp.net", |_| true).await;
    assert_eq!(chat["unread_count"], 0);
    assert_eq!(
        chat["name"],
        Value::Null,
        "the owner's own name is not the chat's"
    );
    assert_eq!(chat["last_message"]["direction"], "outgoing");
    assert_eq!(chat["last_message"]["text"], "ya");
    let id = chat["id"].as_str().expect("id").to_string();
    let page = messages(&app, &account, &id, "").await;
    assert_eq!(page["items"][0]["direction"], "outgoing");
    assert_eq!(page["items"][0]["status"], "sent");
    assert_eq!(page["items"][0]["sender"], "6289668176764@s.whatsapp.net");

    // the reply comes in: same chat, now unread and named; a later empty name changes nothing
    post_event(
        &app,
        &session,
        &key,
        &samples()["message_received_incoming"],
        Encoding::Json,
    )
    .await;
    let nameless = incoming(|info, _| {
        info["ID"] = json!("NAMELESS1");
        info["PushName"] = json!("");
        info["Timestamp"] = json!("2025-08-14T15:00:00+07:00");
    });
    post_event(&app, &session, &key, &nameless, Encoding::Json).await;
    processed(&app).await;
    let chat = wait_chat(&app, &account, "6281233784490@s.whatsapp.net", |c| {
        c["unread_count"] == 2
    })
    .await;
    assert_eq!(chat["id"], id.as_str());
    assert_eq!(chat["name"], "M. Yoga");
    assert_eq!(chat["last_message"]["id"], "NAMELESS1");
    assert_eq!(
        messages(&app, &account, &id, "").await["items"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    app.stop().await;
}

#[tokio::test]
async fn groups_lids_and_media_are_kept_as_whatsapp_names_them() {
    let app = spawn_app().await;
    let (account, session, key) = linked(&app, "groups@b.co").await;
    // a group message from a participant on a secondary device, with a photo
    let group = incoming(|info, message| {
        info["ID"] = json!("GROUP1");
        info["Chat"] = json!("120363025246125486@g.us");
        info["IsGroup"] = json!(true);
        *message = json!({"imageMessage": {"caption": "new stock", "mimetype": "image/jpeg"}});
    });
    // a chat with a privacy id (no phone number), voice note without text
    let lid = incoming(|info, message| {
        info["ID"] = json!("LID1");
        info["Chat"] = json!("93849498181695:24@lid");
        info["Sender"] = json!("93849498181695:24@lid");
        *message = json!({"audioMessage": {"ptt": true, "seconds": 4}});
    });
    for event in [&group, &lid] {
        let res = post_event(&app, &session, &key, event, Encoding::Form).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    processed(&app).await;
    let chat = wait_chat(&app, &account, "120363025246125486@g.us", |_| true).await;
    assert_eq!(chat["is_group"], true);
    assert_eq!(
        chat["name"],
        Value::Null,
        "a participant's name is not the group's"
    );
    assert_eq!(chat["unread_count"], 1);
    assert_eq!(chat["last_message"]["type"], "image");
    assert_eq!(chat["last_message"]["text"], "new stock");
    let page = messages(&app, &account, chat["id"].as_str().expect("id"), "").await;
    assert_eq!(page["items"][0]["sender"], "6281233784490@s.whatsapp.net");
    assert_eq!(page["items"][0]["sender_name"], "M. Yoga");

    let chat = wait_chat(&app, &account, "93849498181695@lid", |_| true).await;
    assert_eq!(chat["is_group"], false);
    assert_eq!(chat["last_message"]["type"], "audio");
    assert_eq!(chat["last_message"]["text"], Value::Null);
    assert_eq!(chat["last_message"]["sender"], "93849498181695@lid");
    app.stop().await;
}

#[tokio::test]
async fn messages_page_newest_first_whatever_order_they_arrive_in() {
    let app = spawn_app().await;
    let (account, session, key) = linked(&app, "paging@b.co").await;
    // five messages, posted out of order (minute 3, 1, 4, 0, 2)
    for minute in [3, 1, 4, 0, 2] {
        let event = incoming(|info, message| {
            info["ID"] = json!(format!("PAGE{minute}"));
            info["Timestamp"] = json!(format!("2025-08-14T15:0{minute}:00+07:00"));
            *message = json!({"conversation": format!("message {minute}")});
        });
        post_event(&app, &session, &key, &event, Encoding::Json).await;
    }
    processed(&app).await;
    let chat = wait_chat(&app, &account, "6281233784490@s.whatsapp.net", |c| {
        c["unread_count"] == 5
    })
    .await;
    // the preview is the newest by WhatsApp's time, not the last to arrive
    assert_eq!(chat["last_message"]["text"], "message 4");
    assert_eq!(chat["last_activity"], "2025-08-14T08:04:00Z");
    let id = chat["id"].as_str().expect("id");
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let query = match &before {
            Some(b) => format!("limit=2&before={}", urlencode(b)),
            None => "limit=2".to_string(),
        };
        let page = messages(&app, &account, id, &query).await;
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|m| m["id"].as_str().unwrap_or_default().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => before = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["PAGE4", "PAGE3", "PAGE2", "PAGE1", "PAGE0"]);
    // bad input: a cursor Herald never gave, a bad limit
    let res = app
        .get(
            &format!("/api/v1/chats/{id}/messages?before=yesterday"),
            &account.token,
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await.0,
        "invalid_cursor"
    );
    let res = app
        .get(
            &format!("/api/v1/chats/{id}/messages?limit=0"),
            &account.token,
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await.0,
        "invalid_query"
    );
    app.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn the_chat_list_pages_by_newest_activity() {
    let app = spawn_app().await;
    let (account, session, key) = linked(&app, "list@b.co").await;
    for i in 0..5 {
        let event = incoming(|info, _| {
            info["ID"] = json!(format!("LIST{i}"));
            info["Chat"] = json!(format!("62812000000{i}@s.whatsapp.net"));
            info["Sender"] = json!(format!("62812000000{i}@s.whatsapp.net"));
            info["Timestamp"] = json!(format!("2025-08-14T15:0{i}:00+07:00"));
        });
        post_event(&app, &session, &key, &event, Encoding::Json).await;
    }
    processed(&app).await;
    let ok = eventually(Duration::from_secs(10), || async {
        chats(&app, &account, "limit=500").await.len() == 5
    })
    .await;
    assert!(ok);
    let paged = chats(&app, &account, "limit=2").await;
    let jids: Vec<&str> = paged.iter().filter_map(|c| c["jid"].as_str()).collect();
    assert_eq!(
        jids,
        [
            "628120000004@s.whatsapp.net",
            "628120000003@s.whatsapp.net",
            "628120000002@s.whatsapp.net",
            "628120000001@s.whatsapp.net",
            "628120000000@s.whatsapp.net"
        ]
    );
    let res = app
        .get("/api/v1/chats?session_id=nope", &account.token)
        .await;
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await.0,
        "invalid_query"
    );
    let res = app.get("/api/v1/chats?cursor=nope", &account.token).await;
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await.0,
        "invalid_cursor"
    );
    app.stop().await;
}

#[tokio::test]
async fn reading_a_chat_clears_unread_and_other_tenants_see_nothing() {
    let app = spawn_app().await;
    let (account, session, key) = linked(&app, "reader@b.co").await;
    let (other, other_session, other_key) = linked(&app, "other@b.co").await;
    post_event(
        &app,
        &session,
        &key,
        &samples()["message_received_incoming"],
        Encoding::Form,
    )
    .await;
    processed(&app).await;
    let chat = wait_chat(&app, &account, "6281233784490@s.whatsapp.net", |c| {
        c["unread_count"] == 1
    })
    .await;
    let id = chat["id"].as_str().expect("id").to_string();

    // another tenant: an empty list, and 404 for the chat, its messages and reading it
    assert!(chats(&app, &other, "").await.is_empty());
    for path in [
        format!("/api/v1/chats/{id}"),
        format!("/api/v1/chats/{id}/messages"),
    ] {
        let res = app.get(&path, &other.token).await;
        assert_eq!(error_code(res, StatusCode::NOT_FOUND).await.0, "not_found");
    }
    let res = app
        .post_empty(&format!("/api/v1/chats/{id}/read"), &other.token)
        .await;
    assert_eq!(error_code(res, StatusCode::NOT_FOUND).await.0, "not_found");
    // ... even when the same person writes to the other tenant's number: that is its own chat
    post_event(
        &app,
        &other_session,
        &other_key,
        &samples()["message_received_incoming"],
        Encoding::Form,
    )
    .await;
    processed(&app).await;
    let theirs = wait_chat(&app, &other, "6281233784490@s.whatsapp.net", |_| true).await;
    assert_ne!(theirs["id"], id.as_str());

    // the owner reads it: 0, and reading again is harmless
    for _ in 0..2 {
        let res = app
            .post_empty(&format!("/api/v1/chats/{id}/read"), &account.token)
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["unread_count"], 0, "{body}");
    }
    // the other tenant's chat is untouched
    let theirs = wait_chat(&app, &other, "6281233784490@s.whatsapp.net", |_| true).await;
    assert_eq!(theirs["unread_count"], 1);
    // a new message counts again
    let next = incoming(|info, _| {
        info["ID"] = json!("AFTERREAD");
        info["Timestamp"] = json!("2025-08-14T16:00:00+07:00");
    });
    post_event(&app, &session, &key, &next, Encoding::Json).await;
    processed(&app).await;
    wait_chat(&app, &account, "6281233784490@s.whatsapp.net", |c| {
        c["unread_count"] == 1 && c["last_message"]["id"] == "AFTERREAD"
    })
    .await;
    for path in [
        "/api/v1/chats/not-a-uuid".to_string(),
        format!("/api/v1/chats/{}", uuid::Uuid::new_v4()),
    ] {
        let res = app.get(&path, &account.token).await;
        assert_eq!(error_code(res, StatusCode::NOT_FOUND).await.0, "not_found");
    }
    app.stop().await;
}

#[tokio::test]
async fn receipts_for_phone_sent_messages_are_kept_on_the_chat_in_any_order() {
    let app = spawn_app().await;
    let (account, session, key) = linked(&app, "receipts@b.co").await;
    // Read arrives before the message it is for, then Delivered, then the message
    let mut read = samples()["message_read"].clone();
    read["event"]["MessageIDs"] = json!(["PHONE1"]);
    let mut delivered = samples()["message_delivered"].clone();
    delivered["event"]["MessageIDs"] = json!(["PHONE1"]);
    let mut own = samples()["message_received"].clone();
    own["event"]["Info"]["ID"] = json!("PHONE1");
    for event in [&read, &delivered, &own] {
        let res = post_event(&app, &session, &key, event, Encoding::Form).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    processed(&app).await;
    let chat = wait_chat(&app, &account, "6281233784490@s.whatsapp.net", |_| true).await;
    let id = chat["id"].as_str().expect("id");
    // the inbox is done; the read model follows shortly
    let read_seen = eventually(Duration::from_secs(15), || async {
        messages(&app, &account, id, "").await["items"][0]["status"] == "read"
    })
    .await;
    let page = messages(&app, &account, id, "").await;
    assert!(read_seen, "{page}");
    assert_eq!(page["items"][0]["id"], "PHONE1");
    assert_eq!(
        page["items"][0]["status"], "read",
        "read never goes back: {page}"
    );

    // a receipt for an id nobody knows waits, then is kept as unmatched, not an error
    let mut foreign = samples()["message_read"].clone();
    foreign["event"]["MessageIDs"] = json!(["NOBODY1"]);
    post_event(&app, &session, &key, &foreign, Encoding::Json).await;
    let waiting = eventually(Duration::from_secs(10), || async {
        inbox_rows(&app)
            .await
            .iter()
            .any(|r| !r.processed && r.attempts >= 1)
    })
    .await;
    assert!(waiting);
    sqlx::query(
        "WITH waiting AS (
             UPDATE webhook_inbox_retries SET next_attempt_at = now() RETURNING inbox_id)
         UPDATE webhook_inbox SET received_at = now() - interval '1 hour'
          WHERE id IN (SELECT inbox_id FROM waiting)",
    )
    .execute(&app.pool)
    .await
    .expect("age the receipt");
    processed(&app).await;
    let unmatched: Vec<(String, String)> =
        sqlx::query_as("SELECT message_id, state FROM unmatched_receipts")
            .fetch_all(&app.pool)
            .await
            .expect("unmatched");
    assert_eq!(unmatched, vec![("NOBODY1".to_string(), "Read".to_string())]);
    app.stop().await;
}

#[tokio::test]
async fn malformed_messages_are_refused_at_the_door() {
    let app = spawn_app().await;
    let (_, session, key) = linked(&app, "badmsg@b.co").await;
    for bad in [
        incoming(|info, _| info["ID"] = json!("")),
        incoming(|info, _| info["Chat"] = json!("not a jid")),
        incoming(|info, _| info["Sender"] = json!(42)),
        json!({"type": "Message", "event": "code"}),
    ] {
        let res = post_event(&app, &session, &key, &bad, Encoding::Json).await;
        assert_eq!(
            error_code(res, StatusCode::BAD_REQUEST).await.0,
            "invalid_webhook",
            "{bad}"
        );
    }
    assert!(inbox_rows(&app).await.is_empty());
    app.stop().await;
}

/// An incoming direct message from `phone` (E.164 digits) with id `id`, sent now.
fn reply_from(phone: &str, id: &str, text: &str) -> Value {
    incoming(|info, message| {
        info["ID"] = json!(id);
        info["Chat"] = json!(format!("{phone}@s.whatsapp.net"));
        info["Sender"] = json!(format!("{phone}:7@s.whatsapp.net"));
        info["Timestamp"] = json!(chrono::Utc::now().to_rfc3339());
        *message = json!({"conversation": text});
    })
}

/// Runs a campaign of `template` to `recipients` (JSON entries) and waits until it completed.
async fn campaign(
    app: &TestApp,
    account: &Account,
    session: &str,
    name: &str,
    template: &str,
    recipients: Value,
) -> String {
    let template = app
        .post(
            "/api/v1/templates",
            &account.token,
            &json!({"name": name, "type": "text", "body": template}),
        )
        .await;
    assert_eq!(template.status(), StatusCode::CREATED);
    let template: Value = template.json().await.expect("json");
    let id = app
        .create_campaign(
            account,
            &json!({"name": name, "template_id": template["id"], "session_id": session,
                    "recipients": recipients}),
        )
        .await;
    let done = app
        .wait_campaign(account, &id, Duration::from_secs(60), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    id
}

/// `(direction, text, status)` of every message of a chat, newest first.
async fn lines(app: &TestApp, account: &Account, chat: &str) -> Vec<(String, String, String)> {
    let page = messages(app, account, chat, "limit=100").await;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (s("direction"), s("text"), s("status"))
        })
        .collect()
}

fn line(direction: &str, text: &str, status: &str) -> (String, String, String) {
    (direction.into(), text.into(), status.into())
}

/// `POST /api/v1/messages` is a person writing: the chat appears at once (created if needed),
/// with the outgoing line, nothing unread, and the line's status follows the delivery's
/// receipts. The peer's answer lands in the same chat after it.
#[tokio::test]
async fn a_single_send_opens_a_chat_with_its_outgoing_line_and_nothing_unread() {
    let app = crate::helpers::spawn_app_with(herald_simulator::SimulatorConfig {
        receipts: herald_simulator::ReceiptSettings::on(),
        ..Default::default()
    })
    .await;
    let (account, session, key) = linked(&app, "single-chat@b.co").await;
    let other = app.register("single-chat-other@b.co").await;
    let res = app
        .post(
            "/api/v1/messages",
            &account.token,
            &json!({"session_id": session, "to": "+62 812-3378-4490", "type": "text",
                    "body": "Halo, pesanan Anda sudah dikirim"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let sent: Value = res.json().await.expect("json");
    let jid = "6281233784490@s.whatsapp.net";
    let chat = wait_chat(&app, &account, jid, |_| true).await;
    assert_eq!(chat["unread_count"], 0, "{chat}");
    assert_eq!(chat["last_message"]["direction"], "outgoing");
    assert_eq!(
        chat["last_message"]["text"],
        "Halo, pesanan Anda sudah dikirim"
    );
    assert_eq!(chat["last_message"]["id"], sent["message_id"]);
    assert_eq!(chat["name"], Value::Null);
    let id = chat["id"].as_str().expect("id").to_string();
    // the simulator's receipts move the line to read
    let read = eventually(Duration::from_secs(15), || async {
        lines(&app, &account, &id).await
            == [line("outgoing", "Halo, pesanan Anda sudah dikirim", "read")]
    })
    .await;
    assert!(read, "{:?}", lines(&app, &account, &id).await);
    let page = messages(&app, &account, &id, "").await;
    assert_eq!(page["items"][0]["sender"], "herald");
    assert_eq!(page["items"][0]["id"], sent["message_id"]);
    assert!(page["items"][0]["status_at"].is_string(), "{page}");
    // nothing unread: reading it is harmless
    let res = app
        .post_empty(&format!("/api/v1/chats/{id}/read"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // another tenant sees nothing of it
    assert!(chats(&app, &other, "").await.is_empty());
    let res = app.get(&format!("/api/v1/chats/{id}"), &other.token).await;
    assert_eq!(error_code(res, StatusCode::NOT_FOUND).await.0, "not_found");

    // the answer: the same chat, unread, newest first
    let reply = reply_from("6281233784490", "SINGLEREPLY1", "terima kasih");
    post_event(&app, &session, &key, &reply, Encoding::Json).await;
    let chat = wait_chat(&app, &account, jid, |c| c["unread_count"] == 1).await;
    assert_eq!(chat["id"], id.as_str());
    assert_eq!(chat["last_message"]["text"], "terima kasih");
    assert_eq!(
        lines(&app, &account, &id).await,
        [
            line("incoming", "terima kasih", "received"),
            line("outgoing", "Halo, pesanan Anda sudah dikirim", "read")
        ]
    );
    app.stop().await;
}

/// A campaign's message to someone who already has a chat is an outgoing line of that chat,
/// rendered as the recipient got it; recipients without a chat get none.
#[tokio::test]
async fn a_campaign_send_to_a_peer_with_a_chat_is_an_outgoing_line_of_it() {
    let app = spawn_app().await;
    let (account, session, key) = linked(&app, "campaign-chat@b.co").await;
    let incoming = samples()["message_received_incoming"].clone();
    post_event(&app, &session, &key, &incoming, Encoding::Form).await;
    let jid = "6281233784490@s.whatsapp.net";
    let chat = wait_chat(&app, &account, jid, |c| c["unread_count"] == 1).await;
    let id = chat["id"].as_str().expect("id").to_string();

    let recipients = json!([
        {"phone": "6281233784490", "vars": {"name": "Yoga"}},
        {"phone": "6281200000001", "vars": {"name": "Sari"}},
        "6281200000002"
    ]);
    campaign(
        &app,
        &account,
        &session,
        "November promo",
        "Hi {{ name }}, 20% off this week",
        recipients,
    )
    .await;
    let chat = wait_chat(&app, &account, jid, |c| {
        c["last_message"]["direction"] == "outgoing"
    })
    .await;
    assert_eq!(chat["unread_count"], 1, "an outgoing line is never unread");
    assert_eq!(chat["last_message"]["text"], "Hi Yoga, 20% off this week");
    assert_eq!(chat["last_message"]["sender"], "herald");
    assert_eq!(
        lines(&app, &account, &id).await,
        [
            line("outgoing", "Hi Yoga, 20% off this week", "sent"),
            line("incoming", "owh iya", "received")
        ]
    );
    let page = messages(&app, &account, &id, "").await;
    assert_eq!(page["items"][0]["sender_name"], "November promo");
    let sim: Vec<String> = app
        .sim_messages()
        .await
        .into_iter()
        .filter(|m| m.0 == "6281233784490")
        .map(|m| m.2)
        .collect();
    assert_eq!(
        page["items"][0]["id"],
        sim[0].as_str(),
        "the id WhatsApp has"
    );
    // the other recipients have no chat
    app.wait_projected("conversations").await;
    assert_eq!(chats(&app, &account, "").await.len(), 1);
    app.stop().await;
}

/// The customer answers a campaign: the chat that opens shows what Herald sent them (the
/// newest sends of the last days, oldest first below the reply), then the reply, unread once.
#[tokio::test]
async fn a_reply_to_a_campaign_opens_a_chat_that_shows_what_was_sent_first() {
    let app = spawn_app().await;
    let (account, session, key) = linked(&app, "reply-chat@b.co").await;
    let peer = "6281233784490";
    campaign(
        &app,
        &account,
        &session,
        "Launch",
        "New menu is out, {{ name }}!",
        json!([{"phone": peer, "vars": {"name": "Yoga"}}, "6281200000009"]),
    )
    .await;
    campaign(
        &app,
        &account,
        &session,
        "Reminder",
        "Last day of the launch offer",
        json!([peer]),
    )
    .await;
    app.wait_projected("conversations").await;
    assert!(
        chats(&app, &account, "").await.is_empty(),
        "sends alone open no chat"
    );

    let reply = reply_from(peer, "REPLY1", "Is the offer still on?");
    post_event(&app, &session, &key, &reply, Encoding::Form).await;
    let chat = wait_chat(&app, &account, &format!("{peer}@s.whatsapp.net"), |_| true).await;
    assert_eq!(chat["unread_count"], 1, "{chat}");
    assert_eq!(chat["name"], "M. Yoga");
    assert_eq!(chat["last_message"]["text"], "Is the offer still on?");
    assert_eq!(chat["last_message"]["direction"], "incoming");
    let id = chat["id"].as_str().expect("id");
    assert_eq!(
        lines(&app, &account, id).await,
        [
            line("incoming", "Is the offer still on?", "received"),
            line("outgoing", "Last day of the launch offer", "sent"),
            line("outgoing", "New menu is out, Yoga!", "sent"),
        ]
    );
    // keyset pages keep the time order across Herald's lines and the reply
    let first = messages(&app, &account, id, "limit=2").await;
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let second = messages(
        &app,
        &account,
        id,
        &format!("limit=2&before={}", urlencode(cursor)),
    )
    .await;
    assert_eq!(second["items"][0]["text"], "New menu is out, Yoga!");
    assert_eq!(second["next_cursor"], Value::Null);
    // the other recipient still has no chat
    assert_eq!(chats(&app, &account, "").await.len(), 1);
    app.stop().await;
}

/// A campaign to 1,000 recipients adds a line to the one chat that exists and creates none.
#[tokio::test]
async fn a_campaign_to_a_thousand_recipients_without_chats_creates_no_chats() {
    let app = spawn_app().await;
    let (account, session, key) = linked(&app, "thousand-chat@b.co").await;
    let all = crate::helpers::phones(1_000);
    let known = all[500].clone();
    post_event(
        &app,
        &session,
        &key,
        &reply_from(&known, "KNOWN1", "hello"),
        Encoding::Json,
    )
    .await;
    wait_chat(&app, &account, &format!("{known}@s.whatsapp.net"), |_| true).await;
    campaign(
        &app,
        &account,
        &session,
        "Big",
        "Hi {{ phone }}",
        json!(all),
    )
    .await;
    app.wait_projected("conversations").await;
    let list = chats(&app, &account, "").await;
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["id"].as_str().expect("id");
    assert_eq!(
        lines(&app, &account, id).await,
        [
            line("outgoing", &format!("Hi {known}"), "sent"),
            line("incoming", "hello", "received")
        ]
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(rows, 2);
    app.stop().await;
}
