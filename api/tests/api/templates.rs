use crate::helpers::{error_code, spawn_app};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn templates_are_created_listed_updated_and_deleted() {
    let app = spawn_app().await;
    let account = app.register("tpl@b.co").await;
    let res = app
        .post(
            "/api/v1/templates",
            &account.token,
            &json!({"name": "Welcome", "type": "text", "body": "Hi {{ name }} from {{ city }}"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.expect("json");
    assert_eq!(created["status"], "active");
    assert_eq!(created["type"], "text");
    assert_eq!(created["variables"], json!(["city", "name"]));
    let id = created["id"].as_str().expect("id");

    // read your write: the list and the item show it at once
    let list: Value = app.get_json("/api/v1/templates", &account.token).await;
    assert_eq!(list["items"].as_array().expect("items").len(), 1);
    assert!(list["next_cursor"].is_null());

    let res = app
        .patch(
            &format!("/api/v1/templates/{id}"),
            &account.token,
            &json!({"body": "Hello {{ name }}", "status": "inactive"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let updated: Value = res.json().await.expect("json");
    assert_eq!(updated["body"], "Hello {{ name }}");
    assert_eq!(updated["status"], "inactive");
    assert_eq!(updated["name"], "Welcome");

    let res = app
        .delete(&format!("/api/v1/templates/{id}"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .get(&format!("/api/v1/templates/{id}"), &account.token)
        .await;
    assert_eq!(error_code(res, StatusCode::NOT_FOUND).await.0, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn bad_templates_get_clear_errors() {
    let app = spawn_app().await;
    let account = app.register("bad@b.co").await;
    let cases = [
        (
            json!({"name": "x", "type": "text", "body": "Hi {{ name"}),
            "body",
        ),
        (json!({"name": "x", "type": "text"}), "body"),
        (json!({"name": "  ", "type": "text", "body": "hi"}), "name"),
        (json!({"name": "x", "type": "video", "body": "hi"}), "type"),
        (
            json!({"name": "x", "type": "text", "body": "hi", "colour": "red"}),
            "colour",
        ),
    ];
    for (body, field) in cases {
        let res = app.post("/api/v1/templates", &account.token, &body).await;
        let (code, err) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(code, "validation_failed", "{body}");
        assert_eq!(err["error"]["details"]["field"], field, "{body} → {err}");
    }
    let res = app
        .post_raw("/api/v1/templates", &account.token, "[not json")
        .await;
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await.0,
        "invalid_json"
    );
    let res = app
        .patch(
            "/api/v1/templates/not-a-uuid",
            &account.token,
            &json!({"name": "y"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn another_tenants_template_is_not_found() {
    let app = spawn_app().await;
    let owner = app.register("owner@b.co").await;
    let other = app.register("other@b.co").await;
    let id = app.create_template(&owner, "Hi {{ name }}").await;
    let res = app
        .get(&format!("/api/v1/templates/{id}"), &other.token)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .patch(
            &format!("/api/v1/templates/{id}"),
            &other.token,
            &json!({"name": "stolen"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .delete(&format!("/api/v1/templates/{id}"), &other.token)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let list: Value = app.get_json("/api/v1/templates", &other.token).await;
    assert!(list["items"].as_array().expect("items").is_empty());
    // still intact for its owner
    let res = app
        .get(&format!("/api/v1/templates/{id}"), &owner.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await;
}
