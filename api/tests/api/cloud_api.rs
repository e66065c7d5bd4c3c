//! Sessions that send through the WhatsApp Cloud API (`provider: "cloud_api"`), against the
//! simulator's Cloud API surface: linking proves the token with Meta and never shows secrets
//! back; campaigns go out as Cloud API messages and the statuses Meta posts to the session's own
//! callback move the recipients; Meta's error codes land where API.md says; the callback answers
//! the handshake with the session's verify token and refuses posts not signed with its secret;
//! a Cloud API session has no WuzAPI pairing, and another tenant sees none of it.

use std::time::Duration;

use herald_gateway::meta;
use herald_simulator::{self as simulator, RunningSimulator, SimulatorConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, phones, spawn_app_configured, Account, TestApp};
use crate::webhooks::{eventually, recipients};

const NUMBER_ID: &str = "106540352242922";
const ACCESS_TOKEN: &str = "EAAG-cloud-access-token";
const APP_SECRET: &str = "cloud-app-secret-for-tests";

/// Herald whose Graph API is a simulator of its own (the WuzAPI one stays unused here).
async fn cloud_app() -> (TestApp, RunningSimulator) {
    let graph = simulator::spawn("127.0.0.1:0", SimulatorConfig::default())
        .await
        .expect("simulator starts");
    let url = format!("{}/cloud/v21.0", graph.base_url());
    let app = spawn_app_configured(move |s| s.meta_graph_url = url).await;
    (app, graph)
}

/// Registers the number on the simulated Graph API (its callback, its errors to inject).
async fn register_number(app: &TestApp, graph: &RunningSimulator, callback: &str, errors: Value) {
    let res = app
        .client
        .put(format!(
            "{}/sim/cloud/numbers/{NUMBER_ID}",
            graph.base_url()
        ))
        .json(
            &json!({"access_token": ACCESS_TOKEN, "app_secret": APP_SECRET,
                      "callback_url": callback, "errors": errors}),
        )
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
}

/// A tenant with a Cloud API session whose callback the simulator posts to; (account, session
/// id, the session as answered).
async fn cloud_tenant(
    app: &TestApp,
    graph: &RunningSimulator,
    email: &str,
    errors: Value,
) -> (Account, String, Value) {
    register_number(app, graph, "", json!({})).await;
    let account = app.register(email).await;
    let res = app
        .post(
            "/api/v1/sessions",
            &account.token,
            &json!({"name": "cloud", "provider": "cloud_api",
                    "cloud_api": {"phone_number_id": NUMBER_ID, "access_token": ACCESS_TOKEN,
                                  "app_secret": APP_SECRET, "waba_id": "102290129340398"}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let session: Value = res.json().await.expect("json");
    let id = session["id"].as_str().expect("id").to_string();
    register_number(
        app,
        graph,
        &app.url(&format!("/api/v1/webhooks/meta/{id}")),
        errors,
    )
    .await;
    (account, id, session)
}

async fn graph_messages(app: &TestApp, graph: &RunningSimulator) -> Value {
    app.client
        .get(format!("{}/sim/cloud/messages", graph.base_url()))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

/// Each of `phones` writes to the number (a signed notification with their messages, as Meta
/// posts it), which opens their 24-hour window; returns once their chats show it.
async fn customers_write(app: &TestApp, session: &str, phones: &[String]) {
    let now = chrono::Utc::now().timestamp().to_string();
    let messages: Vec<Value> = phones
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({"from": p, "id": format!("wamid.IN{i}{p}"), "timestamp": now,
                             "type": "text", "text": {"body": "hi"}})
        })
        .collect();
    let contacts: Vec<Value> = phones
        .iter()
        .map(|p| json!({"profile": {"name": "Customer"}, "wa_id": p}))
        .collect();
    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100", "phone_number_id": NUMBER_ID},
            "contacts": contacts, "messages": messages}}]}]})
    .to_string();
    let res = app
        .client
        .post(app.url(&format!("/api/v1/webhooks/meta/{session}")))
        .header("content-type", "application/json")
        .header(
            meta::SIGNATURE_HEADER,
            meta::sign(APP_SECRET, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    let written = eventually(Duration::from_secs(20), || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM chat_messages m JOIN chats c ON c.id = m.chat_id
              WHERE c.session_id = $1::uuid AND m.direction = 'incoming'",
        )
        .bind(session)
        .fetch_one(&app.pool)
        .await
        .expect("count");
        n >= phones.len() as i64
    })
    .await;
    assert!(written, "the customers' messages never reached their chats");
}

