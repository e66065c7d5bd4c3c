//! The dashboard served by `herald serve`: the built app from `HERALD_WEB_DIR` with its cache
//! and security headers, client-side routes answered with `index.html`, nothing outside the
//! directory reachable, and the API, `/docs`, `/health` and `/metrics` untouched. Also: the
//! dashboard's committed copy of the OpenAPI document is the one Herald serves.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app_configured, TestApp};

const INDEX: &str = "<!doctype html><title>Herald test app</title>";
const SCRIPT: &str = "console.log('herald')";

/// A throwaway web directory holding a built app, and a secret file beside it (outside).
fn web_dir() -> PathBuf {
    let base = std::env::temp_dir().join(format!("herald-web-{}", uuid::Uuid::new_v4()));
    let dist = base.join("dist");
    std::fs::create_dir_all(dist.join("assets")).expect("mkdir");
    std::fs::write(dist.join("index.html"), INDEX).expect("write");
    std::fs::write(dist.join("assets/index-Dk3nP9aZ.js"), SCRIPT).expect("write");
    std::fs::write(dist.join("favicon.svg"), "<svg/>").expect("write");
    std::fs::write(base.join("secret.txt"), "do not serve").expect("write");
    dist
}

async fn app_with_web(dir: PathBuf) -> TestApp {
    spawn_app_configured(move |s| s.web_dir = dir).await
}

/// A request sent as written: no client-side normalisation of `..` or `%2f`.
async fn raw_get(app: &TestApp, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[tokio::test]
async fn the_dashboard_is_served_with_cache_and_security_headers() {
    let app = app_with_web(web_dir()).await;

    for path in [
        "/",
        "/campaigns",
        "/campaigns/5b0c1e3a-0000-4000-8000-000000000000",
    ] {
        let res = app.client.get(app.url(path)).send().await.expect("sent");
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let h = res.headers().clone();
        assert_eq!(h["cache-control"], "no-cache", "{path}");
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
        let csp = h["content-security-policy"].to_str().expect("csp");
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert!(!csp.contains("http"), "nothing from outside: {csp}");
        assert_eq!(res.text().await.expect("body"), INDEX);
    }

    let res = app
        .client
        .get(app.url("/assets/index-Dk3nP9aZ.js"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(res.text().await.expect("body"), SCRIPT);

    // a file that is not hashed may change between builds
    let res = app
        .client
        .get(app.url("/favicon.svg"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["cache-control"], "no-cache");
    assert_eq!(res.headers()["content-type"], "image/svg+xml");

    // a missing asset is a 404, not the app
    let res = app
        .client
        .get(app.url("/assets/index-00000000.js"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn nothing_outside_the_web_directory_can_be_reached() {
    let app = app_with_web(web_dir()).await;
    for path in [
        "/../secret.txt",
        "/assets/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/assets%2f..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/.%2e/secret.txt",
    ] {
        let (status, answer) = raw_get(&app, path).await;
        assert!(!answer.contains("do not serve"), "{path}: {answer}");
        assert!(status == 404 || status == 400, "{path}: {status}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_api_docs_health_and_metrics_keep_their_answers() {
    let app = app_with_web(web_dir()).await;
    let res = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.json::<Value>().await.expect("json")["status"], "ok");
    let res = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .client
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.expect("body").contains("swagger"));
    // an unknown API path stays a JSON 404, never the app
    for path in ["/api/v1/nothing-here", "/api/v2", "/health/nope"] {
        let res = app.client.get(app.url(path)).send().await.expect("sent");
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        let body: Value = res.json().await.expect("json envelope");
        assert_eq!(body["error"]["code"], "not_found", "{path}");
    }
    // authentication still guards the API
    let res = app
        .client
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn without_a_built_dashboard_the_root_says_how_to_build_it() {
    let missing = std::env::temp_dir().join(format!("herald-no-web-{}", uuid::Uuid::new_v4()));
    let app = app_with_web(missing).await;
    let res = app.client.get(app.url("/")).send().await.expect("sent");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = res.text().await.expect("body");
    assert!(text.contains("not built"), "{text}");
    assert!(text.contains("scripts/web.sh"), "{text}");
    let res = app
        .client
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn the_dashboards_openapi_copy_is_the_served_document() {
    let app = app_with_web(web_dir()).await;
    let served: Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../web/openapi.json");
    let committed: Value = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    assert!(
        committed == served,
        "web/openapi.json differs from the API Herald serves: run `bash scripts/web-api.sh` \
         (it regenerates web/openapi.json and web/src/api/schema.d.ts) and commit the result"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_simulators_incoming_message_becomes_an_unread_chat() {
    let app = app_with_web(web_dir()).await;
    let account = app.register("incoming-dashboard@example.com").await;
    app.link_session(&account, "sim-incoming-token").await;
    let answer: Value = app
        .client
        .post(format!("{}/sim/incoming", app.sim.base_url()))
        .json(&serde_json::json!({
            "token": "sim-incoming-token", "from": "6281234500001", "text": "halo, masih ada?",
            "push_name": "Sari"
        }))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["posted"], true, "{answer}");
    let mut chat = Value::Null;
    for _ in 0..100 {
        let page = app.get_json("/api/v1/chats", &account.token).await;
        if let Some(first) = page["items"].as_array().and_then(|a| a.first()) {
            chat = first.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(chat["jid"], "6281234500001@s.whatsapp.net", "{chat}");
    assert_eq!(chat["unread_count"], 1, "{chat}");
    assert_eq!(chat["last_message"]["text"], "halo, masih ada?", "{chat}");
    // an unknown user is a 404, a bad phone a 400
    let res = app
        .client
        .post(format!("{}/sim/incoming", app.sim.base_url()))
        .json(&serde_json::json!({"token": "nobody", "from": "62811", "text": "x"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .client
        .post(format!("{}/sim/incoming", app.sim.base_url()))
        .json(&serde_json::json!({"token": "sim-incoming-token", "from": "+62 811", "text": "x"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}
