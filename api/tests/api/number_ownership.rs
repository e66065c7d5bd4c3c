//! A number belongs to one tenant (docs/decisions/0041): a WuzAPI token is linked by one session
//! only, a Cloud API phone number id only with Meta's proof or by the operator, and linking
//! attempts are rate limited.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::fake_graph;
use crate::helpers::{error_code, spawn_app, spawn_app_configured, TestApp, ADMIN_TOKEN};

/// The webhook URL the simulator has for the WuzAPI user `token`.
async fn gateway_webhook(app: &TestApp, token: &str) -> String {
    let body: Value = app
        .client
        .get(format!("{}/webhook", app.sim.base_url()))
        .header("Token", token)
        .send()
        .await
        .expect("sim answers")
        .json()
        .await
        .expect("json");
    body["data"]["webhook"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_second_tenant_cannot_take_a_linked_wuzapi_token() {
    let app = spawn_app().await;
    let owner = app.register("owner@example.com").await;
    let thief = app.register("thief@example.com").await;
    let session = app.link_session(&owner, "token-owned").await;
    let webhook = gateway_webhook(&app, "token-owned").await;
    assert!(
        webhook.ends_with(&format!("/webhooks/wuzapi/{session}")),
        "{webhook}"
    );

    let res = app
        .post(
            "/api/v1/sessions",
            &thief.token,
            &json!({"name": "mine now", "gateway_token": "token-owned"}),
        )
        .await;
    let (code, body) = error_code(res, StatusCode::CONFLICT).await;
    assert_eq!(code, "gateway_token_taken");
    // the other tenant learns nothing about the holder
    assert!(!body.to_string().contains(&session), "{body}");
    // the owner keeps its webhook and its number; the thief has nothing
    assert_eq!(gateway_webhook(&app, "token-owned").await, webhook);
    let owned = app.get_json("/api/v1/sessions", &owner.token).await;
    assert_eq!(owned["items"].as_array().map(Vec::len), Some(1));
    let stolen = app.get_json("/api/v1/sessions", &thief.token).await;
    assert_eq!(stolen["items"].as_array().map(Vec::len), Some(0));

    // the same tenant linking the same token again is refused too, and told which session has it
    let res = app
        .post(
            "/api/v1/sessions",
            &owner.token,
            &json!({"name": "twice", "gateway_token": " token-owned "}),
        )
        .await;
    let (code, body) = error_code(res, StatusCode::CONFLICT).await;
    assert_eq!(code, "gateway_token_taken");
    assert!(body.to_string().contains(&session), "{body}");

    // a deleted session frees its token
    let res = app
        .delete(&format!("/api/v1/sessions/{session}"), &owner.token)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let taken_over = app.link_session(&thief, "token-owned").await;
    assert!(gateway_webhook(&app, "token-owned")
        .await
        .ends_with(&format!("/webhooks/wuzapi/{taken_over}")));
    app.stop().await;
}

#[tokio::test]
async fn two_tenants_linking_one_token_at_once_cannot_both_win() {
    let app = spawn_app().await;
    let a = app.register("a@example.com").await;
    let b = app.register("b@example.com").await;
    let body = json!({"name": "race", "gateway_token": "token-raced"});
    let (ra, rb) = tokio::join!(
        app.post("/api/v1/sessions", &a.token, &body),
        app.post("/api/v1/sessions", &b.token, &body)
    );
    let mut statuses = vec![ra.status(), rb.status()];
    statuses.sort();
    assert_eq!(statuses, vec![StatusCode::CREATED, StatusCode::CONFLICT]);
    let winner = if ra.status() == StatusCode::CREATED {
        ra
    } else {
        rb
    };
    let session: Value = winner.json().await.expect("json");
    let id = session["id"].as_str().expect("id");
    assert!(gateway_webhook(&app, "token-raced")
        .await
        .ends_with(&format!("/webhooks/wuzapi/{id}")));
    app.stop().await;
}

const NUMBER_ID: &str = "106540352242922";

#[tokio::test]
async fn a_phone_number_id_needs_proof_and_belongs_to_one_tenant() {
    let graph = fake_graph::spawn(&[(NUMBER_ID, "EAAG-owner"), (NUMBER_ID, "EAAG-other")]).await;
    let url = graph.url.clone();
    let app = spawn_app_configured(move |s| {
        s.meta_graph_url = url;
        s.admin_token = Some(herald_api::config::Secret::new(ADMIN_TOKEN));
    })
    .await;
    let owner = app.register("owner@example.com").await;
    let other = app.register("other@example.com").await;
    let link = |token: Option<&str>, gateway: &str| {
        let mut body = json!({"name": "cloud", "gateway_token": gateway,
                              "meta_phone_number_id": NUMBER_ID});
        if let Some(t) = token {
            body["meta_access_token"] = json!(t);
        }
        body
    };

    // no proof: refused before anyone is asked
    let res = app
        .post("/api/v1/sessions", &owner.token, &link(None, "token-o1"))
        .await;
    let (code, body) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(code, "validation_failed");
    assert_eq!(body["error"]["details"]["field"], "meta_access_token");
    assert_eq!(graph.requests(), 0);
    // a token Meta refuses for this id
    let res = app
        .post(
            "/api/v1/sessions",
            &owner.token,
            &link(Some("EAAG-guess"), "token-o1"),
        )
        .await;
    let (_, body) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["error"]["details"]["field"], "meta_access_token");
    assert!(
        !body.to_string().contains("EAAG-guess"),
        "the token is never echoed: {body}"
    );
    assert_eq!(graph.requests(), 1);

    // with proof: linked once
    let res = app
        .post(
            "/api/v1/sessions",
            &owner.token,
            &link(Some("EAAG-owner"), "token-o1"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let session: Value = res.json().await.expect("json");
    assert_eq!(session["meta_phone_number_id"], NUMBER_ID);
    assert!(!session.to_string().contains("EAAG-owner"), "{session}");
    let stored: Option<String> = sqlx::query_scalar(
        "SELECT meta_linked_by FROM session_credentials WHERE meta_phone_number_id = $1",
    )
    .bind(NUMBER_ID)
    .fetch_one(&app.pool)
    .await
    .expect("row");
    assert_eq!(stored.as_deref(), Some("graph"));

    // another tenant, even with a token Meta accepts, cannot take it
    let res = app
        .post(
            "/api/v1/sessions",
            &other.token,
            &link(Some("EAAG-other"), "token-x1"),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::CONFLICT).await.0,
        "phone_number_id_taken"
    );
    // nor can the operator give it to a second session
    let plain = app.link_session(&other, "token-x2").await;
    let admin_put = |id: &str, number: Value| {
        app.client
            .put(app.url(&format!("/api/v1/admin/sessions/{id}/meta-phone-number-id")))
            .header("X-Admin-Token", ADMIN_TOKEN)
            .json(&json!({ "meta_phone_number_id": number }))
            .send()
    };
    let res = admin_put(&plain, json!(NUMBER_ID)).await.expect("sent");
    assert_eq!(
        error_code(res, StatusCode::CONFLICT).await.0,
        "phone_number_id_taken"
    );
    // the operator sets a free id without asking Meta
    let res = admin_put(&plain, json!("222333444555"))
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    let shown = app
        .get_json(&format!("/api/v1/sessions/{plain}"), &other.token)
        .await;
    assert_eq!(shown["meta_phone_number_id"], "222333444555");
    // without the operator's token the admin route is closed
    let res = app
        .client
        .put(app.url(&format!(
            "/api/v1/admin/sessions/{plain}/meta-phone-number-id"
        )))
        .json(&json!({"meta_phone_number_id": "999"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

#[tokio::test]
async fn guessing_tokens_is_rate_limited() {
    let app = spawn_app().await;
    let owner = app.register("owner@example.com").await;
    let guesser = app.register("guesser@example.com").await;
    app.link_session(&owner, "token-target").await;
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let res = app
            .post(
                "/api/v1/sessions",
                &guesser.token,
                &json!({"name": "guess", "gateway_token": "token-target"}),
            )
            .await;
        statuses.push(res.status());
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .expect("Retry-After in seconds");
            assert!((1..=60).contains(&retry), "{retry}");
            assert_eq!(
                error_code(res, StatusCode::TOO_MANY_REQUESTS).await.0,
                "too_many_attempts"
            );
        }
    }
    assert_eq!(&statuses[..10], &[StatusCode::CONFLICT; 10]);
    assert_eq!(statuses[10], StatusCode::TOO_MANY_REQUESTS);
    // the limit is the guesser's: the owner still links numbers
    app.link_session(&owner, "token-second").await;
    app.stop().await;
}

/// Databases from before this change may hold one token in several sessions: the migration keeps
/// the oldest session's claim and disarms the newer ones instead of failing.
#[tokio::test]
async fn the_migration_keeps_the_oldest_holder_of_a_shared_token() {
    use sqlx::postgres::PgPoolOptions;
    use sqlx::{Connection, Executor};
    let admin = herald_migrations::testing::admin_url();
    let name = format!("herald_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::postgres::PgConnection::connect(&admin)
        .await
        .expect("admin connection");
    conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .expect("create database");
    let url = herald_migrations::testing::with_database(&admin, &name);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("pool");
    let full = &herald_migrations::MIGRATOR;
    let before = sqlx::migrate::Migrator {
        migrations: full
            .migrations
            .iter()
            .filter(|m| m.version < 20261204000040)
            .cloned()
            .collect::<Vec<_>>()
            .into(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    before.run(&pool).await.expect("older migrations");
    let (older, newer, alone) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    for (session, token, age) in [
        (older, "shared", "2 days"),
        (newer, "shared", "1 day"),
        (alone, "alone", "3 days"),
    ] {
        sqlx::query(
            "INSERT INTO session_credentials (session_id, tenant_id, gateway_token, hmac_key, created_at)
             VALUES ($1, $2, $3, 'old-key', now() - $4::interval)",
        )
        .bind(session)
        .bind(uuid::Uuid::new_v4())
        .bind(token)
        .bind(age)
        .execute(&pool)
        .await
        .expect("insert");
    }
    full.run(&pool)
        .await
        .expect("the migration does not fail on duplicates");
    let claims: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT session_id FROM gateway_token_claims ORDER BY claimed_at")
            .fetch_all(&pool)
            .await
            .expect("claims");
    assert_eq!(claims, vec![alone, older]);
    let (token, key): (String, String) = sqlx::query_as(
        "SELECT gateway_token, hmac_key FROM session_credentials WHERE session_id = $1",
    )
    .bind(newer)
    .fetch_one(&pool)
    .await
    .expect("newer row");
    assert_eq!(token, "");
    assert_ne!(key, "old-key");
    assert_eq!(key.len(), 64);
    let superseded: Vec<(uuid::Uuid, uuid::Uuid)> =
        sqlx::query_as("SELECT session_id, kept_session_id FROM gateway_token_superseded")
            .fetch_all(&pool)
            .await
            .expect("superseded");
    assert_eq!(superseded, vec![(newer, older)]);
    let kept: String =
        sqlx::query_scalar("SELECT gateway_token FROM session_credentials WHERE session_id = $1")
            .bind(older)
            .fetch_one(&pool)
            .await
            .expect("older row");
    assert_eq!(kept, "shared");
    pool.close().await;
}
