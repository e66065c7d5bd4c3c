//! Fair sharing (decision 0043): one tenant (or one address) flooding a bounded pool gets 503
//! `busy` with `Retry-After` past the wait while another tenant's work still goes through; a
//! tenant's event streams and imports are capped (429), and a slot comes back when its stream or
//! import ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::contacts_import::{chunked_import, finish, import, send_chunk};
use crate::events::SseClient;
use crate::helpers::{error_code, spawn_app_configured, Account, TestApp};
use crate::images::{png, ImageServer, Reply};

/// The status, the `Retry-After` header and the body of an answer.
async fn answer(res: reqwest::Response) -> (StatusCode, Option<String>, Value) {
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = res.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

fn image_template(url: &str) -> Value {
    json!({"name": "flyer", "type": "image", "image_url": url, "caption": "hi {{ name }}"})
}

#[tokio::test]
async fn a_tenants_slow_images_do_not_hold_up_another_tenants_image() {
    let app = spawn_app_configured(|s| {
        s.pools.image_downloads = 4;
        s.pools.image_downloads_per_tenant = 2;
        s.pools.wait = Duration::from_millis(1_000);
    })
    .await;
    let images = ImageServer::start().await;
    let picture = Arc::new(png(64, 48));
    let slow = images.serve(
        "/slow.png",
        Reply::Slow(Duration::from_secs(4), picture.clone()),
    );
    let fast = images.serve("/fast.png", Reply::Body("image/png", picture));
    let a = app.register("flood@a.co").await;
    let b = app.register("calm@b.co").await;

    // tenant A asks for six images from a host that takes 4 s to answer
    let started = Instant::now();
    let flood: Vec<_> = (0..6)
        .map(|_| {
            let (client, url, token, body) = (
                app.client.clone(),
                app.url("/api/v1/templates"),
                a.token.clone(),
                image_template(&slow),
            );
            tokio::spawn(async move {
                let res = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .expect("sent");
                let answered = started.elapsed();
                (answer(res).await, answered)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // tenant B's image is fetched and its template created while A's downloads still run
    let b_started = Instant::now();
    let res = app
        .post("/api/v1/templates", &b.token, &image_template(&fast))
        .await;
    let b_took = b_started.elapsed();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert!(
        b_took < Duration::from_secs(2),
        "tenant B waited {b_took:?} behind tenant A"
    );
    assert_eq!(
        images.hits("/slow.png"),
        2,
        "tenant A downloads two at a time"
    );

    let mut created = 0;
    let mut busy = 0;
    for task in flood {
        let ((status, retry_after, body), answered) = task.await.expect("task");
        match status {
            StatusCode::CREATED => {
                created += 1;
                assert!(answered >= Duration::from_secs(4), "{answered:?}");
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert_eq!(body["error"]["code"], "busy", "{body}");
                assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
                assert_eq!(body["error"]["details"]["retry_after_secs"], 1, "{body}");
                // refused after the wait, not after A's downloads
                assert!(answered >= Duration::from_millis(900), "{answered:?}");
                assert!(answered < Duration::from_millis(3_500), "{answered:?}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created, busy), (2, 4));
    let downloads = app.pools().media.downloads().stats();
    assert_eq!(downloads.peak_in_use, 3, "A's two and B's one");
    assert_eq!((downloads.in_use, downloads.waiting), (0, 0));
    assert_eq!(downloads.refused, 4);
    images.stop();
    app.stop().await;
}

async fn login_from(app: &TestApp, client: &reqwest::Client, email: &str) -> reqwest::Response {
    client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": "correct horse battery"}))
        .send()
        .await
        .expect("sent")
}

#[tokio::test]
async fn a_login_flood_hashes_one_at_a_time_and_is_refused_after_the_wait() {
    let app = spawn_app_configured(|s| {
        s.pools.password_hashers = 1;
        s.pools.wait = Duration::from_millis(500);
        // the login throttles would refuse most of the flood before it reaches the pool; this
        // test is about the pool (the throttles have their own tests in account_protection)
        s.throttles.login_account.attempts = 1_000;
        s.throttles.login_address.attempts = 1_000;
    })
    .await;
    app.register("many@a.co").await;
    app.register("other@b.co").await;

    // sixty logins at once from 127.0.0.1
    let started = Instant::now();
    let flood: Vec<_> = (0..60)
        .map(|_| {
            let client = reqwest::Client::new();
            let url = app.url("/api/v1/auth/login");
            tokio::spawn(async move {
                let res = client
                    .post(url)
                    .json(&json!({"email": "many@a.co", "password": "correct horse battery"}))
                    .send()
                    .await
                    .expect("sent");
                answer(res).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // another address is not queued behind the flood (127.0.0.2 is loopback too)
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let other_started = Instant::now();
    let res = login_from(&app, &elsewhere, "other@b.co").await;
    let other_took = other_started.elapsed();
    assert_eq!(res.status(), StatusCode::OK);

    let (mut ok, mut busy) = (0, 0);
    for task in flood {
        let (status, retry_after, body) = task.await.expect("task");
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert_eq!(body["error"]["code"], "busy", "{body}");
                assert_eq!(retry_after.as_deref(), Some("1"), "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let took = started.elapsed();
    let hashing = app.pools().hashing.stats();
    assert_eq!(hashing.peak_in_use, 1, "never more than one hash at a time");
    assert_eq!((hashing.in_use, hashing.waiting), (0, 0));
    assert!(ok >= 1 && busy >= 1, "{ok} logged in, {busy} refused");
    assert_eq!(hashing.refused, busy as u64);
    // nobody queued until everything before them was done: the wait bounds every answer
    assert!(took < Duration::from_secs(10), "the flood took {took:?}");
    assert!(
        other_took < took,
        "the other address waited {other_took:?}, as long as the flood ({took:?})"
    );
    app.stop().await;
}

async fn open_stream(app: &TestApp, account: &Account) -> reqwest::Response {
    app.client
        .get(app.url("/api/v1/events"))
        .bearer_auth(&account.token)
        .send()
        .await
        .expect("sent")
}

#[tokio::test]
async fn a_tenants_event_streams_are_capped_and_a_closed_stream_frees_its_slot() {
    let app = spawn_app_configured(|s| {
        s.pools.sse_streams_per_tenant = 2;
        s.sse_keepalive_secs = 1;
    })
    .await;
    let a = app.register("streams@a.co").await;
    let b = app.register("streams@b.co").await;
    let first = SseClient::open(open_stream(&app, &a).await).await;
    let _second = SseClient::open(open_stream(&app, &a).await).await;

    let res = open_stream(&app, &a).await;
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (code, body) = error_code(res, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(code, "too_many_streams", "{body}");
    assert_eq!(retry_after.as_deref(), Some("5"));

    // another tenant is not affected
    let _b_stream = SseClient::open(open_stream(&app, &b).await).await;

    // closing a stream frees its slot (at the latest with the next keep-alive)
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let _third = loop {
        let res = open_stream(&app, &a).await;
        if res.status() == StatusCode::OK {
            break SseClient::open(res).await;
        }
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(Instant::now() < deadline, "the closed stream kept its slot");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(app.pools().streams.stats().in_use, 3);
    app.stop().await;
}

#[tokio::test]
async fn a_tenant_runs_one_import_at_a_time_when_capped_and_others_are_not_held_up() {
    let app = spawn_app_configured(|s| s.pools.imports_per_tenant = 1).await;
    let a = app.register("imports@a.co").await;
    let b = app.register("imports@b.co").await;

    // A's first import is still uploading
    let mut upload = chunked_import(&app, &a.token).await;
    send_chunk(&mut upload, b"phone,name\n6281200000001,Ann\n")
        .await
        .expect("chunk");
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.pools().imports.stats().in_use == 0 {
        assert!(Instant::now() < deadline, "the import never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let res = import(&app, &a.token, "phone\n6281200000002\n".into()).await;
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let (code, body) = error_code(res, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(code, "import_in_progress", "{body}");
    assert_eq!(retry_after.as_deref(), Some("10"));

    let res = import(&app, &b.token, "phone\n6281300000001\n".into()).await;
    assert_eq!(res.status(), StatusCode::OK, "tenant B imports meanwhile");

    let (status, body) = finish(upload).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["imported"], 1, "{body}");
    let res = import(&app, &a.token, "phone\n6281200000002\n".into()).await;
    assert_eq!(res.status(), StatusCode::OK, "the slot came back");
    assert_eq!(app.pools().imports.stats().in_use, 0);
    app.stop().await;
}
