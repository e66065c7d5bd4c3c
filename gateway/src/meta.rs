//! The WhatsApp Cloud API's webhooks (Meta): the verification handshake, the
//! `X-Hub-Signature-256` scheme, and the notification shapes Herald acts on.
//!
//! A notification is `{"object": "whatsapp_business_account", "entry": [{"id": <WABA id>,
//! "changes": [{"field": "messages", "value": {...}}]}]}`. Each `value` belongs to one business
//! number (`value.metadata.phone_number_id`) and may hold `statuses[]` (what became of messages
//! the business sent: `sent`, `delivered`, `read`, `failed` with `errors[]`) and `messages[]`
//! (what users wrote), with `contacts[]` naming the senders.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::webhook::message::{clean_name, clean_text, message_id, InboundMessage};
use crate::webhook::Malformed;

pub mod preferences;

/// The header Meta signs notifications in: `sha256=<hex HMAC-SHA256(app secret, raw body)>`.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Whether `header` is `sha256=<hex>` of the HMAC of `body` under the app secret, compared in
/// constant time (`verify_slice`).
pub fn verify_signature(app_secret: &str, header: &str, body: &[u8]) -> bool {
    let Some(hex_part) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_part) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// The header value Meta would send for `body` (for tests and tools).
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    format!("sha256={}", crate::webhook::sign(app_secret, body))
}

/// One `entry[].changes[]` of a notification: the business number it is for, and its `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `value.metadata.phone_number_id` (`None` for fields that are not about one number).
    pub phone_number_id: Option<String>,
    /// `changes[].field`, e.g. `messages`.
    pub field: String,
    /// The change as stored: `{"field", "value"}`.
    pub change: Value,
}

/// Splits a notification into its changes. `Err` when it is not a WhatsApp Business Account
/// notification at all (answered 400).
pub fn changes(notification: &Value) -> Result<Vec<Change>, Malformed> {
    let object = notification
        .as_object()
        .ok_or_else(|| Malformed("the notification is not a JSON object".into()))?;
    if object.get("object").and_then(Value::as_str) != Some("whatsapp_business_account") {
        return Err(Malformed(
            "`object` is not \"whatsapp_business_account\"".into(),
        ));
    }
    let entries = object
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| Malformed("the notification has no `entry` list".into()))?;
    let mut out = Vec::new();
    for entry in entries {
        let Some(changes) = entry.get("changes").and_then(Value::as_array) else {
            return Err(Malformed("an entry has no `changes` list".into()));
        };
        for change in changes {
            if !change.is_object() {
                return Err(Malformed("a change is not an object".into()));
            }
            let field = change
                .get("field")
                .and_then(Value::as_str)
                .filter(|f| !f.is_empty() && f.len() <= 64 && !f.chars().any(char::is_control))
                .ok_or_else(|| Malformed("a change has no printable `field`".into()))?
                .to_string();
            let phone_number_id = change
                .pointer("/value/metadata/phone_number_id")
                .and_then(|v| match v {
                    Value::String(s) => Some(s.trim().to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .filter(|s| valid_phone_number_id(s));
            out.push(Change {
                phone_number_id,
                field,
                change: change.clone(),
            });
        }
    }
    Ok(out)
}

/// Meta's phone number ids are digits (15 to 17 of them today).
pub fn valid_phone_number_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_digit())
}

/// What became of a message the business sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusKind {
    Sent,
    Delivered,
    Read,
    /// Could not be sent or delivered; the reason from `errors[]`.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub message_id: String,
    pub kind: StatusKind,
    pub timestamp: Option<DateTime<Utc>>,
}

/// What a `messages` change holds for Herald.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MessagesValue {
    pub statuses: Vec<Status>,
    pub messages: Vec<InboundMessage>,
    /// A `user_preferences` change's marketing stops and resumes ([`preferences`]).
    pub preferences: Vec<preferences::MarketingPreference>,
    /// Status values Herald does not track (e.g. `deleted`, `warning`), counted for the note.
    pub ignored: usize,
}

