//! One error type for every handler, rendered as Herald's envelope
//! `{"error": {"code", "message", "details"?}}`. Codes are stable; causes of 5xx are logged, never
//! returned.

use salvo::http::StatusCode;
use salvo::oapi::{self, Components, EndpointOutRegister, Operation, ToSchema};
use salvo::prelude::*;
use serde::Serialize;
use serde_json::Value;

mod body;
mod flows;

pub use body::{body_error, is_body_timeout, json_body, parse_json, read_body};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request (not JSON, bad query parameter): 400.
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        details: Option<Value>,
    },
    /// Well-formed but invalid: 422, naming the field.
    #[error("{field}: {message}")]
    Validation {
        field: String,
        message: String,
        details: Option<Value>,
    },
    /// An image that cannot be used (refused URL, failed fetch, too large, not an image): 422
    /// `invalid_image`, naming the field and the reason (docs/images.md).
    #[error("{field}: {reason}")]
    InvalidImage {
        field: String,
        /// `url_refused`, `fetch_failed`, `too_large` or `not_a_valid_image`.
        kind: &'static str,
        reason: String,
    },
    #[error("authentication required")]
    Unauthorized(String),
    #[error("forbidden")]
    Forbidden { code: &'static str, message: String },
    #[error("not found")]
    NotFound,
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request body sent nothing for the idle timeout (`HERALD_BODY_IDLE_TIMEOUT_SECS`): 408.
    #[error("the request body stopped arriving")]
    BodyTimeout,
    /// The gateway (WuzAPI) refused or could not be reached: 502.
    #[error("{0}")]
    Gateway(String),
    /// The gateway could not be reached at all (refused, timed out): 502 `gateway_unavailable`.
    #[error("{0}")]
    GatewayUnavailable(String),
    #[error("service unavailable")]
    Unavailable(String),
    /// A shared pool (image downloads, password hashing, ...) had no room within its wait
    /// (decision 0043): 503 `busy` with `Retry-After` (seconds).
    #[error("{message}")]
    Busy {
        message: String,
        retry_after_secs: u64,
    },
    /// Well-formed but refused for a reason with its own code (e.g. `idempotency_key_reused`): 422.
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        details: Option<Value>,
    },
    /// A plan's limit or an expired subscription: 403 with the limit in `details`.
    #[error("{message}")]
    PlanRefused {
        code: &'static str,
        message: String,
        details: Option<Value>,
    },
    /// Over a quota or rate limit: 429 with `Retry-After` (seconds).
    #[error("{message}")]
    TooManyRequests {
        code: &'static str,
        message: String,
        details: Option<Value>,
        retry_after_secs: u64,
    },
    /// A request that stopped part-way after some of its work was committed (a streamed
    /// import): the cause's status and code, a message saying what was applied, and the cause's
    /// details plus `applied`.
    #[error("{message}")]
    PartlyApplied {
        cause: Box<ApiError>,
        message: String,
        applied: Value,
    },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        ApiError::Validation {
            field: field.to_string(),
            message: message.into(),
            details: None,
        }
    }

    /// Text Postgres cannot store (U+0000) in `field`: 422 `invalid_text` (docs/decisions/0037).
    pub fn invalid_text(field: &str) -> Self {
        // a key holding the NUL is named with it written out, so the answer itself is clean
        let field = field.replace('\0', "\\u0000");
        ApiError::Unprocessable {
            code: "invalid_text",
            message: format!(
                "{field}: contains U+0000 (NUL), which Herald does not accept in text"
            ),
            details: Some(serde_json::json!({ "field": field })),
        }
    }

    /// A request body that stopped arriving: 408 `body_timeout`.
    pub fn body_timeout() -> Self {
        ApiError::BodyTimeout
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
            details: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InvalidImage { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Gateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::GatewayUnavailable(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PlanRefused { .. } => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PartlyApplied { cause, .. } => cause.status(),
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> ErrorBody {
        let (code, message, details) = match self {
            ApiError::BadRequest {
                code,
                message,
                details,
            } => (*code, message.clone(), details.clone()),
            ApiError::Validation {
                field,
                message,
                details,
            } => {
                let mut d = serde_json::json!({ "field": field });
                if let (Some(extra), Some(obj)) = (details, d.as_object_mut()) {
                    obj.insert("context".into(), extra.clone());
                }
                ("validation_failed", format!("{field}: {message}"), Some(d))
            }
            ApiError::InvalidImage {
                field,
                kind,
                reason,
            } => (
                "invalid_image",
                format!("{field}: {reason}"),
                Some(serde_json::json!({ "field": field, "kind": kind, "reason": reason })),
            ),
            ApiError::Unauthorized(m) => ("unauthorized", m.clone(), None),
            ApiError::Forbidden { code, message } => (*code, message.clone(), None),
            ApiError::NotFound => ("not_found", "no such object".to_string(), None),
            ApiError::Conflict { code, message } => (*code, message.clone(), None),
            ApiError::PayloadTooLarge(m) => ("payload_too_large", m.clone(), None),
            ApiError::BodyTimeout => (
                "body_timeout",
                "the request body stopped arriving; send it again".to_string(),
                None,
            ),
            ApiError::Gateway(m) => ("gateway_error", m.clone(), None),
            ApiError::GatewayUnavailable(m) => ("gateway_unavailable", m.clone(), None),
            ApiError::Unavailable(m) => ("unavailable", m.clone(), None),
            ApiError::Busy {
                message,
                retry_after_secs,
            } => (
                "busy",
                message.clone(),
                Some(serde_json::json!({ "retry_after_secs": retry_after_secs })),
            ),
            ApiError::PlanRefused {
                code,
                message,
                details,
            }
            | ApiError::Unprocessable {
                code,
                message,
                details,
            }
            | ApiError::TooManyRequests {
                code,
                message,
                details,
                ..
            } => (*code, message.clone(), details.clone()),
            ApiError::PartlyApplied {
                cause,
                message,
                applied,
            } => {
                let inner = cause.body().error;
                let mut details = match inner.details {
                    Some(Value::Object(map)) => map,
                    _ => serde_json::Map::new(),
                };
                details.insert("applied".into(), applied.clone());
                return ErrorBody {
                    error: ErrorDetail {
                        code: inner.code,
                        message: message.clone(),
                        details: Some(Value::Object(details)),
                    },
                };
            }
            ApiError::Unexpected(_) => (
                "internal_error",
                "something went wrong on our side; it was logged".to_string(),
                None,
            ),
        };
        ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message,
                details,
            },
        }
    }
}

