//! Audiences: a campaign's `audience: {"tag"}` goes to exactly the tenant's contacts with that tag
//! (lid-only contacts left out), with their names and fields in the text, unioned with explicit
//! recipients whose `vars` win; resolved when the campaign starts.

use std::collections::HashMap;
use std::time::Duration;

use crate::helpers::{error_code, spawn_app, Account, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn contact(app: &TestApp, account: &Account, body: Value) {
    let res = app.post("/api/v1/contacts", &account.token, &body).await;
    assert!(res.status().is_success(), "{}", res.status());
}

async fn messages_to(app: &TestApp, phones: &[&str]) -> HashMap<String, String> {
    app.sim_messages()
        .await
        .into_iter()
        .filter(|(p, _, _)| phones.contains(&p.as_str()))
        .map(|(p, t, _)| (p, t))
        .collect()
}

#[tokio::test]
async fn a_tagged_audience_gets_exactly_the_tagged_contacts_with_their_names() {
    let app = spawn_app().await;
    let (a, session, template) = app
        .ready_tenant("aud@c.co", "Hi {{ name }} from {{ city }}")
        .await;
    contact(&app, &a, json!({"phone": "6281100000001", "name": "Sari", "tags": ["vip"], "fields": {"city": "Bandung"}})).await;
    contact(&app, &a, json!({"phone": "6281100000002", "name": "Budi", "tags": ["VIP", "lead"], "fields": {"city": "Depok"}})).await;
    contact(&app, &a, json!({"phone": "6281100000003", "name": "Rina", "tags": ["vip"], "fields": {"city": "Solo"}})).await;
    contact(&app, &a, json!({"phone": "6281100000004", "name": "Not Vip", "tags": ["lead"], "fields": {"city": "X"}})).await;
    // a lid-only contact tagged vip: synced from the phone, cannot be sent to
    let res = app
        .client
        .put(format!(
            "{}/sim/users/token-aud@c.co/contacts",
            app.sim.base_url()
        ))
        .json(&json!({"120363025246125888@lid": {"PushName": "Anon"}}))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .post(
            "/api/v1/contacts/sync",
            &a.token,
            &json!({"session_id": session}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .patch(
            "/api/v1/contacts/120363025246125888@lid",
            &a.token,
            &json!({"tags": ["vip"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // another tenant's vip contacts never join A's audience
    let b = app.register("other@c.co").await;
    contact(
        &app,
        &b,
        json!({"phone": "6281100000009", "name": "Theirs", "tags": ["vip"]}),
    )
    .await;

    let res = app
        .post(
            "/api/v1/campaigns",
            &a.token,
            &json!({"name": "VIP promo", "template_id": template, "session_id": session,
                    "audience": {"tag": "vip"},
                    "recipients": [
                        {"phone": "0811-0000-0003", "vars": {"name": "Ibu Rina"}},
                        {"phone": "6281100000005", "vars": {"name": "Walk-in", "city": "Medan"}}
                    ],
                    "send_at": "now"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.expect("json");
    assert_eq!(created["total_recipients"], 4, "{created}");
    assert_eq!(created["audience"]["tag"], "vip");
    assert_eq!(created["audience"]["resolved"], true);
    assert_eq!(created["audience"]["contacts"], 3);
    assert_eq!(created["audience"]["without_phone"], 1);
    let id = created["id"].as_str().expect("id").to_string();
    let done = app
        .wait_campaign(&a, &id, Duration::from_secs(30), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["sent"], 4, "{done}");

    let all = [
        "6281100000001",
        "6281100000002",
        "6281100000003",
        "6281100000004",
        "6281100000005",
        "6281100000009",
    ];
    let sent = messages_to(&app, &all).await;
    let expected: HashMap<String, String> = [
        ("6281100000001", "Hi Sari from Bandung"),
        ("6281100000002", "Hi Budi from Depok"),
        // the recipient's own vars win over the contact's name; the contact's city stays
        ("6281100000003", "Hi Ibu Rina from Solo"),
        ("6281100000005", "Hi Walk-in from Medan"),
    ]
    .into_iter()
    .map(|(p, t)| (p.to_string(), t.to_string()))
    .collect();
    assert_eq!(sent, expected);
    assert_eq!(app.sim.stats().duplicate_ids, 0);

    // an audience nobody has, and no recipient: 422 naming audience, nothing created
    let (_, body) = error_code(
        app.post(
            "/api/v1/campaigns",
            &a.token,
            &json!({"name": "Nobody", "template_id": template, "session_id": session,
                    "audience": {"tag": "ghosts"}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "audience");
    for bad in [json!({"tag": ""}), json!({"segment": "vip"}), json!("vip")] {
        let res = app
            .post(
                "/api/v1/campaigns",
                &a.token,
                &json!({"name": "Bad", "template_id": template, "session_id": session,
                        "audience": bad}),
            )
            .await;
        let (code, body) = error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(code, "validation_failed");
        assert!(
            body["error"]["details"]["field"]
                .as_str()
                .unwrap_or_default()
                .starts_with("audience"),
            "{body}"
        );
    }
    // tenant B's vip audience is B's contact only
    let b_session = app.link_session(&b, "token-b").await;
    let b_template = app.create_template(&b, "Hello {{ name }}").await;
    let res = app
        .post(
            "/api/v1/campaigns",
            &b.token,
            &json!({"name": "B vip", "template_id": b_template, "session_id": b_session,
                    "audience": {"tag": "vip"}}),
        )
        .await;
    let created: Value = res.json().await.expect("json");
    assert_eq!(created["total_recipients"], 1, "{created}");
    app.stop().await;
}

#[tokio::test]
async fn a_scheduled_campaign_resolves_its_audience_when_it_starts() {
    let app = spawn_app().await;
    let (a, session, template) = app.ready_tenant("later@c.co", "Hello {{ name }}").await;
    contact(
        &app,
        &a,
        json!({"phone": "6281200000001", "name": "Early", "tags": ["later"]}),
    )
    .await;
    let due = (chrono::Utc::now() + chrono::Duration::seconds(3))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let res = app
        .post(
            "/api/v1/campaigns",
            &a.token,
            &json!({"name": "Later", "template_id": template, "session_id": session,
                    "audience": {"tag": "later"}, "send_at": due}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.expect("json");
    assert_eq!(created["status"], "scheduled");
    assert_eq!(created["audience"]["resolved"], false);
    let id = created["id"].as_str().expect("id").to_string();
    // tagged after creation, before the start: included
    contact(
        &app,
        &a,
        json!({"phone": "6281200000002", "name": "Late", "tags": ["later"]}),
    )
    .await;

    // and a scheduled audience that is empty at start completes with nobody
    let res = app
        .post(
            "/api/v1/campaigns",
            &a.token,
            &json!({"name": "Empty", "template_id": template, "session_id": session,
                    "audience": {"tag": "nobody-yet"}, "send_at": due}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let empty: Value = res.json().await.expect("json");
    let empty_id = empty["id"].as_str().expect("id").to_string();

    let done = app
        .wait_campaign(&a, &id, Duration::from_secs(30), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["total_recipients"], 2, "{done}");
    assert_eq!(done["counts"]["sent"], 2, "{done}");
    let sent = messages_to(&app, &["6281200000001", "6281200000002"]).await;
    assert_eq!(
        sent.get("6281200000001").map(String::as_str),
        Some("Hello Early")
    );
    assert_eq!(
        sent.get("6281200000002").map(String::as_str),
        Some("Hello Late")
    );

    let empty_done = app
        .wait_campaign(&a, &empty_id, Duration::from_secs(30), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(empty_done["status"], "completed", "{empty_done}");
    assert_eq!(empty_done["total_recipients"], 0);
    // another tenant sees neither
    let b = app.register("b@c.co").await;
    let res = app.get(&format!("/api/v1/campaigns/{id}"), &b.token).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn each_occurrence_of_a_recurring_campaign_resolves_the_audience_again() {
    let app = spawn_app().await;
    let (a, session, template) = app.ready_tenant("weekly@c.co", "Weekly {{ name }}").await;
    let res = app
        .post(
            "/api/v1/campaigns",
            &a.token,
            &json!({"name": "Weekly", "template_id": template, "session_id": session,
                    "audience": {"tag": "weekly"}, "recurrence": "0 9 * * MON",
                    "timezone": "Asia/Jakarta"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let parent: Value = res.json().await.expect("json");
    assert_eq!(parent["audience"]["resolved"], false);
    let parent_id = parent["id"].as_str().expect("id").to_string();
    let make_due = || async {
        sqlx::query(
            "UPDATE recurring_campaigns SET next_at = now() - interval '1 second'
              WHERE campaign_id = $1::uuid",
        )
        .bind(&parent_id)
        .execute(&app.pool)
        .await
        .expect("update");
    };
    let occurrences = || async {
        app.get_json(
            &format!("/api/v1/campaigns/{parent_id}/occurrences"),
            &a.token,
        )
        .await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let wait_occurrences = |n: usize| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let items = occurrences().await;
            if items.len() >= n || tokio::time::Instant::now() > deadline {
                return items;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };

    // nobody has the tag yet: the occurrence fails, saying why
    make_due().await;
    let first = wait_occurrences(1).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["status"], "failed");
    assert!(
        first[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("weekly"),
        "{first:?}"
    );

    // tagged since: the next occurrence sends to them
    contact(
        &app,
        &a,
        json!({"phone": "6281300000001", "name": "Dewi", "tags": ["weekly"]}),
    )
    .await;
    contact(
        &app,
        &a,
        json!({"phone": "6281300000002", "name": "Eko", "tags": ["weekly"]}),
    )
    .await;
    make_due().await;
    let second = wait_occurrences(2).await;
    let fired = second
        .iter()
        .find(|o| o["status"] == "fired")
        .unwrap_or_else(|| panic!("no fired occurrence in {second:?}"));
    let run = fired["run_id"].as_str().expect("run id").to_string();
    // the occurrence row is written with the run; the campaigns read model follows shortly
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app
        .get(&format!("/api/v1/campaigns/{run}"), &a.token)
        .await
        .status()
        != StatusCode::OK
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = app
        .wait_campaign(&a, &run, Duration::from_secs(30), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["total_recipients"], 2, "{done}");
    let sent = messages_to(&app, &["6281300000001", "6281300000002"]).await;
    assert_eq!(
        sent.get("6281300000001").map(String::as_str),
        Some("Weekly Dewi")
    );
    assert_eq!(
        sent.get("6281300000002").map(String::as_str),
        Some("Weekly Eko")
    );
    app.stop().await;
}
