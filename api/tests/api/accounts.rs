use crate::helpers::{error_code, spawn_app};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn register_login_and_me() {
    let app = spawn_app().await;
    let res = app
        .post_public(
            "/api/v1/auth/register",
            &json!({"email": "Sari@Example.com", "password": "longenough", "name": "Sari"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["user"]["email"], "sari@example.com");
    assert_eq!(body["user"]["name"], "Sari");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().expect("expires_in") > 0);

    let res = app
        .post_public(
            "/api/v1/auth/login",
            &json!({"email": "sari@example.com", "password": "longenough"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let token = res.json::<Value>().await.expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_string();

    let me: Value = app.get_json("/api/v1/me", &token).await;
    assert_eq!(me["user"]["email"], "sari@example.com");
    assert_eq!(me["tenant"]["id"], body["tenant_id"]);
    // the plan of a new tenant is HERALD_DEFAULT_PLAN (the test settings choose unlimited)
    assert_eq!(me["tenant"]["plan"], "unlimited");

    let res = app
        .post_public(
            "/api/v1/auth/login",
            &json!({"email": "sari@example.com", "password": "wrong password"}),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await.0,
        "unauthorized"
    );
    let res = app
        .post_public(
            "/api/v1/auth/login",
            &json!({"email": "nobody@example.com", "password": "whatever1"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn bad_registrations_are_rejected_with_the_field_named() {
    let app = spawn_app().await;
    let post = |body: Value| {
        let app = &app;
        async move { app.post_public("/api/v1/auth/register", &body).await }
    };
    let (code, body) = error_code(
        post(json!({"email": "a@b.co", "password": "short"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(code, "validation_failed");
    assert_eq!(body["error"]["details"]["field"], "password");

    let (_, body) = error_code(
        post(json!({"email": "not-an-email", "password": "longenough"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "email");

    let (_, body) = error_code(
        post(json!({"email": "a@b.co", "password": "longenough", "role": "admin"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "role");

    let res = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .expect("sent");
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await.0,
        "invalid_json"
    );

    assert_eq!(
        post(json!({"email": "dup@b.co", "password": "longenough"}))
            .await
            .status(),
        StatusCode::CREATED
    );
    let (code, _) = error_code(
        post(json!({"email": "DUP@b.co", "password": "longenough"})).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(code, "email_taken");
    app.stop().await;
}

#[tokio::test]
async fn tokens_are_verified() {
    let app = spawn_app().await;
    let account = app.register("t@b.co").await;
    let res = app
        .client
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await.0,
        "unauthorized"
    );

    // a token with alg "none" and the same claims must not pass
    let parts: Vec<&str> = account.token.split('.').collect();
    let forged = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    assert_eq!(
        app.get("/api/v1/me", &forged).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // a tampered signature must not pass
    let tampered = format!("{}.{}.{}x", parts[0], parts[1], parts[2]);
    assert_eq!(
        app.get("/api/v1/me", &tampered).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}

#[tokio::test]
async fn api_keys_authenticate_integrators_until_revoked() {
    let app = spawn_app().await;
    let account = app.register("k@b.co").await;
    let res = app
        .post(
            "/api/v1/api-keys",
            &account.token,
            &json!({"name": "crm sync"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let key: Value = res.json().await.expect("json");
    let secret = key["key"].as_str().expect("key").to_string();
    assert!(secret.starts_with(key["prefix"].as_str().expect("prefix")));

    let me = app
        .client
        .get(app.url("/api/v1/me"))
        .header("x-api-key", &secret)
        .send()
        .await
        .expect("sent");
    assert_eq!(me.status(), StatusCode::OK);
    let me: Value = me.json().await.expect("json");
    assert_eq!(me["tenant"]["id"], account.tenant_id.as_str());
    assert!(me["user"].is_null());

    let listed: Value = app.get_json("/api/v1/api-keys", &account.token).await;
    let listed = listed["items"].as_array().expect("items");
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("key").is_none(), "the key is shown once only");

    let id = key["id"].as_str().expect("id");
    let res = app
        .delete(&format!("/api/v1/api-keys/{id}"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .client
        .get(app.url("/api/v1/me"))
        .header("x-api-key", &secret)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn oversize_bodies_are_413() {
    let app = spawn_app().await;
    let huge = format!(
        "{{\"email\": \"a@b.co\", \"password\": \"{}\"}}",
        "x".repeat(200_000)
    );
    let res = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        error_code(res, StatusCode::PAYLOAD_TOO_LARGE).await.0,
        "payload_too_large"
    );
    app.stop().await;
}
