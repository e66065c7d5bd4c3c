//! WuzAPI's webhooks as they travel (see "What WuzAPI posts to Herald" in docs/wuzapi.md): the
//! three encodings, the `x-hmac-signature` scheme, and the event shapes Herald acts on.
//!
//! Herald's endpoint uses this to verify and unwrap a post; the simulator uses it to produce posts
//! exactly like WuzAPI's, so the two are tested against each other and against captured payloads.
//!
//! What WuzAPI signs (read from its `callHookWithHmac` / `callHookFileWithHmac`), hex HMAC-SHA256
//! keyed with the plain key string:
//! - `json` mode: the JSON body as sent;
//! - `form` mode: Go's `url.Values.Encode()` of the fields, which is also the body it sends;
//! - multipart (media files): Go's `json.Marshal` of the text fields as a string map.
//!
//! [`signed_messages`] lists, per encoding, the byte strings a valid signature may cover.

pub mod session;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

pub mod message;

pub use message::{parse_message, InboundMessage};

type HmacSha256 = Hmac<Sha256>;

/// The header WuzAPI puts its signature in (lowercase hex, no `sha256=` prefix).
pub const SIGNATURE_HEADER: &str = "x-hmac-signature";

/// WuzAPI refuses shorter keys.
pub const MIN_HMAC_KEY_CHARS: usize = 32;

/// The longest message id Herald accepts in a receipt; WhatsApp's are 16 to 32 characters.
pub(crate) const MAX_MESSAGE_ID_CHARS: usize = 128;

/// How a post is encoded (WuzAPI's `WEBHOOK_FORMAT`, plus multipart for media).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// `application/x-www-form-urlencoded`, the event JSON in the `jsonData` field (the default).
    Form,
    /// `application/json`, the event object itself with `userID` and `instanceName` added.
    Json,
    /// `multipart/form-data` with the same fields as `form` and a `file` part.
    Multipart,
}

impl Encoding {
    /// From a `Content-Type` header; `None` for anything WuzAPI does not send.
    pub fn from_content_type(content_type: &str) -> Option<Encoding> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/x-www-form-urlencoded" => Some(Encoding::Form),
            "application/json" => Some(Encoding::Json),
            "multipart/form-data" => Some(Encoding::Multipart),
            e if e.starts_with("application/") && e.ends_with("+json") => Some(Encoding::Json),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Encoding::Form => "form",
            Encoding::Json => "json",
            Encoding::Multipart => "multipart",
        }
    }
}

/// Lowercase hex HMAC-SHA256 of `message` under `key`, as WuzAPI computes it.
pub fn sign(key: &str, message: &[u8]) -> String {
    match HmacSha256::new_from_slice(key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(message);
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; this arm is unreachable in practice.
        Err(_) => String::new(),
    }
}

/// Whether `signature` (hex, any case) is the HMAC of one of `messages` under `key`. Each
/// comparison is constant-time (`verify_slice`); which candidate matched is not secret.
pub fn verify(key: &str, signature: &str, messages: &[&[u8]]) -> bool {
    let Ok(expected) = hex::decode(signature.trim()) else {
        return false;
    };
    messages.iter().any(|message| {
        let Ok(mut mac) = HmacSha256::new_from_slice(key.as_bytes()) else {
            return false;
        };
        mac.update(message);
        mac.verify_slice(&expected).is_ok()
    })
}

/// The byte strings a valid signature of this post may cover, most likely first: the raw body;
/// for a form, Go's canonical encoding of its fields (in case a proxy re-encoded the body); for
/// multipart, Go's JSON of its text fields. A JSON body sent with a trailing newline (Go's
/// `json.Encoder`) is also tried without it.
pub fn signed_messages(
    encoding: Encoding,
    body: &[u8],
    fields: &[(String, String)],
) -> Vec<Vec<u8>> {
    let mut out = vec![body.to_vec()];
    match encoding {
        Encoding::Json => {
            let trimmed = body.trim_ascii_end();
            if trimmed.len() != body.len() {
                out.push(trimmed.to_vec());
            }
        }
        Encoding::Form => {
            let canonical = go_form_encode(fields);
            if canonical.as_bytes() != body {
                out.push(canonical.into_bytes());
            }
        }
        Encoding::Multipart => {
            let map: BTreeMap<&str, &str> = fields
                .iter()
                .rev() // the first value of a repeated field wins, as in Go's FormValue
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            out.push(go_json_string_map(&map).into_bytes());
        }
    }
    out
}

