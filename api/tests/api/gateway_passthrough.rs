//! The gateway pass-through, `/api/v1/sessions/{id}/gateway/{path}`: a WuzAPI feature Herald has
//! no endpoint for (`group/list`) reached with the tenant's own login and the session's token
//! (never shown); `chat/send/...` counted against the hourly quota; every path outside the
//! allowed prefixes, or one that could leave its prefix however it is encoded, refused with 403
//! before WuzAPI hears of it; another tenant's session not found; WuzAPI unreachable is 502.

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    error_code, spawn_app, spawn_app_configured, spawn_app_with_dead_gateway, TestApp,
};

const TOKEN: &str = "passthrough-user-token";

/// Sends `path` exactly as written (no client-side normalisation of `..` or `%2e`, which
/// reqwest's URL parser would do) and returns the status and body.
async fn raw_get(app: &TestApp, path: &str, bearer: &str) -> (u16, String) {
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn a_wuzapi_feature_herald_has_no_endpoint_for_is_reached_with_the_sessions_token() {
    let app = spawn_app().await;
    let account = app.register("groups@pass.co").await;
    let session = app.link_session(&account, TOKEN).await;
    let res = app
        .get(
            &format!("/api/v1/sessions/{session}/gateway/group/list"),
            &account.token,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.expect("text");
    assert!(!text.contains(TOKEN), "{text}");
    let body: Value = serde_json::from_str(&text).expect("WuzAPI's JSON");
    assert_eq!(
        body["data"]["Groups"][0]["Name"], "Simulated group",
        "{body}"
    );
    let res = app
        .get(
            &format!("/api/v1/sessions/{session}/gateway/session/status"),
            &account.token,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // a send through it reaches WhatsApp (the simulator's ledger) and counts as one message
    let res = app
        .post(
            &format!("/api/v1/sessions/{session}/gateway/chat/send/text"),
            &account.token,
            &json!({"Phone": "6281234567890", "Body": "sent through the pass-through"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let sent = app.sim_messages().await;
    assert!(
        sent.iter()
            .any(|(phone, text, _)| phone.starts_with("6281234567890")
                && text == "sent through the pass-through"),
        "{sent:?}"
    );
    let used: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(messages), 0)::bigint FROM quota_usage WHERE tenant_id = $1::uuid",
    )
    .bind(&account.tenant_id)
    .fetch_one(&app.pool)
    .await
    .expect("usage");
    assert_eq!(used, 1);

    // WuzAPI's own refusal comes back as WuzAPI gave it
    let res = app
        .post(
            &format!("/api/v1/sessions/{session}/gateway/chat/send/text"),
            &account.token,
            &json!({"Body": "no phone"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["success"], false, "{body}");
}

#[tokio::test]
async fn paths_outside_the_allowed_prefixes_or_escaping_them_are_refused() {
    let app = spawn_app().await;
    let account = app.register("refused@pass.co").await;
    let session = app.link_session(&account, TOKEN).await;
    let base = format!("/api/v1/sessions/{session}/gateway");
    for path in [
        "admin/users",
        "webhook",
        "session/hmac/config",
        "session/connect",
        "session/logout",
        "chat/../admin/users",
        "chat/%2e%2e/admin/users",
        "chat/%2E%2E/%2E%2E/admin/users",
        "chat%2F..%2Fadmin/users",
        "chat/send%2f..%2f..%2fadmin/users",
        "chat/..%5cadmin",
        "chat\\..\\admin\\users",
        "chat//admin/users",
        "chat/%252e%252e/admin/users",
    ] {
        let (status, body) = raw_get(&app, &format!("{base}/{path}"), &account.token).await;
        // 403 from Herald; a path the router itself refuses never reaches WuzAPI either
        assert!(
            status == 403 || status == 404 || status == 400,
            "{path}: {status} {body}"
        );
        if status == 403 {
            assert!(body.contains("gateway_path_forbidden"), "{path}: {body}");
        }
    }
    // the plain forbidden prefixes are Herald's 403 (not a router miss)
    for path in [
        "admin/users",
        "webhook",
        "session/hmac/config",
        "chat/%2e%2e/admin/users",
    ] {
        let (status, _) = raw_get(&app, &format!("{base}/{path}"), &account.token).await;
        assert_eq!(status, 403, "{path}");
    }
    // WuzAPI never saw any of them: no admin call made a user, nothing was sent
    assert!(app.sim_messages().await.is_empty());

    // without a login: 401; another tenant's session: 404
    let (status, _) = raw_get(&app, &format!("{base}/group/list"), "not-a-token").await;
    assert_eq!(status, 401);
    let other = app.register("other@pass.co").await;
    let res = app.get(&format!("{base}/group/list"), &other.token).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sends_through_the_pass_through_stop_at_the_hourly_quota() {
    let app = spawn_app_configured(|s| s.default_plan = "basic".into()).await;
    let account = app.register("quota@pass.co").await;
    let session = app.link_session(&account, TOKEN).await;
    // the basic plan's 100 messages of this hour are used up
    sqlx::query(
        "INSERT INTO quota_usage (tenant_id, window_start, messages)
         VALUES ($1::uuid, to_timestamp(floor(extract(epoch FROM now()) / 3600) * 3600), 100)",
    )
    .bind(&account.tenant_id)
    .execute(&app.pool)
    .await
    .expect("usage");
    let res = app
        .post(
            &format!("/api/v1/sessions/{session}/gateway/chat/send/text"),
            &account.token,
            &json!({"Phone": "6281234567890", "Body": "over"}),
        )
        .await;
    assert!(res.headers().get("retry-after").is_some());
    assert_eq!(
        error_code(res, StatusCode::TOO_MANY_REQUESTS).await.0,
        "quota_exceeded"
    );
    assert!(app.sim_messages().await.is_empty());
    // what sends nothing is not counted
    let res = app
        .get(
            &format!("/api/v1/sessions/{session}/gateway/group/list"),
            &account.token,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_unreachable_gateway_is_502() {
    let app = spawn_app_with_dead_gateway().await;
    let account = app.register("dead@pass.co").await;
    // linking needs the gateway: store the session's credentials as a link would have
    let session = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO session_credentials (session_id, tenant_id, gateway_token) VALUES ($1, $2::uuid, $3)",
    )
    .bind(session)
    .bind(&account.tenant_id)
    .bind(TOKEN)
    .execute(&app.pool)
    .await
    .expect("credentials");
    let res = app
        .get(
            &format!("/api/v1/sessions/{session}/gateway/group/list"),
            &account.token,
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::BAD_GATEWAY).await.0,
        "gateway_unavailable"
    );
}