impl ApiError {
    /// An image refusal for `field`; Herald's own failures stay 500s.
    pub fn image(field: &str, error: herald_media::MediaError) -> Self {
        match error {
            herald_media::MediaError::Internal(m) => {
                ApiError::Unexpected(anyhow::anyhow!("image processing: {m}"))
            }
            herald_media::MediaError::Busy {
                message,
                retry_after_secs,
            } => ApiError::Busy {
                message,
                retry_after_secs,
            },
            other => ApiError::InvalidImage {
                field: field.to_string(),
                kind: other.kind(),
                reason: other.to_string(),
            },
        }
    }
}

/// The error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `validation_failed`, `not_found`, `unauthorized`.
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl Scribe for ApiError {
    fn render(self, res: &mut Response) {
        let status = self.status();
        let unexpected = match &self {
            ApiError::PartlyApplied { cause, .. } => match cause.as_ref() {
                ApiError::Unexpected(e) => Some(e),
                _ => None,
            },
            ApiError::Unexpected(e) => Some(e),
            _ => None,
        };
        if let Some(cause) = unexpected {
            tracing::error!(error = %format!("{cause:#}"), "request failed");
        }
        res.status_code(status);
        if let ApiError::TooManyRequests {
            retry_after_secs, ..
        }
        | ApiError::Busy {
            retry_after_secs, ..
        } = &self
        {
            let _ = res.add_header("retry-after", retry_after_secs.to_string(), true);
        }
        res.render(Json(self.body()));
    }
}

/// Every status an [`ApiError`] can be, with what it means in general. Each operation's
/// `status_codes(...)` keeps the ones its handler can answer, and the router adds the ones that
/// follow from the operation's shape (credentials, a body, path or query parameters): see
/// `routes::openapi`.
pub const ERROR_STATUSES: [(&str, &str); 11] = [
    (
        "400",
        "malformed request: a body that is not JSON, a bad query parameter or cursor",
    ),
    ("401", "missing or invalid credentials"),
    (
        "403",
        "refused: a plan's limit, an expired subscription, a wrong verify token",
    ),
    ("404", "not found, or another tenant's"),
    ("408", "the request body stopped arriving"),
    (
        "409",
        "conflicts with the object's state or another request",
    ),
    ("413", "the request body is too large"),
    ("422", "an invalid field, named in details"),
    (
        "429",
        "over a quota or rate limit; Retry-After says when to retry",
    ),
    (
        "502",
        "the WhatsApp gateway refused or could not be reached",
    ),
    ("503", "busy or not ready; try again"),
];

/// The response of an error status: the envelope.
pub fn error_response(components: &mut Components, what: &str) -> oapi::Response {
    oapi::Response::new(what).add_content("application/json", ErrorBody::to_schema(components))
}

impl EndpointOutRegister for ApiError {
    fn register(components: &mut Components, operation: &mut Operation) {
        for (status, what) in ERROR_STATUSES {
            operation
                .responses
                .insert(status, error_response(components, what));
        }
    }
}

/// Renders salvo's own errors (unknown route, wrong method, panics) as the envelope too.
#[handler]
pub async fn envelope_catcher(res: &mut Response, ctrl: &mut FlowCtrl) {
    let status = res.status_code.unwrap_or(StatusCode::NOT_FOUND);
    if !status.is_client_error() && !status.is_server_error() {
        return;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method_not_allowed", "method not allowed on this route")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "request body too large"),
        StatusCode::REQUEST_TIMEOUT => ("body_timeout", "the request body stopped arriving"),
        s if s.is_server_error() => (
            "internal_error",
            "something went wrong on our side; it was logged",
        ),
        _ => ("bad_request", "bad request"),
    };
    res.render(Json(ErrorBody {
        error: ErrorDetail {
            code: code.into(),
            message: message.into(),
            details: None,
        },
    }));
    ctrl.skip_rest();
}
