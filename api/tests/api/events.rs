//! Real-time events: `GET /api/v1/events` (SSE) and the NATS subjects (docs/events.md).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use herald_simulator::{ReceiptSettings, SimulatorConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    error_code, phones, spawn_app, spawn_app_with_sim_and_settings, Account, TestApp,
};

/// One SSE event as a client reads it.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub name: String,
    pub id: String,
    pub data: Value,
}

/// A minimal SSE client over a streaming reqwest response: lines in, events and comments out.
pub(crate) struct SseClient {
    res: reqwest::Response,
    buf: String,
    comments: Vec<String>,
}

impl SseClient {
    pub async fn open(res: reqwest::Response) -> SseClient {
        assert_eq!(res.status(), StatusCode::OK);
        let ct = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        SseClient {
            res,
            buf: String::new(),
            comments: Vec::new(),
        }
    }

    /// The next event, or `None` when `timeout` passes first.
    pub async fn next(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // a complete event ends with a blank line
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut id, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        self.comments.push(c.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_string();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        id = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if name.is_empty() {
                    continue; // a comment or a retry hint
                }
                let data = serde_json::from_str(&data).expect("event data is JSON");
                return Some(Event { name, id, data });
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) => panic!("the event stream ended"),
                Ok(Err(e)) => panic!("the event stream failed: {e}"),
                Err(_) => return None,
            }
        }
    }

    /// Reads events until `done(event)`, returning everything read (the last one included).
    pub async fn until(&mut self, timeout: Duration, done: impl Fn(&Event) -> bool) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(event) = self.next(left).await else {
                panic!(
                    "timed out; last events: {:?}",
                    seen.iter().rev().take(5).collect::<Vec<_>>()
                );
            };
            let stop = done(&event);
            seen.push(event);
            if stop {
                return seen;
            }
        }
    }
}

impl TestApp {
    pub(crate) async fn events(&self, account: &Account, query: &str) -> SseClient {
        let res = self
            .client
            .get(self.url(&format!("/api/v1/events{query}")))
            .bearer_auth(&account.token)
            .send()
            .await
            .expect("request sent");
        SseClient::open(res).await
    }

