//! Issue 16's story: a recipient who answers "STOP" while a paced campaign runs gets nothing more
//! from any campaign of that tenant, at once, while another tenant's campaign still reaches the
//! phone; "start" lets them back in. The answers arrive as WuzAPI `Message` webhooks.

use std::time::Duration;

use herald_gateway::webhook::Encoding;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{phones, spawn_app, Account, TestApp};
use crate::opt_outs::{finished, recipients};
use crate::webhooks::{eventually, hmac_key, inbox_rows, post_event, samples};

/// An incoming text from `phone`, as WuzAPI posts it.
fn text_from(phone: &str, id: &str, text: &str) -> Value {
    let mut event = samples()["message_received_incoming"].clone();
    event["event"]["Info"]["ID"] = json!(id);
    event["event"]["Info"]["Chat"] = json!(format!("{phone}@s.whatsapp.net"));
    event["event"]["Info"]["Sender"] = json!(format!("{phone}:3@s.whatsapp.net"));
    event["event"]["Message"] = json!({"conversation": text});
    event
}

async fn processed(app: &TestApp) {
    let done = eventually(Duration::from_secs(15), || async {
        inbox_rows(app).await.iter().all(|r| r.processed)
    })
    .await;
    assert!(done, "{:?}", inbox_rows(app).await);
}

async fn contact(app: &TestApp, account: &Account, phone: &str) -> Value {
    app.get_json(&format!("/api/v1/contacts/{phone}"), &account.token)
        .await
}

fn sent_to(messages: &[(String, String, String)], phone: &str, text: &str) -> usize {
    messages
        .iter()
        .filter(|(p, t, _)| p == phone && t == text)
        .count()
}

#[tokio::test]
async fn stop_during_a_paced_run_stops_every_campaign_of_the_tenant_until_start() {
    let app = spawn_app().await;
    let a = app.register("stop-a@b.co").await;
    let session = app.link_session_paced(&a, "stop-a-token", 1500, 1800).await;
    let key = hmac_key(&app, &session).await;
    let template = app.create_template(&a, "Promo").await;
    let (b, session_b, template_b) = app.ready_tenant("stop-b@b.co", "Other shop").await;
    let all = phones(3);
    let id = app
        .create_campaign(
            &a,
            &json!({"name": "paced", "template_id": template, "session_id": session,
                    "recipients": all}),
        )
        .await;
    // the first send goes out; one of the others answers STOP before its turn
    let first = eventually(Duration::from_secs(20), || async {
        !app.sim_messages().await.is_empty()
    })
    .await;
    assert!(first);
    let sent = app.sim_messages().await;
    let target = all
        .iter()
        .find(|p| sent_to(&sent, p, "Promo") == 0)
        .expect("an unsent recipient")
        .clone();
    let res = post_event(
        &app,
        &session,
        &key,
        &text_from(&target, "STOP1", "Stop!"),
        Encoding::Json,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    processed(&app).await;
    let c = contact(&app, &a, &target).await;
    assert_eq!(c["opted_out"], true, "{c}");
    assert_eq!(c["opt_out_source"], "keyword");

    let done = finished(&app, &a, &id).await;
    assert_eq!(done["counts"]["sent"], 2, "{done}");
    assert_eq!(done["counts"]["skipped"], 1, "{done}");
    let r = recipients(&app, &a, &id).await;
    assert_eq!(
        r[&target],
        ("skipped".to_string(), Some("opted_out".to_string()))
    );
    assert_eq!(sent_to(&app.sim_messages().await, &target, "Promo"), 0);

    // another campaign of the tenant skips them; another tenant's reaches them
    let next = app
        .create_campaign(
            &a,
            &json!({"name": "next", "template_id": template, "session_id": session,
                    "recipients": [target]}),
        )
        .await;
    let done = finished(&app, &a, &next).await;
    assert_eq!(done["counts"]["skipped"], 1, "{done}");
    let theirs = app
        .create_campaign(
            &b,
            &json!({"name": "theirs", "template_id": template_b, "session_id": session_b,
                    "recipients": [target]}),
        )
        .await;
    let done = finished(&app, &b, &theirs).await;
    assert_eq!(done["counts"]["sent"], 1, "{done}");
    assert_eq!(sent_to(&app.sim_messages().await, &target, "Other shop"), 1);
    // tenant B never saw tenant A's opt-out
    let theirs_contact = app
        .get(&format!("/api/v1/contacts/{target}"), &b.token)
        .await;
    assert_eq!(theirs_contact.status(), StatusCode::NOT_FOUND);

    // "start" lets them back in
    let res = post_event(
        &app,
        &session,
        &key,
        &text_from(&target, "START1", "start"),
        Encoding::Json,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    processed(&app).await;
    let back = eventually(Duration::from_secs(10), || async {
        contact(&app, &a, &target).await["opted_out"] == false
    })
    .await;
    assert!(back);
    let again = app
        .create_campaign(
            &a,
            &json!({"name": "again", "template_id": template, "session_id": session,
                    "recipients": [target]}),
        )
        .await;
    let done = finished(&app, &a, &again).await;
    assert_eq!(done["counts"]["sent"], 1, "{done}");
    assert_eq!(sent_to(&app.sim_messages().await, &target, "Promo"), 1);
    app.stop().await;
}
