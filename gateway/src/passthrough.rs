//! The gateway pass-through (docs/gateway-passthrough.md): a tenant's request for a
//! WuzAPI feature Herald has no endpoint of its own for, forwarded with the session's token.
//!
//! [`allowed_path`] decides what may be forwarded: only paths under `chat/`, `user/`, `group/`,
//! `newsletter/`, or exactly `session/status`, and never one that could leave its prefix once
//! WuzAPI (or a proxy before it) decodes or normalises it: `.` and `..` segments (also
//! percent-encoded), encoded slashes and backslashes, backslashes, empty segments (`//`),
//! NULs and control characters. [`WuzapiClient::forward`] sends it and reads the answer up to a
//! bound (`wuzapi/forward.rs`).

use reqwest::{Method, StatusCode};

/// Longest WuzAPI answer passed back (user info with avatars, group lists): larger is 502.
pub const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// Why a path is not forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not under an allowed prefix (`admin/...`, `webhook`, `session/hmac/...`, anything else).
    NotAllowed,
    /// It could escape its prefix or is not a plain path.
    Unsafe(&'static str),
}

/// The prefixes a tenant may reach (the first segment; `session` only for `session/status`).
const ALLOWED_FIRST: [&str; 4] = ["chat", "user", "group", "newsletter"];

/// The WuzAPI path (`/chat/...`) for `raw`, the part of the request path after `.../gateway/`,
/// still percent-encoded as it arrived.
pub fn allowed_path(raw: &str) -> Result<String, Refusal> {
    if raw.is_empty() {
        return Err(Refusal::NotAllowed);
    }
    if raw
        .bytes()
        .any(|b| b.is_ascii_control() || b == b'\\' || b == b' ')
    {
        return Err(Refusal::Unsafe(
            "backslashes, spaces and control characters are not allowed",
        ));
    }
    let mut segments = Vec::new();
    for segment in raw.split('/') {
        if segment.is_empty() {
            return Err(Refusal::Unsafe(
                "empty path segments (`//`) are not allowed",
            ));
        }
        let decoded = percent_decode(segment)
            .ok_or(Refusal::Unsafe("the path has a malformed percent escape"))?;
        if decoded == "." || decoded == ".." {
            return Err(Refusal::Unsafe("`.` and `..` segments are not allowed"));
        }
        if decoded.contains(['/', '\\', '\0', '%']) || decoded.chars().any(char::is_control) {
            return Err(Refusal::Unsafe(
                "encoded slashes, backslashes, percent signs and control characters are not allowed",
            ));
        }
        segments.push(segment);
    }
    let allowed = match segments.as_slice() {
        ["session", "status"] => true,
        [first, _, ..] => ALLOWED_FIRST.contains(first),
        _ => false,
    };
    if !allowed {
        return Err(Refusal::NotAllowed);
    }
    Ok(format!("/{}", segments.join("/")))
}

/// Whether a forwarded path sends a message (`chat/send/...`), which counts against the quota.
pub fn sends_a_message(path: &str) -> bool {
    path.starts_with("/chat/send/")
}

/// `%XX` decoded; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One request to forward.
#[derive(Debug, Clone)]
pub struct ForwardRequest {
    pub method: Method,
    /// From [`allowed_path`].
    pub path: String,
    /// Without `?`, or empty.
    pub query: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// WuzAPI's answer to a forwarded request.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_prefixes_pass_unchanged() {
        for (raw, path) in [
            ("chat/send/text", "/chat/send/text"),
            ("user/info", "/user/info"),
            ("group/list", "/group/list"),
            ("newsletter/list", "/newsletter/list"),
            ("session/status", "/session/status"),
            ("chat/markread", "/chat/markread"),
            ("group/invitelink%3Fx", "/group/invitelink%3Fx"),
        ] {
            assert_eq!(allowed_path(raw).as_deref(), Ok(path), "{raw}");
        }
        assert!(sends_a_message("/chat/send/image"));
        assert!(!sends_a_message("/chat/markread"));
    }

    #[test]
    fn everything_else_is_not_allowed() {
        for raw in [
            "admin/users",
            "webhook",
            "webhook/update",
            "session/hmac/config",
            "session/connect",
            "session/logout",
            "session/status/x",
            "chat",
            "user",
            "Chat/send/text",
            "",
        ] {
            assert_eq!(allowed_path(raw), Err(Refusal::NotAllowed), "{raw}");
        }
    }

    #[test]
    fn no_path_escapes_its_prefix() {
        for raw in [
            "chat/../admin/users",
            "chat/%2e%2e/admin/users",
            "chat/%2E%2E/admin/users",
            "chat/.%2e/admin/users",
            "chat/./send/text",
            "chat/%2e/send/text",
            "chat%2F..%2Fadmin/users",
            "chat/send%2f..%2f..%2fadmin",
            "chat/..%5cadmin",
            "chat\\..\\admin\\users",
            "chat//admin/users",
            "chat/send/text/",
            "/chat/send/text",
            "chat/%00/x",
            "chat/%zz",
            "chat/%2",
            "chat/%252e%252e/admin",
            "chat/send text",
        ] {
            assert!(
                matches!(allowed_path(raw), Err(Refusal::Unsafe(_))),
                "{raw}: {:?}",
                allowed_path(raw)
            );
        }
    }
}