/// Go's `url.Values.Encode()`: keys sorted (values of one key in order), each part escaped with
/// `url.QueryEscape` (space as `+`; only `A-Z a-z 0-9 - _ . ~` left as they are).
pub fn go_form_encode(fields: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = fields.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0)); // stable: a key's values keep their order
    let mut out = String::new();
    for (key, value) in sorted {
        if !out.is_empty() {
            out.push('&');
        }
        query_escape(key, &mut out);
        out.push('=');
        query_escape(value, &mut out);
    }
    out
}

fn query_escape(s: &str, out: &mut String) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push_str(&format!("{b:02X}"));
            }
        }
    }
}

/// Go's `json.Marshal` of a `map[string]string`: keys sorted, and `<`, `>`, `&`, U+2028 and
/// U+2029 escaped as `\u003c`-style sequences (Go's HTML-safe default). Those characters can
/// only occur inside strings, so escaping them after serde is exact.
pub fn go_json_string_map(map: &BTreeMap<&str, &str>) -> String {
    let plain = serde_json::to_string(map).unwrap_or_default();
    let mut out = String::with_capacity(plain.len());
    for c in plain.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Why a post is not a WuzAPI event (answered 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

/// The event object of a post: the JSON body, or the `jsonData` field of a form. It must be an
/// object with a string `type`; everything else about it is the processor's business.
pub fn event_from_json(text: &[u8]) -> Result<Value, Malformed> {
    let value: Value = serde_json::from_slice(text)
        .map_err(|e| Malformed(format!("the event is not valid JSON: {e}")))?;
    event_type(&value)?;
    Ok(value)
}

/// `type` of an event object.
pub fn event_type(event: &Value) -> Result<&str, Malformed> {
    let object = event
        .as_object()
        .ok_or_else(|| Malformed("the event is not a JSON object".into()))?;
    match object.get("type") {
        // a name, not text: short and printable (it is stored and shown as is)
        Some(Value::String(t))
            if !t.trim().is_empty()
                && t.chars().count() <= 64
                && !t.chars().any(char::is_control) =>
        {
            Ok(t)
        }
        Some(_) => Err(Malformed(
            "the event's `type` is not a short, printable, non-empty string".into(),
        )),
        None => Err(Malformed("the event has no `type`".into())),
    }
}

/// Which receipt a `ReadReceipt` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReceiptState {
    Delivered,
    Read,
}

impl ReceiptState {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReceiptState::Delivered => "Delivered",
            ReceiptState::Read => "Read",
        }
    }
}

/// A Delivered or Read receipt, covering one or more messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub state: ReceiptState,
    pub message_ids: Vec<String>,
    /// The event's `Timestamp`, when it has a usable one (not Go's zero time).
    pub timestamp: Option<DateTime<Utc>>,
}

/// What a `ReadReceipt` event means for Herald: `Ok(None)` for states Herald does not track
/// (`ReadSelf`: the owner read a chat on another device); `Err` when it cannot be understood.
pub fn parse_receipt(event: &Value) -> Result<Option<Receipt>, Malformed> {
    let inner = event
        .get("event")
        .and_then(Value::as_object)
        .ok_or_else(|| Malformed("ReadReceipt without an `event` object".into()))?;
    // Top-level `state` says which receipt it is; when absent, `event.Type` tells the same
    // ("" delivered, "read" read).
    let state = match event.get("state").and_then(Value::as_str) {
        Some("Delivered") => Some(ReceiptState::Delivered),
        Some("Read") => Some(ReceiptState::Read),
        Some(_) => None,
        None => match inner.get("Type").and_then(Value::as_str) {
            Some("") => Some(ReceiptState::Delivered),
            Some("read") => Some(ReceiptState::Read),
            _ => None,
        },
    };
    let Some(state) = state else {
        return Ok(None);
    };
    let ids = inner
        .get("MessageIDs")
        .and_then(Value::as_array)
        .ok_or_else(|| Malformed("ReadReceipt without a `MessageIDs` list".into()))?;
    let mut message_ids = Vec::with_capacity(ids.len());
    for id in ids {
        let id = id
            .as_str()
            .map(str::trim)
            .ok_or_else(|| Malformed("a message id in `MessageIDs` is not a string".into()))?;
        if id.is_empty()
            || id.chars().count() > MAX_MESSAGE_ID_CHARS
            || id.chars().any(char::is_control)
        {
            return Err(Malformed(format!(
                "a message id in `MessageIDs` is empty, has control characters or is longer than {MAX_MESSAGE_ID_CHARS} characters"
            )));
        }
        if !message_ids.iter().any(|known: &String| known == id) {
            message_ids.push(id.to_string());
        }
    }
    let timestamp = inner
        .get("Timestamp")
        .and_then(Value::as_str)
        .and_then(parse_timestamp);
    Ok(Some(Receipt {
        state,
        message_ids,
        timestamp,
    }))
}

