//! Outbound webhooks end to end: a receiver (a real HTTP server in the test) gets Herald's events,
//! verifies every one with the stock Standard Webhooks library, fails on purpose to see retries
//! and the log, and asks for a replay; the SSRF rules, tenancy and a restart mid-retry.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::helpers::{error_code, phones, spawn_app_configured, Account, TestApp};

/// One request the receiver got.
#[derive(Clone)]
struct Got {
    headers: HeaderMap,
    body: String,
    at: tokio::time::Instant,
}

impl Got {
    fn id(&self) -> String {
        self.headers["webhook-id"]
            .to_str()
            .expect("ascii")
            .to_string()
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// A scripted answer: a status and extra headers.
type Answer = (u16, Vec<(&'static str, String)>);

/// An integrator's endpoint: answers each request with the next scripted status (and
/// headers), 200 once the script is used up, and keeps what it got.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
    /// How long it takes to answer (a slow integrator).
    delay: Arc<Mutex<Duration>>,
}

impl Receiver {
    async fn spawn() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "http://{}/hooks/herald",
            listener.local_addr().expect("addr")
        );
        let receiver = Receiver {
            url,
            got: Arc::default(),
            script: Arc::default(),
            delay: Arc::default(),
        };
        let this = receiver.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let this = this.clone();
                tokio::spawn(async move { this.answer(stream).await });
            }
        });
        receiver
    }

    async fn answer(&self, stream: tokio::net::TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HeaderMap::new();
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((name, value)) = l.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0);
                }
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.trim().to_lowercase().as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.insert(n, v);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        self.got.lock().expect("lock").push(Got {
            headers,
            body: String::from_utf8(body).expect("utf-8 body"),
            at: tokio::time::Instant::now(),
        });
        let delay = *self.delay.lock().expect("lock");
        tokio::time::sleep(delay).await;
        let (status, extra) = self
            .script
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or((200, vec![]));
        let mut answer =
            format!("HTTP/1.1 {status} Whatever\r\ncontent-length: 0\r\nconnection: close\r\n");
        for (name, value) in extra {
            answer.push_str(&format!("{name}: {value}\r\n"));
        }
        answer.push_str("\r\n");
        let _ = write.write_all(answer.as_bytes()).await;
        let _ = write.shutdown().await;
    }

    fn fail_with(&self, answers: &[Answer]) {
        self.script
            .lock()
            .expect("lock")
            .extend(answers.iter().cloned());
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().expect("lock").clone()
    }

    /// Waits until `done(requests so far)`; panics after `timeout`.
    async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Got]) -> bool,
    ) -> Vec<Got> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: the receiver got {} requests: {:?}",
                got.len(),
                got.iter().map(|g| g.body.clone()).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Verifies a delivery as an integrator would: the stock Standard Webhooks library.
fn verify(secret: &str, got: &Got) -> bool {
    standardwebhooks::Webhook::new(secret)
        .expect("a Standard Webhooks secret")
        .verify(got.body.as_bytes(), &got.headers)
        .is_ok()
}

/// Herald with retries after 500 ms (instead of 5 s, 5 min, ...).
async fn app() -> TestApp {
    spawn_app_configured(|s| {
        s.outbound.retry_schedule = vec![Duration::from_millis(500); 7];
    })
    .await
}

