//! The operator's endpoints: off without HERALD_ADMIN_TOKEN, the token checked, plans set.

use crate::helpers::{error_code, spawn_app, spawn_app_configured, ADMIN_TOKEN};
use herald_api::config::Secret;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn admin_endpoints_are_off_without_a_configured_token() {
    let app = spawn_app().await;
    let account = app.register("a@b.co").await;
    let res = app
        .admin(Method::GET, "/api/v1/admin/tenants", "anything", None)
        .await;
    assert_eq!(error_code(res, StatusCode::NOT_FOUND).await.0, "not_found");
    let res = app
        .admin(
            Method::PUT,
            &format!("/api/v1/admin/tenants/{}/plan", account.tenant_id),
            "anything",
            Some(&json!({"plan": "max"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn the_operator_lists_tenants_and_sets_plans() {
    let app = spawn_app_configured(|s| {
        s.default_plan = "basic".into();
        s.admin_token = Some(Secret::new(ADMIN_TOKEN));
    })
    .await;
    let sari = app.register("sari@b.co").await;
    let budi = app.register("budi@b.co").await;
    // a wrong token, no token, or a tenant's access token: 401
    for token in ["wrong", ""] {
        let res = app
            .admin(Method::GET, "/api/v1/admin/tenants", token, None)
            .await;
        assert_eq!(
            error_code(res, StatusCode::UNAUTHORIZED).await.0,
            "unauthorized"
        );
    }
    let res = app.get("/api/v1/admin/tenants", &sari.token).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let res = app
        .admin(Method::GET, "/api/v1/admin/tenants", ADMIN_TOKEN, None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let list: Value = res.json().await.expect("json");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], budi.tenant_id.as_str(), "newest first");
    assert_eq!(items[0]["plan"]["name"], "basic");
    assert_eq!(items[0]["plan"]["limits"]["messages_per_hour"], 100);
    assert!(items[0]["usage"]["messages"].is_number(), "{list}");

    let tenant = app
        .set_plan(
            &sari.tenant_id,
            &json!({"plan": "max", "expires_at": "2999-12-31T00:00:00+07:00"}),
        )
        .await;
    assert_eq!(tenant["plan"]["name"], "max");
    assert_eq!(tenant["plan"]["expires_at"], "2999-12-30T17:00:00Z");
    assert_eq!(tenant["plan"]["expired"], false);
    let me: Value = app.get_json("/api/v1/me", &sari.token).await;
    assert_eq!(me["tenant"]["plan"], "max");
    assert_eq!(me["plan"]["limits"]["sessions"], 20);
    // budi is untouched
    let me: Value = app.get_json("/api/v1/me", &budi.token).await;
    assert_eq!(me["plan"]["name"], "basic");

    let path = format!("/api/v1/admin/tenants/{}/plan", sari.tenant_id);
    for (body, field) in [
        (json!({"plan": "gold"}), "plan"),
        (
            json!({"plan": "pro", "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (json!({"plan": "pro", "extra": 1}), "extra"),
        (json!({}), "plan"),
    ] {
        let res = app
            .admin(Method::PUT, &path, ADMIN_TOKEN, Some(&body))
            .await;
        let (code, err) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(code, "validation_failed");
        assert_eq!(err["error"]["details"]["field"], field, "{body} → {err}");
    }
    let res = app
        .admin(
            Method::PUT,
            "/api/v1/admin/tenants/00000000-0000-0000-0000-000000000000/plan",
            ADMIN_TOKEN,
            Some(&json!({"plan": "pro"})),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}
