//! The per-user routes besides sending: session lifecycle (`/session/*`), contacts, webhook and
//! HMAC settings. Like WuzAPI, connecting an unpaired user posts a `QR` event (the code in
//! `qrCodeBase64`) to its webhook, connecting a paired one posts `Connected`, and logging out
//! posts `LoggedOut`. The phone's scan is simulated by `POST /sim/scan` (see `pairing`).

use salvo::http::StatusCode;
use salvo::{Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::events;
use super::reply;
use super::state::Sim;
use super::token;
use super::users::User;
use herald_gateway::webhook::session::SessionSignal;

/// A 1x1 PNG: valid for any image decoder, small enough to inline.
const QR_PNG_DATA_URL: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// Small bodies only on these routes.
const MAX_SETTINGS_PAYLOAD: usize = 64 * 1024;

/// WuzAPI refuses shorter HMAC keys.
const MIN_HMAC_KEY_CHARS: usize = 32;

/// The session routes this module answers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SessionOp {
    Connect,
    Disconnect,
    Logout,
    Status,
    Qr,
    Contacts,
    SetWebhook,
    GetWebhook,
    HmacConfig,
    /// `POST /chat/presence` `{"Phone", "State": "composing"|"paused"}`: "typing…" in a chat.
    Presence,
}

#[derive(Deserialize, Default)]
struct ConnectPayload {
    #[serde(rename = "Subscribe", alias = "subscribe", default)]
    subscribe: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct WebhookPayload {
    #[serde(
        rename = "webhookURL",
        alias = "webhookurl",
        alias = "WebhookURL",
        default
    )]
    webhook_url: Option<String>,
    #[serde(alias = "Events", default)]
    events: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct HmacPayload {
    #[serde(default)]
    hmac_key: Option<String>,
}

/// `/session/status` in the newer spelling (the client parses both).
#[derive(Serialize)]
struct Status {
    id: String,
    name: String,
    connected: bool,
    #[serde(rename = "loggedIn")]
    logged_in: bool,
    jid: String,
    webhook: String,
    events: String,
}

/// Answers one session-scoped route for the request's user.
pub(crate) async fn handle(sim: &Sim, req: &mut Request, res: &mut Response, op: SessionOp) {
    let Some(token) = token::user_token(req).map(str::to_owned) else {
        return reply::error(res, StatusCode::UNAUTHORIZED, "unauthorized");
    };
    // Read the body (if the route takes one) before locking the users.
    let body = match op {
        SessionOp::Connect
        | SessionOp::SetWebhook
        | SessionOp::HmacConfig
        | SessionOp::Presence => match req.payload_with_max_size(MAX_SETTINGS_PAYLOAD).await {
            Ok(bytes) => Some(bytes.clone()),
            Err(_) => {
                return reply::error(res, StatusCode::BAD_REQUEST, "could not decode Payload")
            }
        },
        _ => None,
    };
    let body = body.as_deref().unwrap_or_default();
    match op {
        SessionOp::Connect => {
            // An empty body is fine: every field of connect is optional.
            let payload: ConnectPayload = if body.iter().all(u8::is_ascii_whitespace) {
                ConnectPayload::default()
            } else {
                match serde_json::from_slice(body) {
                    Ok(payload) => payload,
                    Err(_) => {
                        return reply::error(
                            res,
                            StatusCode::BAD_REQUEST,
                            "could not decode Payload",
                        )
                    }
                }
            };
            let prepared = sim.users.with(&token, |user| connect(user, payload, res));
            events::spawn(sim, prepared);
        }
        SessionOp::Presence => presence(sim, &token, body, res),
        SessionOp::Disconnect => sim.users.with(&token, |user| {
            if !user.connected {
                return reply::error(res, StatusCode::INTERNAL_SERVER_ERROR, "no session");
            }
            user.connected = false;
            reply::ok(res, StatusCode::OK, json!({"Details": "Disconnected"}));
        }),
        SessionOp::Logout => {
            // WuzAPI logs out only a connected, paired session.
            let prepared = sim.users.with(&token, |user| {
                if !user.connected {
                    reply::error(res, StatusCode::INTERNAL_SERVER_ERROR, "no session");
                    return None;
                }
                if !user.logged_in {
                    reply::error(
                        res,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "could not perform logout: not logged in",
                    );
                    return None;
                }
                user.logged_in = false;
                user.connected = false;
                reply::ok(res, StatusCode::OK, json!({"Details": "Logged out"}));
                events::prepare(user, SessionSignal::LoggedOut)
            });
            events::spawn(sim, prepared);
        }
        SessionOp::Status => {
            let status = sim.users.with(&token, |user| Status {
                id: user.id.clone(),
                name: user.name.clone(),
                connected: user.connected,
                logged_in: user.logged_in,
                jid: if user.logged_in {
                    user.jid.clone()
                } else {
                    String::new()
                },
                webhook: user.webhook.clone(),
                events: user.events.join(","),
            });
            reply::ok(res, StatusCode::OK, status);
        }
        SessionOp::Qr => sim.users.with(&token, |user| {
            if !user.connected {
                return reply::error(res, StatusCode::INTERNAL_SERVER_ERROR, "not connected");
            }
            if user.logged_in {
                return reply::error(res, StatusCode::INTERNAL_SERVER_ERROR, "already logged in");
            }
            // Shown, not scanned: `POST /sim/scan` is the phone.
            reply::ok(res, StatusCode::OK, json!({"QRCode": QR_PNG_DATA_URL}));
        }),
        SessionOp::Contacts => {
            let seeded = sim.users.with(&token, |user| user.contacts.clone());
            reply::ok(res, StatusCode::OK, seeded.unwrap_or_else(contacts));
        }
        SessionOp::SetWebhook => {
            let Ok(payload) = serde_json::from_slice::<WebhookPayload>(body) else {
                return reply::error(res, StatusCode::BAD_REQUEST, "could not decode Payload");
            };
            let Some(url) = payload.webhook_url else {
                return reply::error(
                    res,
                    StatusCode::BAD_REQUEST,
                    "missing webhookURL in Payload",
                );
            };
            let events = payload.events.unwrap_or_default();
            sim.users.with(&token, |user| {
                user.webhook.clone_from(&url);
                user.events.clone_from(&events);
            });
            reply::ok(
                res,
                StatusCode::OK,
                json!({"webhook": url, "events": events}),
            );
        }
        SessionOp::GetWebhook => {
            let (url, events) = sim
                .users
                .with(&token, |user| (user.webhook.clone(), user.events.clone()));
            reply::ok(
                res,
                StatusCode::OK,
                json!({"webhook": url, "subscribe": events}),
            );
        }
        SessionOp::HmacConfig => {
            let Ok(payload) = serde_json::from_slice::<HmacPayload>(body) else {
                return reply::error(res, StatusCode::BAD_REQUEST, "could not decode Payload");
            };
            let key = payload.hmac_key.unwrap_or_default();
            if key.chars().count() < MIN_HMAC_KEY_CHARS {
                return reply::error(
                    res,
                    StatusCode::BAD_REQUEST,
                    "HMAC key must be at least 32 characters long",
                );
            }
            sim.users.with(&token, |user| user.hmac_key = Some(key));
            reply::ok(
                res,
                StatusCode::OK,
                json!({"Details": "HMAC configuration saved successfully"}),
            );
        }
    }
}

