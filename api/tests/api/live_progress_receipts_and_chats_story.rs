//! Receipts, chats and live progress together, as an integrator lives it: a dashboard follows a
//! campaign live over SSE (the browser's EventSource way), the gateway's receipts arrive signed,
//! shuffled, duplicated and partly out of order, a forged post is refused, and a customer's
//! WhatsApp message shows up as an unread chat.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use herald_gateway::webhook::{self, Encoding, ReceiptState};
use herald_simulator::SimulatorConfig;
use reqwest::StatusCode;
use serde_json::Value;

use crate::events::SseClient;
use crate::helpers::{error_code, spawn_app_slow_dispatch};
use crate::webhooks::{
    eventually, hmac_key, inbox_rows, post_event, post_hook, recipients, run_campaign, samples,
};

/// A stable shuffle: orders items by a hash of their index and a seed.
fn shuffled<T>(items: Vec<T>, seed: u64) -> Vec<T> {
    use std::hash::{Hash, Hasher};
    let mut keyed: Vec<(u64, T)> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (seed, i).hash(&mut h);
            (h.finish(), item)
        })
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, item)| item).collect()
}

fn instant(r: &Value, field: &str) -> chrono::DateTime<chrono::FixedOffset> {
    r[field]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("{field} missing in {r}"))
}

