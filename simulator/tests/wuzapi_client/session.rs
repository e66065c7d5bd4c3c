//! Sessions, webhooks, contacts and the admin user flow.

use herald_gateway::{
    ConnectOutcome, Gateway, LogoutOutcome, QrOutcome, SessionStatus, WuzapiClient,
};
use herald_simulator::SimulatorConfig;
use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn session_status_webhook_and_contacts() {
    let t = TestSim::default().await;
    let status = t.client.session_status(TOKEN).await.expect("status");
    assert!(status.connected && status.logged_in);
    assert!(status
        .jid
        .as_deref()
        .is_some_and(|jid| jid.ends_with("@s.whatsapp.net")));

    t.client
        .set_webhook(
            TOKEN,
            "http://herald.test/hooks/wuzapi",
            &["Message", "ReadReceipt"],
        )
        .await
        .expect("webhook set");
    let (_, webhook): (u16, Value) = t.get_json("/webhook").await;
    assert_eq!(
        webhook["data"]["webhook"],
        "http://herald.test/hooks/wuzapi"
    );
    assert_eq!(
        webhook["data"]["subscribe"],
        json!(["Message", "ReadReceipt"])
    );

    let (status, contacts): (u16, Value) = t.get_json("/user/contacts").await;
    assert_eq!(status, 200);
    let jids: Vec<&String> = contacts["data"]
        .as_object()
        .expect("map keyed by JID")
        .keys()
        .collect();
    assert!(jids.iter().any(|jid| jid.ends_with("@lid")));
    assert!(jids.iter().any(|jid| jid.ends_with("@s.whatsapp.net")));

    let (status, hmac) = t
        .post_json("/session/hmac/config", json!({"hmac_key": "short"}))
        .await;
    assert_eq!((status, &hmac["success"]), (400, &json!(false)));
    let (status, _) = t
        .post_json("/session/hmac/config", json!({"hmac_key": "k".repeat(32)}))
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn admin_users_pair_through_connect_and_qr() {
    let t = TestSim::spawn(SimulatorConfig {
        admin_token: Some("admin-secret".into()),
        ..SimulatorConfig::default()
    })
    .await;
    let id = t
        .client
        .create_user("Shop", "shop-token", "", &["Message", "ReadReceipt"])
        .await
        .expect("user created");
    let again = t
        .client
        .create_user("Shop", "shop-token", "", &[])
        .await
        .expect_err("token taken");
    assert!(!again.is_transient());

    let unpaired = t.client.session_status("shop-token").await.expect("status");
    assert_eq!(
        unpaired,
        SessionStatus {
            connected: false,
            logged_in: false,
            jid: None
        }
    );
    let refused = t
        .client
        .send("shop-token", &text("6281234567890", "EARLY1", "x"))
        .await
        .expect_err("no session yet");
    assert_eq!(refused.message(), "no session");

    assert_eq!(
        t.client.qr_code("shop-token").await,
        Ok(QrOutcome::NotConnected)
    );
    assert_eq!(
        t.client.logout("shop-token").await,
        Ok(LogoutOutcome::NotConnected)
    );
    assert_eq!(
        t.client.connect("shop-token", &["Message"]).await,
        Ok(ConnectOutcome::Connecting)
    );
    assert_eq!(
        t.client.connect("shop-token", &["Message"]).await,
        Ok(ConnectOutcome::AlreadyConnected)
    );
    let qr: Value = t
        .http
        .get(t.url("/session/qr"))
        .header("Token", "shop-token")
        .send()
        .await
        .expect("qr answers")
        .json()
        .await
        .expect("JSON");
    assert!(qr["data"]["QRCode"]
        .as_str()
        .is_some_and(|qr| qr.starts_with("data:image/png;base64,")));
    assert!(matches!(
        t.client.qr_code("shop-token").await,
        Ok(QrOutcome::Code(code)) if code.starts_with("data:image/png;base64,")
    ));
    assert_eq!(
        t.client.logout("shop-token").await,
        Ok(LogoutOutcome::NotLoggedIn)
    );
    // showing the code does not pair; the phone scanning it does
    let unscanned = t.client.session_status("shop-token").await.expect("status");
    assert!(unscanned.connected && !unscanned.logged_in);
    let scan = t
        .http
        .post(t.url("/sim/scan"))
        .json(&json!({"user_id": id}))
        .send()
        .await
        .expect("scan answers");
    assert_eq!(scan.status().as_u16(), 200);
    let paired = t.client.session_status("shop-token").await.expect("status");
    assert!(paired.connected && paired.logged_in && paired.jid.is_some());
    assert_eq!(
        t.client.qr_code("shop-token").await,
        Ok(QrOutcome::AlreadyLoggedIn)
    );
    let again = t
        .http
        .post(t.url("/sim/scan"))
        .json(&json!({"token": "shop-token"}))
        .send()
        .await
        .expect("scan answers");
    assert_eq!(again.status().as_u16(), 409);
    let unknown = t
        .http
        .post(t.url("/sim/scan"))
        .json(&json!({"token": "nobody"}))
        .send()
        .await
        .expect("scan answers");
    assert_eq!(unknown.status().as_u16(), 404);

    // Admin routes need the admin token.
    let anonymous = t
        .http
        .get(t.url("/admin/users"))
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status().as_u16(), 401);
    let listing: Value = t
        .http
        .get(t.url("/admin/users"))
        .header("Authorization", "admin-secret")
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listing["data"][0]["id"], id);
    let deleted = t
        .http
        .delete(t.url(&format!("/admin/users/{id}")))
        .header("Authorization", "admin-secret")
        .send()
        .await
        .expect("answers");
    assert_eq!(deleted.status().as_u16(), 200);
    assert_eq!(t.client.delete_user(&id).await, Ok(false), "already gone");
    assert!(t.client.delete_user("../etc").await.is_err());

    let no_admin = WuzapiClient::new(&t.sim.base_url(), None).expect("valid URL");
    let error = no_admin
        .create_user("x", "y", "", &[])
        .await
        .expect_err("needs the admin token");
    assert!(!error.is_transient());
}
