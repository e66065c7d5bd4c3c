//! `POST /sim/incoming` `{"token", "from", "text", "push_name"?}`: someone writes to the user's
//! number. The simulator posts a WuzAPI `Message` webhook (a plain text message from `from`,
//! digits) to the user's webhook, encoded and signed like its other events, and answers once
//! the post is done: 200 `{"posted": true|false}` (false: no webhook subscribed to `Message`, or
//! the webhook refused it). 404 unknown user. Not part of WuzAPI (a test tool).

use salvo::http::StatusCode;
use salvo::{Request, Response};
use serde::Deserialize;
use serde_json::json;

use crate::receipts::post_event;
use crate::reply;
use crate::state::Sim;
use herald_gateway::webhook::Encoding;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Incoming {
    token: String,
    from: String,
    text: String,
    push_name: Option<String>,
}

pub(crate) async fn handle(sim: &Sim, req: &mut Request, res: &mut Response) {
    let body = match req.payload_with_max_size(64 * 1024).await {
        Ok(bytes) => serde_json::from_slice::<Incoming>(bytes).ok(),
        Err(_) => None,
    };
    let Some(msg) =
        body.filter(|m| !m.from.is_empty() && m.from.bytes().all(|b| b.is_ascii_digit()))
    else {
        return reply::error(
            res,
            StatusCode::BAD_REQUEST,
            "send {\"token\", \"from\": \"<digits>\", \"text\", \"push_name\"?}",
        );
    };
    let Some(hook) = sim
        .users
        .with_existing(&msg.token, |u| u.hook_for("Message"))
    else {
        return reply::error(res, StatusCode::NOT_FOUND, "user not found");
    };
    let Some(hook) = hook else {
        return reply::json(res, StatusCode::OK, &json!({"posted": false}));
    };
    let jid = format!("{}@s.whatsapp.net", msg.from);
    let event = json!({
        "type": "Message",
        "event": {
            "Info": {
                "Chat": jid,
                "Sender": jid,
                "ID": format!("SIM{:016X}", rand::random::<u64>()),
                "IsFromMe": false,
                "IsGroup": false,
                "PushName": msg.push_name.unwrap_or_default(),
                "Timestamp": chrono::Utc::now().to_rfc3339(),
                "Type": "text",
            },
            "Message": {"conversation": msg.text},
        }
    });
    let encoding = match sim.receipts.get().encoding {
        Encoding::Json => Encoding::Json,
        _ => Encoding::Form,
    };
    let posted = post_event(
        &sim.receipts.http(),
        &hook,
        encoding,
        &event,
        "incoming message",
    )
    .await;
    reply::json(res, StatusCode::OK, &json!({ "posted": posted }));
}
