//! Image templates and image campaigns (docs/images.md): fetched once from a URL (served here by
//! a tiny HTTP server that counts its requests) or taken from base64, processed once, sent to
//! every recipient with their own caption; URLs that point at private or special addresses,
//! redirects to them, bombs, junk and oversize files refused with 422 and a clear reason.

use std::collections::HashMap;
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use image::{ImageFormat, Rgba, RgbaImage};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

// ------------------------------------------------------------------------------- image server

#[derive(Clone)]
pub(crate) enum Reply {
    /// 200 with this content type and body (and a Content-Length).
    Body(&'static str, Arc<Vec<u8>>),
    /// 200 with no Content-Length: the body streams until the connection closes.
    Unsized(Arc<Vec<u8>>),
    /// 302 to this Location.
    Redirect(String),
    /// 404.
    Missing,
    /// 200 with this PNG, after waiting this long (a slow image host).
    Slow(Duration, Arc<Vec<u8>>),
}

/// A minimal HTTP/1.1 server on 127.0.0.1: one request per connection, answers from a table,
/// and counts every request per path.
pub(crate) struct ImageServer {
    pub(crate) addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ImageServer {
    pub(crate) async fn start() -> ImageServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let total = Arc::new(AtomicUsize::new(0));
        let (r, h, t) = (routes.clone(), hits.clone(), total.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (r, h, t) = (r.clone(), h.clone(), t.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16_384 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let path = text.split(' ').nth(1).unwrap_or("/").to_string();
                    t.fetch_add(1, Ordering::SeqCst);
                    *h.lock().expect("lock").entry(path.clone()).or_default() += 1;
                    let reply = r.lock().expect("lock").get(&path).cloned();
                    let _ = match reply.unwrap_or(Reply::Missing) {
                        Reply::Body(content_type, body) => {
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            );
                            write_all(&mut stream, head.as_bytes(), &body).await
                        }
                        Reply::Unsized(body) => {
                            let head = "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n";
                            write_all(&mut stream, head.as_bytes(), &body).await
                        }
                        Reply::Redirect(to) => {
                            let head = format!(
                                "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            );
                            write_all(&mut stream, head.as_bytes(), &[]).await
                        }
                        Reply::Slow(delay, body) => {
                            tokio::time::sleep(delay).await;
                            let head = format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            );
                            write_all(&mut stream, head.as_bytes(), &body).await
                        }
                        Reply::Missing => {
                            let head = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                            write_all(&mut stream, head.as_bytes(), &[]).await
                        }
                    };
                });
            }
        });
        ImageServer {
            addr,
            routes,
            hits,
            total,
            task,
        }
    }

    pub(crate) fn serve(&self, path: &str, reply: Reply) -> String {
        self.routes
            .lock()
            .expect("lock")
            .insert(path.to_string(), reply);
        self.url(path)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    pub(crate) fn stop(self) {
        self.task.abort();
    }
}

