//! Writing answers in WuzAPI's envelope (`{"code", "data", "success"}` /
//! `{"code", "error", "success": false}`, HTTP status equal to `code`), plus plain JSON for the
//! `/sim/*` operator endpoints.

use salvo::http::header::{CONTENT_TYPE, RETRY_AFTER};
use salvo::http::{HeaderValue, StatusCode};
use salvo::Response;
use serde::Serialize;

#[derive(Serialize)]
struct Success<T> {
    code: u16,
    data: T,
    success: bool,
}

#[derive(Serialize)]
struct Failure<'a> {
    code: u16,
    error: &'a str,
    success: bool,
}

/// A success envelope around `data`.
pub(crate) fn ok<T: Serialize>(res: &mut Response, status: StatusCode, data: T) {
    json(
        res,
        status,
        &Success {
            code: status.as_u16(),
            data,
            success: true,
        },
    );
}

/// An error envelope with WuzAPI's message.
pub(crate) fn error(res: &mut Response, status: StatusCode, message: &str) {
    json(
        res,
        status,
        &Failure {
            code: status.as_u16(),
            error: message,
            success: false,
        },
    );
}

/// A 429 that tells the client when to come back, like a rate-limiting proxy in front of WuzAPI.
pub(crate) fn rate_limited(res: &mut Response, message: &str) {
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    error(res, StatusCode::TOO_MANY_REQUESTS, message);
}

/// Serialises once into the body; cheaper than a streaming writer for answers this small.
pub(crate) fn json<T: Serialize + ?Sized>(res: &mut Response, status: StatusCode, body: &T) {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            res.status_code(status);
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            res.body(bytes);
        }
        Err(e) => {
            // Only reachable with a non-string map key, i.e. a bug in this crate.
            tracing::error!(error = %e, "simulator could not serialise an answer");
            res.status_code(StatusCode::INTERNAL_SERVER_ERROR);
        }
    }
}
