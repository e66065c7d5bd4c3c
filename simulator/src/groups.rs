//! `GET /group/list`: the groups the user's number is in. Herald has no endpoint of its own for
//! it, so it is what the gateway pass-through is shown reaching (a fixed list, in
//! WuzAPI's envelope; 401 without a token, like WuzAPI).

use salvo::http::StatusCode;
use salvo::{Request, Response};
use serde_json::json;

use crate::reply;

pub(crate) fn list(req: &Request, res: &mut Response) {
    if crate::token::user_token(req).is_none() {
        return reply::error(res, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    reply::ok(
        res,
        StatusCode::OK,
        json!({"Groups": [{"JID": "120363025246125888@g.us", "Name": "Simulated group",
                           "OwnerJID": "6281200000000@s.whatsapp.net"}]}),
    );
}
