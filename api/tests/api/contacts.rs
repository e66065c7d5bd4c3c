//! Contacts over HTTP: upsert, patch, delete, list filters and pages, sync through the simulator,
//! and tenant isolation on every route.

use crate::helpers::{error_code, spawn_app, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn upsert(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    let res = app.post("/api/v1/contacts", token, &body).await;
    let status = res.status();
    (status, res.json().await.expect("json"))
}

fn phones_of(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| {
            c["phone"]
                .as_str()
                .or(c["lid"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn upsert_patch_get_and_delete_a_contact_by_any_phone_form() {
    let app = spawn_app().await;
    let a = app.register("owner@c.co").await;

    let (status, created) = upsert(
        &app,
        &a.token,
        json!({"phone": "0812-3456-7890", "name": " Sari ", "tags": ["VIP", "lead"], "fields": {"city": "Bandung"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["phone"], "6281234567890");
    assert_eq!(created["name"], "Sari");
    assert_eq!(created["tags"], json!(["lead", "vip"]));
    assert_eq!(created["fields"], json!({"city": "Bandung"}));
    assert_eq!(created["favorite"], false);
    assert_eq!(created["source"], "api");

    // the same phone in another form updates it: 200, fields merge, tags replace
    let (status, updated) = upsert(
        &app,
        &a.token,
        json!({"phone": "+62 812 3456 7890", "tags": ["vip"], "fields": {"tier": "gold"}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "Sari");
    assert_eq!(updated["tags"], json!(["vip"]));
    assert_eq!(
        updated["fields"],
        json!({"city": "Bandung", "tier": "gold"})
    );

    let res = app
        .patch(
            "/api/v1/contacts/%2B62%20812-3456-7890",
            &a.token,
            &json!({"name": "Sari Rahma", "favorite": true, "tags": ["vip", "b2b"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let patched: Value = res.json().await.expect("json");
    assert_eq!(patched["name"], "Sari Rahma");
    assert_eq!(patched["favorite"], true);
    assert_eq!(patched["tags"], json!(["b2b", "vip"]));

    let got = app
        .get_json("/api/v1/contacts/081234567890", &a.token)
        .await;
    assert_eq!(got["name"], "Sari Rahma");

    // null clears the name
    let res = app
        .patch(
            "/api/v1/contacts/6281234567890",
            &a.token,
            &json!({"name": null}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let cleared: Value = res.json().await.expect("json");
    assert_eq!(cleared["name"], Value::Null);

    // bad input is a 4xx naming the field
    let (code, body) = error_code(
        app.post(
            "/api/v1/contacts",
            &a.token,
            &json!({"phone": "not a phone"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(code, "validation_failed");
    assert_eq!(body["error"]["details"]["field"], "phone");
    let (_, body) = error_code(
        app.post(
            "/api/v1/contacts",
            &a.token,
            &json!({"phone": "6281234567890", "fields": {"First Name": "x"}}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "fields.First Name");
    let (_, body) = error_code(
        app.post(
            "/api/v1/contacts",
            &a.token,
            &json!({"phone": "6281234567890", "colour": "red"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "colour");
    let (_, body) = error_code(
        app.patch(
            "/api/v1/contacts/6281234567890",
            &a.token,
            &json!({"tags": [""]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "tags");
    error_code(
        app.get("/api/v1/contacts/gibberish", &a.token).await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let res = app.delete("/api/v1/contacts/081234567890", &a.token).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    error_code(
        app.get("/api/v1/contacts/6281234567890", &a.token).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    error_code(
        app.delete("/api/v1/contacts/6281234567890", &a.token).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // posting it again creates it afresh
    let (status, again) = upsert(&app, &a.token, json!({"phone": "6281234567890"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(again["tags"], json!([]));
    assert_eq!(again["name"], Value::Null);
    app.stop().await;
}

#[tokio::test]
async fn lists_pin_favourites_order_by_name_filter_and_page() {
    let app = spawn_app().await;
    let a = app.register("lister@c.co").await;
    let people = [
        ("6281100000001", Some("zed"), vec!["vip"]),
        ("6281100000002", Some("Ana"), vec![]),
        ("6281100000003", None, vec!["vip"]),
        ("6281100000004", Some("bob"), vec!["vip", "lead"]),
        ("6281100000005", Some("Carla"), vec![]),
        ("6281100000006", None, vec![]),
    ];
    for (phone, name, tags) in &people {
        let (status, _) = upsert(
            &app,
            &a.token,
            json!({"phone": phone, "name": name, "tags": tags}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let res = app
        .patch(
            "/api/v1/contacts/6281100000001",
            &a.token,
            &json!({"favorite": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // favourites first, then named by name (any case), then unnamed by phone
    let all = app.get_json("/api/v1/contacts", &a.token).await;
    assert_eq!(
        phones_of(&all),
        vec![
            "6281100000001",
            "6281100000002",
            "6281100000004",
            "6281100000005",
            "6281100000003",
            "6281100000006"
        ]
    );
    assert_eq!(all["next_cursor"], Value::Null);

    // keyset pages of 2 walk the same order, each contact once
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/contacts?limit=2&cursor={c}"),
            None => "/api/v1/contacts?limit=2".to_string(),
        };
        let page = app.get_json(&path, &a.token).await;
        walked.extend(phones_of(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(walked, phones_of(&all));

    let vip = app.get_json("/api/v1/contacts?tag=VIP", &a.token).await;
    assert_eq!(
        phones_of(&vip),
        vec!["6281100000001", "6281100000004", "6281100000003"]
    );
    let q = app.get_json("/api/v1/contacts?q=AR", &a.token).await;
    assert_eq!(phones_of(&q), vec!["6281100000005"]);
    let by_phone = app
        .get_json("/api/v1/contacts?q=%2B628110000000", &a.token)
        .await;
    assert_eq!(phones_of(&by_phone).len(), 6);
    let fav = app
        .get_json("/api/v1/contacts?favorite=true", &a.token)
        .await;
    assert_eq!(phones_of(&fav), vec!["6281100000001"]);
    let not_fav = app
        .get_json("/api/v1/contacts?favorite=false&tag=vip", &a.token)
        .await;
    assert_eq!(phones_of(&not_fav), vec!["6281100000004", "6281100000003"]);

    for bad in [
        "/api/v1/contacts?favorite=maybe",
        "/api/v1/contacts?limit=0",
        "/api/v1/contacts?cursor=garbage",
    ] {
        let res = app.get(bad, &a.token).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    app.stop().await;
}

#[tokio::test]
async fn another_tenant_never_sees_or_touches_a_contact() {
    let app = spawn_app().await;
    let a = app.register("a@c.co").await;
    let b = app.register("b@c.co").await;
    let (status, _) = upsert(
        &app,
        &a.token,
        json!({"phone": "6281234567890", "name": "Sari", "tags": ["vip"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    for res in [
        app.get("/api/v1/contacts/6281234567890", &b.token).await,
        app.patch(
            "/api/v1/contacts/6281234567890",
            &b.token,
            &json!({"name": "mine"}),
        )
        .await,
        app.delete("/api/v1/contacts/6281234567890", &b.token).await,
    ] {
        error_code(res, StatusCode::NOT_FOUND).await;
    }
    let listed = app.get_json("/api/v1/contacts?tag=vip", &b.token).await;
    assert_eq!(listed["items"], json!([]));
    // the same phone for tenant B is B's own, new contact: A's is untouched
    let (status, theirs) = upsert(&app, &b.token, json!({"phone": "6281234567890"})).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(theirs["name"], Value::Null);
    let mine = app
        .get_json("/api/v1/contacts/6281234567890", &a.token)
        .await;
    assert_eq!(mine["name"], "Sari");
    assert_eq!(mine["tags"], json!(["vip"]));
    // without credentials: 401
    let res = app
        .client
        .get(app.url("/api/v1/contacts"))
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

/// Seeds what the simulator's `/user/contacts` answers for a user token.
pub(crate) async fn seed_contacts(app: &TestApp, token: &str, contacts: &Value) {
    let res = app
        .client
        .put(format!("{}/sim/users/{token}/contacts", app.sim.base_url()))
        .json(contacts)
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn sync_names_by_precedence_keeps_lids_and_a_second_sync_adds_nothing() {
    let app = spawn_app().await;
    let a = app.register("sync@c.co").await;
    let session = app.link_session(&a, "sync-token").await;
    let entry = |full: &str, business: &str, push: &str, first: &str| json!({"FullName": full, "BusinessName": business, "PushName": push, "FirstName": first, "Found": true});
    seed_contacts(
        &app,
        "sync-token",
        &json!({
            "6281234567890@s.whatsapp.net": entry("Budi Santoso", "Budi Shop", "Budi", "B"),
            "6285712345678@s.whatsapp.net": entry("", "Toko Maju", "Maju", ""),
            "6281398765432:7@s.whatsapp.net": entry("", "", "Rina", "Rin"),
            "6281300000000@s.whatsapp.net": entry("", "", "", "Dewi"),
            "120363025246125888@lid": entry("", "", "Anon", ""),
            "120363000000000001@g.us": entry("Family", "", "", ""),
            "garbage": "not an object",
        }),
    )
    .await;
    // a contact a person already named keeps that name
    let (status, _) = upsert(
        &app,
        &a.token,
        json!({"phone": "6285712345678", "name": "Pak Maju (supplier)"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    let res = app
        .post(
            "/api/v1/contacts/sync",
            &a.token,
            &json!({"session_id": session}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let first: Value = res.json().await.expect("json");
    assert_eq!(first["total"], 5, "{first}");
    assert_eq!(first["added"], 4, "{first}");
    assert_eq!(first["updated"], 0, "{first}");
    assert_eq!(first["skipped"], 1, "{first}");

    let name = |c: &Value| c["name"].as_str().unwrap_or_default().to_string();
    let get = |p: &'static str| {
        let path = format!("/api/v1/contacts/{p}");
        let app = &app;
        let token = a.token.clone();
        async move { app.get_json(&path, &token).await }
    };
    assert_eq!(name(&get("6281234567890").await), "Budi Santoso");
    assert_eq!(name(&get("6285712345678").await), "Pak Maju (supplier)");
    assert_eq!(name(&get("6281398765432").await), "Rina");
    assert_eq!(name(&get("6281300000000").await), "Dewi");
    let lid = get("120363025246125888@lid").await;
    assert_eq!(lid["phone"], Value::Null);
    assert_eq!(lid["lid"], "120363025246125888@lid");
    assert_eq!(lid["name"], "Anon");
    assert_eq!(lid["source"], "sync");

    let events_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Contact'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    let res = app
        .post(
            "/api/v1/contacts/sync",
            &a.token,
            &json!({"session_id": session}),
        )
        .await;
    let second: Value = res.json().await.expect("json");
    assert_eq!(second["total"], 5);
    assert_eq!(second["added"], 0, "{second}");
    assert_eq!(second["updated"], 0, "{second}");
    let events_after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Contact'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(
        events_before, events_after,
        "an identical sync appends nothing"
    );

    // the phone renamed someone: a synced name follows
    seed_contacts(
        &app,
        "sync-token",
        &json!({"6281234567890@s.whatsapp.net": entry("Budi S.", "", "", "")}),
    )
    .await;
    let third: Value = app
        .post(
            "/api/v1/contacts/sync",
            &a.token,
            &json!({"session_id": session}),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(third["updated"], 1, "{third}");
    assert_eq!(name(&get("6281234567890").await), "Budi S.");

    // another tenant cannot sync through this session, nor see the synced contacts
    let b = app.register("other@c.co").await;
    let (_, body) = error_code(
        app.post(
            "/api/v1/contacts/sync",
            &b.token,
            &json!({"session_id": session}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["error"]["details"]["field"], "session_id");
    let theirs = app.get_json("/api/v1/contacts", &b.token).await;
    assert_eq!(theirs["items"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn a_hostile_contact_list_is_a_clean_4xx_or_5xx_never_a_crash() {
    let app = spawn_app().await;
    let a = app.register("hostile@c.co").await;
    let session = app.link_session(&a, "hostile-token").await;
    // `data` that is not a map: the gateway's fault, a 502 with the envelope
    seed_contacts(&app, "hostile-token", &json!(["not", "a", "map"])).await;
    let (code, _) = error_code(
        app.post(
            "/api/v1/contacts/sync",
            &a.token,
            &json!({"session_id": session}),
        )
        .await,
        StatusCode::BAD_GATEWAY,
    )
    .await;
    assert_eq!(code, "gateway_error");
    // names of absurd length and odd types are cut or dropped, not fatal
    seed_contacts(
        &app,
        "hostile-token",
        &json!({
            "6281234567890@s.whatsapp.net": {"FullName": "x".repeat(400), "PushName": 5},
            "6281200000000@s.whatsapp.net": {"FullName": ["a"], "PushName": "Ok"},
        }),
    )
    .await;
    let res = app
        .post(
            "/api/v1/contacts/sync",
            &a.token,
            &json!({"session_id": session}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["added"], 2, "{body}");
    let long = app
        .get_json("/api/v1/contacts/6281234567890", &a.token)
        .await;
    assert_eq!(long["name"].as_str().map(|n| n.chars().count()), Some(200));
    let ok = app
        .get_json("/api/v1/contacts/6281200000000", &a.token)
        .await;
    assert_eq!(ok["name"], "Ok");
    for bad in [json!({}), json!({"session_id": "nope"})] {
        let res = app.post("/api/v1/contacts/sync", &a.token, &bad).await;
        error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    app.stop().await;
}
