//! One error type for every handler, rendered as Herald's envelope
//! `{"error": {"code", "message", "details"?}}`. Codes are stable; causes of 5xx are logged, never
//! returned.

use salvo::http::StatusCode;
use salvo::oapi::{self, Components, EndpointOutRegister, Operation, ToSchema};
use salvo::prelude::*;
use serde::Serialize;
use serde_json::Value;

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

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Unexpected(e.into())
    }
}

impl From<herald_domain::store::StoreError> for ApiError {
    fn from(e: herald_domain::store::StoreError) -> Self {
        // a concurrent writer won the race for the same stream: the caller may simply retry
        if e.is_retryable() {
            return ApiError::Conflict {
                code: "concurrent_update",
                message: "the object changed while this request ran; try again".into(),
            };
        }
        ApiError::Unexpected(e.into())
    }
}

impl From<herald_domain::DomainError> for ApiError {
    fn from(e: herald_domain::DomainError) -> Self {
        use herald_domain::DomainError as D;
        match e {
            D::NotFound => ApiError::NotFound,
            D::AlreadyExists => ApiError::Conflict {
                code: "already_exists",
                message: "it already exists".into(),
            },
            D::Invalid { field, message } => ApiError::validation(&field, message),
            D::Conflict(message) => ApiError::Conflict {
                code: "invalid_state",
                message,
            },
        }
    }
}

impl From<herald_scheduler::Error> for ApiError {
    fn from(e: herald_scheduler::Error) -> Self {
        use herald_scheduler::Error as E;
        match e {
            E::Store(s) => s.into(),
            E::Database(d) => d.into(),
        }
    }
}

impl From<herald_campaigns::Error> for ApiError {
    fn from(e: herald_campaigns::Error) -> Self {
        use herald_campaigns::Error as E;
        match e {
            E::Domain(d) => d.into(),
            E::Store(s) => s.into(),
            E::Database(d) => d.into(),
            E::Json(j) => ApiError::Unexpected(j.into()),
            E::Queue(q) => q.into(),
        }
    }
}

impl From<herald_campaigns::intake::IntakeError> for ApiError {
    fn from(e: herald_campaigns::intake::IntakeError) -> Self {
        use herald_campaigns::intake::IntakeError as E;
        match e {
            E::TooManyRecipients(m) => ApiError::PayloadTooLarge(m),
            E::Invalid {
                field,
                message,
                details,
            } => ApiError::Validation {
                field,
                message,
                details,
            },
            E::NoTenant => ApiError::NotFound,
            E::Campaign(c) => c.into(),
        }
    }
}

impl From<herald_messages::Error> for ApiError {
    fn from(e: herald_messages::Error) -> Self {
        use herald_messages::Error as E;
        match e {
            E::Domain(d) => d.into(),
            E::Store(s) => s.into(),
            E::Database(d) => d.into(),
            E::Json(j) => ApiError::Unexpected(j.into()),
        }
    }
}

impl From<cqrs_es::AggregateError<herald_domain::DomainError>> for ApiError {
    fn from(e: cqrs_es::AggregateError<herald_domain::DomainError>) -> Self {
        match e {
            cqrs_es::AggregateError::UserError(d) => d.into(),
            cqrs_es::AggregateError::AggregateConflict => ApiError::Conflict {
                code: "concurrent_update",
                message: "the object changed while this request ran; try again".into(),
            },
            other => ApiError::Unexpected(anyhow::anyhow!("{other}")),
        }
    }
}

// Accounts (herald-accounts): plans, attempt counters, number ownership.

impl From<herald_accounts::plans::PlanError> for ApiError {
    fn from(e: herald_accounts::plans::PlanError) -> Self {
        use herald_accounts::plans::PlanError as E;
        let message = e.to_string();
        match e {
            E::NoTenant => ApiError::NotFound,
            E::SubscriptionExpired { plan, expires_at } => ApiError::PlanRefused {
                code: "subscription_expired",
                message,
                details: Some(serde_json::json!({ "plan": plan, "expires_at": expires_at })),
            },
            E::ApiCallsOverLimit {
                limit,
                resets_at,
                retry_after_secs,
                ..
            } => ApiError::TooManyRequests {
                code: "rate_limited",
                message,
                details: Some(serde_json::json!({"limit": limit, "resets_at": resets_at})),
                retry_after_secs,
            },
            E::Database(d) => d.into(),
        }
    }
}

