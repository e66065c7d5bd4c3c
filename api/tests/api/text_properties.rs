//! Arbitrary Unicode through every text field a tenant writes over HTTP (NUL, other controls,
//! RTL marks, emoji, combining marks, strings around the limits): the answer is a 2xx or a 4xx
//! with the envelope, never a 5xx; a NUL is always `invalid_text` (422 in a body, 400 in a query); what is accepted reads
//! back as answered right after, and every read model keeps up.
//!
//! Cases are drawn from proptest strategies but run against one real Herald (shrinking would
//! re-run whole HTTP exchanges), so a failure prints the input instead.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

/// Text worth throwing at a field.
fn text() -> impl Strategy<Value = String> {
    let tricky = prop_oneof![
        Just('\0'),
        Just('\u{1}'),
        Just('\u{1b}'),
        Just('\t'),
        Just('\n'),
        Just('\u{7f}'),
        Just('\u{200f}'),
        Just('\u{202e}'),
        Just('\u{0301}'),
        Just('\u{feff}'),
        Just('\u{fffd}'),
        Just('😀'),
        Just('👩'),
        Just('\u{200d}'),
        Just(' '),
        Just('a'),
        Just('{'),
        Just('}'),
        Just('%'),
    ];
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(tricky, 0..48).prop_map(|c| c.into_iter().collect()),
        // around the limits: 200 (contact names), 256 (names), 1,000 (field values), 4,096 (bodies)
        (
            prop_oneof![
                195usize..205,
                250usize..262,
                995usize..1005,
                4090usize..4100
            ],
            any::<char>()
        )
            .prop_map(|(n, c)| std::iter::repeat_n(c, n).collect()),
    ]
}

/// Asserts a 2xx, or a 4xx with the envelope (and `invalid_text` when `sent` holds a NUL);
/// the answer's JSON when accepted.
async fn accepted(res: reqwest::Response, what: &str, sent: &str) -> Option<Value> {
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    assert!(
        status.is_success() || status.is_client_error(),
        "{what} with {sent:?} answered {status}: {body}"
    );
    if sent.contains('\0') {
        // in a body a field is invalid (422); in the query string the request is malformed (400)
        let expected = if what.contains("?q=") {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        assert_eq!(status, expected, "{what} {sent:?}: {body}");
        assert_eq!(
            body["error"]["code"], "invalid_text",
            "{what} {sent:?}: {body}"
        );
    }
    if status.is_success() {
        return Some(body);
    }
    assert!(
        body["error"]["code"].is_string() && body["error"]["message"].is_string(),
        "{what} with {sent:?}: {status} without the envelope: {body}"
    );
    None
}

async fn expect_same(app: &TestApp, token: &str, path: &str, key: &str, answered: &Value) {
    let res = app.get(path, token).await;
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    let read: Value = res.json().await.expect("json");
    assert_eq!(&read[key], answered, "{path} right after the write: {read}");
}

#[tokio::test]
async fn arbitrary_text_in_every_field_is_a_2xx_or_a_4xx_and_reads_back() {
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("props@e.co", "Hi {{ name }}").await;
    let token = account.token.as_str();
    let mut runner = TestRunner::new(Config::with_cases(24));
    let strategy = text();
    for case in 0..24u32 {
        let s = strategy.new_tree(&mut runner).expect("a value").current();

        // account name (registration)
        let res = app
            .post_public(
                "/api/v1/auth/register",
                &json!({"email": format!("p{case}@e.co"), "password": "correct horse battery", "name": s}),
            )
            .await;
        if let Some(reg) = accepted(res, "register name", &s).await {
            let me = app
                .get_json("/api/v1/me", reg["access_token"].as_str().expect("token"))
                .await;
            assert_eq!(me["user"]["name"], reg["user"]["name"], "{me}");
        }

        // contact name, tags and fields
        let phone = format!("62812{:08}", 30_000_000 + case);
        let body = json!({"phone": phone, "name": s, "tags": [s], "fields": {"note": s}});
        let res = app.post("/api/v1/contacts", token, &body).await;
        if let Some(contact) = accepted(res, "contact", &s).await {
            for key in ["name", "tags", "fields"] {
                expect_same(
                    &app,
                    token,
                    &format!("/api/v1/contacts/{phone}"),
                    key,
                    &contact[key],
                )
                .await;
            }
        }
        let res = app
            .post(
                "/api/v1/contacts",
                token,
                &json!({"phone": phone, "fields": {s.clone(): "v"}}),
            )
            .await;
        accepted(res, "contact field key", &s).await;

        // template name, body and caption
        let res = app
            .post(
                "/api/v1/templates",
                token,
                &json!({"name": s, "type": "text", "body": s}),
            )
            .await;
        if let Some(t) = accepted(res, "template", &s).await {
            let path = format!("/api/v1/templates/{}", t["id"].as_str().expect("id"));
            expect_same(&app, token, &path, "name", &t["name"]).await;
            expect_same(&app, token, &path, "body", &t["body"]).await;
        }
        let res = app
            .patch(
                &format!("/api/v1/templates/{template}"),
                token,
                &json!({"caption": s}),
            )
            .await;
        accepted(res, "template caption", &s).await;

        // campaign name and a recipient's vars
        let body = json!({"name": s, "template_id": template, "session_id": session,
                          "recipients": [{"phone": phone, "vars": {"name": s, s.clone(): s}}]});
        let res = app.post("/api/v1/campaigns", token, &body).await;
        if let Some(c) = accepted(res, "campaign", &s).await {
            let path = format!("/api/v1/campaigns/{}", c["id"].as_str().expect("id"));
            expect_same(&app, token, &path, "name", &c["name"]).await;
        }

        // API-key name
        let res = app
            .post("/api/v1/api-keys", token, &json!({"name": s}))
            .await;
        if let Some(k) = accepted(res, "api key", &s).await {
            let keys = app.get_json("/api/v1/api-keys", token).await;
            let listed = keys
                .as_array()
                .or_else(|| keys["items"].as_array())
                .expect("a list of keys")
                .iter()
                .find(|key| key["id"] == k["id"])
                .cloned()
                .unwrap_or_else(|| panic!("key {} not listed: {keys}", k["id"]));
            assert_eq!(listed["name"], k["name"]);
        }

        // session name
        let res = app
            .patch(
                &format!("/api/v1/sessions/{session}"),
                token,
                &json!({"name": s}),
            )
            .await;
        if let Some(v) = accepted(res, "session name", &s).await {
            expect_same(
                &app,
                token,
                &format!("/api/v1/sessions/{session}"),
                "name",
                &v["name"],
            )
            .await;
        }

        // and as a query parameter
        let res = app
            .client
            .get(app.url("/api/v1/contacts"))
            .query(&[("q", s.as_str())])
            .bearer_auth(token)
            .send()
            .await
            .expect("sent");
        accepted(res, "contacts ?q=", &s).await;
    }
    // nothing any of it wrote stalled a projector
    for projector in ["contacts", "templates", "campaign_progress", "sessions"] {
        app.wait_projected(projector).await;
    }
    app.stop().await;
}
