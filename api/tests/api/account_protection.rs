//! Accounts under attack (docs/accounts.md, decision 0042): login and registration throttles,
//! bounded passwords, tokens revoked by a password change or a removed user, and the production
//! check of the JWT secret.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app, spawn_app_configured, TestApp, ADMIN_TOKEN};

const PASSWORD: &str = "correct horse battery";

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.post_public(
        "/api/v1/auth/login",
        &json!({"email": email, "password": password}),
    )
    .await
}

fn retry_after(res: &reqwest::Response) -> u64 {
    res.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds")
}

#[tokio::test]
async fn thirty_wrong_passwords_at_once_are_throttled() {
    let app = spawn_app().await;
    app.register("sari@example.com").await;
    let burst = (0..30).map(|i| {
        login(
            &app,
            "sari@example.com",
            if i % 2 == 0 { "wrong one" } else { "Wrong Two" },
        )
    });
    let answers = futures::future::join_all(burst).await;
    let unauthorized = answers
        .iter()
        .filter(|r| r.status() == StatusCode::UNAUTHORIZED)
        .count();
    let throttled: Vec<_> = answers
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    // five guesses per account per window, however many arrive at once
    assert_eq!(unauthorized, 5);
    assert_eq!(throttled.len(), 25);
    for res in throttled {
        let retry = retry_after(res);
        assert!((1..=900).contains(&retry), "{retry}");
    }
    // while throttled, even the right password is refused
    let res = login(&app, "sari@example.com", PASSWORD).await;
    assert!(retry_after(&res) > 0);
    let (code, body) = error_code(res, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(code, "too_many_attempts");
    assert_eq!(body["error"]["details"]["limit"], 5);
    // another account from the same address is not locked by it
    app.register("budi@example.com").await;
    assert_eq!(
        login(&app, "budi@example.com", PASSWORD).await.status(),
        StatusCode::OK
    );
    app.stop().await;
}

#[tokio::test]
async fn a_successful_login_resets_the_account_and_addresses_are_limited_too() {
    let app = spawn_app().await;
    app.register("sari@example.com").await;
    for _ in 0..2 {
        for _ in 0..4 {
            assert_eq!(
                login(&app, "sari@example.com", "wrong one").await.status(),
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(
            login(&app, "sari@example.com", PASSWORD).await.status(),
            StatusCode::OK
        );
    }
    // 20 failures from one address (8 above, 12 here) across many emails, then the address waits
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(
            login(&app, &format!("nobody{i}@example.com"), "whatever1")
                .await
                .status(),
        );
    }
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    let res = login(&app, "nobody-last@example.com", "whatever1").await;
    assert_eq!(
        error_code(res, StatusCode::TOO_MANY_REQUESTS).await.0,
        "too_many_attempts"
    );
    app.stop().await;
}

#[tokio::test]
async fn passwords_over_1024_bytes_are_refused_before_hashing() {
    let app = spawn_app().await;
    let account = app.register("sari@example.com").await;
    let huge = "p".repeat(60 * 1024);
    let res = app
        .post_public(
            "/api/v1/auth/register",
            &json!({"email": "big@example.com", "password": huge}),
        )
        .await;
    let (_, body) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["error"]["details"]["field"], "password");
    let res = app
        .post(
            "/api/v1/me/password",
            &account.token,
            &json!({"current_password": PASSWORD, "new_password": huge}),
        )
        .await;
    let (_, body) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["error"]["details"]["field"], "new_password");
    // 1,024 bytes is still a password
    let res = app
        .post_public(
            "/api/v1/auth/register",
            &json!({"email": "edge@example.com", "password": "p".repeat(1024)}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    // fifty 60 KB logins take far less than fifty argon2 hashes would: none is hashed, and none
    // counts as a failed login
    let started = Instant::now();
    for _ in 0..50 {
        let res = login(&app, "sari@example.com", &huge).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let elapsed = started.elapsed();
    let one_hash = {
        let t = Instant::now();
        assert_eq!(
            login(&app, "sari@example.com", PASSWORD).await.status(),
            StatusCode::OK
        );
        t.elapsed()
    };
    assert!(
        elapsed < Duration::from_secs(3) && elapsed < one_hash * 25,
        "50 refused logins took {elapsed:?}, one real login {one_hash:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_password_change_revokes_every_earlier_token() {
    let app = spawn_app().await;
    let account = app.register("sari@example.com").await;
    let res = login(&app, "sari@example.com", PASSWORD).await;
    let other_device = res.json::<Value>().await.expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_string();

    let res = app
        .post(
            "/api/v1/me/password",
            &account.token,
            &json!({"current_password": "not it at all", "new_password": "a new passphrase"}),
        )
        .await;
    let (_, body) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["error"]["details"]["field"], "current_password");
    let res = app
        .post(
            "/api/v1/me/password",
            &account.token,
            &json!({"current_password": PASSWORD, "new_password": "short"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let res = app
        .post(
            "/api/v1/me/password",
            &account.token,
            &json!({"current_password": PASSWORD, "new_password": "a new passphrase"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let fresh = res.json::<Value>().await.expect("json")["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    for old in [&account.token, &other_device] {
        let res = app.get("/api/v1/me", old).await;
        assert_eq!(
            error_code(res, StatusCode::UNAUTHORIZED).await.0,
            "unauthorized"
        );
    }
    assert_eq!(app.get("/api/v1/me", &fresh).await.status(), StatusCode::OK);
    assert_eq!(
        login(&app, "sari@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "sari@example.com", "a new passphrase")
            .await
            .status(),
        StatusCode::OK
    );

    // an API key has no password to change
    let key: Value = app
        .post("/api/v1/api-keys", &fresh, &json!({"name": "ci"}))
        .await
        .json()
        .await
        .expect("json");
    let res = app
        .client
        .post(app.url("/api/v1/me/password"))
        .header("X-API-Key", key["key"].as_str().expect("key"))
        .json(&json!({"current_password": "a new passphrase", "new_password": "another one!"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        error_code(res, StatusCode::FORBIDDEN).await.0,
        "user_token_required"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_removed_user_cannot_use_its_tokens() {
    let app = spawn_app_configured(|s| {
        s.admin_token = Some(herald_api::config::Secret::new(ADMIN_TOKEN));
    })
    .await;
    let account = app.register("sari@example.com").await;
    let me = app.get_json("/api/v1/me", &account.token).await;
    let user_id = me["user"]["id"].as_str().expect("user id").to_string();
    let remove = |id: String| {
        app.client
            .delete(app.url(&format!("/api/v1/admin/users/{id}")))
            .header("X-Admin-Token", ADMIN_TOKEN)
            .send()
    };
    assert_eq!(
        remove(user_id.clone()).await.expect("sent").status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        remove(user_id).await.expect("sent").status(),
        StatusCode::NOT_FOUND
    );
    let res = app.get("/api/v1/me", &account.token).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        login(&app, "sari@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.stop().await;
}

#[tokio::test]
async fn registrations_from_one_address_are_limited() {
    let app = spawn_app().await;
    for i in 0..10 {
        app.register(&format!("user{i}@example.com")).await;
    }
    let res = app
        .post_public(
            "/api/v1/auth/register",
            &json!({"email": "one-more@example.com", "password": PASSWORD}),
        )
        .await;
    let retry = retry_after(&res);
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(
        error_code(res, StatusCode::TOO_MANY_REQUESTS).await.0,
        "too_many_attempts"
    );
    app.stop().await;
}

/// Runs alone in its process under nextest (the test command), so setting the environment is
/// safe here.
#[test]
fn production_refuses_a_weak_jwt_secret() {
    std::env::set_var("HERALD_ENV", "production");
    for weak in [
        "x".repeat(64),
        "secretsecretsecretsecretsecretsecret".into(),
        "0123456789abcdef0123456789abcdef".into(),
        "tooshort".into(),
    ] {
        std::env::set_var("HERALD_JWT_SECRET", &weak);
        let refused = herald_api::Settings::from_env()
            .expect_err(&weak)
            .to_string();
        assert!(refused.contains("HERALD_JWT_SECRET"), "{refused}");
        assert!(!refused.contains(&weak), "{refused}");
    }
    std::env::set_var(
        "HERALD_JWT_SECRET",
        "c2V4dGFudC1rZXktZm9yLXRlc3RzLW9ubHk9PT0h9f3A",
    );
    assert!(herald_api::Settings::from_env().is_ok());
    // development still takes any 32 characters
    std::env::set_var("HERALD_ENV", "development");
    std::env::set_var("HERALD_JWT_SECRET", "x".repeat(32));
    assert!(herald_api::Settings::from_env().is_ok());
    std::env::remove_var("HERALD_ENV");
    std::env::remove_var("HERALD_JWT_SECRET");
}

#[tokio::test]
async fn the_new_routes_are_in_the_openapi_document() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let statuses = |path: &str, method: &str| -> Vec<String> {
        let mut found: Vec<String> = doc["paths"][path][method]["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} is not documented"))
            .keys()
            .cloned()
            .collect();
        found.sort();
        found
    };
    // the statuses each new operation can answer
    for (path, method, expected) in [
        (
            "/api/v1/me/password",
            "post",
            &["200", "400", "401", "403", "413", "422", "429"][..],
        ),
        (
            "/api/v1/admin/users/{id}",
            "delete",
            &["204", "401", "404"][..],
        ),
        (
            "/api/v1/admin/sessions/{id}/meta-phone-number-id",
            "put",
            &["200", "400", "401", "404", "422"][..],
        ),
    ] {
        let found = statuses(path, method);
        for status in expected {
            assert!(
                found.iter().any(|f| f == status),
                "{method} {path}: {found:?}"
            );
        }
    }
    app.stop().await;
}
