//! The WhatsApp Cloud API surface Herald calls (docs/cloud-api.md), under `/cloud/{version}`, so
//! `HERALD_META_GRAPH_URL=http://<sim>/cloud/v21.0` points Herald's Cloud API gateway here:
//!
//! - `GET /cloud/{v}/{phone_number_id}`: the number (the proof Herald asks for when linking);
//! - `POST /cloud/{v}/{phone_number_id}/media`: a multipart upload → `{"id"}`;
//! - `POST /cloud/{v}/{phone_number_id}/messages`: text, image (by a media id this simulator
//!   gave) or template → `{"messages": [{"id": "wamid..."}]}`; then the statuses `sent`,
//!   `delivered` and `read` are posted to the number's callback as Meta notifications, signed
//!   (`X-Hub-Signature-256`) with its app secret.
//!
//! Numbers are registered by the operator: `PUT /sim/cloud/numbers/{phone_number_id}`
//! `{"access_token", "app_secret", "callback_url"?, "errors"?: {"<to>": [<Meta error code>, ...]}}`
//! (each send to `<to>` answers the next code of its list, in Meta's error shape, until the list
//! is used up). Other tokens are refused with Meta's error 190. `GET /sim/cloud/messages` lists
//! the accepted message bodies and how many uploads there were.

use std::sync::atomic::Ordering;
use std::time::Duration;

use salvo::http::StatusCode;
use salvo::{Request, Response};
use serde_json::{json, Value};

use crate::cloud_numbers::Number;
use crate::reply;
use crate::state::Sim;

/// Largest upload taken (Herald's processed JPEGs are far smaller).
const MAX_UPLOAD: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub(crate) enum CloudOp {
    Number,
    Media,
    Messages,
    Register,
    List,
}

fn meta_error(res: &mut Response, status: StatusCode, code: i64, message: &str) {
    reply::json(
        res,
        status,
        &json!({"error": {"message": message, "type": "OAuthException", "code": code,
                          "error_data": {"messaging_product": "whatsapp", "details": message},
                          "fbtrace_id": "SIMULATOR"}}),
    );
}

/// The number's callback and app secret when the bearer token is the number's.
fn authorised(sim: &Sim, req: &Request, number: &str) -> Option<(Option<String>, String)> {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))?;
    let numbers = sim.cloud.numbers.lock().ok()?;
    let n = numbers.get(number)?;
    (n.access_token == token).then(|| (n.callback_url.clone(), n.app_secret.clone()))
}

pub(crate) async fn handle(sim: &Sim, req: &mut Request, res: &mut Response, op: CloudOp) {
    let number = req.param::<String>("number").unwrap_or_default();
    match op {
        CloudOp::Register => return register(sim, req, res, number).await,
        CloudOp::List => return list(sim, res),
        _ => {}
    }
    let Some((callback, secret)) = authorised(sim, req, &number) else {
        return meta_error(
            res,
            StatusCode::UNAUTHORIZED,
            190,
            "Invalid OAuth access token - Cannot parse access token",
        );
    };
    match op {
        CloudOp::Number => reply::json(
            res,
            StatusCode::OK,
            &json!({"id": number, "display_phone_number": "+1 555-0100", "verified_name": "Simulated"}),
        ),
        CloudOp::Media => media(sim, req, res).await,
        CloudOp::Messages => messages(sim, req, res, number, callback, secret).await,
        CloudOp::Register | CloudOp::List => {}
    }
}

async fn register(sim: &Sim, req: &mut Request, res: &mut Response, number: String) {
    let parsed = match req.payload_with_max_size(64 * 1024).await {
        Ok(bytes) => serde_json::from_slice::<Number>(bytes).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match parsed {
        Ok(n) if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
            if let Ok(mut numbers) = sim.cloud.numbers.lock() {
                numbers.insert(number, n);
            }
            reply::json(res, StatusCode::OK, &json!({"registered": true}));
        }
        Ok(_) => reply::error(
            res,
            StatusCode::BAD_REQUEST,
            "the phone number id is digits",
        ),
        Err(e) => reply::error(res, StatusCode::BAD_REQUEST, &e),
    }
}

fn list(sim: &Sim, res: &mut Response) {
    let sent = sim.cloud.sent.lock().map(|s| s.clone()).unwrap_or_default();
    reply::json(
        res,
        StatusCode::OK,
        &json!({"messages": sent, "uploads": sim.cloud.uploads.load(Ordering::Relaxed)}),
    );
}