/// Registers an endpoint; (id, secret).
async fn endpoint(app: &TestApp, account: &Account, url: &str, events: Value) -> (String, String) {
    let res = app
        .post(
            "/api/v1/webhook-endpoints",
            &account.token,
            &json!({"url": url, "events": events, "description": "orders system"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["enabled"], true);
    let secret = body["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("whsec_"));
    (body["id"].as_str().expect("id").to_string(), secret)
}

async fn campaign(
    app: &TestApp,
    account: &Account,
    session: &str,
    template: &str,
    n: usize,
) -> String {
    app.create_campaign(
        account,
        &json!({"name": "hooks", "template_id": template, "session_id": session,
                "recipients": phones(n)}),
    )
    .await
}

#[tokio::test]
async fn every_delivery_verifies_with_a_stock_library_and_the_secret_is_shown_once() {
    let app = app().await;
    let (account, session, template) = app.ready_tenant("hooks@example.com", "Hi {{ name }}").await;
    let receiver = Receiver::spawn().await;
    let (id, secret) = endpoint(&app, &account, &receiver.url, json!(["delivery.status"])).await;

    // the secret is never shown again
    let one = app
        .get_json(&format!("/api/v1/webhook-endpoints/{id}"), &account.token)
        .await;
    assert!(one.get("secret").is_none(), "{one}");
    assert_eq!(one["events"], json!(["delivery.status"]));
    let list = app
        .get_json("/api/v1/webhook-endpoints", &account.token)
        .await;
    assert_eq!(list["items"].as_array().expect("items").len(), 1);
    assert!(!list.to_string().contains(&secret));

    campaign(&app, &account, &session, &template, 3).await;
    // each recipient: sending and sent (the simulator sends no receipts by default)
    let got = receiver
        .wait_for(Duration::from_secs(30), "3 recipients sent", |g| {
            g.iter()
                .filter(|g| g.json()["data"]["status"] == "sent")
                .count()
                == 3
        })
        .await;
    for g in &got {
        assert!(verify(&secret, g), "verifies: {}", g.body);
        let body = g.json();
        assert_eq!(body["type"], "delivery.status", "{body}");
        assert!(body["timestamp"].is_string());
        assert!(body["data"]["phone"].is_string());
        assert!(g.id().starts_with("msg_"));
        assert_eq!(g.headers["content-type"], "application/json");
    }
    // a tampered body does not verify
    let mut forged = got[0].clone();
    forged.body = forged
        .body
        .replace("sent", "read")
        .replace("sending", "read");
    assert!(!verify(&secret, &forged));
    // campaign.status was not subscribed to
    assert!(got.iter().all(|g| g.json()["type"] == "delivery.status"));
    app.stop().await;
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_with_the_same_id_and_every_attempt_is_logged() {
    let app = app().await;
    let account = app.register("retry@example.com").await;
    let receiver = Receiver::spawn().await;
    let (id, secret) = endpoint(&app, &account, &receiver.url, json!(["*"])).await;
    receiver.fail_with(&[(500, vec![]), (503, vec![])]);

    let res = app
        .post_empty(
            &format!("/api/v1/webhook-endpoints/{id}/test"),
            &account.token,
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let queued: Value = res.json().await.expect("json");
    let got = receiver
        .wait_for(Duration::from_secs(20), "three attempts", |g| g.len() >= 3)
        .await;
    assert!(got.iter().all(|g| g.id() == queued["event_id"]));
    assert!(got.iter().all(|g| verify(&secret, g)));
    assert_eq!(got[0].json()["type"], "webhook.test");
    // retried after about the configured 500 ms, not at once
    assert!(got[1].at - got[0].at >= Duration::from_millis(400));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = app
            .get_json(
                &format!("/api/v1/webhook-endpoints/{id}/deliveries"),
                &account.token,
            )
            .await;
        if log["items"].as_array().is_some_and(|i| i.len() == 3)
            || tokio::time::Instant::now() > deadline
        {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let items = log["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "{log}");
    // newest first
    assert_eq!(items[0]["attempt"], 3);
    assert_eq!(items[0]["status_code"], 200);
    assert!(items[0]["error"].is_null() && items[0]["next_attempt_at"].is_null());
    assert_eq!(items[1]["status_code"], 503);
    assert_eq!(items[2]["status_code"], 500);
    assert_eq!(items[2]["attempt"], 1);
    assert_eq!(items[2]["error"], "HTTP 500");
    assert!(items[2]["next_attempt_at"].is_string());
    assert_eq!(items[2]["type"], "webhook.test");
    app.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured_and_410_disables_the_endpoint() {
    let app = app().await;
    let account = app.register("gone@example.com").await;
    let receiver = Receiver::spawn().await;
    let (id, _) = endpoint(&app, &account, &receiver.url, json!(["*"])).await;
    receiver.fail_with(&[(429, vec![("retry-after", "2".into())]), (410, vec![])]);

    app.post_empty(
        &format!("/api/v1/webhook-endpoints/{id}/test"),
        &account.token,
    )
    .await;
    let got = receiver
        .wait_for(Duration::from_secs(20), "two attempts", |g| g.len() >= 2)
        .await;
    // the receiver's Retry-After (2 s), not the schedule's 500 ms
    assert!(got[1].at - got[0].at >= Duration::from_millis(1_900));

    // 410: disabled, and said why
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let one = loop {
        let one = app
            .get_json(&format!("/api/v1/webhook-endpoints/{id}"), &account.token)
            .await;
        if one["enabled"] == false || tokio::time::Instant::now() > deadline {
            break one;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(one["enabled"], false, "{one}");
    assert!(one["disabled_reason"]
        .as_str()
        .expect("reason")
        .contains("410"));
    // nothing more goes out while disabled; a replay needs it enabled
    app.post_empty(
        &format!("/api/v1/webhook-endpoints/{id}/test"),
        &account.token,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.got().len(), 2);
    let res = app
        .post(
            &format!("/api/v1/webhook-endpoints/{id}/replay"),
            &account.token,
            &json!({"since": chrono::Utc::now() - chrono::Duration::hours(1)}),
        )
        .await;
    error_code(res, StatusCode::CONFLICT).await;
    // enabled again: what waited is delivered
    let res = app
        .patch(
            &format!("/api/v1/webhook-endpoints/{id}"),
            &account.token,
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert!(body["disabled_reason"].is_null());
    receiver
        .wait_for(Duration::from_secs(10), "the waiting test message", |g| {
            g.len() >= 3
        })
        .await;
    app.stop().await;
}

#[tokio::test]
async fn replay_delivers_a_period_again_with_the_same_ids() {
    let app = app().await;
    let (account, session, template) = app.ready_tenant("replay@example.com", "Hello").await;
    let receiver = Receiver::spawn().await;
    let (id, secret) = endpoint(&app, &account, &receiver.url, json!(["campaign.status"])).await;
    let campaign_id = campaign(&app, &account, &session, &template, 2).await;
    app.wait_campaign(&account, &campaign_id, Duration::from_secs(30), |c| {
        c["status"] == "completed"
    })
    .await;
    receiver
        .wait_for(
            Duration::from_secs(20),
            "scheduled, running, completed",
            |g| g.iter().any(|g| g.json()["data"]["status"] == "completed"),
        )
        .await;
    // in no promised order: let the others of the first round land
    app.wait_projected(herald_outbound::projector::NAME).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = receiver.got();
    let mut ids: Vec<String> = first.iter().map(Got::id).collect();
    ids.sort();

    for bad in [json!({"since": "yesterday"}), json!({})] {
        let res = app
            .post(
                &format!("/api/v1/webhook-endpoints/{id}/replay"),
                &account.token,
                &bad,
            )
            .await;
        assert!(res.status().is_client_error(), "{bad}: {}", res.status());
    }
    for since in [
        chrono::Utc::now() + chrono::Duration::hours(1),
        chrono::Utc::now() - chrono::Duration::days(31),
    ] {
        let res = app
            .post(
                &format!("/api/v1/webhook-endpoints/{id}/replay"),
                &account.token,
                &json!({"since": since}),
            )
            .await;
        error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    }

    app.wait_projected(herald_outbound::projector::NAME).await;
    let res = app
        .post(
            &format!("/api/v1/webhook-endpoints/{id}/replay"),
            &account.token,
            &json!({"since": chrono::Utc::now() - chrono::Duration::days(1)}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["queued"], ids.len(), "{body}");
    let all = receiver
        .wait_for(Duration::from_secs(20), "the replay", |g| {
            g.len() >= 2 * ids.len()
        })
        .await;
    let mut replayed: Vec<String> = all[first.len()..].iter().map(Got::id).collect();
    replayed.sort();
    assert_eq!(replayed, ids);
    assert!(all.iter().all(|g| verify(&secret, g)));
    app.stop().await;
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_old_one() {
    let app = app().await;
    let account = app.register("rotate@example.com").await;
    let receiver = Receiver::spawn().await;
    let (id, old) = endpoint(&app, &account, &receiver.url, json!(["*"])).await;
    let res = app
        .post_empty(
            &format!("/api/v1/webhook-endpoints/{id}/rotate-secret"),
            &account.token,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    let new = body["secret"].as_str().expect("new secret").to_string();
    assert_ne!(new, old);
    app.post_empty(
        &format!("/api/v1/webhook-endpoints/{id}/test"),
        &account.token,
    )
    .await;
    let got = receiver
        .wait_for(Duration::from_secs(10), "the test message", |g| {
            !g.is_empty()
        })
        .await;
    let signatures = got[0].headers["webhook-signature"].to_str().expect("ascii");
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    assert!(verify(&new, &got[0]) && verify(&old, &got[0]));
    app.stop().await;
}

#[tokio::test]
async fn another_tenant_can_neither_see_nor_change_an_endpoint_nor_receive_its_events() {
    let app = app().await;
    let (owner, session, template) = app.ready_tenant("owner@example.com", "Hello").await;
    let other = app.register("other@example.com").await;
    let mine = Receiver::spawn().await;
    let theirs = Receiver::spawn().await;
    let (id, _) = endpoint(&app, &owner, &mine.url, json!(["*"])).await;
    endpoint(&app, &other, &theirs.url, json!(["*"])).await;

    let path = format!("/api/v1/webhook-endpoints/{id}");
    assert_eq!(
        app.get(&path, &other.token).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("{path}/deliveries"), &other.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.patch(&path, &other.token, &json!({"url": theirs.url}))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    for action in ["rotate-secret", "test"] {
        assert_eq!(
            app.post_empty(&format!("{path}/{action}"), &other.token)
                .await
                .status(),
            StatusCode::NOT_FOUND,
            "{action}"
        );
    }
    assert_eq!(
        app.post(
            &format!("{path}/replay"),
            &other.token,
            &json!({"since": chrono::Utc::now()})
        )
        .await
        .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&path, &other.token).await.status(),
        StatusCode::NOT_FOUND
    );
    let list = app
        .get_json("/api/v1/webhook-endpoints", &other.token)
        .await;
    assert_eq!(list["items"].as_array().expect("items").len(), 1);
    assert_ne!(list["items"][0]["id"], json!(id));
    assert_eq!(app.get(&path, &owner.token).await.status(), StatusCode::OK);

    campaign(&app, &owner, &session, &template, 2).await;
    mine.wait_for(Duration::from_secs(30), "the owner's events", |g| {
        g.iter().any(|g| g.json()["data"]["status"] == "completed")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        theirs.got().is_empty(),
        "another tenant's endpoint got nothing"
    );
    // deleted: gone for its owner too
    assert_eq!(
        app.delete(&path, &owner.token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&path, &owner.token).await.status(),
        StatusCode::NOT_FOUND
    );
    app.stop().await;
}

#[tokio::test]
async fn urls_follow_the_ssrf_rules_at_creation_and_at_every_delivery() {
    let mut app = spawn_app_configured(|s| {
        s.outbound.allow_private = false;
    })
    .await;
    let account = app.register("ssrf@example.com").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "ftp://example.com/hook",
        "http://user:pw@example.com/hook",
    ] {
        let res = app
            .post(
                "/api/v1/webhook-endpoints",
                &account.token,
                &json!({"url": url, "events": ["*"]}),
            )
            .await;
        let (code, _) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(code, "validation_failed", "{url}");
    }
    for events in [json!([]), json!(["campaign.progress"]), json!(["nope"])] {
        let res = app
            .post(
                "/api/v1/webhook-endpoints",
                &account.token,
                &json!({"url": "https://example.com/hook", "events": events}),
            )
            .await;
        error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    }

    // registered while private addresses were allowed, refused at delivery once they are not
    app.settings.outbound.allow_private = true;
    app.restart().await;
    let receiver = Receiver::spawn().await;
    let (id, _) = endpoint(&app, &account, &receiver.url, json!(["*"])).await;
    app.settings.outbound.allow_private = false;
    app.restart().await;
    app.post_empty(
        &format!("/api/v1/webhook-endpoints/{id}/test"),
        &account.token,
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = app
            .get_json(
                &format!("/api/v1/webhook-endpoints/{id}/deliveries"),
                &account.token,
            )
            .await;
        if !log["items"].as_array().is_some_and(|i| i.is_empty())
            || tokio::time::Instant::now() > deadline
        {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = log["items"][0]["error"].as_str().expect("an error");
    assert!(error.starts_with("refused"), "{error}");
    assert!(log["items"][0]["status_code"].is_null());
    assert!(receiver.got().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_message_waiting_for_its_retry_survives_a_restart() {
    let mut app = spawn_app_configured(|s| {
        s.outbound.retry_schedule = vec![Duration::from_secs(3); 7];
    })
    .await;
    let account = app.register("durable@example.com").await;
    let receiver = Receiver::spawn().await;
    let (id, secret) = endpoint(&app, &account, &receiver.url, json!(["*"])).await;
    receiver.fail_with(&[(500, vec![])]);
    app.post_empty(
        &format!("/api/v1/webhook-endpoints/{id}/test"),
        &account.token,
    )
    .await;
    receiver
        .wait_for(Duration::from_secs(10), "the first attempt", |g| {
            g.len() == 1
        })
        .await;
    // Herald stops between the failed attempt and its retry; another process starts
    app.restart().await;
    let got = receiver
        .wait_for(
            Duration::from_secs(20),
            "the retry after the restart",
            |g| g.len() >= 2,
        )
        .await;
    assert_eq!(got[0].id(), got[1].id());
    assert!(verify(&secret, &got[1]));
    app.stop().await;
}

#[tokio::test]
async fn a_slow_endpoint_does_not_delay_another_tenants_deliveries() {
    let app = app().await;
    let slow_tenant = app.register("slow@example.com").await;
    let quick_tenant = app.register("quick@example.com").await;
    let slow = Receiver::spawn().await;
    *slow.delay.lock().expect("lock") = Duration::from_secs(3);
    let quick = Receiver::spawn().await;
    let (slow_id, _) = endpoint(&app, &slow_tenant, &slow.url, json!(["*"])).await;
    let (quick_id, _) = endpoint(&app, &quick_tenant, &quick.url, json!(["*"])).await;
    // more than the slow endpoint takes at once: it is busy for several rounds of 3 s
    for _ in 0..20 {
        app.post_empty(
            &format!("/api/v1/webhook-endpoints/{slow_id}/test"),
            &slow_tenant.token,
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = tokio::time::Instant::now();
    app.post_empty(
        &format!("/api/v1/webhook-endpoints/{quick_id}/test"),
        &quick_tenant.token,
    )
    .await;
    quick
        .wait_for(Duration::from_secs(10), "the quick tenant's message", |g| {
            !g.is_empty()
        })
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "delivered in {:?} while the slow endpoint was busy",
        started.elapsed()
    );
    assert!(
        slow.got().len() < 20,
        "the slow endpoint was still being served"
    );
    app.stop().await;
}
