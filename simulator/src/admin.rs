//! `/admin/users`: creating, listing and deleting users with the admin token, answering like newer
//! WuzAPI releases (envelope, string ids, 201 on create, 409 on a taken token).

use salvo::http::StatusCode;
use salvo::{Request, Response};
use serde::Deserialize;
use serde_json::json;

use super::reply;
use super::state::Sim;

const MAX_ADMIN_PAYLOAD: usize = 64 * 1024;

/// The admin routes this module answers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AdminOp {
    Create,
    List,
    Delete,
}

#[derive(Deserialize)]
struct CreateUser {
    #[serde(default)]
    name: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    webhook: String,
    /// WuzAPI takes `"Message,ReadReceipt"`; a JSON list is accepted too.
    #[serde(default)]
    events: Option<serde_json::Value>,
}

pub(crate) async fn handle(sim: &Sim, req: &mut Request, res: &mut Response, op: AdminOp) {
    if let Some(expected) = &sim.admin_token {
        let given = req
            .headers()
            .get("authorization")
            .and_then(|value| value.to_str().ok());
        if given != Some(expected.as_str()) {
            return reply::error(res, StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
    match op {
        AdminOp::Create => create(sim, req, res).await,
        AdminOp::List => reply::ok(res, StatusCode::OK, sim.users.list()),
        AdminOp::Delete => {
            let id = req.param::<String>("id").unwrap_or_default();
            if sim.users.delete(&id) {
                reply::ok(
                    res,
                    StatusCode::OK,
                    json!({"id": id, "Details": "user deleted"}),
                );
            } else {
                reply::error(res, StatusCode::NOT_FOUND, "user not found");
            }
        }
    }
}

async fn create(sim: &Sim, req: &mut Request, res: &mut Response) {
    let payload = match req.payload_with_max_size(MAX_ADMIN_PAYLOAD).await {
        Ok(bytes) => serde_json::from_slice::<CreateUser>(bytes).ok(),
        Err(_) => None,
    };
    let Some(payload) = payload else {
        return reply::error(res, StatusCode::BAD_REQUEST, "could not decode Payload");
    };
    if payload.name.is_empty() || payload.token.is_empty() {
        return reply::error(
            res,
            StatusCode::BAD_REQUEST,
            "missing name or token in Payload",
        );
    }
    let events = match payload.events {
        Some(serde_json::Value::String(list)) => list
            .split(',')
            .map(str::trim)
            .filter(|event| !event.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .filter_map(|event| event.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    match sim
        .users
        .create(&payload.name, &payload.token, &payload.webhook, events)
    {
        Some(user) => reply::ok(res, StatusCode::CREATED, user),
        None => reply::error(
            res,
            StatusCode::CONFLICT,
            "user with this token already exists",
        ),
    }
}