/// Connects; a paired user is connected at once (`Connected` posted), an unpaired one waits for
/// its QR code to be scanned (`QR` posted). Returns the event to post.
fn connect(
    user: &mut User,
    payload: ConnectPayload,
    res: &mut Response,
) -> Option<(super::receipts::Hook, SessionSignal)> {
    if user.connected {
        reply::error(res, StatusCode::INTERNAL_SERVER_ERROR, "already connected");
        return None;
    }
    user.connected = true;
    if let Some(events) = payload.subscribe {
        user.events = events;
    }
    reply::ok(
        res,
        StatusCode::OK,
        json!({
            "details": "Connected!",
            "events": user.events.join(","),
            "jid": if user.logged_in { user.jid.as_str() } else { "" },
            "webhook": user.webhook,
        }),
    );
    let signal = if user.logged_in {
        SessionSignal::Connected
    } else {
        SessionSignal::Qr(QR_PNG_DATA_URL.to_owned())
    };
    events::prepare(user, signal)
}

/// Deterministic contacts for users nobody seeded, including a privacy `@lid` id that has no phone number.
fn contacts() -> serde_json::Value {
    let contact = |first: &str, full: &str, push: &str, business: &str| {
        json!({
            "BusinessName": business,
            "FirstName": first,
            "Found": true,
            "FullName": full,
            "PushName": push,
        })
    };
    json!({
        "6281234567890@s.whatsapp.net": contact("Budi", "Budi Santoso", "Budi", ""),
        "6285712345678@s.whatsapp.net": contact("Siti", "Siti Rahma", "Siti R", ""),
        "6281398765432@s.whatsapp.net": contact("", "", "Toko Maju", "Toko Maju Jaya"),
        "120363025246125888@lid": contact("", "", "Anonymous", ""),
    })
}

#[derive(Deserialize)]
struct PresencePayload {
    #[serde(rename = "Phone")]
    phone: Option<String>,
    #[serde(rename = "State")]
    state: Option<String>,
}

/// `POST /chat/presence`: accepted for a connected, paired user; `composing` is counted in
/// `/sim/stats` (`composing`), `paused` only accepted.
fn presence(sim: &Sim, token: &str, body: &[u8], res: &mut Response) {
    if !sim.users.with(token, |user| user.can_send()) {
        return reply::error(res, StatusCode::INTERNAL_SERVER_ERROR, "no session");
    }
    let Ok(payload) = serde_json::from_slice::<PresencePayload>(body) else {
        return reply::error(res, StatusCode::BAD_REQUEST, "could not decode Payload");
    };
    if !matches!(payload.phone.as_deref(), Some(p) if !p.is_empty()) {
        return reply::error(res, StatusCode::BAD_REQUEST, "missing Phone in Payload");
    }
    match payload.state.as_deref() {
        Some("composing") => sim.ledger.count_composing(),
        Some("paused") => {}
        _ => return reply::error(res, StatusCode::BAD_REQUEST, "invalid presence state"),
    }
    reply::ok(
        res,
        StatusCode::OK,
        json!({"Details": "Chat presence set successfully"}),
    );
}
