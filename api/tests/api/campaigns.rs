use std::collections::HashMap;
use std::time::Duration;

use crate::helpers::{error_code, phones, spawn_app};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The acceptance path: a 1,000-recipient campaign with per-recipient variables; every
/// recipient reaches `sent` exactly once with its own text; another tenant sees none of it.
#[tokio::test]
async fn a_thousand_recipients_each_get_their_own_text_once() {
    let app = spawn_app().await;
    let (account, session, template) = app
        .ready_tenant("marketer@b.co", "Hi {{ name }}, your code is {{ code }}")
        .await;
    let numbers = phones(1_000);
    let recipients: Vec<Value> = numbers
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"phone": format!("+{p}"), "vars": {"name": format!("Customer {i}"), "code": format!("C{i:04}")}}))
        .collect();
    let res = app
        .post(
            "/api/v1/campaigns",
            &account.token,
            &json!({"name": "November promo", "template_id": template, "session_id": session,
                    "recipients": recipients, "send_at": "now"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.expect("json");
    assert_eq!(created["status"], "running");
    assert_eq!(created["total_recipients"], 1000);
    assert_eq!(created["rejected"], json!([]));
    let id = created["id"].as_str().expect("id").to_string();

    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(60), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["counts"]["sent"], 1000, "{done}");
    assert_eq!(done["counts"]["queued"], 0);
    assert_eq!(done["counts"]["sending"], 0);
    assert_eq!(done["counts"]["failed"], 0);
    assert!(done["completed_at"].is_string());

    // the gateway saw each phone exactly once, with that recipient's own text
    let sent = app.sim_messages().await;
    assert_eq!(sent.len(), 1000);
    let by_phone: HashMap<&str, &str> = sent
        .iter()
        .map(|(p, t, _)| (p.as_str(), t.as_str()))
        .collect();
    assert_eq!(by_phone.len(), 1000, "no phone was sent twice");
    for (i, p) in numbers.iter().enumerate() {
        assert_eq!(
            by_phone.get(p.as_str()).copied(),
            Some(format!("Hi Customer {i}, your code is C{i:04}").as_str())
        );
    }
    assert_eq!(app.sim.stats().duplicate_ids, 0);

    // every recipient row says sent, with the message id the gateway got
    let ids: HashMap<&str, &str> = sent
        .iter()
        .map(|(p, _, id)| (p.as_str(), id.as_str()))
        .collect();
    let mut cursor: Option<String> = None;
    let mut seen = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/campaigns/{id}/recipients?limit=500&cursor={c}"),
            None => format!("/api/v1/campaigns/{id}/recipients?limit=500"),
        };
        let page: Value = app.get_json(&path, &account.token).await;
        for r in page["items"].as_array().expect("items") {
            assert_eq!(r["status"], "sent");
            assert_eq!(r["attempts"], 1);
            assert!(r["sent_at"].is_string());
            let phone = r["phone"].as_str().expect("phone");
            assert_eq!(r["message_id"].as_str(), ids.get(phone).copied());
            seen += 1;
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, 1000);

    // another tenant sees none of it
    let other = app.register("competitor@b.co").await;
    let res = app
        .get(&format!("/api/v1/campaigns/{id}"), &other.token)
        .await;
    assert_eq!(error_code(res, StatusCode::NOT_FOUND).await.0, "not_found");
    let res = app
        .get(&format!("/api/v1/campaigns/{id}/recipients"), &other.token)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .get(
            &format!("/api/v1/campaigns/{id}/recipients.csv"),
            &other.token,
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let list: Value = app.get_json("/api/v1/campaigns", &other.token).await;
    assert!(list["items"].as_array().expect("items").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn duplicates_are_dropped_invalid_phones_reported_and_forms_normalised() {
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("norm@b.co", "Hello {{ phone }}").await;
    let res = app
        .post(
            "/api/v1/campaigns",
            &account.token,
            &json!({"name": "forms", "template_id": template, "session_id": session,
                    "recipients": ["+62 812-3456-7890", "081234567890", "6281234567890",
                                   "0812 0000 1111", "12", "hello", {"nope": 1}]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.expect("json");
    assert_eq!(created["total_recipients"], 2);
    assert_eq!(created["rejected_count"], 3);
    let rejected: Vec<&str> = created["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| r["input"].as_str().expect("input"))
        .collect();
    assert_eq!(rejected, vec!["12", "hello", "{\"nope\":1}"]);
    let id = created["id"].as_str().expect("id");
    let done = app
        .wait_campaign(&account, id, Duration::from_secs(30), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["sent"], 2);
    let texts: Vec<String> = app
        .sim_messages()
        .await
        .into_iter()
        .map(|(_, t, _)| t)
        .collect();
    assert!(
        texts.contains(&"Hello 6281234567890".to_string()),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"Hello 6281200001111".to_string()),
        "{texts:?}"
    );

    // filters, CSV
    let page: Value = app
        .get_json(
            &format!("/api/v1/campaigns/{id}/recipients?status=sent&limit=1"),
            &account.token,
        )
        .await;
    assert_eq!(page["items"].as_array().expect("items").len(), 1);
    assert!(page["next_cursor"].is_string());
    let page: Value = app
        .get_json(
            &format!("/api/v1/campaigns/{id}/recipients?status=failed"),
            &account.token,
        )
        .await;
    assert!(page["items"].as_array().expect("items").is_empty());
    let res = app
        .get(
            &format!("/api/v1/campaigns/{id}/recipients?status=bogus"),
            &account.token,
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await.0,
        "invalid_query"
    );

    let res = app
        .get(
            &format!("/api/v1/campaigns/{id}/recipients.csv"),
            &account.token,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/csv"));
    let csv = res.text().await.expect("text");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "phone,status,message_id,error,attempts,queued_at,sent_at,delivered_at,read_at,failed_at"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[1].starts_with("6281200001111,sent,"));
    assert!(lines[2].starts_with("6281234567890,sent,"));

    let list: Value = app
        .get_json("/api/v1/campaigns?status=completed", &account.token)
        .await;
    assert_eq!(list["items"].as_array().expect("items").len(), 1);
    let list: Value = app
        .get_json("/api/v1/campaigns?status=running", &account.token)
        .await;
    assert!(list["items"].as_array().expect("items").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn bad_campaigns_get_clear_errors() {
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("errs@b.co", "Hi").await;
    let other = app.register("someone-else@b.co").await;
    let other_template = app.create_template(&other, "theirs").await;
    let base = json!({"name": "x", "template_id": template, "session_id": session, "recipients": ["6281234567890"]});
    let with = |key: &str, value: Value| {
        let mut b = base.clone();
        b[key] = value;
        b
    };
    let cases = [
        (with("template_id", json!("nope")), "template_id"),
        (with("template_id", json!(uuid_like())), "template_id"),
        (with("template_id", json!(other_template)), "template_id"),
        (with("session_id", json!(uuid_like())), "session_id"),
        (with("recipients", json!([])), "recipients"),
        (with("recipients", json!(["abc", "123"])), "recipients"),
        (with("name", json!("")), "name"),
        (with("recurrence", json!("0 9 * * MON")), "timezone"),
        (with("audience", json!({"tag": " "})), "audience.tag"),
        (with("audience", json!({"segment": "vip"})), "audience"),
        (
            with(
                "pacing",
                json!({"min_interval_ms": 5000, "max_interval_ms": 1000}),
            ),
            "pacing.min_interval_ms",
        ),
        (with("surprise", json!(true)), "surprise"),
    ];
    for (body, field) in cases {
        let res = app.post("/api/v1/campaigns", &account.token, &body).await;
        let (code, err) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(code, "validation_failed");
        assert_eq!(err["error"]["details"]["field"], field, "{body} → {err}");
    }
    // an inactive template cannot start a campaign
    let res = app
        .patch(
            &format!("/api/v1/templates/{template}"),
            &account.token,
            &json!({"status": "inactive"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.post("/api/v1/campaigns", &account.token, &base).await;
    let (_, err) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert!(err["error"]["message"]
        .as_str()
        .expect("message")
        .contains("inactive"));

    let res = app
        .post_raw("/api/v1/campaigns", &account.token, "{\"name\": \"x\",")
        .await;
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await.0,
        "invalid_json"
    );
    let res = app
        .get("/api/v1/campaigns/not-a-uuid", &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app.get("/api/v1/campaigns?limit=0", &account.token).await;
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await.0,
        "invalid_query"
    );
    let res = app
        .get("/api/v1/campaigns?cursor=garbage", &account.token)
        .await;
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await.0,
        "invalid_cursor"
    );
    // nothing was stored by any of these
    let list: Value = app.get_json("/api/v1/campaigns", &account.token).await;
    assert!(list["items"].as_array().expect("items").is_empty());
    app.stop().await;
}

#[tokio::test]
async fn more_than_a_million_recipients_is_413() {
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("huge@b.co", "Hi").await;
    let recipients = vec!["6281234567890"; 1_000_001];
    let res = app
        .post(
            "/api/v1/campaigns",
            &account.token,
            &json!({"name": "too big", "template_id": template, "session_id": session, "recipients": recipients}),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::PAYLOAD_TOO_LARGE).await.0,
        "payload_too_large"
    );
    app.stop().await;
}

fn uuid_like() -> String {
    "7f1d2c8e-0d36-4a8e-9a52-1b9f6a2f0c11".to_string()
}