/// Meta's timestamps: Unix seconds as a string (or a number).
fn unix_time(value: Option<&Value>) -> Option<DateTime<Utc>> {
    let secs = match value? {
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    (secs >= 946_684_800)
        .then(|| DateTime::from_timestamp(secs, 0))
        .flatten()
}

/// The failure reason of a `failed` status: `<code> <title>: <details or message>`.
fn failure_reason(status: &Value) -> String {
    let Some(error) = status
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    else {
        return "the Cloud API reported the message as failed".into();
    };
    let code = error.get("code").map(|c| match c {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    let title = error.get("title").and_then(Value::as_str);
    let detail = error
        .pointer("/error_data/details")
        .and_then(Value::as_str)
        .or_else(|| error.get("message").and_then(Value::as_str));
    let mut reason = String::new();
    if let Some(code) = code {
        reason.push_str(&code);
    }
    if let Some(title) = title {
        if !reason.is_empty() {
            reason.push(' ');
        }
        reason.push_str(title);
    }
    if let Some(detail) = detail.filter(|d| Some(*d) != title) {
        if !reason.is_empty() {
            reason.push_str(": ");
        }
        reason.push_str(detail);
    }
    let reason: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .take(1_000)
        .collect();
    if reason.trim().is_empty() {
        "the Cloud API reported the message as failed".into()
    } else {
        reason
    }
}

/// A Cloud API message's kind and text: `text.body`, a media caption, or the type alone.
fn cloud_content(message: &Value) -> (String, Option<String>) {
    let kind = message
        .get("type")
        .and_then(Value::as_str)
        .filter(|k| {
            !k.is_empty()
                && k.len() <= 32
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .unwrap_or("unknown")
        .to_string();
    let text = match kind.as_str() {
        "text" => message.pointer("/text/body"),
        "image" | "video" | "document" => message.pointer(&format!("/{kind}/caption")),
        "reaction" => message.pointer("/reaction/emoji"),
        "button" => message.pointer("/button/text"),
        "interactive" => message
            .pointer("/interactive/button_reply/title")
            .or_else(|| message.pointer("/interactive/list_reply/title")),
        "location" => message.pointer("/location/name"),
        "contacts" => message.pointer("/contacts/0/name/formatted_name"),
        _ => None,
    };
    let kind = match kind.as_str() {
        "contacts" => "contact".to_string(),
        _ => kind,
    };
    (kind, clean_text(text.and_then(Value::as_str)))
}

/// Reads the `value` of a `messages` change. `Err` for a status or message without a usable id.
pub fn parse_messages_value(change: &Value) -> Result<MessagesValue, Malformed> {
    let value = change
        .get("value")
        .ok_or_else(|| Malformed("the change has no `value`".into()))?;
    let mut out = MessagesValue::default();
    if let Some(statuses) = value.get("statuses").and_then(Value::as_array) {
        for status in statuses {
            let id = message_id(status.get("id"), "statuses[].id")?;
            let kind = match status.get("status").and_then(Value::as_str) {
                Some("sent") => StatusKind::Sent,
                Some("delivered") => StatusKind::Delivered,
                Some("read") => StatusKind::Read,
                Some("failed") => StatusKind::Failed(failure_reason(status)),
                _ => {
                    out.ignored += 1;
                    continue;
                }
            };
            out.statuses.push(Status {
                message_id: id,
                kind,
                timestamp: unix_time(status.get("timestamp")),
            });
        }
    }
    if let Some(messages) = value.get("messages").and_then(Value::as_array) {
        let contacts = value.get("contacts").and_then(Value::as_array);
        for message in messages {
            let id = message_id(message.get("id"), "messages[].id")?;
            let from = message
                .get("from")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|f| !f.is_empty() && f.len() <= 32 && f.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| Malformed("a message's `from` is not a WhatsApp user id".into()))?;
            let name = contacts
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.get("wa_id").and_then(Value::as_str) == Some(from))
                        .or_else(|| (cs.len() == 1).then(|| &cs[0]))
                })
                .and_then(|c| c.pointer("/profile/name"))
                .and_then(Value::as_str);
            let (kind, text) = cloud_content(message);
            let jid = format!("{from}@s.whatsapp.net");
            out.messages.push(InboundMessage {
                id,
                chat: jid.clone(),
                sender: jid,
                from_me: false,
                is_group: false,
                push_name: clean_name(name),
                text,
                kind,
                timestamp: unix_time(message.get("timestamp")),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A status notification in the Cloud API's documented shape.
    fn statuses() -> Value {
        json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
            "value": {"messaging_product": "whatsapp",
                      "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
                      "statuses": [
                        {"id": "wamid.A", "status": "delivered", "timestamp": "1750857384", "recipient_id": "16505551234",
                         "pricing": {"billable": true, "pricing_model": "CBP", "category": "service"}},
                        {"id": "wamid.B", "status": "failed", "timestamp": "1750857385", "recipient_id": "16505551234",
                         "errors": [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
                                     "error_data": {"details": "Message Undeliverable."}}]},
                        {"id": "wamid.C", "status": "deleted", "timestamp": "1750857386", "recipient_id": "1"}]},
            "field": "messages"}]}]})
    }

    #[test]
    fn signatures_are_sha256_prefixed_hex() {
        let secret = "app-secret";
        let header = sign(secret, b"{}");
        assert!(header.starts_with("sha256=") && header.len() == 7 + 64);
        assert!(verify_signature(secret, &header, b"{}"));
        assert!(!verify_signature(secret, &header, b"{ }"));
        assert!(!verify_signature("other", &header, b"{}"));
        assert!(!verify_signature(
            secret,
            header.trim_start_matches("sha256="),
            b"{}"
        ));
        assert!(!verify_signature(secret, "sha256=zz", b"{}"));
    }

    #[test]
    fn notifications_split_into_changes_with_their_number() {
        let changes = changes(&statuses()).expect("valid");
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].phone_number_id.as_deref(),
            Some("106540352242922")
        );
        assert_eq!(changes[0].field, "messages");
        for bad in [
            json!([]),
            json!({"object": "page", "entry": []}),
            json!({"object": "whatsapp_business_account"}),
            json!({"object": "whatsapp_business_account", "entry": [{"id": "1"}]}),
            json!({"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {}}]}]}),
        ] {
            assert!(super::changes(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn statuses_parse_with_failure_reasons() {
        let change = &statuses()["entry"][0]["changes"][0];
        let value = parse_messages_value(change).expect("valid");
        assert_eq!(value.ignored, 1);
        assert_eq!(value.statuses.len(), 2);
        assert_eq!(value.statuses[0].kind, StatusKind::Delivered);
        assert_eq!(
            value.statuses[0].timestamp.map(|t| t.timestamp()),
            Some(1_750_857_384)
        );
        assert_eq!(
            value.statuses[1].kind,
            StatusKind::Failed("131026 Message undeliverable: Message Undeliverable.".into())
        );
    }

    #[test]
    fn messages_parse_with_the_contacts_name() {
        let change = json!({"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
            "contacts": [{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}],
            "messages": [
              {"from": "16505551234", "id": "wamid.M1", "timestamp": "1749416383", "type": "text",
               "text": {"body": "Does it come in another color?"}},
              {"from": "16505551234", "id": "wamid.M2", "timestamp": "1749416384", "type": "image",
               "image": {"caption": "this one", "mime_type": "image/jpeg", "id": "1"}}]}});
        let value = parse_messages_value(&change).expect("valid");
        assert_eq!(value.messages.len(), 2);
        let m = &value.messages[0];
        assert_eq!(m.chat, "16505551234@s.whatsapp.net");
        assert_eq!(m.push_name.as_deref(), Some("Sheena Nelson"));
        assert_eq!(m.text.as_deref(), Some("Does it come in another color?"));
        assert_eq!((m.kind.as_str(), m.from_me), ("text", false));
        assert_eq!(
            (
                value.messages[1].kind.as_str(),
                value.messages[1].text.as_deref()
            ),
            ("image", Some("this one"))
        );
        let bad = json!({"value": {"messages": [{"from": "x@y", "id": "wamid.1"}]}});
        assert!(parse_messages_value(&bad).is_err());
    }
}
