//! Reading and parsing request bodies with Herald's errors: 413 over the limit, 408 when the body
//! stalls, 400 for what is not JSON, 422 naming the field (and `invalid_text` for NUL).

use salvo::prelude::*;
use serde_json::Value;

use super::ApiError;

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