impl From<herald_accounts::throttle::ThrottleError> for ApiError {
    fn from(e: herald_accounts::throttle::ThrottleError) -> Self {
        use herald_accounts::throttle::ThrottleError as E;
        let message = e.to_string();
        match e {
            E::TooManyAttempts {
                limit,
                window_secs,
                retry_after_secs,
                ..
            } => ApiError::TooManyRequests {
                code: "too_many_attempts",
                message,
                details: Some(serde_json::json!({
                    "limit": limit,
                    "window_secs": window_secs,
                    "retry_after_secs": retry_after_secs,
                })),
                retry_after_secs: retry_after_secs.max(1) as u64,
            },
            E::Database(d) => d.into(),
        }
    }
}

impl From<herald_accounts::ownership::OwnershipError> for ApiError {
    fn from(e: herald_accounts::ownership::OwnershipError) -> Self {
        use herald_accounts::ownership::OwnershipError as E;
        let message = e.to_string();
        match e {
            E::TokenTaken {
                own_session: Some(session),
            } => ApiError::Conflict {
                code: "gateway_token_taken",
                message: format!("this WuzAPI token is already linked as your session {session}"),
            },
            E::TokenTaken { own_session: None } => ApiError::Conflict {
                code: "gateway_token_taken",
                message,
            },
            E::PhoneNumberIdTaken => ApiError::Conflict {
                code: "phone_number_id_taken",
                message,
            },
            E::InvalidAccessToken | E::AccessTokenRequired | E::MetaRefused(_) => {
                ApiError::validation("meta_access_token", message)
            }
            E::MetaUnavailable(_) => ApiError::GatewayUnavailable(message),
            E::Database(d) => d.into(),
        }
    }
}

// Contacts (herald-contacts): contact writes and imports.

impl From<herald_contacts::ContactsError> for ApiError {
    fn from(e: herald_contacts::ContactsError) -> Self {
        use herald_contacts::ContactsError as E;
        match e {
            E::Invalid { field, message } => ApiError::validation(&field, message),
            E::InvalidText { field } => ApiError::invalid_text(&field),
            E::TooLarge(m) => ApiError::PayloadTooLarge(m),
            E::BodyFailed(m) => {
                ApiError::bad_request("invalid_body", format!("cannot read the body: {m}"))
            }
            E::BodyStalled => ApiError::BodyTimeout,
            E::Stopped { cause, applied } => {
                let cause = ApiError::from(*cause);
                let message = if applied.rows == 0 {
                    format!("{}; nothing was imported", cause.body().error.message)
                } else {
                    format!(
                        "{}; the {} rows through line {} were imported and nothing after \
                         (re-running the file is safe: rows already applied change nothing)",
                        cause.body().error.message,
                        applied.rows,
                        applied.through_line
                    )
                };
                ApiError::PartlyApplied {
                    cause: Box::new(cause),
                    message,
                    applied: serde_json::json!({
                        "rows": applied.rows,
                        "through_line": applied.through_line,
                        "imported": applied.imported,
                        "matched": applied.matched,
                        "rejected_count": applied.rejected_count,
                    }),
                }
            }
            E::Domain(d) => d.into(),
            E::Store(s) => s.into(),
            E::Database(d) => d.into(),
            E::Internal(e) => ApiError::Unexpected(e),
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

/// Parses a JSON body of at most `max` bytes into `T`, with Herald's errors:
/// not JSON → 400 `invalid_json`; wrong or unknown fields → 422 naming the field; too large → 413.
pub async fn json_body<T: serde::de::DeserializeOwned>(
    req: &mut Request,
    max: usize,
) -> Result<T, ApiError> {
    let bytes = read_body(req, max).await?;
    parse_json(&bytes)
}

/// The raw body, at most `max` bytes (more is 413; a body that stalls is 408).
pub async fn read_body(req: &mut Request, max: usize) -> Result<Vec<u8>, ApiError> {
    let bytes = match req.payload_with_max_size(max).await {
        Ok(b) => b.clone(),
        Err(e) => return Err(body_error(e, max)),
    };
    if bytes.len() > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "the request body is larger than {max} bytes"
        )));
    }
    Ok(bytes.to_vec())
}

/// What a failed body read answers: 413 over `max`, 408 when it stalled past the server's
/// body idle timeout, 400 otherwise.
pub fn body_error(e: salvo::http::ParseError, max: usize) -> ApiError {
    if matches!(e, salvo::http::ParseError::PayloadTooLarge) {
        return ApiError::PayloadTooLarge(format!("the request body is larger than {max} bytes"));
    }
    let text = e.to_string();
    if is_body_timeout(&e) {
        return ApiError::BodyTimeout;
    }
    if text.contains("size") || text.contains("large") || text.contains("limit") {
        return ApiError::PayloadTooLarge(format!("the request body is larger than {max} bytes"));
    }
    ApiError::bad_request("invalid_body", format!("cannot read the body: {text}"))
}

