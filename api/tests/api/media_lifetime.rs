//! Media lifetime (decision 0024): a stored image is deleted only when no template, no queued
//! single send and no campaign that can still dispatch refers to it, and only after the grace
//! period since its last use; worker processes run the collector on their own.

use std::collections::BTreeSet;
use std::time::Duration;

use herald_media::gc;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{phones, spawn_app, spawn_app_configured, Account, TestApp};
use crate::images::{b64, create_image_template, png};
use crate::messages::{send, send_first_and_wait_sent, wait_message};

/// Creates an image template from a `side`×`side` PNG (each side a different image); returns
/// `(template id, image sha256)`.
async fn image_template(app: &TestApp, account: &Account, side: u32) -> (String, String) {
    let res = create_image_template(
        app,
        account,
        json!({"name": format!("img {side}"), "type": "image", "image_base64": b64(&png(side, side))}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let body: Value = res.json().await.expect("json");
    (
        body["id"].as_str().expect("id").to_string(),
        body["image"]["sha256"].as_str().expect("sha").to_string(),
    )
}

async fn stored(app: &TestApp) -> BTreeSet<String> {
    sqlx::query_scalar::<_, String>("SELECT sha256 FROM media")
        .fetch_all(&app.pool)
        .await
        .expect("media")
        .into_iter()
        .collect()
}

async fn collect_now(app: &TestApp) -> BTreeSet<String> {
    gc::collect(&app.pool, Duration::ZERO)
        .await
        .expect("collects")
        .into_iter()
        .collect()
}

async fn campaign(app: &TestApp, account: &Account, body: Value) -> String {
    let res = app.post("/api/v1/campaigns", &account.token, &body).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string()
}

fn set(items: &[&String]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn an_image_is_deleted_only_when_nothing_that_can_send_refers_to_it_and_its_grace_is_over() {
    let app = spawn_app().await;
    let account = app.register("lifetime@example.com").await;
    let session = app.link_session(&account, "token-lifetime").await;

    // a template's image
    let (_, kept) = image_template(&app, &account, 30).await;
    // a deleted template's image, used by nothing else
    let (gone_template, gone) = image_template(&app, &account, 31).await;
    let res = app
        .delete(
            &format!("/api/v1/templates/{gone_template}"),
            &account.token,
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // a scheduled campaign keeps the image it was created with after its template changes
    let (changed_template, scheduled_image) = image_template(&app, &account, 32).await;
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    let scheduled = campaign(
        &app,
        &account,
        json!({"name": "tomorrow", "template_id": changed_template, "session_id": session,
               "recipients": phones(2), "send_at": tomorrow}),
    )
    .await;
    let res = app
        .patch(
            &format!("/api/v1/templates/{changed_template}"),
            &account.token,
            &json!({"image_base64": b64(&png(33, 33))}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let new_image = res.json::<Value>().await.expect("json")["image"]["sha256"]
        .as_str()
        .expect("sha")
        .to_string();
    // a finished campaign's image whose template is gone
    let (done_template, finished) = image_template(&app, &account, 34).await;
    let done = campaign(
        &app,
        &account,
        json!({"name": "now", "template_id": done_template, "session_id": session,
               "recipients": phones(2)}),
    )
    .await;
    let finished_campaign = app
        .wait_campaign(&account, &done, Duration::from_secs(20), |c| {
            c["status"] == "completed"
        })
        .await;
    assert_eq!(
        finished_campaign["counts"]["sent"], 2,
        "{finished_campaign}"
    );
    let res = app
        .delete(
            &format!("/api/v1/templates/{done_template}"),
            &account.token,
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // a single image send waiting for its number's pace (an hour between sends)
    let slow = app
        .link_session_paced(&account, "token-slow", 3_600_000, 3_600_000)
        .await;
    send_first_and_wait_sent(&app, &account, &slow, "6281200007001").await;
    let before = stored(&app).await;
    let res = send(
        &app,
        &account,
        None,
        &json!({"session_id": slow, "to": "6281200007002", "type": "image",
                "image_base64": b64(&png(35, 35)), "caption": "waiting"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let waiting = res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let queued_image = stored(&app)
        .await
        .difference(&before)
        .next()
        .cloned()
        .expect("the single send's image is stored");
    let all = set(&[
        &kept,
        &gone,
        &scheduled_image,
        &new_image,
        &finished,
        &queued_image,
    ]);
    assert_eq!(stored(&app).await, all);

    // inside the grace period nothing goes, used or not
    let none = gc::collect(&app.pool, Duration::from_secs(3_600))
        .await
        .expect("collects");
    assert!(none.is_empty(), "{none:?}");
    assert_eq!(stored(&app).await, all);

    // past it, only what nothing can send any more
    assert_eq!(collect_now(&app).await, set(&[&gone, &finished]));
    assert_eq!(
        stored(&app).await,
        set(&[&kept, &scheduled_image, &new_image, &queued_image])
    );
    assert!(
        collect_now(&app).await.is_empty(),
        "a second run finds nothing"
    );

    // the scheduled campaign is cancelled: its image goes
    let res = app
        .post_empty(
            &format!("/api/v1/campaigns/{scheduled}/cancel"),
            &account.token,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    app.wait_campaign(&account, &scheduled, Duration::from_secs(10), |c| {
        c["status"] == "cancelled"
    })
    .await;
    assert_eq!(collect_now(&app).await, set(&[&scheduled_image]));

    // the waiting single send goes out (full speed now): its image goes after it
    let res = app
        .patch(
            &format!("/api/v1/sessions/{slow}"),
            &account.token,
            &json!({"pacing": {"min_interval_ms": 0, "max_interval_ms": 0}}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let sent = wait_message(&app, &account, &waiting, "sent").await;
    assert_eq!(sent["status"], "sent", "{sent}");
    assert_eq!(collect_now(&app).await, set(&[&queued_image]));
    assert_eq!(stored(&app).await, set(&[&kept, &new_image]));

    // a campaign created from a template marks its image used, in its own transaction
    sqlx::query("UPDATE media SET last_used_at = now() - interval '2 days'")
        .execute(&app.pool)
        .await
        .expect("aged");
    campaign(
        &app,
        &account,
        json!({"name": "again", "template_id": changed_template, "session_id": session,
               "recipients": phones(1)}),
    )
    .await;
    let recent: bool = sqlx::query_scalar(
        "SELECT last_used_at > now() - interval '1 minute' FROM media WHERE sha256 = $1",
    )
    .bind(&new_image)
    .fetch_one(&app.pool)
    .await
    .expect("row");
    assert!(recent, "the campaign renewed its image's last use");

    // an image in use that is past its grace is kept and its grace starts again, so the next
    // runs look at other images (without this, enough old in-use images stop collection)
    sqlx::query("UPDATE media SET last_used_at = now() - interval '2 days'")
        .execute(&app.pool)
        .await
        .expect("aged");
    let none = gc::collect(&app.pool, Duration::from_secs(3_600))
        .await
        .expect("collects");
    assert!(none.is_empty(), "{none:?}");
    let renewed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM media WHERE last_used_at > now() - interval '1 minute'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(renewed, 2, "both images in use were renewed");
    app.stop().await;
}

#[tokio::test]
async fn worker_processes_collect_unused_images_on_their_own() {
    let app = spawn_app_configured(|s| {
        s.media_gc_interval_secs = 1;
        s.media_grace_secs = 1;
    })
    .await;
    let account = app.register("collector@example.com").await;
    let (_, kept) = image_template(&app, &account, 40).await;
    let (template, gone) = image_template(&app, &account, 41).await;
    let res = app
        .delete(&format!("/api/v1/templates/{template}"), &account.token)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut now = stored(&app).await;
    while now.contains(&gone) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = stored(&app).await;
    }
    assert_eq!(
        now,
        set(&[&kept]),
        "the unused image went, the used one stayed"
    );
    app.stop().await;
}