/// RFC 3339; Go's zero time (`0001-01-01T00:00:00Z`) and other pre-2000 values mean "unknown".
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let at = DateTime::parse_from_rfc3339(text.trim()).ok()?;
    let at = at.with_timezone(&Utc);
    (at.timestamp() >= 946_684_800).then_some(at)
}

/// A receipt event as WuzAPI posts it (the simulator's output): `{"type": "ReadReceipt",
/// "state", "event": {...}}`.
pub fn receipt_event(
    state: ReceiptState,
    message_ids: &[&str],
    chat: &str,
    at: DateTime<Utc>,
) -> Value {
    serde_json::json!({
        "type": "ReadReceipt",
        "state": state.as_str(),
        "event": {
            "AddressingMode": "",
            "BroadcastListOwner": "",
            "Chat": chat,
            "IsFromMe": false,
            "IsGroup": false,
            "MessageIDs": message_ids,
            "MessageSender": "",
            "RecipientAlt": "",
            "Sender": chat,
            "SenderAlt": "",
            "Timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "Type": match state {
                ReceiptState::Delivered => "",
                ReceiptState::Read => "read",
            },
        },
    })
}

/// A post ready to send: content type, body and (with a key) its signature.
#[derive(Debug, Clone)]
pub struct EncodedPost {
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub signature: Option<String>,
}

