//! Opt-outs and the frequency cap over HTTP (docs/safe-sending.md): the settings, a person opting
//! a contact out and back in, the contacts filter, campaigns skipping opted-out and over-cap
//! recipients, and one tenant's opt-out never touching another's.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app, Account, TestApp};

async fn put(app: &TestApp, path: &str, account: &Account, body: &Value) -> reqwest::Response {
    app.client
        .put(app.url(path))
        .bearer_auth(&account.token)
        .json(body)
        .send()
        .await
        .expect("request sent")
}

/// The campaign's recipients by phone: `(status, error)`.
pub(crate) async fn recipients(
    app: &TestApp,
    account: &Account,
    id: &str,
) -> std::collections::HashMap<String, (String, Option<String>)> {
    let page: Value = app
        .get_json(
            &format!("/api/v1/campaigns/{id}/recipients?limit=500"),
            &account.token,
        )
        .await;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| {
            (
                r["phone"].as_str().unwrap_or_default().to_string(),
                (
                    r["status"].as_str().unwrap_or_default().to_string(),
                    r["error"].as_str().map(str::to_string),
                ),
            )
        })
        .collect()
}

pub(crate) async fn finished(app: &TestApp, account: &Account, id: &str) -> Value {
    app.wait_campaign(account, id, Duration::from_secs(30), |c| {
        c["status"] == "completed"
    })
    .await
}

