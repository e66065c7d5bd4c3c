//! One user's story from linking to sending: a number linked by scanning Herald's QR code (the
//! WuzAPI user created by Herald), contacts synced from the phone and merged with a CSV, three
//! tagged `vip`, an image template fetched once from a URL, a campaign to the `vip` audience in
//! which each recipient gets the image with their own name, and unsafe images refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::contacts::seed_contacts;
use crate::contacts_import::import;
use crate::helpers::spawn_app_with_admin_token;
use crate::images::{create_image_template, invalid_image, png, sim_items, ImageServer, Reply};
use crate::messages::send;
use crate::session_lifecycle::{sim_post, sim_users, wait_status, with_admin, ADMIN};

#[tokio::test]
async fn a_linked_number_sends_an_image_campaign_to_its_vip_contacts_by_name() {
    let app = spawn_app_with_admin_token(with_admin(), ADMIN, false).await;
    let account = app.register("story@toko.id").await;

    // 1. a session without a gateway token: Herald creates the WuzAPI user
    let res = app
        .post(
            "/api/v1/sessions",
            &account.token,
            // no pacing, so the story runs in seconds (the default is 3-8 s between sends)
            &json!({"name": "Toko", "pacing": {"min_interval_ms": 0, "max_interval_ms": 0}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let session = res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let users = sim_users(&app).await;
    assert_eq!(users.len(), 1, "Herald created one WuzAPI user: {users:?}");
    let user_id = users[0]["id"].as_str().expect("user id").to_string();
    let user_token = users[0]["token"].as_str().expect("user token").to_string();

    // 2. connect, read the QR code from Herald, scan it with the phone
    let path = format!("/api/v1/sessions/{session}");
    let res = app
        .post_empty(&format!("{path}/connect"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let qr = loop {
        let res = app.get(&format!("{path}/qr"), &account.token).await;
        if res.status() == StatusCode::OK {
            break res.json::<Value>().await.expect("json");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no QR code: {}",
            res.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(qr["qr_code"]
        .as_str()
        .is_some_and(|q| q.starts_with("data:image/png;base64,")));
    assert_eq!(
        sim_post(&app, "/sim/scan", json!({"user_id": user_id})).await,
        StatusCode::OK
    );
    wait_status(&app, &account, &session, "connected").await;

    // 3. the phone's contacts come in with their names
    let entry = |full: &str, push: &str| json!({"FullName": full, "PushName": push, "Found": true});
    seed_contacts(
        &app,
        &user_token,
        &json!({
            "6281234567890@s.whatsapp.net": entry("Budi Santoso", "Budi"),
            "6285712345678@s.whatsapp.net": entry("Sari Dewi", ""),
            "6281398765432@s.whatsapp.net": entry("", "Rina"),
            "6281300000000@s.whatsapp.net": entry("", "Dewi"),
            "120363025246125888@lid": entry("", "Anon"),
        }),
    )
    .await;
    let res = app
        .post(
            "/api/v1/contacts/sync",
            &account.token,
            &json!({"session_id": session}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let synced: Value = res.json().await.expect("json");
    assert_eq!(
        (&synced["total"], &synced["added"], &synced["updated"]),
        (&json!(5), &json!(5), &json!(0)),
        "{synced}"
    );

    // 4. three of them are tagged vip
    for phone in ["6281234567890", "6285712345678", "6281398765432"] {
        let res = app
            .patch(
                &format!("/api/v1/contacts/{phone}"),
                &account.token,
                &json!({"tags": ["vip"]}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }

    // 5. a CSV merges by phone: one match, one new contact, one bad row with its reason
    let csv = "phone,name,city\n\
               0812-3456-7890,,Bandung\n\
               +62 877 1111 2222,Agus,Surabaya\n\
               12345,Nobody,Nowhere\n";
    let res = import(&app, &account.token, csv.to_string()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let imported: Value = res.json().await.expect("json");
    assert_eq!(imported["matched"], 1, "{imported}");
    assert_eq!(imported["imported"], 1, "{imported}");
    let rejected = imported["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), 1, "{imported}");
    assert_eq!(rejected[0]["row"], 4);
    assert_eq!(rejected[0]["reason"], "not a valid phone number");
    let budi = app
        .get_json("/api/v1/contacts/6281234567890", &account.token)
        .await;
    assert_eq!(budi["name"], "Budi Santoso", "the synced name is kept");
    assert_eq!(budi["tags"], json!(["vip"]));
    assert_eq!(budi["fields"]["city"], "Bandung", "merged from the CSV");
    let agus = app
        .get_json("/api/v1/contacts/6287711112222", &account.token)
        .await;
    assert_eq!(agus["name"], "Agus");

    // 6. an image template from a URL, with a personal caption
    let server = ImageServer::start().await;
    let url = server.serve(
        "/promo.png",
        Reply::Body("image/png", Arc::new(png(1_200, 900))),
    );
    let res = create_image_template(
        &app,
        &account,
        json!({"name": "VIP promo", "type": "image", "image_url": url, "caption": "Hi {{ name }}"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let template: Value = res.json().await.expect("json");
    let sha = template["image"]["sha256"]
        .as_str()
        .expect("sha")
        .to_string();

    // 7. a campaign to the vip audience
    let res = app
        .post(
            "/api/v1/campaigns",
            &account.token,
            &json!({"name": "VIP November", "template_id": template["id"], "session_id": session,
                    "audience": {"tag": "vip"}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.expect("json");
    assert_eq!(created["total_recipients"], 3, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let done = app
        .wait_campaign(&account, &id, Duration::from_secs(30), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(done["counts"]["sent"], 3, "{done}");
    assert_eq!(done["counts"]["failed"], 0, "{done}");

    // every vip got the image with their own name, and nobody else got anything
    let got: BTreeMap<String, (String, String, String)> = sim_items(&app)
        .await
        .into_iter()
        .map(|m| {
            let field = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            (
                field("phone"),
                (field("kind"), field("text"), field("image_sha256")),
            )
        })
        .collect();
    let want: BTreeMap<String, (String, String, String)> = [
        ("6281234567890", "Hi Budi Santoso"),
        ("6285712345678", "Hi Sari Dewi"),
        ("6281398765432", "Hi Rina"),
    ]
    .into_iter()
    .map(|(p, text)| {
        (
            p.to_string(),
            ("image".to_string(), text.to_string(), sha.clone()),
        )
    })
    .collect();
    assert_eq!(got, want);
    assert_eq!(app.sim.stats().accepted, 3);
    assert_eq!(server.total(), 1, "the image was fetched exactly once");

    // 8. unsafe images are refused, for templates and single sends alike, and nothing is sent
    let bombs = ImageServer::start().await;
    let bomb = bombs.serve(
        "/bomb.png",
        Reply::Body(
            "image/png",
            Arc::new(herald_media::testing::png_bomb(40_000, 40_000)),
        ),
    );
    let metadata = "http://169.254.169.254/latest/meta-data/";
    for (image_url, kind) in [(metadata, "url_refused"), (bomb.as_str(), "too_large")] {
        let res = create_image_template(
            &app,
            &account,
            json!({"name": "unsafe", "type": "image", "image_url": image_url, "caption": "Hi"}),
        )
        .await;
        assert_eq!(invalid_image(res, "image_url").await.0, kind, "{image_url}");
        let res = send(
            &app,
            &account,
            None,
            &json!({"session_id": session, "to": "6281234567890", "type": "image",
                    "image_url": image_url, "caption": "Hi"}),
        )
        .await;
        assert_eq!(invalid_image(res, "image_url").await.0, kind, "{image_url}");
    }
    let templates = app.get_json("/api/v1/templates", &account.token).await;
    assert_eq!(
        templates["items"].as_array().map(Vec::len),
        Some(1),
        "{templates}"
    );
    let singles: i64 = sqlx::query_scalar("SELECT count(*) FROM single_messages")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(singles, 0);
    assert_eq!(app.sim.stats().accepted, 3, "nothing more was sent");
    assert_eq!(server.total(), 1);
    server.stop();
    bombs.stop();
    app.stop().await;
}