#[tokio::test]
async fn receipts_chats_and_live_progress_work_together() {
    // a gateway with a little latency and a modest dispatcher, so progress is seen moving
    let app = spawn_app_slow_dispatch(SimulatorConfig {
        latency_ms: 100,
        ..SimulatorConfig::default()
    })
    .await;
    let (account, session, template) = app.ready_tenant("story@b.co", "Hi {{ phone }}").await;
    let key = hmac_key(&app, &session).await;

    // 1. The dashboard opens the stream the EventSource way: a short-lived stream token in the
    //    query string, `Accept: text/event-stream`, no Authorization header.
    let res = app.post_empty("/api/v1/events/token", &account.token).await;
    assert_eq!(res.status(), StatusCode::OK);
    let token = res.json::<Value>().await.expect("json")["token"]
        .as_str()
        .expect("stream token")
        .to_string();
    let res = app
        .client
        .get(app.url(&format!("/api/v1/events?access_token={token}")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("request sent");
    let mut stream = SseClient::open(res).await;

    // 2. A campaign runs to the end; the stream shows its progress growing, then completed.
    let n = 60usize;
    let campaign = run_campaign(&app, &account, &session, &template, n).await;
    // read until both the final progress and the completed status are in
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let is = |e: &crate::events::Event, name: &str| {
        e.name == name
            && e.data["data"]["campaign_id"] == campaign.as_str()
            && e.data["data"]["status"] == "completed"
    };
    while !(seen.iter().any(|e| is(e, "campaign.progress"))
        && seen.iter().any(|e| is(e, "campaign.status")))
    {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match stream.next(left).await {
            Some(e) => seen.push(e),
            None => panic!("the stream stopped short: {seen:?}"),
        }
    }
    let progressed: Vec<(usize, u64)> = seen
        .iter()
        .enumerate()
        .filter(|(_, e)| e.name == "campaign.progress")
        .map(|(i, e)| {
            let c = &e.data["data"]["counts"];
            let done = ["sent", "delivered", "read", "failed"]
                .iter()
                .map(|k| c[*k].as_u64().unwrap_or(0))
                .sum();
            (i, done)
        })
        .collect();
    let counts: Vec<u64> = progressed.iter().map(|(_, c)| *c).collect();
    assert!(
        counts.len() >= 2 && counts.windows(2).all(|w| w[0] <= w[1]),
        "progress grows: {counts:?}"
    );
    assert_eq!(counts.last(), Some(&(n as u64)));
    // seen live: progress short of the end came before the campaign completed
    let completed = seen
        .iter()
        .position(|e| is(e, "campaign.status"))
        .expect("completed");
    assert!(
        progressed
            .iter()
            .any(|(i, c)| *i < completed && *c < n as u64),
        "progress while running, then completed: {counts:?}, completed at #{completed}"
    );

    // 3. The gateway's receipts, as the simulator posts them: signed, form-encoded (some also
    //    as JSON, some posted twice), shuffled; a third of the recipients' Read comes before
    //    their Delivered, and a fifth never read theirs.
    let sent = app.sim_messages().await;
    assert_eq!(sent.len(), n);
    let base = chrono::Utc::now();
    let (delivered_at, read_at) = (
        base + chrono::Duration::seconds(1),
        base + chrono::Duration::seconds(2),
    );
    let (mut early_reads, mut posts) = (Vec::new(), Vec::new());
    let mut unread: Vec<String> = Vec::new();
    for (i, (phone, _, message_id)) in sent.iter().enumerate() {
        let chat = format!("{phone}@s.whatsapp.net");
        let delivered =
            webhook::receipt_event(ReceiptState::Delivered, &[message_id], &chat, delivered_at);
        let read = webhook::receipt_event(ReceiptState::Read, &[message_id], &chat, read_at);
        // each receipt: form-encoded twice (a retry: stored once) and once as JSON
        let each = |event: Value, into: &mut Vec<(Value, Encoding)>| {
            into.push((event.clone(), Encoding::Form));
            into.push((event.clone(), Encoding::Form));
            into.push((event, Encoding::Json));
        };
        if i % 5 == 0 {
            unread.push(phone.clone());
        } else if i % 3 == 0 {
            each(read, &mut early_reads);
        } else {
            each(read, &mut posts);
        }
        each(delivered, &mut posts);
    }
    let total = early_reads.len() + posts.len();
    for batch in [shuffled(early_reads, 3), shuffled(posts, 4)] {
        let answers: Vec<StatusCode> = futures::stream::iter(batch.iter())
            .map(|(event, encoding)| {
                let (app, session, key) = (&app, &session, &key);
                async move {
                    post_event(app, session, key, event, *encoding)
                        .await
                        .status()
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        assert!(answers.iter().all(|s| *s == StatusCode::OK), "{answers:?}");
    }

    // 4. A forged post (signed with the wrong key) for a recipient who never read: 401, and
    //    nothing changes.
    let victim = unread[0].clone();
    let victim_id = sent
        .iter()
        .find(|m| m.0 == victim)
        .map(|m| m.2.clone())
        .expect("victim's message");
    let forged = webhook::receipt_event(
        ReceiptState::Read,
        &[victim_id.as_str()],
        &format!("{victim}@s.whatsapp.net"),
        base,
    );
    let forged = webhook::encode_post(&forged, Encoding::Form, "1", "x", Some(&"k".repeat(40)));
    let res = post_hook(
        &app,
        &session,
        forged.content_type,
        forged.body,
        forged.signature.as_deref(),
    )
    .await;
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await.0,
        "unauthorized"
    );

    // every recipient ends delivered or read, with its times; the counts agree
    let settled = eventually(Duration::from_secs(30), || async {
        let rows = inbox_rows(&app).await;
        rows.iter().all(|r| r.processed)
            && recipients(&app, &account, &campaign)
                .await
                .values()
                .all(|r| r["delivered_at"].is_string())
    })
    .await;
    assert!(settled, "{:?}", inbox_rows(&app).await);
    let all: HashMap<String, Value> = recipients(&app, &account, &campaign).await;
    assert_eq!(all.len(), n);
    for (phone, r) in &all {
        if unread.contains(phone) {
            assert_eq!(r["status"], "delivered", "{r}");
            assert_eq!(
                r["read_at"],
                Value::Null,
                "the forged Read changed nothing: {r}"
            );
        } else {
            assert_eq!(r["status"], "read", "never back to delivered: {r}");
            assert!(instant(r, "delivered_at") < instant(r, "read_at"), "{r}");
        }
        assert!(instant(r, "sent_at") <= instant(r, "delivered_at"), "{r}");
    }
    let done = app
        .wait_campaign(&account, &campaign, Duration::from_secs(10), |c| {
            c["counts"]["read"] == n - unread.len()
        })
        .await;
    assert_eq!(done["counts"]["read"], n - unread.len(), "{done}");
    assert_eq!(done["counts"]["delivered"], unread.len(), "{done}");
    // one stored row per distinct body: the retried form posts were kept once
    assert_eq!(inbox_rows(&app).await.len(), total / 3 * 2);

    // 5. A customer writes (the captured WuzAPI payload): an unread chat, announced live.
    let incoming = samples()["message_received_incoming"].clone();
    let res = post_event(&app, &session, &key, &incoming, Encoding::Form).await;
    assert_eq!(res.status(), StatusCode::OK);
    let seen = stream
        .until(Duration::from_secs(20), |e| e.name == "message.received")
        .await;
    let announced = &seen.last().expect("message.received").data["data"];
    assert_eq!(announced["chat"], "6281233784490@s.whatsapp.net");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let chat = loop {
        let page = app.get_json("/api/v1/chats", &account.token).await;
        let found = page["items"].as_array().and_then(|items| {
            items
                .iter()
                .find(|c| c["jid"] == "6281233784490@s.whatsapp.net")
                .cloned()
        });
        match found {
            Some(chat) => break chat,
            None if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            None => panic!("the chat never appeared: {page}"),
        }
    };
    assert_eq!(chat["unread_count"], 1, "{chat}");
    assert_eq!(chat["name"], "M. Yoga");
    assert_eq!(chat["last_message"]["text"], "owh iya");
    assert_eq!(chat["last_message"]["direction"], "incoming");
    app.stop().await;
}
