use crate::helpers::{error_code, spawn_app};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn linking_a_number_points_the_gateway_webhook_at_herald() {
    let app = spawn_app().await;
    let account = app.register("link@b.co").await;
    let res = app
        .post(
            "/api/v1/sessions",
            &account.token,
            &json!({"name": "Sales line", "gateway_token": "sales-token"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let session: Value = res.json().await.expect("json");
    let id = session["id"].as_str().expect("id");
    assert_eq!(session["name"], "Sales line");
    // the simulator's users are connected and logged in from the start
    assert_eq!(session["status"], "connected");
    assert!(
        session.get("gateway_token").is_none(),
        "the token is never shown back"
    );
    let expected = format!("{}/api/v1/webhooks/wuzapi/{id}", app.base);
    assert_eq!(session["webhook_url"], expected.as_str());

    // what the gateway itself now has for that user
    let hook: Value = app
        .client
        .get(format!("{}/webhook", app.sim.base_url()))
        .header("Token", "sales-token")
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(hook["data"]["webhook"], expected.as_str(), "{hook}");

    let list: Value = app.get_json("/api/v1/sessions", &account.token).await;
    assert_eq!(list["items"].as_array().expect("items").len(), 1);
    let one = app
        .get(&format!("/api/v1/sessions/{id}"), &account.token)
        .await;
    assert_eq!(one.status(), StatusCode::OK);

    // another tenant can neither see nor delete it
    let other = app.register("other-link@b.co").await;
    assert_eq!(
        app.get(&format!("/api/v1/sessions/{id}"), &other.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let res = app
        .delete(&format!("/api/v1/sessions/{id}"), &other.token)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let res = app
        .delete(&format!("/api/v1/sessions/{id}"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/api/v1/sessions/{id}"), &account.token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM session_credentials")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(left, 0, "an unlinked number's token is forgotten");
    app.stop().await;
}

#[tokio::test]
async fn bad_session_requests_get_clear_errors() {
    let app = spawn_app().await;
    let account = app.register("badlink@b.co").await;
    for (body, field) in [
        (json!({"name": "x"}), "gateway_token"),
        (
            json!({"name": "x", "gateway_token": "has space"}),
            "gateway_token",
        ),
        (json!({"name": "", "gateway_token": "t"}), "name"),
        (json!({"gateway_token": "t"}), "name"),
    ] {
        let res = app.post("/api/v1/sessions", &account.token, &body).await;
        let (code, err) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(code, "validation_failed");
        assert_eq!(err["error"]["details"]["field"], field, "{body} → {err}");
    }
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_gateway_is_a_502_and_nothing_is_linked() {
    let app = crate::helpers::spawn_app_with_dead_gateway().await;
    let account = app.register("down@b.co").await;
    let res = app
        .post(
            "/api/v1/sessions",
            &account.token,
            &json!({"name": "x", "gateway_token": "t"}),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::BAD_GATEWAY).await.0,
        "gateway_unavailable"
    );
    let list: Value = app.get_json("/api/v1/sessions", &account.token).await;
    assert!(list["items"].as_array().expect("items").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn an_api_process_whose_projectors_run_elsewhere_answers_a_stored_link_with_201() {
    let mut app = spawn_app().await;
    let account = app.register("apart@b.co").await;
    // the projectors and workers run in another process that is not running right now
    app.restart_as(herald_api::Role::Api).await;
    let res = app
        .post(
            "/api/v1/sessions",
            &account.token,
            &json!({"name": "Split line", "gateway_token": "split-token"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "stored, so never a 500");
    let session: Value = res.json().await.expect("json");
    let id = session["id"].as_str().expect("id").to_string();
    assert_eq!(session["name"], "Split line");
    assert_eq!(session["status"], "connected");
    // once the projectors run again, the session reads back as answered
    app.restart().await;
    app.wait_projected(herald_projections::sessions::NAME).await;
    let read = app
        .get_json(&format!("/api/v1/sessions/{id}"), &account.token)
        .await;
    assert_eq!(read["name"], "Split line", "{read}");
    app.stop().await;
}