async fn campaign(app: &TestApp, account: &Account, session: &str, to: &[String]) -> String {
    let template = app.create_template(account, "Hello {{ phone }}").await;
    app.create_campaign(
        account,
        &json!({"name": "cloud", "template_id": template, "session_id": session, "recipients": to}),
    )
    .await
}

#[tokio::test]
async fn a_cloud_api_session_shows_its_callback_and_verify_token_but_never_its_secrets() {
    let (app, graph) = cloud_app().await;
    let (account, id, session) = cloud_tenant(&app, &graph, "shows@cloud.co", json!({})).await;
    assert_eq!(session["provider"], "cloud_api");
    assert_eq!(session["status"], "connected");
    assert_eq!(session["meta_phone_number_id"], NUMBER_ID);
    assert_eq!(
        session["webhook_url"],
        app.url(&format!("/api/v1/webhooks/meta/{id}"))
    );
    let verify_token = session["verify_token"].as_str().expect("a verify token");
    assert!(verify_token.len() >= 32, "{verify_token}");
    // Meta's throughput, not WuzAPI's human pacing
    assert_eq!(
        session["pacing"],
        json!({"min_interval_ms": 12, "max_interval_ms": 13})
    );
    let listed = app.get("/api/v1/sessions", &account.token).await;
    let text = listed.text().await.expect("text");
    let one = app
        .get(&format!("/api/v1/sessions/{id}"), &account.token)
        .await
        .text()
        .await
        .expect("text");
    for shown in [session.to_string(), text, one] {
        assert!(!shown.contains(ACCESS_TOKEN), "{shown}");
        assert!(!shown.contains(APP_SECRET), "{shown}");
        assert!(shown.contains("cloud_api"), "{shown}");
    }

    // a token Meta does not accept for the number links nothing
    let other = app.register("wrong@cloud.co").await;
    let res = app
        .post(
            "/api/v1/sessions",
            &other.token,
            &json!({"name": "x", "provider": "cloud_api",
                    "cloud_api": {"phone_number_id": NUMBER_ID, "access_token": "EAAG-not-it",
                                  "app_secret": "s"}}),
        )
        .await;
    let (code, body) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(code, "validation_failed", "{body}");
    assert!(
        body.to_string().contains("cloud_api.access_token"),
        "{body}"
    );
    // another tenant cannot see the session, nor pair it
    let res = app
        .get(&format!("/api/v1/sessions/{id}"), &other.token)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // and the owner has no WuzAPI pairing for it
    let res = app
        .post(
            &format!("/api/v1/sessions/{id}/connect"),
            &account.token,
            &json!({}),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::CONFLICT).await.0,
        "not_a_wuzapi_session"
    );
    // nor a WuzAPI to pass requests to: its access token never goes there
    let res = app
        .get(
            &format!("/api/v1/sessions/{id}/gateway/group/list"),
            &account.token,
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::CONFLICT).await.0,
        "not_a_wuzapi_session"
    );
}