    pub(crate) async fn start_campaign(
        &self,
        account: &Account,
        session: &str,
        template: &str,
        n: usize,
    ) -> String {
        let res = self
            .post(
                "/api/v1/campaigns",
                &account.token,
                &json!({"name": "live", "template_id": template, "session_id": session,
                        "recipients": phones(n)}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json::<Value>().await.expect("json")["id"]
            .as_str()
            .expect("id")
            .to_string()
    }
}

pub(crate) fn final_progress(id: &str, n: u64, status: &str) -> impl Fn(&Event) -> bool {
    let (id, status) = (id.to_string(), status.to_string());
    move |e: &Event| {
        e.name == "campaign.progress"
            && e.data["data"]["campaign_id"] == id.as_str()
            && e.data["data"]["counts"][&status] == n
    }
}

/// A campaign run through the simulator (with receipts) is seen live on its tenant's stream:
/// status changes, every recipient's sends and receipts, and throttled progress ending with
/// the final counts. Another tenant's stream sees none of it.
#[tokio::test]
async fn a_tenant_sees_its_campaign_live_and_another_tenant_sees_nothing() {
    let app = crate::helpers::spawn_app_with(SimulatorConfig {
        receipts: ReceiptSettings::on(),
        ..SimulatorConfig::default()
    })
    .await;
    let (alice, session, template) = app.ready_tenant("live-a@b.co", "Hi {{ phone }}").await;
    let bob = app.register("live-b@b.co").await;
    // bob listens with an API key (the other way integrators authenticate)
    let key = app
        .post("/api/v1/api-keys", &bob.token, &json!({"name": "sse"}))
        .await
        .json::<Value>()
        .await
        .expect("json")["key"]
        .as_str()
        .expect("key")
        .to_string();
    let mut bob_stream = SseClient::open(
        app.client
            .get(app.url("/api/v1/events"))
            .header("x-api-key", &key)
            .send()
            .await
            .expect("request sent"),
    )
    .await;
    let mut alice_stream = app.events(&alice, "").await;

    let n = 100u64;
    let started = tokio::time::Instant::now();
    let id = app
        .start_campaign(&alice, &session, &template, n as usize)
        .await;
    let seen = alice_stream
        .until(Duration::from_secs(60), final_progress(&id, n, "read"))
        .await;
    let elapsed = started.elapsed();

    for e in &seen {
        assert_eq!(e.data["tenant_id"], alice.tenant_id.as_str(), "{e:?}");
        assert_eq!(e.data["kind"], e.name.as_str());
        assert!(!e.id.is_empty());
        assert_eq!(e.data["id"], e.id.as_str());
        assert!(e.data["at"].is_string());
    }
    let statuses: Vec<&str> = seen
        .iter()
        .filter(|e| e.name == "campaign.status" && e.data["data"]["campaign_id"] == id.as_str())
        .map(|e| e.data["data"]["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        statuses,
        ["scheduled", "running", "completed"],
        "{statuses:?}"
    );

    // every recipient's own statuses, with the message id the gateway saw
    let mut per_phone: HashMap<String, HashSet<String>> = HashMap::new();
    for e in seen.iter().filter(|e| e.name == "delivery.status") {
        let d = &e.data["data"];
        assert_eq!(d["campaign_id"], id.as_str());
        assert!(
            d["message_id"].as_str().is_some_and(|m| m.len() == 32),
            "{d}"
        );
        per_phone
            .entry(d["phone"].as_str().expect("phone").to_string())
            .or_default()
            .insert(d["status"].as_str().expect("status").to_string());
    }
    assert_eq!(per_phone.len(), n as usize);
    for (phone, st) in &per_phone {
        for s in ["sending", "sent", "delivered", "read"] {
            assert!(st.contains(s), "{phone} lacks {s}: {st:?}");
        }
    }
    let sent_ids: HashSet<String> = app.sim_messages().await.into_iter().map(|m| m.2).collect();
    let seen_ids: HashSet<String> = seen
        .iter()
        .filter(|e| e.name == "delivery.status")
        .map(|e| {
            e.data["data"]["message_id"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(seen_ids, sent_ids);

    // progress: throttled (far fewer than the status changes, at most ~4 a second), latest wins
    let progress: Vec<&Event> = seen
        .iter()
        .filter(|e| e.name == "campaign.progress")
        .collect();
    let deliveries = seen.iter().filter(|e| e.name == "delivery.status").count();
    // (a campaign that completes within one coalescing interval has a single, final progress)
    assert!(!progress.is_empty(), "no progress at all");
    assert!(
        progress.len() * 10 < deliveries,
        "{} progress for {deliveries} statuses",
        progress.len()
    );
    let bound = (elapsed.as_secs_f64() * 4.0).ceil() as usize + 2;
    assert!(
        progress.len() <= bound,
        "{} progress in {elapsed:?}",
        progress.len()
    );
    let last = &progress.last().expect("progress").data["data"];
    assert_eq!(last["total_recipients"], n);
    assert_eq!(last["status"], "completed");
    assert_eq!(last["counts"]["queued"], 0);
    assert_eq!(last["counts"]["sending"], 0);
    assert_eq!(last["counts"]["read"], n);
    let api = app
        .get_json(&format!("/api/v1/campaigns/{id}"), &alice.token)
        .await;
    assert_eq!(
        last["counts"], api["counts"],
        "the last progress is the campaign's final state"
    );

    // Bob's own event (his session linked) comes after all of Alice's on the single notifier;
    // had any of hers reached his stream, it would be before it.
    let bob_session = app.link_session(&bob, "token-live-b").await;
    let bob_seen = bob_stream
        .until(Duration::from_secs(10), |e| e.name == "session.status")
        .await;
    assert_eq!(
        bob_seen.len(),
        1,
        "bob saw someone else's events, first: {:?}",
        bob_seen.first()
    );
    assert_eq!(bob_seen[0].data["tenant_id"], bob.tenant_id.as_str());
    assert_eq!(bob_seen[0].data["data"]["session_id"], bob_session.as_str());
    assert!(bob_seen[0].data["data"]["status"].is_string());
    let raw = serde_json::to_string(&bob_seen[0].data).expect("json");
    assert!(
        !raw.to_lowercase().contains("token"),
        "no token is published: {raw}"
    );
    app.stop().await;
}

/// Every way in without valid credentials is 401 with the error envelope; the stream token is
/// the only credential accepted in the URL and opens nothing else.
#[tokio::test]
async fn events_need_authentication_and_stream_tokens_open_only_streams() {
    let app = spawn_app().await;
    let account = app.register("sse-auth@b.co").await;
    let get = |q: &'static str| {
        app.client
            .get(app.url(&format!("/api/v1/events{q}")))
            .send()
    };

    let (code, _) = error_code(get("").await.expect("sent"), StatusCode::UNAUTHORIZED).await;
    assert_eq!(code, "unauthorized");
    let res = app.get("/api/v1/events", "not-a-token").await;
    error_code(res, StatusCode::UNAUTHORIZED).await;
    error_code(
        get("?access_token=garbage").await.expect("sent"),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    // an ordinary access token does not belong in a URL
    let res = app
        .client
        .get(app.url(&format!("/api/v1/events?access_token={}", account.token)))
        .send()
        .await
        .expect("sent");
    error_code(res, StatusCode::UNAUTHORIZED).await;
    // minting a stream token needs credentials too
    let res = app
        .client
        .post(app.url("/api/v1/events/token"))
        .send()
        .await
        .expect("sent");
    error_code(res, StatusCode::UNAUTHORIZED).await;

    let res = app.post_empty("/api/v1/events/token", &account.token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    let token = body["token"].as_str().expect("token").to_string();
    assert_eq!(body["expires_in"], 300);
    // the stream token opens the caller's stream (as a browser's EventSource would) ...
    let res = app
        .client
        .get(app.url(&format!("/api/v1/events?access_token={token}")))
        .send()
        .await
        .expect("sent");
    let mut stream = SseClient::open(res).await;
    // ... and nothing else
    let res = app.get("/api/v1/me", &token).await;
    error_code(res, StatusCode::UNAUTHORIZED).await;

    // it streams this tenant's events
    let session = app.link_session(&account, "token-sse-auth").await;
    let seen = stream
        .until(Duration::from_secs(10), |e| e.name == "session.status")
        .await;
    assert_eq!(
        seen.last().expect("event").data["data"]["session_id"],
        session.as_str()
    );

    // both endpoints are in the OpenAPI document
    let doc: Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert!(
        doc["paths"]["/api/v1/events"]["get"].is_object(),
        "{}",
        doc["paths"]
    );
    assert!(doc["paths"]["/api/v1/events/token"]["post"].is_object());

    let res = app
        .get(
            "/api/v1/events?kinds=campaign.progress,bogus",
            &account.token,
        )
        .await;
    let (code, body) = error_code(res, StatusCode::BAD_REQUEST).await;
    assert_eq!(code, "invalid_query");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("bogus"));
    app.stop().await;
}

/// `?kinds=` narrows the stream, and a quiet stream gets keep-alive comment lines.
#[tokio::test]
async fn kinds_filter_the_stream_and_quiet_streams_get_keepalives() {
    let app =
        spawn_app_with_sim_and_settings(SimulatorConfig::default(), |s| s.sse_keepalive_secs = 1)
            .await;
    let (account, session, template) = app.ready_tenant("sse-kinds@b.co", "Hi").await;
    let mut stream = app.events(&account, "?kinds=campaign.status").await;
    // nothing happens for a while: keep-alives arrive
    assert!(stream.next(Duration::from_millis(2_500)).await.is_none());
    assert!(
        stream
            .comments
            .iter()
            .filter(|c| c.as_str() == "keep-alive")
            .count()
            >= 2,
        "{:?}",
        stream.comments
    );
    let id = app.start_campaign(&account, &session, &template, 20).await;
    let seen = stream
        .until(Duration::from_secs(30), |e| {
            e.data["data"]["status"] == "completed"
        })
        .await;
    assert!(seen.iter().all(|e| e.name == "campaign.status"), "{seen:?}");
    assert!(seen
        .iter()
        .all(|e| e.data["data"]["campaign_id"] == id.as_str()));
    app.stop().await;
}

fn nats_url() -> String {
    std::env::var("HERALD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// With `NATS_URL` set, notifications go out on `herald.<tenant>.<kind>.<id>` and the SSE
/// stream is fed from NATS; a subscriber of another tenant's subjects sees nothing of them.
#[tokio::test]
async fn notifications_are_published_on_nats_subjects_per_tenant() {
    let url = nats_url();
    let app = spawn_app_with_sim_and_settings(SimulatorConfig::default(), |s| {
        s.nats_url = Some(url.clone())
    })
    .await;
    let (alice, session, template) = app.ready_tenant("nats-a@b.co", "Hi").await;
    let bob = app.register("nats-b@b.co").await;
    let nats = async_nats::connect(&url)
        .await
        .expect("NATS runs for the tests");
    let mut alice_sub = nats
        .subscribe(format!("herald.{}.>", alice.tenant_id))
        .await
        .expect("subscribe");
    let mut bob_sub = nats
        .subscribe(format!("herald.{}.>", bob.tenant_id))
        .await
        .expect("subscribe");
    nats.flush().await.expect("flush");
    let mut sse = app.events(&alice, "").await;

    let n = 30u64;
    let id = app
        .start_campaign(&alice, &session, &template, n as usize)
        .await;
    // The kinds are published by one notifier in event order, but a campaign's final progress
    // (coalesced) may go out before its last statuses: read until everything expected arrived.
    let mut subjects: HashMap<String, usize> = HashMap::new();
    let mut all_sent = false;
    let count = |subjects: &HashMap<String, usize>, kind: &str| -> usize {
        subjects.get(kind).copied().unwrap_or(0)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !(all_sent
        && count(&subjects, "campaign.status") >= 3
        && count(&subjects, "delivery.status") >= 2 * n as usize)
    {
        let msg = tokio::time::timeout_at(deadline, alice_sub.next())
            .await
            .unwrap_or_else(|_| panic!("NATS notifications in time, got {subjects:?}"))
            .expect("subscription open");
        let body: Value = serde_json::from_slice(&msg.payload).expect("JSON payload");
        assert_eq!(body["tenant_id"], alice.tenant_id.as_str());
        let kind = body["kind"].as_str().expect("kind");
        assert_eq!(
            msg.subject.as_str(),
            format!("herald.{}.{kind}.{id}", alice.tenant_id)
        );
        *subjects.entry(kind.to_string()).or_default() += 1;
        if kind == "campaign.progress" && body["data"]["counts"]["sent"] == n {
            all_sent = true;
        }
    }
    // exactly two statuses per recipient (queued is not announced: sending, sent): no more come
    while let Ok(Some(msg)) =
        tokio::time::timeout(Duration::from_millis(300), alice_sub.next()).await
    {
        let body: Value = serde_json::from_slice(&msg.payload).expect("JSON payload");
        let kind = body["kind"].as_str().expect("kind");
        *subjects.entry(kind.to_string()).or_default() += 1;
    }
    assert_eq!(subjects["delivery.status"], 2 * n as usize, "{subjects:?}");

    // the SSE stream of this instance is fed from NATS too
    sse.until(Duration::from_secs(10), final_progress(&id, n, "sent"))
        .await;
    // nothing on bob's subjects
    let stray = tokio::time::timeout(Duration::from_millis(300), bob_sub.next()).await;
    assert!(stray.is_err(), "bob's subjects got {stray:?}");
    app.stop().await;
}

/// NATS unreachable: Herald starts and sends all the same (notifications are dropped, counted).
#[tokio::test]
async fn herald_keeps_working_when_nats_is_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("nats://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let app =
        spawn_app_with_sim_and_settings(SimulatorConfig::default(), |s| s.nats_url = Some(dead))
            .await;
    let (account, session, template) = app.ready_tenant("nats-dead@b.co", "Hi").await;
    let id = app.start_campaign(&account, &session, &template, 20).await;
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(60), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["sent"], 20, "{done}");
    // the stream still opens (and will carry events once NATS is back)
    let _stream = app.events(&account, "").await;
    app.stop().await;
}

#[tokio::test]
async fn an_incoming_whatsapp_message_is_announced_once_to_its_tenant_only() {
    use crate::webhooks::{hmac_key, post_event, samples};
    use herald_gateway::webhook::Encoding;

    let app = spawn_app().await;
    let (account, session, _) = app.ready_tenant("sse-msg@b.co", "Hi").await;
    let (other, _, _) = app.ready_tenant("sse-msg-other@b.co", "Hi").await;
    let mut mine = app.events(&account, "?kinds=message.received").await;
    let mut theirs = app.events(&other, "").await;
    let key = hmac_key(&app, &session).await;
    let incoming = samples()["message_received_incoming"].clone();
    // the same message posted twice (a gateway retry in another encoding) is one message
    for encoding in [Encoding::Form, Encoding::Json] {
        let res = post_event(&app, &session, &key, &incoming, encoding).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let seen = mine
        .until(Duration::from_secs(20), |e| e.name == "message.received")
        .await;
    let received: Vec<&Event> = seen
        .iter()
        .filter(|e| e.name == "message.received")
        .collect();
    assert_eq!(received.len(), 1, "{seen:?}");
    let data = &received[0].data["data"];
    assert_eq!(data["session_id"], session.as_str());
    assert_eq!(data["chat"], "6281233784490@s.whatsapp.net");
    assert_eq!(data["message_id"], "3F22EDC72EE0C9FE9720");
    assert_eq!(data["sender_name"], "M. Yoga");
    // no second announcement of the duplicate
    assert!(mine.next(Duration::from_millis(1_500)).await.is_none());
    // the other tenant's stream carries nothing of it
    while let Some(e) = theirs.next(Duration::from_millis(300)).await {
        assert_ne!(e.name, "message.received", "{e:?}");
        assert!(!e.data.to_string().contains(&session), "{e:?}");
    }
    app.stop().await;
}

/// A single send has no campaign: its tenant is found through `single_messages`, so its
/// `delivery.status` events reach the tenant even when the notifier that saw it queued is gone
/// (Herald restarted between queueing and sending) and its cache is cold.
#[tokio::test]
async fn a_single_sends_statuses_reach_its_tenant_after_a_restart() {
    use crate::webhooks::{hmac_key, post_event};
    use herald_gateway::webhook::{self, Encoding, ReceiptState};

    let mut app = spawn_app().await;
    let account = app.register("sse-single@b.co").await;
    let session = app
        .link_session_paced(&account, "token-sse-single", 1_000, 1_000)
        .await;
    let key = hmac_key(&app, &session).await;
    let session_id: uuid::Uuid = session.parse().expect("uuid");
    // the number's next send is an hour away: the message waits in the queue
    let hold = |at: &'static str| {
        sqlx::query(
            "UPDATE session_pacing SET next_at = now() + $2::interval WHERE session_id = $1",
        )
        .bind(session_id)
        .bind(at)
    };
    hold("1 hour").execute(&app.pool).await.expect("held");
    let res = app
        .post(
            "/api/v1/messages",
            &account.token,
            &json!({"session_id": session, "to": "6281234567890", "type": "text", "body": "Hi"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let sent: Value = res.json().await.expect("json");
    let (id, message_id) = (
        sent["id"].as_str().expect("id").to_string(),
        sent["message_id"].as_str().expect("message id").to_string(),
    );
    // this process's notifier has seen it queued (and cached its owner) ...
    app.wait_projected("notifier").await;
    // ... and is gone: the next one starts cold
    app.restart().await;
    let mut stream = app.events(&account, "?kinds=delivery.status").await;
    hold("0 seconds")
        .execute(&app.pool)
        .await
        .expect("released");
    let seen = stream
        .until(Duration::from_secs(20), |e| {
            e.data["data"]["status"] == "sent"
        })
        .await;
    let sent_event = &seen.last().expect("sent").data;
    assert_eq!(sent_event["tenant_id"], account.tenant_id.as_str());
    assert_eq!(sent_event["data"]["campaign_id"], id.as_str());
    assert_eq!(sent_event["data"]["phone"], "6281234567890");
    assert_eq!(sent_event["data"]["message_id"], message_id.as_str());

    // the gateway's Delivered receipt, as a signed webhook
    let receipt = webhook::receipt_event(
        ReceiptState::Delivered,
        &[message_id.as_str()],
        "6281234567890@s.whatsapp.net",
        chrono::Utc::now(),
    );
    let res = post_event(&app, &session, &key, &receipt, Encoding::Form).await;
    assert_eq!(res.status(), StatusCode::OK);
    let seen = stream
        .until(Duration::from_secs(20), |e| {
            e.data["data"]["status"] == "delivered"
        })
        .await;
    let delivered = &seen.last().expect("delivered").data;
    assert_eq!(delivered["tenant_id"], account.tenant_id.as_str());
    assert_eq!(delivered["data"]["campaign_id"], id.as_str());
    assert_eq!(delivered["data"]["message_id"], message_id.as_str());
    app.stop().await;
}