/// Encodes `event` like WuzAPI does for a user, and signs it when the user has a key. Multipart
/// is only used by WuzAPI for media files, so it is not produced here.
pub fn encode_post(
    event: &Value,
    encoding: Encoding,
    user_id: &str,
    instance_name: &str,
    hmac_key: Option<&str>,
) -> EncodedPost {
    let (content_type, body) = match encoding {
        Encoding::Json => {
            let mut object = event.as_object().cloned().unwrap_or_default();
            object.insert("userID".into(), Value::from(user_id));
            object.insert("instanceName".into(), Value::from(instance_name));
            let body = serde_json::to_vec(&Value::Object(object)).unwrap_or_default();
            ("application/json", body)
        }
        Encoding::Form | Encoding::Multipart => {
            let fields = vec![
                ("jsonData".to_string(), event.to_string()),
                ("userID".to_string(), user_id.to_string()),
                ("instanceName".to_string(), instance_name.to_string()),
            ];
            (
                "application/x-www-form-urlencoded",
                go_form_encode(&fields).into_bytes(),
            )
        }
    };
    let signature = hmac_key.map(|key| sign(key, &body));
    EncodedPost {
        content_type,
        body,
        signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signatures_round_trip_and_reject_forgeries() {
        let key = "k".repeat(32);
        let signature = sign(&key, b"hello");
        assert_eq!(signature.len(), 64);
        assert!(signature
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(verify(&key, &signature, &[b"hello"]));
        assert!(verify(
            &key,
            &signature.to_uppercase(),
            &[b"other", b"hello"]
        ));
        assert!(!verify(&key, &signature, &[b"hello!"]));
        assert!(!verify(&"x".repeat(32), &signature, &[b"hello"]));
        assert!(!verify(&key, "not hex", &[b"hello"]));
        assert!(!verify(&key, "", &[b"hello"]));
        assert!(!verify(&key, &format!("sha256={signature}"), &[b"hello"]));
    }

    #[test]
    fn form_encoding_is_gos() {
        let fields = vec![
            ("userID".to_string(), "1".to_string()),
            ("jsonData".to_string(), r#"{"a": "b c*~"}"#.to_string()),
            ("instanceName".to_string(), "Toko & Co".to_string()),
        ];
        assert_eq!(
            go_form_encode(&fields),
            "instanceName=Toko+%26+Co&jsonData=%7B%22a%22%3A+%22b+c%2A~%22%7D&userID=1"
        );
    }

    #[test]
    fn go_json_escapes_html_characters() {
        let mut map = BTreeMap::new();
        map.insert("b", "<a&b>");
        map.insert("a", "x\u{2028}");
        assert_eq!(
            go_json_string_map(&map),
            r#"{"a":"x\u2028","b":"\u003ca\u0026b\u003e"}"#
        );
    }

    #[test]
    fn content_types_map_to_encodings() {
        assert_eq!(
            Encoding::from_content_type("application/x-www-form-urlencoded; charset=utf-8"),
            Some(Encoding::Form)
        );
        assert_eq!(
            Encoding::from_content_type("Application/JSON"),
            Some(Encoding::Json)
        );
        assert_eq!(
            Encoding::from_content_type("multipart/form-data; boundary=x"),
            Some(Encoding::Multipart)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
    }

    #[test]
    fn receipts_parse_with_their_state_ids_and_time() {
        let event = json!({"type": "ReadReceipt", "state": "Read", "event": {
            "MessageIDs": ["A", "B", "A"], "Timestamp": "2025-08-14T14:56:16+07:00", "Type": "read"}});
        let receipt = parse_receipt(&event).expect("valid").expect("tracked");
        assert_eq!(receipt.state, ReceiptState::Read);
        assert_eq!(receipt.message_ids, vec!["A", "B"]);
        assert_eq!(
            receipt.timestamp.map(|t| t.to_rfc3339()),
            Some("2025-08-14T07:56:16+00:00".to_string())
        );
        // without `state`, the inner Type tells; Go's zero time is no time
        let event = json!({"type": "ReadReceipt", "event": {
            "MessageIDs": ["A"], "Timestamp": "0001-01-01T00:00:00Z", "Type": ""}});
        let receipt = parse_receipt(&event).expect("valid").expect("tracked");
        assert_eq!(receipt.state, ReceiptState::Delivered);
        assert_eq!(receipt.timestamp, None);
        let own =
            json!({"type": "ReadReceipt", "state": "ReadSelf", "event": {"MessageIDs": ["A"]}});
        assert_eq!(parse_receipt(&own), Ok(None));
        for bad in [
            json!({"type": "ReadReceipt", "state": "Read"}),
            json!({"type": "ReadReceipt", "state": "Read", "event": {"MessageIDs": "A"}}),
            json!({"type": "ReadReceipt", "state": "Read", "event": {"MessageIDs": [1]}}),
            json!({"type": "ReadReceipt", "state": "Read", "event": {"MessageIDs": [""]}}),
            json!({"type": "ReadReceipt", "state": "Read", "event": {"MessageIDs": ["A\u{0}"]}}),
        ] {
            assert!(parse_receipt(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_need_an_object_with_a_type() {
        assert!(event_from_json(br#"{"type": "Message", "event": {}}"#).is_ok());
        assert!(event_from_json(br#"{"event": {}}"#).is_err());
        assert!(event_from_json(br#"{"type": 3}"#).is_err());
        assert!(event_from_json(br#"{"type": "Mes\u0000sage"}"#).is_err());
        assert!(
            event_from_json(format!(r#"{{"type": "{}"}}"#, "x".repeat(65)).as_bytes()).is_err()
        );
        assert!(event_from_json(br#"[1]"#).is_err());
        assert!(event_from_json(br#"{"type": "#).is_err());
    }

    #[test]
    fn encoded_posts_verify_the_way_herald_checks_them() {
        let key = "0123456789abcdef0123456789abcdef";
        let event = receipt_event(
            ReceiptState::Delivered,
            &["ID1"],
            "62812@s.whatsapp.net",
            Utc::now(),
        );
        let json_post = encode_post(&event, Encoding::Json, "7", "shop", Some(key));
        let signature = json_post.signature.clone().expect("signed");
        let candidates = signed_messages(Encoding::Json, &json_post.body, &[]);
        let refs: Vec<&[u8]> = candidates.iter().map(Vec::as_slice).collect();
        assert!(verify(key, &signature, &refs));
        let body: Value = serde_json::from_slice(&json_post.body).expect("json");
        assert_eq!(
            (body["userID"].as_str(), body["type"].as_str()),
            (Some("7"), Some("ReadReceipt"))
        );

        let form_post = encode_post(&event, Encoding::Form, "7", "shop", Some(key));
        let signature = form_post.signature.clone().expect("signed");
        assert!(verify(key, &signature, &[&form_post.body]));
        assert_eq!(form_post.content_type, "application/x-www-form-urlencoded");
        assert!(encode_post(&event, Encoding::Form, "7", "shop", None)
            .signature
            .is_none());
    }
}
