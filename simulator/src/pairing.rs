//! `/sim/scan` and `/sim/drop`: what the phone and the network do, on command. Not part of
//! WuzAPI and not authenticated (the simulator is a test tool).
//!
//! - `POST /sim/scan` `{"token"}` or `{"user_id"}`: the phone scans the QR code of a connected,
//!   unpaired user: it is paired and `Connected` is posted to its webhook. 404 unknown user,
//!   409 when it is not connected or already paired.
//! - `POST /sim/drop` (same body): the connection drops: `Disconnected` is posted; the user
//!   stays paired and reconnects with `/session/connect`. 409 when it is not connected.

use salvo::http::StatusCode;
use salvo::{Request, Response};
use serde::Deserialize;
use serde_json::json;

use super::events;
use super::reply;
use super::state::Sim;
use super::users::User;
use herald_gateway::webhook::session::SessionSignal;

/// The pairing routes this module answers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PairingOp {
    Scan,
    Drop,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Which {
    token: Option<String>,
    user_id: Option<String>,
}

pub(crate) async fn handle(sim: &Sim, req: &mut Request, res: &mut Response, op: PairingOp) {
    let which = match req.payload_with_max_size(16 * 1024).await {
        Ok(bytes) => serde_json::from_slice::<Which>(bytes).ok(),
        Err(_) => None,
    };
    let act = |user: &mut User| -> Result<_, &'static str> {
        match op {
            PairingOp::Scan => {
                if !user.connected {
                    return Err("not connected: POST /session/connect first");
                }
                if user.logged_in {
                    return Err("already logged in");
                }
                user.logged_in = true;
                Ok(events::prepare(user, SessionSignal::Connected))
            }
            PairingOp::Drop => {
                if !user.connected {
                    return Err("not connected");
                }
                user.connected = false;
                Ok(events::prepare(user, SessionSignal::Disconnected))
            }
        }
    };
    let outcome = match which {
        Some(Which {
            token: Some(token), ..
        }) => sim.users.with_existing(&token, act),
        Some(Which {
            user_id: Some(id), ..
        }) => sim.users.with_id(&id, act),
        _ => {
            return reply::error(
                res,
                StatusCode::BAD_REQUEST,
                "send {\"token\": ...} or {\"user_id\": ...}",
            )
        }
    };
    match outcome {
        None => reply::error(res, StatusCode::NOT_FOUND, "user not found"),
        Some(Err(reason)) => reply::error(res, StatusCode::CONFLICT, reason),
        Some(Ok(prepared)) => {
            events::spawn(sim, prepared);
            let done = match op {
                PairingOp::Scan => "paired",
                PairingOp::Drop => "disconnected",
            };
            reply::ok(res, StatusCode::OK, json!({"Details": done}));
        }
    }
}
