//! The real `CloudApiClient` against the simulator's Cloud API surface: the request shapes Meta
//! documents (text, template with per-recipient parameters, image by media id), the image
//! uploaded once however many sends use it, the wamid as the message id, and Meta's error codes
//! classified as docs/cloud-api.md says.

use herald_gateway::cloud_api::credentials_token;
use herald_gateway::{
    CloudApiClient, Gateway, GatewayError, HaltReason, MessageContent, OutboundMessage,
};
use serde_json::{json, Value};

use crate::support::{TestSim, PNG};

const NUMBER: &str = "106540352242922";
const ACCESS: &str = "EAAG-client-test";

async fn cloud(errors: Value) -> (TestSim, CloudApiClient) {
    let sim = TestSim::default().await;
    let res = sim
        .http
        .put(sim.url(&format!("/sim/cloud/numbers/{NUMBER}")))
        .json(&json!({"access_token": ACCESS, "app_secret": "secret", "errors": errors}))
        .send()
        .await
        .expect("sent");
    assert!(res.status().is_success());
    let client = CloudApiClient::new(&sim.url("/cloud/v21.0")).expect("valid URL");
    (sim, client)
}

fn message(phone: &str, content: MessageContent) -> OutboundMessage {
    OutboundMessage {
        phone: phone.into(),
        message_id: "HERALD0001".into(),
        content,
    }
}

async fn sent(sim: &TestSim) -> Value {
    sim.http
        .get(sim.url("/sim/cloud/messages"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn texts_templates_and_images_go_out_as_meta_documents_them() {
    let (sim, client) = cloud(json!({})).await;
    let token = credentials_token(NUMBER, ACCESS);
    let text = client
        .send(
            &token,
            &message("6281234567890", MessageContent::Text { body: "Hi".into() }),
        )
        .await
        .expect("accepted");
    assert!(text.message_id.starts_with("wamid."), "{}", text.message_id);
    client
        .send(
            &token,
            &message(
                "6281234567891",
                MessageContent::Template {
                    name: "order_update".into(),
                    language: "en_US".into(),
                    params: vec!["Ann".into()],
                },
            ),
        )
        .await
        .expect("accepted");
    for phone in ["6281234567892", "6281234567893", "6281234567894"] {
        client
            .send(
                &token,
                &message(
                    phone,
                    MessageContent::Image {
                        data_url: PNG.into(),
                        caption: Some("Sale".into()),
                    },
                ),
            )
            .await
            .expect("accepted");
    }
    let sent = sent(&sim).await;
    // three image sends, one upload
    assert_eq!(sent["uploads"], 1, "{sent}");
    let messages = sent["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 5);
    assert_eq!(
        messages[0]["text"],
        json!({"preview_url": false, "body": "Hi"})
    );
    assert_eq!(
        messages[1]["template"]["components"][0]["parameters"][0],
        json!({"type": "text", "text": "Ann"})
    );
    assert_eq!(messages[2]["image"]["caption"], "Sale");
    assert_eq!(messages[2]["image"]["id"], messages[4]["image"]["id"]);
}

#[tokio::test]
async fn metas_error_codes_are_classified() {
    let (_sim, client) = cloud(json!({
        "1": [130429], "2": [131056], "3": [131000], "4": [131047], "5": [131048], "6": [190],
        "7": [131026],
    }))
    .await;
    let token = credentials_token(NUMBER, ACCESS);
    let send = |phone: &'static str| {
        let client = client.clone();
        let token = token.clone();
        async move {
            client
                .send(
                    &token,
                    &message(phone, MessageContent::Text { body: "x".into() }),
                )
                .await
        }
    };
    for phone in ["1", "2", "3"] {
        let e = send(phone).await.expect_err("refused");
        assert!(e.is_transient(), "{phone}: {e:?}");
    }
    for phone in ["4", "7"] {
        let e = send(phone).await.expect_err("refused");
        assert!(
            matches!(e, GatewayError::Permanent { .. }),
            "{phone}: {e:?}"
        );
    }
    assert!(matches!(
        send("5").await,
        Err(GatewayError::Halt {
            reason: HaltReason::SpamRateLimit,
            ..
        })
    ));
    assert!(matches!(
        send("6").await,
        Err(GatewayError::Halt {
            reason: HaltReason::GatewayAuth,
            ..
        })
    ));
    // a wrong access token is Meta's 190 too; the next send to "1" goes through
    let wrong = credentials_token(NUMBER, "EAAG-wrong");
    assert!(matches!(
        client
            .send(
                &wrong,
                &message("1", MessageContent::Text { body: "x".into() })
            )
            .await,
        Err(GatewayError::Halt {
            reason: HaltReason::GatewayAuth,
            ..
        })
    ));
    assert!(send("1").await.is_ok());
    // nothing answers: transient, and unreachable
    let dead = CloudApiClient::new("http://127.0.0.1:9/v21.0").expect("valid URL");
    let e = dead
        .send(
            &token,
            &message("1", MessageContent::Text { body: "x".into() }),
        )
        .await
        .expect_err("unreachable");
    assert!(e.is_transient() && e.is_unreachable(), "{e:?}");
}