#[tokio::test]
async fn a_cloud_api_campaign_goes_out_through_meta_and_its_statuses_come_back_read() {
    let (app, graph) = cloud_app().await;
    let (account, session, _) = cloud_tenant(&app, &graph, "send@cloud.co", json!({})).await;
    let to = phones(5);
    // free-form text needs each customer's 24-hour window open
    customers_write(&app, &session, &to).await;
    let id = campaign(&app, &account, &session, &to).await;
    let read = eventually(Duration::from_secs(30), || async {
        let all = recipients(&app, &account, &id).await;
        all.len() == 5 && all.values().all(|r| r["status"] == "read")
    })
    .await;
    let all = recipients(&app, &account, &id).await;
    assert!(read, "{all:?}");
    for r in all.values() {
        // the message id is Meta's wamid
        assert!(
            r["message_id"]
                .as_str()
                .is_some_and(|m| m.starts_with("wamid.")),
            "{r}"
        );
    }
    let sent = graph_messages(&app, &graph).await;
    let messages = sent["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 5, "{sent}");
    for m in messages {
        assert_eq!(m["type"], "text");
        let phone = m["to"].as_str().expect("to");
        assert!(to.iter().any(|p| p == phone), "{m}");
        assert_eq!(m["text"]["body"], format!("Hello {phone}"));
    }
}

#[tokio::test]
async fn metas_error_codes_fail_retry_or_hold_a_recipient_as_api_md_says() {
    let (app, graph) = cloud_app().await;
    let to = phones(3);
    let mut errors = serde_json::Map::new();
    // outside the 24-hour window: that recipient fails with Meta's message
    errors.insert(to[0].clone(), json!([131047]));
    // throughput, then a server error: retried, then sent
    errors.insert(to[1].clone(), json!([130429, 131000]));
    // anything else: failed with Meta's message
    errors.insert(to[2].clone(), json!([131026]));
    let errors = Value::Object(errors);
    let (account, session, _) = cloud_tenant(&app, &graph, "errors@cloud.co", errors).await;
    customers_write(&app, &session, &to).await;
    let id = campaign(&app, &account, &session, &to).await;
    let settled = eventually(Duration::from_secs(40), || async {
        let all = recipients(&app, &account, &id).await;
        all.get(&to[1]).is_some_and(|r| r["status"] == "read")
            && all.get(&to[0]).is_some_and(|r| r["status"] == "failed")
            && all.get(&to[2]).is_some_and(|r| r["status"] == "failed")
    })
    .await;
    let all = recipients(&app, &account, &id).await;
    assert!(settled, "{all:?}");
    let error = |phone: &str| all[phone]["error"].as_str().unwrap_or_default().to_string();
    assert!(error(&to[0]).contains("131047"), "{}", error(&to[0]));
    assert!(error(&to[2]).contains("131026"), "{}", error(&to[2]));
    assert!(
        all[&to[1]]["attempts"].as_i64().unwrap_or(0) >= 3,
        "{}",
        all[&to[1]]
    );
    let sent = graph_messages(&app, &graph).await;
    assert_eq!(sent["messages"].as_array().map(Vec::len), Some(1), "{sent}");
}

#[tokio::test]
async fn free_form_sends_outside_the_24_hour_window_fail_without_calling_meta() {
    let (app, graph) = cloud_app().await;
    let (account, session, _) = cloud_tenant(&app, &graph, "window@cloud.co", json!({})).await;
    let to = phones(2);
    // only the first wrote to the number
    customers_write(&app, &session, &to[..1]).await;
    let id = campaign(&app, &account, &session, &to).await;
    let settled = eventually(Duration::from_secs(30), || async {
        let all = recipients(&app, &account, &id).await;
        all.get(&to[0]).is_some_and(|r| r["status"] == "read")
            && all.get(&to[1]).is_some_and(|r| r["status"] == "failed")
    })
    .await;
    let all = recipients(&app, &account, &id).await;
    assert!(settled, "{all:?}");
    assert_eq!(all[&to[1]]["error"], "outside_customer_service_window");
    let sent = graph_messages(&app, &graph).await;
    let messages = sent["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{sent}");
    assert_eq!(messages[0]["to"], to[0].as_str());
}

#[tokio::test]
async fn the_sessions_callback_answers_the_handshake_and_takes_only_posts_signed_with_its_secret() {
    let (app, graph) = cloud_app().await;
    let (_, session, shown) = cloud_tenant(&app, &graph, "hook@cloud.co", json!({})).await;
    let verify_token = shown["verify_token"].as_str().expect("verify token");
    let hook = format!("/api/v1/webhooks/meta/{session}");
    let handshake = |token: &str| {
        app.client
            .get(app.url(&format!(
                "{hook}?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"
            )))
            .send()
    };
    let res = handshake(verify_token).await.expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.expect("text"), "1158201444");
    let res = handshake("not-the-token").await.expect("sent");
    assert_eq!(
        error_code(res, StatusCode::FORBIDDEN).await.0,
        "verification_failed"
    );
    // a session that is not a Cloud API one, or none at all: nothing there
    let res = app
        .client
        .get(app.url(&format!(
            "/api/v1/webhooks/meta/{}?hub.mode=subscribe&hub.verify_token={verify_token}&hub.challenge=1",
            uuid::Uuid::new_v4()
        )))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100", "phone_number_id": NUMBER_ID},
            "statuses": [{"id": "wamid.unknown", "status": "delivered", "timestamp": "1767225600",
                          "recipient_id": "6281234567890"}]}}]}]})
    .to_string();
    let post = |signature: Option<String>| {
        let mut request = app
            .client
            .post(app.url(&hook))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(signature) = signature {
            request = request.header(meta::SIGNATURE_HEADER, signature);
        }
        request.send()
    };
    for signature in [
        None,
        Some(meta::sign("another app's secret", body.as_bytes())),
        Some("sha256=00".to_string()),
    ] {
        let res = post(signature).await.expect("sent");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = post(Some(meta::sign(APP_SECRET, body.as_bytes())))
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM webhook_inbox WHERE source = 'meta' AND session_id = $1::uuid",
    )
    .bind(&session)
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(stored, 1);
}