/// Whether an error (or one of its causes) is salvo's request-body timeout (an `io::Error` of
/// kind `TimedOut`).
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
            if let Some(inner) = io.get_ref() {
                if is_body_timeout(inner) {
                    return true;
                }
            }
        }
        cause = e.source();
    }
    // salvo wraps the cause in a boxed error whose text is all that survives
    error.to_string().contains("request body timeout")
}

/// Parses a JSON body into `T`. Any string or key holding U+0000 is 422 `invalid_text` naming
/// its path (docs/decisions/0037): the check costs one substring search unless `\u0000` is there.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if herald_domain::text::may_hold_nul(bytes) {
        if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
            if let Some(path) = herald_domain::text::nul_path(&value) {
                let field = if path.is_empty() {
                    "body".to_string()
                } else {
                    path
                };
                return Err(ApiError::invalid_text(&field));
            }
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    if parsed.is_ok() {
        // trailing garbage after the value is a syntax error too
        de.end().map_err(|e| ApiError::BadRequest {
            code: "invalid_json",
            message: format!(
                "the body is not valid JSON: {}",
                strip_position(&e.to_string())
            ),
            details: None,
        })?;
    }
    parsed.map_err(|e| {
        use serde_json::error::Category;
        let path = e.path().to_string();
        let inner = e.into_inner();
        let details = Some(serde_json::json!({"line": inner.line(), "column": inner.column()}));
        match inner.classify() {
            Category::Data => {
                let message = inner.to_string();
                // serde's path ends at the unknown field itself, but at the PARENT of a missing one
                let root = path == "." || path.is_empty();
                let field = match (message.starts_with("missing field"), field_of(&message)) {
                    (true, Some(f)) if root => f,
                    (true, Some(f)) => format!("{path}.{f}"),
                    _ if !root => path.clone(),
                    (_, Some(f)) => f,
                    _ => "body".to_string(),
                };
                ApiError::Validation {
                    field,
                    message: strip_position(&message),
                    details,
                }
            }
            Category::Syntax | Category::Eof | Category::Io => ApiError::BadRequest {
                code: "invalid_json",
                message: format!(
                    "the body is not valid JSON: {}",
                    strip_position(&inner.to_string())
                ),
                details,
            },
        }
    })
}

/// serde names the field in backquotes: "missing field `email`", "unknown field `foo`".
fn field_of(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    let candidate = &message[start..start + len];
    (message.contains("field") && !candidate.is_empty()).then(|| candidate.to_string())
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        email: String,
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        let e = parse_json::<Body>(br#"{}"#).unwrap_err();
        assert!(
            matches!(e, ApiError::Validation { ref field, .. } if field == "email"),
            "{e:?}"
        );
        let e = parse_json::<Body>(br#"{"email": "a", "admin": true}"#).unwrap_err();
        assert!(
            matches!(e, ApiError::Validation { ref field, .. } if field == "admin"),
            "{e:?}"
        );
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Campaign {
        name: String,
        recipients: Vec<serde_json::Map<String, Value>>,
    }

    #[test]
    fn a_nul_anywhere_is_invalid_text_naming_its_path() {
        let body =
            br#"{"name": "x", "recipients": [{"phone": "1"}, {"vars": {"name": "a\u0000"}}]}"#;
        let e = parse_json::<Campaign>(body).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = e.body().error;
        assert_eq!(body.code, "invalid_text");
        assert_eq!(body.details.unwrap()["field"], "recipients[1].vars.name");
        // in a key too, and at the top
        let e = parse_json::<Value>(br#"{"fields": {"c\u0000": 1}}"#).unwrap_err();
        assert_eq!(e.body().error.details.unwrap()["field"], r"fields.c\u0000");
        let e = parse_json::<Value>(br#""\u0000""#).unwrap_err();
        assert_eq!(e.body().error.details.unwrap()["field"], "body");
        // an escaped backslash before u0000 is ordinary text
        let ok: Campaign = parse_json(br#"{"name": "\\u0000", "recipients": []}"#).unwrap();
        assert_eq!(ok.name, "\\u0000");
    }

    #[test]
    fn broken_json_is_a_bad_request() {
        let e = parse_json::<Body>(br#"{"email": "#).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.body().error.code, "invalid_json");
    }
}
