use crate::helpers::spawn_app;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn health_ready_openapi_and_docs_answer() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.expect("json")["status"], "ok");

    let res = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);

    let doc: Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/me",
        "/api/v1/sessions",
        "/api/v1/sessions/{id}",
        "/api/v1/templates",
        "/api/v1/templates/{id}",
        "/api/v1/campaigns",
        "/api/v1/campaigns/{id}",
        "/api/v1/campaigns/{id}/recipients",
        "/api/v1/campaigns/{id}/recipients.csv",
        "/api/v1/campaigns/{id}/pause",
        "/api/v1/campaigns/{id}/resume",
        "/api/v1/campaigns/{id}/cancel",
        "/api/v1/campaigns/{id}/occurrences",
        "/api/v1/webhooks/wuzapi/{session_id}",
        "/api/v1/webhooks/meta",
        "/api/v1/chats",
        "/api/v1/chats/{id}",
        "/api/v1/chats/{id}/messages",
        "/api/v1/chats/{id}/read",
        "/api/v1/messages",
        "/api/v1/messages/{id}",
        "/api/v1/admin/tenants",
        "/api/v1/admin/tenants/{id}/plan",
        "/health",
        "/health/ready",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(
        paths["/api/v1/sessions/{id}"]["patch"].is_object(),
        "PATCH /api/v1/sessions/{{id}} (pacing) missing from the OpenAPI document"
    );

    let res = app
        .client
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.text().await.expect("text").contains("swagger"),
        "interactive page served"
    );

    let res = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_answer_with_the_envelope() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/api/v1/nothing-here"))
        .send()
        .await
        .expect("sent");
    let (code, _) = crate::helpers::error_code(res, StatusCode::NOT_FOUND).await;
    assert_eq!(code, "not_found");
    app.stop().await;
}
