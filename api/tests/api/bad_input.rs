//! Hostile query input on every list: out-of-range cursors, NUL characters. Each answers 400 with
//! the envelope, never 500 (the fuzz check in scripts/fuzz.sh found these).

use herald_api::config::Secret;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{error_code, spawn_app_configured, ADMIN_TOKEN};

/// Time cursors (`<unix micros>_<uuid>`) no list gave out: instants PostgreSQL cannot hold,
/// numbers past i64, a bad id.
fn hostile_time_cursors() -> Vec<String> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    vec![
        format!("-8000000000000000000_{id}"),
        format!("9223372036854775807_{id}"),
        format!("-9223372036854775808_{id}"),
        format!("99999999999999999999_{id}"),
        format!("253402300800000000_{id}"),
        "1_not-a-uuid".into(),
        format!("1%00_{id}"),
    ]
}

#[tokio::test]
async fn hostile_cursors_answer_400_on_every_list() {
    let app = spawn_app_configured(|s| {
        s.admin_token = Some(Secret::new(ADMIN_TOKEN));
    })
    .await;
    let (account, session, template) = app.ready_tenant("cursor@b.co", "Hi").await;
    let campaign = app
        .create_campaign(
            &account,
            &json!({"name": "c", "template_id": template, "session_id": session,
                    "recipients": ["6281234567890"]}),
        )
        .await;
    let chat = uuid::Uuid::new_v4();
    let time_lists = [
        "/api/v1/templates?cursor=",
        "/api/v1/sessions?cursor=",
        "/api/v1/campaigns?cursor=",
        "/api/v1/chats?cursor=",
    ];
    for cursor in hostile_time_cursors() {
        for list in time_lists {
            let res = app.get(&format!("{list}{cursor}"), &account.token).await;
            let (code, _) = error_code(res, StatusCode::BAD_REQUEST).await;
            // a NUL is refused before the cursor is read
            let expected = if cursor.contains("%00") {
                "invalid_text"
            } else {
                "invalid_cursor"
            };
            assert_eq!(code, expected, "{list}{cursor}");
        }
        let res = app
            .admin(
                Method::GET,
                &format!("/api/v1/admin/tenants?cursor={cursor}"),
                ADMIN_TOKEN,
                None,
            )
            .await;
        let (code, _) = error_code(res, StatusCode::BAD_REQUEST).await;
        assert!(
            code == "invalid_cursor" || code == "invalid_text",
            "{cursor}: {code}"
        );
        // a chat's messages: `<unix micros>_<message id>`
        let res = app
            .get(
                &format!("/api/v1/chats/{chat}/messages?before={cursor}"),
                &account.token,
            )
            .await;
        if cursor.starts_with("1_") {
            // a valid instant and any text as the id: a cursor, of a chat that is not there
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{cursor}");
        } else {
            let (code, _) = error_code(res, StatusCode::BAD_REQUEST).await;
            assert!(
                code == "invalid_cursor" || code == "invalid_text",
                "{cursor}: {code}"
            );
        }
    }
    // contacts: `<rank>.<hex name>.<key>`; a NUL in the name or the key, a rank past i16
    for cursor in [
        "0.6100.628",
        "0.61.62%008",
        "99999.61.628",
        "-8000000000000000000.61.628",
    ] {
        let res = app
            .get(&format!("/api/v1/contacts?cursor={cursor}"), &account.token)
            .await;
        let (code, _) = error_code(res, StatusCode::BAD_REQUEST).await;
        assert!(
            code == "invalid_cursor" || code == "invalid_text",
            "{cursor}: {code}"
        );
    }
    // recipients: the last phone of a page
    for cursor in [
        "-8000000000000000000_x",
        "628%00",
        "not-a-phone",
        "1234567890123456789012",
    ] {
        let res = app
            .get(
                &format!("/api/v1/campaigns/{campaign}/recipients?cursor={cursor}"),
                &account.token,
            )
            .await;
        let (code, _) = error_code(res, StatusCode::BAD_REQUEST).await;
        assert!(
            code == "invalid_cursor" || code == "invalid_text",
            "{cursor}: {code}"
        );
    }
    // the cursors Herald gives out still page
    let res = app
        .get(
            &format!("/api/v1/campaigns/{campaign}/recipients?cursor=6281234567800"),
            &account.token,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn nul_in_any_query_parameter_is_400_and_in_a_path_404() {
    let app = spawn_app_configured(|_| {}).await;
    let account = app.register("nul@b.co").await;
    // each of these reached PostgreSQL as text with NUL: 500 before
    for path in [
        "/api/v1/contacts?q=%C3%9F%00%C2%A1",
        "/api/v1/contacts?tag=vip%00",
        "/api/v1/campaigns?status=running%00",
        "/api/v1/chats?session_id=%00",
        "/api/v1/templates?x%00=1",
    ] {
        let res = app.get(path, &account.token).await;
        let (code, _) = error_code(res, StatusCode::BAD_REQUEST).await;
        assert_eq!(code, "invalid_text", "{path}");
    }
    for path in ["/api/v1/contacts/123%00@lid", "/api/v1/contacts/%00"] {
        let res = app.get(path, &account.token).await;
        let (code, _) = error_code(res, StatusCode::NOT_FOUND).await;
        assert_eq!(code, "not_found", "{path}");
    }
    // the list itself still answers
    let res = app.get("/api/v1/contacts?q=budi", &account.token).await;
    assert_eq!(res.status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn a_gateway_token_that_cannot_be_a_header_is_422_not_502() {
    let app = spawn_app_configured(|_| {}).await;
    let account = app.register("token@b.co").await;
    // the fuzz's case: a token with non-ASCII letters reached the gateway mangled, and its
    // refusal came back as 502
    for token in ["t\u{f6}k\u{e9}n", "tok\u{a0}en", "\u{1f600}"] {
        let res = app
            .post(
                "/api/v1/sessions",
                &account.token,
                &json!({"name": "main", "gateway_token": token}),
            )
            .await;
        let (code, body) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(code, "validation_failed");
        assert_eq!(body["error"]["details"]["field"], "gateway_token", "{body}");
    }
    let res = app.get("/api/v1/sessions", &account.token).await;
    let list: serde_json::Value = res.json().await.expect("json");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
    app.stop().await;
}