async fn write_all(
    stream: &mut tokio::net::TcpStream,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<()> {
    stream.write_all(head).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

// ------------------------------------------------------------------------------------ images

/// A colourful PNG (compresses poorly enough to be a real image).
pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbaImage::from_fn(width, height, |x, y| {
        Rgba([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8, 255])
    });
    let mut out = Cursor::new(Vec::new());
    image
        .write_to(&mut out, ImageFormat::Png)
        .expect("PNG encodes");
    out.into_inner()
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// --------------------------------------------------------------------------------- helpers

pub(crate) async fn create_image_template(
    app: &TestApp,
    account: &Account,
    body: Value,
) -> reqwest::Response {
    app.post("/api/v1/templates", &account.token, &body).await
}

/// Asserts a 422 `invalid_image` for `field` and returns `(kind, reason)`.
pub(crate) async fn invalid_image(res: reqwest::Response, field: &str) -> (String, String) {
    let (code, body) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(code, "invalid_image", "{body}");
    assert_eq!(body["error"]["details"]["field"], field, "{body}");
    let kind = body["error"]["details"]["kind"].as_str().expect("kind");
    let reason = body["error"]["details"]["reason"].as_str().expect("reason");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with(field),
        "{body}"
    );
    (kind.to_string(), reason.to_string())
}

/// Every message the simulator accepted, as JSON.
pub(crate) async fn sim_items(app: &TestApp) -> Vec<Value> {
    let body: Value = app
        .client
        .get(format!("{}/sim/messages?limit=100000", app.sim.base_url()))
        .send()
        .await
        .expect("request sent")
        .json()
        .await
        .expect("json");
    body["items"].as_array().expect("items").clone()
}

pub(crate) async fn start_campaign(
    app: &TestApp,
    account: &Account,
    template: &str,
    session: &str,
    recipients: Value,
) -> String {
    let res = app
        .post(
            "/api/v1/campaigns",
            &account.token,
            &json!({"name": "image promo", "template_id": template, "session_id": session, "recipients": recipients}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string()
}

pub(crate) async fn wait_done(app: &TestApp, account: &Account, id: &str) -> Value {
    app.wait_campaign(account, id, Duration::from_secs(60), |c| {
        c["status"] == "completed"
    })
    .await
}

// ----------------------------------------------------------------------------------- tests

#[tokio::test]
async fn an_image_campaign_fetches_the_image_once_and_sends_everyone_their_caption() {
    let app = spawn_app().await;
    let server = ImageServer::start().await;
    let url = server.serve(
        "/promo.png",
        Reply::Body("image/png", Arc::new(png(2_000, 1_000))),
    );
    let account = app.register("images@example.com").await;
    let session = app.link_session(&account, "token-images").await;

    let res = create_image_template(
        &app,
        &account,
        json!({"name": "Promo", "type": "image", "image_url": url,
               "caption": "Hi {{ name }}, this week only for {{ phone }}"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let template: Value = res.json().await.expect("json");
    assert_eq!(template["type"], "image");
    assert_eq!(template["image_url"], url.as_str());
    assert_eq!(
        template["caption"],
        "Hi {{ name }}, this week only for {{ phone }}"
    );
    assert_eq!(template["variables"], json!(["name", "phone"]));
    let image = &template["image"];
    assert_eq!(image["content_type"], "image/jpeg");
    assert_eq!(
        (image["width"].as_i64(), image["height"].as_i64()),
        (Some(1600), Some(800))
    );
    let sha = image["sha256"].as_str().expect("sha256").to_string();
    let bytes = image["bytes"].as_u64().expect("bytes");
    assert!(bytes > 1_000 && bytes <= 1024 * 1024, "{bytes} bytes");
    assert_eq!(server.hits("/promo.png"), 1, "fetched once, at creation");
    let template_id = template["id"].as_str().expect("id").to_string();
    let fetched = app
        .get_json(&format!("/api/v1/templates/{template_id}"), &account.token)
        .await;
    assert_eq!(fetched["image"]["sha256"], sha.as_str());

    // 200 recipients with their own names, then a second campaign of the same template.
    let numbers = phones(220);
    let first: Vec<Value> = numbers[..200]
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"phone": p, "vars": {"name": format!("Customer {i}")}}))
        .collect();
    let a = start_campaign(&app, &account, &template_id, &session, json!(first)).await;
    let b = start_campaign(
        &app,
        &account,
        &template_id,
        &session,
        json!(numbers[200..]),
    )
    .await;
    for (id, n) in [(&a, 200), (&b, 20)] {
        let done = wait_done(&app, &account, id).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["counts"]["sent"], n, "{done}");
        assert_eq!(done["counts"]["failed"], 0, "{done}");
    }

    let items = sim_items(&app).await;
    assert_eq!(items.len(), 220);
    let mut seen = std::collections::HashSet::new();
    for item in &items {
        assert_eq!(item["kind"], "image", "{item}");
        assert_eq!(
            item["image_sha256"],
            sha.as_str(),
            "the processed image: {item}"
        );
        assert_eq!(item["image_bytes"].as_u64(), Some(bytes), "{item}");
        let phone = item["phone"].as_str().expect("phone");
        let index = numbers
            .iter()
            .position(|p| p == phone)
            .expect("a recipient");
        let name = if index < 200 {
            format!("Customer {index}")
        } else {
            String::new()
        };
        assert_eq!(
            item["text"],
            format!("Hi {name}, this week only for {phone}"),
            "personal caption"
        );
        assert!(seen.insert(phone.to_string()), "{phone} sent twice");
    }
    assert_eq!(app.sim.stats().duplicate_ids, 0);
    assert_eq!(
        server.hits("/promo.png"),
        1,
        "never fetched again: 220 sends, 2 campaigns"
    );
    assert_eq!(server.total(), 1);
    server.stop();
    app.stop().await;
}

#[tokio::test]
async fn an_image_template_from_base64_and_its_updates() {
    let app = spawn_app().await;
    let server = ImageServer::start().await;
    let account = app.register("b64@example.com").await;
    let stranger = app.register("stranger@example.com").await;
    let source = png(300, 200);

    for form in [
        b64(&source),
        format!("data:image/png;base64,{}", b64(&source)),
    ] {
        let res = create_image_template(
            &app,
            &account,
            json!({"name": "Inline", "type": "image", "image_base64": form}),
        )
        .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["image"]["width"], 300);
        assert_eq!(body["image"]["height"], 200);
        assert_eq!(body["image_url"], Value::Null);
        assert_eq!(body["caption"], Value::Null);
    }
    let res = create_image_template(
        &app,
        &account,
        json!({"name": "Inline", "type": "image", "image_base64": b64(&source), "caption": "Hello {{ name }}"}),
    )
    .await;
    let created: Value = res.json().await.expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    let first_sha = created["image"]["sha256"]
        .as_str()
        .expect("sha")
        .to_string();

    // PATCH with a new image re-processes it; the caption changes on its own.
    let url = server.serve(
        "/new.png",
        Reply::Body("image/png", Arc::new(png(3_200, 800))),
    );
    let res = app
        .patch(
            &format!("/api/v1/templates/{id}"),
            &account.token,
            &json!({"image_url": url, "caption": "Bye {{ name }}"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let updated: Value = res.json().await.expect("json");
    assert_eq!(updated["image"]["width"], 1600);
    assert_eq!(updated["image"]["height"], 400);
    assert_ne!(updated["image"]["sha256"], first_sha.as_str());
    assert_eq!(updated["image_url"], url.as_str());
    assert_eq!(updated["caption"], "Bye {{ name }}");
    assert_eq!(server.hits("/new.png"), 1);
    let res = app
        .patch(
            &format!("/api/v1/templates/{id}"),
            &account.token,
            &json!({"image_base64": b64(&source)}),
        )
        .await;
    let back: Value = res.json().await.expect("json");
    assert_eq!(
        back["image"]["sha256"],
        first_sha.as_str(),
        "same image, same hash"
    );
    assert_eq!(back["image_url"], Value::Null);
    let res = app
        .patch(
            &format!("/api/v1/templates/{id}"),
            &account.token,
            &json!({"image_base64": "bm90IGFuIGltYWdl"}),
        )
        .await;
    invalid_image(res, "image_base64").await;

    // Another tenant's template is not found, and its image URL is never fetched.
    let other = server.serve(
        "/other.png",
        Reply::Body("image/png", Arc::new(png(10, 10))),
    );
    let res = app
        .patch(
            &format!("/api/v1/templates/{id}"),
            &stranger.token,
            &json!({"image_url": other}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(server.hits("/other.png"), 0);
    let res = app
        .get(&format!("/api/v1/templates/{id}"), &stranger.token)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let list = app.get_json("/api/v1/templates", &stranger.token).await;
    assert_eq!(list["items"], json!([]));

    // A text template takes no image.
    let text = app.create_template(&account, "Hi {{ name }}").await;
    let res = app
        .patch(
            &format!("/api/v1/templates/{text}"),
            &account.token,
            &json!({"image_base64": b64(&source)}),
        )
        .await;
    let (code, _) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(code, "validation_failed");
    server.stop();
    app.stop().await;
}

#[tokio::test]
async fn image_template_requests_are_validated_before_anything_is_fetched() {
    let app = spawn_app().await;
    let server = ImageServer::start().await;
    let url = server.serve("/ok.png", Reply::Body("image/png", Arc::new(png(20, 20))));
    let account = app.register("validate@example.com").await;
    let cases = [
        (
            json!({"name": "x", "type": "image", "image_url": url, "caption": "Hi {{ name"}),
            "caption",
        ),
        (
            json!({"name": "x", "type": "image", "image_url": url, "image_base64": "AAAA"}),
            "image_url",
        ),
        (json!({"name": "x", "type": "image"}), "image_url"),
        (
            json!({"name": "x", "type": "image", "image_url": url, "body": "Hi"}),
            "body",
        ),
        (
            json!({"name": "  ", "type": "image", "image_url": url}),
            "name",
        ),
        (
            json!({"name": "x", "type": "video", "image_url": url}),
            "type",
        ),
        (
            json!({"name": "x", "type": "text", "body": "Hi", "image_url": url}),
            "image_url",
        ),
    ];
    for (body, field) in cases {
        let res = create_image_template(&app, &account, body.clone()).await;
        let (code, answer) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(code, "validation_failed", "{body} -> {answer}");
        assert_eq!(
            answer["error"]["details"]["field"], field,
            "{body} -> {answer}"
        );
    }
    assert_eq!(server.total(), 0, "nothing fetched for an invalid request");
    let res = create_image_template(
        &app,
        &account,
        json!({"name": "x", "type": "image", "image_base64": "data:text/plain;base64,aGk="}),
    )
    .await;
    invalid_image(res, "image_base64").await;
    server.stop();
    app.stop().await;
}

#[tokio::test]
async fn urls_that_point_at_private_or_special_addresses_are_refused_without_a_connection() {
    let app = spawn_app_configured(|s| s.allow_private_media_urls = false).await;
    let server = ImageServer::start().await;
    let url = server.serve("/x.png", Reply::Body("image/png", Arc::new(png(20, 20))));
    let port = server.addr.port();
    let account = app.register("ssrf@example.com").await;
    for (target, expected) in [
        (
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "link-local",
        ),
        (url.clone(), "loopback"),
        ("http://localhost/".to_string(), "loopback"),
        (format!("http://localhost:{port}/x.png"), "loopback"),
        (format!("http://2130706433:{port}/x.png"), "loopback"),
        (format!("http://0x7f.1:{port}/x.png"), "loopback"),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/x.png"),
            "loopback",
        ),
        (format!("http://[::1]:{port}/x.png"), "loopback"),
        (format!("http://0.0.0.0:{port}/x.png"), "unspecified"),
        ("http://10.1.2.3/x.png".to_string(), "private"),
        ("http://192.168.1.1/x.png".to_string(), "private"),
        ("http://100.64.0.1/x.png".to_string(), "carrier-grade NAT"),
        ("http://[fd00::1]/x.png".to_string(), "unique-local"),
        ("ftp://example.com/x.png".to_string(), "only http and https"),
        ("file:///etc/passwd".to_string(), "only http and https"),
        (
            format!("http://user:pw@127.0.0.1:{port}/x.png"),
            "credentials",
        ),
    ] {
        let res = create_image_template(
            &app,
            &account,
            json!({"name": "x", "type": "image", "image_url": target}),
        )
        .await;
        let (kind, reason) = invalid_image(res, "image_url").await;
        assert_eq!(kind, "url_refused", "{target}: {reason}");
        assert!(reason.contains(expected), "{target}: {reason}");
    }
    assert_eq!(server.total(), 0, "no connection reached the local server");
    let list = app.get_json("/api/v1/templates", &account.token).await;
    assert_eq!(list["items"], json!([]), "nothing was created");
    server.stop();
    app.stop().await;
}

#[tokio::test]
async fn redirects_are_followed_by_hand_and_checked_at_every_hop() {
    // The test setting lets images come from 127.0.0.1; it never opens link-local (metadata)
    // or unspecified addresses, so a redirect there is still refused.
    let app = spawn_app().await;
    let server = ImageServer::start().await;
    let target = ImageServer::start().await;
    target.serve("/x.png", Reply::Body("image/png", Arc::new(png(20, 20))));
    let account = app.register("redirects@example.com").await;
    server.serve("/x.png", Reply::Body("image/png", Arc::new(png(40, 30))));
    let cases = [
        (
            server.serve(
                "/meta",
                Reply::Redirect("http://169.254.169.254/latest/meta-data/".into()),
            ),
            "url_refused",
            "link-local",
        ),
        (
            server.serve(
                "/zero",
                Reply::Redirect(format!("http://0.0.0.0:{}/x.png", target.addr.port())),
            ),
            "url_refused",
            "unspecified",
        ),
        (
            server.serve("/ftp", Reply::Redirect("ftp://example.com/x.png".into())),
            "url_refused",
            "only http and https",
        ),
        (
            server.serve("/loop", Reply::Redirect("/loop".into())),
            "fetch_failed",
            "redirected more than 3 times",
        ),
    ];
    for (url, kind, expected) in cases {
        let res = create_image_template(
            &app,
            &account,
            json!({"name": "x", "type": "image", "image_url": url}),
        )
        .await;
        let (got, reason) = invalid_image(res, "image_url").await;
        assert_eq!(got, kind, "{url}: {reason}");
        assert!(reason.contains(expected), "{url}: {reason}");
    }
    assert_eq!(target.total(), 0, "the redirect target was never contacted");
    assert_eq!(
        server.hits("/loop"),
        4,
        "the first request and three redirects"
    );

    // A redirect to an allowed place is followed.
    let url = server.serve("/moved", Reply::Redirect("/x.png".into()));
    let res = create_image_template(
        &app,
        &account,
        json!({"name": "moved", "type": "image", "image_url": url}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    assert_eq!(
        (
            body["image"]["width"].as_i64(),
            body["image"]["height"].as_i64()
        ),
        (Some(40), Some(30))
    );
    assert_eq!(server.hits("/x.png"), 1);
    server.stop();
    target.stop();
    app.stop().await;
}

#[tokio::test]
async fn bombs_junk_and_oversize_files_are_refused_with_a_reason() {
    let app = spawn_app().await;
    let server = ImageServer::start().await;
    let account = app.register("bombs@example.com").await;
    let bomb = herald_media::testing::png_bomb(40_000, 40_000);
    assert!(
        bomb.len() < 2 * 1024 * 1024,
        "a small file: {} bytes",
        bomb.len()
    );
    let real = png(200, 200);
    let oversize = Arc::new(vec![0u8; 17 * 1024 * 1024]);
    let cases = [
        (
            server.serve(
                "/bomb.png",
                Reply::Body("image/png", Arc::new(bomb.clone())),
            ),
            "too_large",
            "40000×40000",
        ),
        (
            server.serve(
                "/text.png",
                Reply::Body("image/png", Arc::new(b"just some text, honestly".to_vec())),
            ),
            "not_a_valid_image",
            "not an image",
        ),
        (
            server.serve(
                "/cut.png",
                Reply::Body("image/png", Arc::new(real[..real.len() / 2].to_vec())),
            ),
            "not_a_valid_image",
            "truncated",
        ),
        (
            server.serve("/big.png", Reply::Body("image/png", oversize.clone())),
            "too_large",
            "larger than 16 MB",
        ),
        (
            server.serve("/stream.png", Reply::Unsized(oversize)),
            "too_large",
            "larger than 16 MB",
        ),
        (server.url("/nothing.png"), "fetch_failed", "HTTP 404"),
    ];
    for (url, kind, expected) in cases {
        let res = create_image_template(
            &app,
            &account,
            json!({"name": "x", "type": "image", "image_url": url}),
        )
        .await;
        let (got, reason) = invalid_image(res, "image_url").await;
        assert_eq!(got, kind, "{url}: {reason}");
        assert!(reason.contains(expected), "{url}: {reason}");
    }
    let res = create_image_template(
        &app,
        &account,
        json!({"name": "x", "type": "image", "image_base64": b64(&bomb)}),
    )
    .await;
    let (kind, _) = invalid_image(res, "image_base64").await;
    assert_eq!(kind, "too_large");
    // Herald is fine afterwards.
    let res = create_image_template(
        &app,
        &account,
        json!({"name": "fine", "type": "image", "image_base64": b64(&real)}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    server.stop();
    app.stop().await;
}

#[tokio::test]
async fn recipients_fail_with_the_reason_when_the_image_is_gone_at_send_time() {
    let app = spawn_app().await;
    let account = app.register("gone@example.com").await;
    let session = app.link_session(&account, "token-gone").await;
    let res = create_image_template(
        &app,
        &account,
        json!({"name": "Gone", "type": "image", "image_base64": b64(&png(50, 50)), "caption": "Hi"}),
    )
    .await;
    let template: Value = res.json().await.expect("json");
    let template_id = template["id"].as_str().expect("id");
    // scheduled a moment ahead, so nothing loads the image before it is gone
    let send_at = (chrono::Utc::now() + chrono::Duration::seconds(3))
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    let id = app
        .create_campaign(
            &account,
            &json!({"name": "later", "template_id": template_id, "session_id": session,
                    "recipients": phones(3), "send_at": send_at}),
        )
        .await;
    // a database restored without it, say
    sqlx::query("DELETE FROM media")
        .execute(&app.pool)
        .await
        .expect("deleted");
    let done = wait_done(&app, &account, &id).await;
    assert_eq!(done["counts"]["failed"], 3, "{done}");
    let recipients = app
        .get_json(
            &format!("/api/v1/campaigns/{id}/recipients"),
            &account.token,
        )
        .await;
    for r in recipients["items"].as_array().expect("items") {
        assert_eq!(r["status"], "failed");
        assert!(
            r["error"]
                .as_str()
                .expect("error")
                .contains("no longer stored"),
            "{r}"
        );
    }
    // a new campaign from that template is refused at once, naming the template
    let res = app
        .post(
            "/api/v1/campaigns",
            &account.token,
            &json!({"name": "now", "template_id": template_id, "session_id": session,
                    "recipients": phones(3)}),
        )
        .await;
    let (code, body) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(code, "validation_failed");
    assert_eq!(body["error"]["details"]["field"], "template_id", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("no longer stored"),
        "{body}"
    );
    assert!(sim_items(&app).await.is_empty());
    app.stop().await;
}