#[tokio::test]
async fn keyword_settings_have_multilingual_defaults_and_are_validated() {
    let app = spawn_app().await;
    let account = app.register("keywords@b.co").await;
    let got = app
        .get_json("/api/v1/settings/opt-out", &account.token)
        .await;
    assert_eq!(
        got,
        json!({"stop_keywords": ["stop", "unsubscribe", "berhenti", "baja", "parar", "sair"],
               "start_keywords": ["start", "mulai"], "confirmation_text": null})
    );
    let res = put(
        &app,
        "/api/v1/settings/opt-out",
        &account,
        &json!({"stop_keywords": ["STOP", "Hentikan!"], "start_keywords": ["Mulai"],
                "confirmation_text": "Anda tidak akan menerima promo lagi."}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let got = app
        .get_json("/api/v1/settings/opt-out", &account.token)
        .await;
    assert_eq!(got["stop_keywords"], json!(["stop", "hentikan"]));
    assert_eq!(
        got["confirmation_text"],
        "Anda tidak akan menerima promo lagi."
    );
    // a word both stops and starts: refused, naming the field; nothing changed
    let res = put(
        &app,
        "/api/v1/settings/opt-out",
        &account,
        &json!({"stop_keywords": ["stop"], "start_keywords": ["Stop"]}),
    )
    .await;
    let (code, body) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(code, "validation_failed", "{body}");
    let res = put(
        &app,
        "/api/v1/settings/opt-out",
        &account,
        &json!({"stop_keywords": "stop"}),
    )
    .await;
    assert!(res.status().is_client_error());
    // another tenant still has the defaults
    let other = app.register("keywords-other@b.co").await;
    let theirs = app.get_json("/api/v1/settings/opt-out", &other.token).await;
    assert_eq!(theirs["start_keywords"], json!(["start", "mulai"]));
    // the frequency cap: none, set, refused when out of range, removed
    let path = "/api/v1/settings/sending";
    assert_eq!(
        app.get_json(path, &account.token).await,
        json!({"frequency_cap": null})
    );
    let cap = json!({"frequency_cap": {"messages": 2, "hours": 24}});
    assert_eq!(
        put(&app, path, &account, &cap).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.get_json(path, &account.token).await, cap);
    let bad = json!({"frequency_cap": {"messages": 0, "hours": 24}});
    error_code(
        put(&app, path, &account, &bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let none = json!({"frequency_cap": null});
    assert_eq!(
        put(&app, path, &account, &none).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.get_json(path, &account.token).await, none);
    app.stop().await;
}

#[tokio::test]
async fn a_manual_opt_out_makes_a_contact_skipped_by_campaigns_and_only_for_its_tenant() {
    let app = spawn_app().await;
    let (a, session_a, template_a) = app.ready_tenant("optout-a@b.co", "Halo").await;
    let (b, session_b, template_b) = app.ready_tenant("optout-b@b.co", "Hai").await;
    let (out, kept) = ("6281200000001", "6281200000002");
    // a phone that is no contact becomes one, opted out
    let res = app
        .post_empty(&format!("/api/v1/contacts/+{out}/opt-out"), &a.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let contact: Value = res.json().await.expect("json");
    assert_eq!(contact["opted_out"], true, "{contact}");
    assert_eq!(contact["opt_out_source"], "manual");
    assert!(contact["opted_out_at"].is_string());
    let listed = app
        .get_json("/api/v1/contacts?opted_out=true", &a.token)
        .await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed["items"][0]["phone"], out);
    let none = app
        .get_json("/api/v1/contacts?opted_out=true", &b.token)
        .await;
    assert_eq!(none["items"], json!([]), "tenant B sees no opt-out");
    let res = app.get("/api/v1/contacts?opted_out=maybe", &a.token).await;
    error_code(res, StatusCode::BAD_REQUEST).await;

    // A's campaign skips the phone; B's campaign to the same phone sends it
    let id_a = app
        .create_campaign(
            &a,
            &json!({"name": "promo", "template_id": template_a, "session_id": session_a,
                    "recipients": [out, kept]}),
        )
        .await;
    let id_b = app
        .create_campaign(
            &b,
            &json!({"name": "promo", "template_id": template_b, "session_id": session_b,
                    "recipients": [out]}),
        )
        .await;
    let done = finished(&app, &a, &id_a).await;
    assert_eq!(done["counts"]["skipped"], 1, "{done}");
    assert_eq!(done["counts"]["sent"], 1, "{done}");
    let r = recipients(&app, &a, &id_a).await;
    assert_eq!(
        r[out],
        ("skipped".to_string(), Some("opted_out".to_string()))
    );
    let done_b = finished(&app, &b, &id_b).await;
    assert_eq!(done_b["counts"]["sent"], 1, "{done_b}");
    let texts: Vec<(String, String)> = app
        .sim_messages()
        .await
        .into_iter()
        .map(|(p, t, _)| (p, t))
        .collect();
    assert!(
        !texts.contains(&(out.to_string(), "Halo".to_string())),
        "{texts:?}"
    );
    assert!(
        texts.contains(&(out.to_string(), "Hai".to_string())),
        "{texts:?}"
    );

    // opted back in, A's next campaign reaches it; a stranger cannot opt in (404)
    let res = app
        .post_empty(&format!("/api/v1/contacts/{out}/opt-in"), &a.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let contact: Value = res.json().await.expect("json");
    assert_eq!(contact["opted_out"], false);
    assert_eq!(contact["opt_out_source"], Value::Null);
    let res = app
        .post_empty("/api/v1/contacts/6281299999999/opt-in", &a.token)
        .await;
    error_code(res, StatusCode::NOT_FOUND).await;
    let again = app
        .create_campaign(
            &a,
            &json!({"name": "again", "template_id": template_a, "session_id": session_a,
                    "recipients": [out]}),
        )
        .await;
    let done = finished(&app, &a, &again).await;
    assert_eq!(done["counts"]["sent"], 1, "{done}");
    app.stop().await;
}

#[tokio::test]
async fn over_the_frequency_cap_a_campaign_recipient_is_skipped() {
    let app = spawn_app().await;
    let (a, session, template) = app.ready_tenant("capped@b.co", "Promo").await;
    let cap = json!({"frequency_cap": {"messages": 1, "hours": 24}});
    assert_eq!(
        put(&app, "/api/v1/settings/sending", &a, &cap)
            .await
            .status(),
        StatusCode::OK
    );
    let (p, q) = ("6281200000001", "6281200000002");
    let first = app
        .create_campaign(
            &a,
            &json!({"name": "one", "template_id": template, "session_id": session,
                    "recipients": [p]}),
        )
        .await;
    finished(&app, &a, &first).await;
    let second = app
        .create_campaign(
            &a,
            &json!({"name": "two", "template_id": template, "session_id": session,
                    "recipients": [p, q]}),
        )
        .await;
    let done = finished(&app, &a, &second).await;
    assert_eq!(done["counts"]["skipped"], 1, "{done}");
    let r = recipients(&app, &a, &second).await;
    assert_eq!(
        r[p],
        ("skipped".to_string(), Some("frequency_cap".to_string()))
    );
    assert_eq!(r[q].0, "sent");
    // a single send is not a campaign message: never capped
    let res = app
        .post(
            "/api/v1/messages",
            &a.token,
            &json!({"session_id": session, "to": p, "type": "text", "body": "your order"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    app.stop().await;
}

#[tokio::test]
async fn an_opted_out_column_in_an_import_opts_phones_out_and_back_in() {
    let app = spawn_app().await;
    let a = app.register("import-optout@b.co").await;
    let csv = "phone,name,opted_out\n6281200000001,Sari,yes\n6281200000002,Budi,\n6281200000003,Ani,maybe\n";
    let res = crate::contacts_import::import(&app, &a.token, csv.to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let report: Value = res.json().await.expect("json");
    assert_eq!(report["imported"], 2, "{report}");
    assert_eq!(report["rejected"][0]["row"], 4, "{report}");
    app.wait_projected("contacts").await;
    let listed = app
        .get_json("/api/v1/contacts?opted_out=true", &a.token)
        .await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(listed["items"][0]["phone"], "6281200000001");
    assert_eq!(listed["items"][0]["opt_out_source"], "import");
    let csv = "phone,opted_out\n6281200000001,false\n";
    let res = crate::contacts_import::import(&app, &a.token, csv.to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    app.wait_projected("contacts").await;
    let listed = app
        .get_json("/api/v1/contacts?opted_out=true", &a.token)
        .await;
    assert_eq!(listed["items"], json!([]), "{listed}");
    app.stop().await;
}