async fn media(sim: &Sim, req: &mut Request, res: &mut Response) {
    let body = match req.payload_with_max_size(MAX_UPLOAD).await {
        Ok(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Err(_) => return meta_error(res, StatusCode::BAD_REQUEST, 100, "upload too large"),
    };
    let multipart = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart || !body.contains("name=\"file\"") || !body.contains("name=\"messaging_product\"")
    {
        return meta_error(
            res,
            StatusCode::BAD_REQUEST,
            100,
            "(#100) The parameter messaging_product and file are required.",
        );
    }
    let n = sim.cloud.uploads.fetch_add(1, Ordering::Relaxed) + 1;
    let id = format!("{}", 1_037_543_291_543_000u64 + n);
    if let Ok(mut media) = sim.cloud.media.lock() {
        media.insert(id.clone());
    }
    reply::json(res, StatusCode::OK, &json!({ "id": id }));
}

async fn messages(
    sim: &Sim,
    req: &mut Request,
    res: &mut Response,
    number: String,
    callback: Option<String>,
    secret: String,
) {
    let body: Option<Value> = match req.payload_with_max_size(256 * 1024).await {
        Ok(bytes) => serde_json::from_slice(bytes).ok(),
        Err(_) => None,
    };
    let Some(body) = body.filter(|b| b["messaging_product"] == "whatsapp") else {
        return meta_error(
            res,
            StatusCode::BAD_REQUEST,
            100,
            "(#100) Invalid parameter",
        );
    };
    let to = body["to"].as_str().unwrap_or_default().to_string();
    let valid = match body["type"].as_str() {
        Some("text") => body["text"]["body"].is_string(),
        Some("template") => body["template"]["name"].is_string(),
        Some("image") => body["image"]["id"]
            .as_str()
            .is_some_and(|id| sim.cloud.media.lock().is_ok_and(|m| m.contains(id))),
        _ => false,
    };
    if to.is_empty() || !to.bytes().all(|b| b.is_ascii_digit()) || !valid {
        return meta_error(
            res,
            StatusCode::BAD_REQUEST,
            100,
            "(#100) Invalid parameter",
        );
    }
    let injected = sim.cloud.numbers.lock().ok().and_then(|mut numbers| {
        numbers
            .get_mut(&number)
            .and_then(|n| n.errors.get_mut(&to))
            .and_then(|codes| codes.pop_front())
    });
    if let Some(code) = injected {
        let status = if code == 131000 || code == 1 || code == 2 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::BAD_REQUEST
        };
        return meta_error(res, status, code, &format!("simulated error {code}"));
    }
    let wamid = format!("wamid.SIM{:032X}", rand::random::<u128>());
    if let Ok(mut sent) = sim.cloud.sent.lock() {
        sent.push(body);
    }
    reply::json(
        res,
        StatusCode::OK,
        &json!({"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": wamid}]}),
    );
    if let Some(callback) = callback {
        let http = sim.receipts.http();
        tokio::spawn(post_statuses(http, callback, secret, number, to, wamid));
    }
}

/// `sent`, `delivered`, `read` for one message, each a signed notification.
async fn post_statuses(
    http: reqwest::Client,
    callback: String,
    secret: String,
    number: String,
    to: String,
    wamid: String,
) {
    for (status, after) in [("sent", 10), ("delivered", 50), ("read", 100)] {
        tokio::time::sleep(Duration::from_millis(after)).await;
        let body =
            json!({"object": "whatsapp_business_account", "entry": [{"id": "0", "changes": [{
            "field": "messages",
            "value": {"messaging_product": "whatsapp",
                      "metadata": {"display_phone_number": "15550100", "phone_number_id": number},
                      "statuses": [{"id": wamid, "status": status,
                                    "timestamp": chrono::Utc::now().timestamp().to_string(),
                                    "recipient_id": to}]}}]}]})
            .to_string();
        let signature = herald_gateway::meta::sign(&secret, body.as_bytes());
        let posted = http
            .post(&callback)
            .header("content-type", "application/json")
            .header(herald_gateway::meta::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        if let Err(e) = posted {
            tracing::debug!(error = %e, "simulator could not post a Cloud API status");
        }
    }
}
