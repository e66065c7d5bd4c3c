//! Sending: ids, images, duplicates, WuzAPI validation, concurrency.

use herald_gateway::Gateway;
use herald_simulator::SimStats;
use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn text_send_returns_the_given_id_and_is_recorded() {
    let t = TestSim::default().await;
    let accepted = t
        .client
        .send(TOKEN, &text("6281234567890", "0A1B2C3D4E5F", "Halo Budi"))
        .await
        .expect("send accepted");
    assert_eq!(accepted.message_id, "0A1B2C3D4E5F");
    let sent_at = accepted.timestamp.expect("simulator answers a timestamp");
    assert!((chrono::Utc::now() - sent_at).num_seconds().abs() < 5);

    let (_, listing): (u16, Value) = t.get_json("/sim/messages?phone=6281234567890").await;
    let items = listing["items"].as_array().expect("items list");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], "0A1B2C3D4E5F");
    assert_eq!(items[0]["token"], TOKEN);
    assert_eq!(items[0]["kind"], "text");
    assert_eq!(items[0]["text"], "Halo Budi");
    assert!(items[0]["at"].is_string());
    t.sim.stop().await;
}

#[tokio::test]
async fn image_send_takes_a_data_url_and_refuses_a_plain_url_permanently() {
    let t = TestSim::default().await;
    let accepted = t
        .client
        .send(TOKEN, &image("6281234567890", "IMG1", PNG))
        .await
        .expect("data URL accepted");
    assert_eq!(accepted.message_id, "IMG1");

    let refused = t
        .client
        .send(
            TOKEN,
            &image("6281234567890", "IMG2", "https://example.com/a.png"),
        )
        .await
        .expect_err("plain URL refused");
    assert!(!refused.is_transient(), "{refused:?}");
    assert!(refused.message().contains("data:image"), "{refused:?}");

    let broken = t
        .client
        .send(
            TOKEN,
            &image(
                "6281234567890",
                "IMG3",
                "data:image/png;base64,@@not base64@@",
            ),
        )
        .await
        .expect_err("undecodable data refused");
    assert!(!broken.is_transient(), "{broken:?}");
    assert!(broken.message().contains("base64"), "{broken:?}");

    let (_, listing): (u16, Value) = t.get_json("/sim/messages").await;
    assert_eq!(listing["items"][0]["kind"], "image");
    assert_eq!(listing["items"][0]["text"], "promo");
    // the decoded image's size and hash, so tests can tell which image arrived
    use base64::Engine as _;
    use sha2::Digest as _;
    let data = PNG.split_once(',').expect("a data URL").1;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("valid base64");
    assert_eq!(listing["items"][0]["image_bytes"], bytes.len() as u64);
    assert_eq!(
        listing["items"][0]["image_sha256"],
        hex::encode(sha2::Sha256::digest(&bytes))
    );
    assert_eq!(t.stats().await.accepted, 1);
}

#[tokio::test]
async fn a_repeated_id_is_counted_as_a_duplicate() {
    let t = TestSim::default().await;
    let message = text("6281234567890", "DUPE01", "once");
    t.client.send(TOKEN, &message).await.expect("first send");
    t.client.send(TOKEN, &message).await.expect("second send");
    t.client
        .send(TOKEN, &text("6281234567890", "OTHER1", "other"))
        .await
        .expect("third send");
    let expected = SimStats {
        accepted: 3,
        unique_ids: 2,
        duplicate_ids: 1,
        failed: 0,
        rate_limited: 0,
        composing: 0,
    };
    assert_eq!(t.stats().await, expected);
    assert_eq!(t.sim.stats(), expected);

    let (status, reset): (u16, SimStats) = {
        let answer = t
            .http
            .post(t.url("/sim/reset"))
            .send()
            .await
            .expect("reset answers");
        (
            answer.status().as_u16(),
            answer.json().await.expect("stats JSON"),
        )
    };
    assert_eq!((status, reset), (200, SimStats::default()));
}

#[tokio::test]
async fn bad_payloads_get_wuzapi_messages() {
    let t = TestSim::default().await;
    let missing_phone = t
        .client
        .send(TOKEN, &text("", "NOPHONE1", "x"))
        .await
        .expect_err("phone required");
    assert_eq!(missing_phone, permanent("missing Phone in Payload"));

    let answer = t
        .http
        .post(t.url("/chat/send/text"))
        .header("Token", TOKEN)
        .body("{not json")
        .send()
        .await
        .expect("simulator answers");
    assert_eq!(answer.status().as_u16(), 400);
    let body: Value = answer.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"code": 400, "error": "could not decode Payload", "success": false})
    );

    // Without an Id the simulator makes one up, WhatsApp-style.
    let (status, body) = t
        .post_json(
            "/chat/send/text",
            json!({"Phone": "+6281234567890", "Body": "hi"}),
        )
        .await;
    assert_eq!(status, 200);
    let id = body["data"]["Id"].as_str().expect("generated id");
    assert!(id.starts_with("3EB0") && id.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(body["data"]["Timestamp"].is_i64());
    assert_eq!(body["data"]["Details"], "Sent");
}

#[tokio::test]
async fn many_concurrent_sends_are_all_counted_once() {
    let t = TestSim::default().await;
    let sends = (0..500).map(|n| {
        let client = t.client.clone();
        tokio::spawn(async move {
            client
                .send(TOKEN, &text("6281234567890", &format!("{n:08X}"), "bulk"))
                .await
        })
    });
    for send in join_all(sends).await {
        send.expect("send accepted");
    }
    let stats = t.stats().await;
    assert_eq!(
        (stats.accepted, stats.unique_ids, stats.duplicate_ids),
        (500, 500, 0)
    );
    let (_, limited): (u16, Value) = t.get_json("/sim/messages?limit=10").await;
    let items = limited["items"].as_array().expect("items");
    assert_eq!(items.len(), 10);
}
