//! What the Graph API answers a Cloud API call, read and classified without a server (so every
//! error class is unit-tested against Meta's documented shapes).
//!
//! Success: `{"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid..."}]}`
//! for a send, `{"id": "<media id>"}` for a media upload. Failure: an HTTP 4xx/5xx with
//! `{"error": {"message", "type", "code", "error_data": {"details"}, "fbtrace_id"}}`.
//!
//! Classes (docs/cloud-api.md): 130429 (throughput), 131056 (pair rate limit), any 5xx, HTTP 429
//! and unreadable answers are transient; 131048 (spam rate limit) and 190 (access token) halt
//! the number; everything else (131047 outside the 24-hour window, 131026 undeliverable, ...)
//! fails that recipient with Meta's message.

use std::time::Duration;

use reqwest::StatusCode;

use crate::{GatewayError, HaltReason};

/// Longest answer read: Graph answers to sends and uploads are a few hundred bytes.
pub(super) const MAX_BODY_BYTES: usize = 64 * 1024;

/// Meta's error codes that say "later": the number's throughput (130429) and the pair rate
/// limit between this number and one recipient (131056).
const RETRY_LATER: [i64; 2] = [130429, 131056];
/// Meta holds the number for its spam rate.
const SPAM_RATE_LIMIT: i64 = 131048;
/// The access token is expired, revoked or lacks the permission.
const ACCESS_TOKEN: i64 = 190;

/// Meta's `error` object, the parts Herald reads.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct GraphError {
    pub(super) code: Option<i64>,
    pub(super) message: String,
}

fn graph_error(body: &[u8]) -> Option<GraphError> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = json.get("error")?;
    let message = error
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or_default();
    let details = error
        .pointer("/error_data/details")
        .and_then(|d| d.as_str())
        .filter(|d| !d.is_empty() && *d != message);
    let message = match details {
        Some(details) => format!("{message} ({details})"),
        None => message.to_string(),
    };
    Some(GraphError {
        code: error.get("code").and_then(|c| c.as_i64()),
        message: message
            .chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect(),
    })
}

/// Classifies a non-2xx answer.
pub(super) fn failure(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> GatewayError {
    let error = graph_error(body);
    let code = error.as_ref().and_then(|e| e.code);
    let said = match &error {
        Some(GraphError {
            code: Some(code),
            message,
        }) => format!(
            "Meta answered {} (error {code}): {message}",
            status.as_u16()
        ),
        Some(GraphError {
            code: None,
            message,
        }) if !message.is_empty() => {
            format!("Meta answered {}: {message}", status.as_u16())
        }
        _ => format!("Meta answered {}", status.as_u16()),
    };
    match code {
        Some(SPAM_RATE_LIMIT) => GatewayError::Halt {
            reason: HaltReason::SpamRateLimit,
            message: crate::clean(said),
        },
        Some(ACCESS_TOKEN) => GatewayError::Halt {
            reason: HaltReason::GatewayAuth,
            message: crate::clean(said),
        },
        Some(code) if RETRY_LATER.contains(&code) => GatewayError::Transient {
            message: crate::clean(said),
            retry_after,
        },
        _ if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS => {
            GatewayError::Transient {
                message: crate::clean(said),
                retry_after,
            }
        }
        _ => GatewayError::permanent(said),
    }
}

/// The wamid of an accepted send (`messages[0].id`).
pub(super) fn message_id(body: &[u8]) -> Result<String, GatewayError> {
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| GatewayError::transient("Meta's answer to a send was not JSON"))?;
    json.pointer("/messages/0/id")
        .and_then(|i| i.as_str())
        .filter(|i| !i.is_empty() && i.len() <= 256)
        .map(str::to_string)
        .ok_or_else(|| GatewayError::transient("Meta's answer to a send named no message id"))
}

/// The id of an uploaded medium (`id`).
pub(super) fn media_id(body: &[u8]) -> Result<String, GatewayError> {
    let json: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| GatewayError::transient("Meta's answer to a media upload was not JSON"))?;
    json.get("id")
        .and_then(|i| i.as_str())
        .filter(|i| !i.is_empty() && i.len() <= 256)
        .map(str::to_string)
        .ok_or_else(|| GatewayError::transient("Meta's answer to a media upload named no id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(code: i64, message: &str) -> Vec<u8> {
        serde_json::json!({"error": {"message": message, "type": "OAuthException", "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": "More detail"},
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn throughput_and_pair_rate_limits_are_retried() {
        for code in [130429, 131056] {
            let e = failure(StatusCode::BAD_REQUEST, None, &meta(code, "Rate limit hit"));
            assert!(e.is_transient(), "{code}: {e:?}");
            assert!(e.message().contains(&code.to_string()), "{e:?}");
        }
        let e = failure(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(3)),
            b"",
        );
        assert_eq!(
            e,
            GatewayError::Transient {
                message: "Meta answered 429".into(),
                retry_after: Some(Duration::from_secs(3))
            }
        );
    }

    #[test]
    fn server_errors_are_retried() {
        let e = failure(StatusCode::BAD_GATEWAY, None, b"<html>bad gateway</html>");
        assert!(e.is_transient());
        let e = failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            &meta(1, "An unknown error occurred"),
        );
        assert!(e.is_transient());
    }

    #[test]
    fn spam_rate_limit_and_token_errors_halt_the_number() {
        let e = failure(
            StatusCode::BAD_REQUEST,
            None,
            &meta(131048, "Spam rate limit hit"),
        );
        assert!(matches!(
            e,
            GatewayError::Halt {
                reason: HaltReason::SpamRateLimit,
                ..
            }
        ));
        let e = failure(
            StatusCode::UNAUTHORIZED,
            None,
            &meta(190, "Error validating access token"),
        );
        assert!(matches!(
            e,
            GatewayError::Halt {
                reason: HaltReason::GatewayAuth,
                ..
            }
        ));
    }

    #[test]
    fn other_errors_fail_the_recipient_with_metas_message() {
        let e = failure(
            StatusCode::BAD_REQUEST,
            None,
            &meta(131047, "Re-engagement message"),
        );
        assert_eq!(
            e,
            GatewayError::Permanent {
                message: "Meta answered 400 (error 131047): Re-engagement message (More detail)"
                    .into()
            }
        );
        let e = failure(
            StatusCode::BAD_REQUEST,
            None,
            &meta(131026, "Message undeliverable"),
        );
        assert!(matches!(e, GatewayError::Permanent { .. }));
        assert!(e.message().contains("Message undeliverable"));
        // without Meta's shape: the status is all there is
        let e = failure(StatusCode::NOT_FOUND, None, b"nope");
        assert_eq!(e.message(), "Meta answered 404");
    }

    #[test]
    fn an_accepted_send_gives_the_wamid() {
        let body = br#"{"messaging_product":"whatsapp","contacts":[{"input":"16505551234","wa_id":"16505551234"}],"messages":[{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3QTU0"}]}"#;
        assert_eq!(
            message_id(body).as_deref(),
            Ok("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3QTU0")
        );
        assert!(message_id(b"{}").is_err_and(|e| e.is_transient()));
        assert!(message_id(b"not json").is_err_and(|e| e.is_transient()));
        assert_eq!(
            media_id(br#"{"id":"1037543291543636"}"#).as_deref(),
            Ok("1037543291543636")
        );
    }
}
