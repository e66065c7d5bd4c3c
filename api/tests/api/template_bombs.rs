//! Template bombs through the API: refused with 422 naming what is not allowed, failing only the
//! recipient they would harm, and never slowing another tenant (decision 0039).

use std::time::{Duration, Instant};

use crate::helpers::{error_code, spawn_app};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The reported attack and its relatives, each with a word its refusal must contain.
const BOMBS: &[(&str, &str)] = &[
    (
        r#"{% set a = "x" * 100000000 %}{% set a = a ~ a %}{% set a = a ~ a %}{{ a }}"#,
        "`{% set %}`",
    ),
    (r#"{{ ("x" * 100000000) ~ ("x" * 100000000) }}"#, "operator"),
    ("{{ name | indent(100000000) }}", "filter `indent`"),
    ("{{ name | center(100000000) }}", "filter `center`"),
    (
        r#"{{ name | replace("", "xxxxxxxxxx") | replace("", "xxxxxxxxxx") }}"#,
        "filter `replace`",
    ),
    (
        r#"{{ name | join("xxxxxxxxxx") | join("xxxxxxxxxx") }}"#,
        "`join`",
    ),
    ("{{ items | batch(100000000) }}", "filter `batch`"),
    (
        "{% for i in range(100000000) %}{% for j in range(100000000) %}x{% endfor %}{% endfor %}",
        "calling a function",
    ),
];

#[tokio::test]
async fn template_bombs_are_refused_with_what_is_not_allowed() {
    let app = spawn_app().await;
    let account = app.register("bomber@b.co").await;
    for (body, naming) in BOMBS {
        let started = Instant::now();
        let res = app
            .post(
                "/api/v1/templates",
                &account.token,
                &json!({"name": "bomb", "type": "text", "body": body}),
            )
            .await;
        let (code, err) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(code, "validation_failed", "{body}");
        assert_eq!(err["error"]["details"]["field"], "body", "{body} → {err}");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(naming) && message.contains("line 1, column"),
            "{body} → {message}"
        );
        assert!(started.elapsed() < Duration::from_secs(2), "{body}");
    }
    // An update is checked like a creation.
    let id = app.create_template(&account, "Hi {{ name }}").await;
    let res = app
        .patch(
            &format!("/api/v1/templates/{id}"),
            &account.token,
            &json!({"body": BOMBS[0].0}),
        )
        .await;
    let (_, err) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(err["error"]["details"]["field"], "body", "{err}");
    let kept: Value = app
        .get_json(&format!("/api/v1/templates/{id}"), &account.token)
        .await;
    assert_eq!(kept["body"], "Hi {{ name }}");
    assert_eq!(kept["variables"], json!(["name"]));
    app.stop().await;
}

/// While one tenant posts bombs as fast as it can, another tenant's template list and create
/// answer within a second each (the report measured 5 to 18 s).
#[tokio::test]
async fn a_tenant_posting_bombs_does_not_slow_another() {
    let app = spawn_app().await;
    let bomber = app.register("bombs@b.co").await;
    let victim = app.register("victim@b.co").await;
    for i in 0..20 {
        app.create_template(&victim, &format!("Hello {{{{ name }}}} number {i}"))
            .await;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut attackers = Vec::new();
    for _ in 0..4 {
        let (client, url, token, stop) = (
            reqwest::Client::new(),
            app.url("/api/v1/templates"),
            bomber.token.clone(),
            stop.clone(),
        );
        attackers.push(tokio::spawn(async move {
            let mut sent = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (body, _) in BOMBS {
                    let res = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"name": "bomb", "type": "text", "body": body}))
                        .send()
                        .await;
                    assert!(res.is_ok_and(|r| r.status() == StatusCode::UNPROCESSABLE_ENTITY));
                    sent += 1;
                }
            }
            sent
        }));
    }
    let mut slowest = Duration::ZERO;
    for i in 0..15 {
        let started = Instant::now();
        let list: Value = app
            .get_json("/api/v1/templates?limit=100", &victim.token)
            .await;
        assert_eq!(list["items"].as_array().map(Vec::len), Some(20 + i));
        app.create_template(&victim, &format!("Again {{{{ name }}}} {i}"))
            .await;
        slowest = slowest.max(started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut bombs = 0;
    for attacker in attackers {
        bombs += attacker.await.expect("attacker");
    }
    assert!(bombs > 50, "the attack ran ({bombs} bombs)");
    assert!(
        slowest < Duration::from_secs(1),
        "list + create took {slowest:?}"
    );
    app.stop().await;
}

/// A recipient the template cannot be rendered for (its variables are over the cap) fails with
/// the reason; the campaign's other recipients are sent.
#[tokio::test]
async fn a_recipient_that_cannot_be_rendered_fails_alone() {
    let app = spawn_app().await;
    let (account, session, template) = app.ready_tenant("render@b.co", "Hi {{ name }}").await;
    let huge = "x".repeat(70 * 1024);
    let id = app
        .create_campaign(
            &account,
            &json!({"name": "caps", "template_id": template, "session_id": session,
                "recipients": [{"phone": "6281200000001", "vars": {"name": "Sari"}},
                               {"phone": "6281200000002", "vars": {"name": "Budi", "note": huge}}]}),
        )
        .await;
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(20), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["sent"], 1, "{done}");
    assert_eq!(done["counts"]["failed"], 1, "{done}");
    let page: Value = app
        .get_json(
            &format!("/api/v1/campaigns/{id}/recipients?status=failed"),
            &account.token,
        )
        .await;
    let failed = &page["items"][0];
    assert_eq!(failed["phone"], "6281200000002", "{page}");
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("larger than 64 KB")),
        "{page}"
    );
    let sent = app.sim_messages().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, "Hi Sari");
    app.stop().await;
}
