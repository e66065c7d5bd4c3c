//! WuzAPI `Message` events (whatsmeow's `events.Message`): who wrote in which chat, and what.
//!
//! Rules (docs/wuzapi.md): `Info.Chat` is the chat (a group `...@g.us` for group messages, where
//! `Info.Sender` is the participant); JIDs may carry a device suffix (`6281...:24@s.whatsapp.net`)
//! that is stripped; privacy ids (`...@lid`) stay as they are, never turned into phones;
//! `Info.IsFromMe` marks messages the owner sent from the phone (outgoing). Text comes from
//! `Message.conversation` or `Message.extendedTextMessage.text` (or a media caption); media get a
//! type label from the message's key (`imageMessage` → `image`).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{parse_timestamp, Malformed, MAX_MESSAGE_ID_CHARS};

/// Longest text kept from a message (WhatsApp's own limit is 65,536 characters).
pub const MAX_TEXT_CHARS: usize = 65_536;
/// Longest JID or display name accepted.
const MAX_JID_CHARS: usize = 256;
const MAX_NAME_CHARS: usize = 256;

/// One chat message as Herald keeps it, from either provider.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    /// WhatsApp's message id (unique per sender; Herald dedupes by it within a session).
    pub id: String,
    /// The chat: the peer's JID for a direct chat, the group's for a group; device suffix stripped.
    pub chat: String,
    /// Who wrote it: the participant in a group, the peer (or the owner) in a direct chat.
    pub sender: String,
    /// Sent by the linked number itself (from the phone, or another of its devices).
    pub from_me: bool,
    pub is_group: bool,
    /// The sender's WhatsApp profile name, when given and not empty.
    pub push_name: Option<String>,
    /// Text, or a media caption.
    pub text: Option<String>,
    /// `text`, `image`, `video`, `audio`, `document`, `sticker`, `location`, `contact`,
    /// `reaction`, `poll`, ... or `unknown`.
    pub kind: String,
    /// When WhatsApp says it was sent (`None`: unknown, use the time it arrived).
    pub timestamp: Option<DateTime<Utc>>,
}

/// A JID without its device (and agent) suffix: `6281...:24@s.whatsapp.net` →
/// `6281...@s.whatsapp.net`, `93849...:24@lid` → `93849...@lid`. Groups and plain JIDs unchanged.
pub fn normalize_jid(jid: &str) -> String {
    let jid = jid.trim();
    let Some((user, server)) = jid.split_once('@') else {
        return jid.to_string();
    };
    let user = user.split_once(':').map_or(user, |(u, _)| u);
    // whatsmeow writes an agent as `user.agent:device`; phone and lid users are digits only
    let user = match user.split_once('.') {
        Some((u, agent))
            if u.bytes().all(|b| b.is_ascii_digit())
                && agent.bytes().all(|b| b.is_ascii_digit()) =>
        {
            u
        }
        _ => user,
    };
    format!("{user}@{server}")
}

fn jid(value: Option<&Value>, field: &str) -> Result<Option<String>, Malformed> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(Malformed(format!("`{field}` is not a string"))),
    };
    match Some(text) {
        None | Some("") => Ok(None),
        Some(j) => {
            if j.chars().count() > MAX_JID_CHARS
                || j.chars().any(|c| c.is_control() || c.is_whitespace())
                || !j.contains('@')
            {
                return Err(Malformed(format!("`{field}` is not a WhatsApp JID")));
            }
            Ok(Some(normalize_jid(j)))
        }
    }
}

/// A message id as found in an event: trimmed, 1..=128 characters, no control characters.
pub fn message_id(value: Option<&Value>, field: &str) -> Result<String, Malformed> {
    let id = value
        .and_then(Value::as_str)
        .map(str::trim)
        .ok_or_else(|| Malformed(format!("`{field}` is missing or not a string")))?;
    if id.is_empty()
        || id.chars().count() > MAX_MESSAGE_ID_CHARS
        || id.chars().any(char::is_control)
    {
        return Err(Malformed(format!(
            "`{field}` is empty, has control characters or is longer than {MAX_MESSAGE_ID_CHARS} characters"
        )));
    }
    Ok(id.to_string())
}

/// Text cut to [`MAX_TEXT_CHARS`]; `None` when empty.
pub fn clean_text(text: Option<&str>) -> Option<String> {
    let text = text?;
    if text.trim().is_empty() {
        return None;
    }
    Some(text.chars().take(MAX_TEXT_CHARS).collect())
}

/// A display name: trimmed, control characters dropped, at most 256 characters; `None` if empty.
pub fn clean_name(name: Option<&str>) -> Option<String> {
    let name: String = name?
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The message's kind and text, from whatsmeow's `Message` object (protobuf JSON, camelCase).
pub fn content(message: &Value) -> (String, Option<String>) {
    let get = |key: &str| message.get(key).filter(|v| !v.is_null());
    if let Some(text) = get("conversation").and_then(Value::as_str) {
        return ("text".into(), clean_text(Some(text)));
    }
    if let Some(m) = get("extendedTextMessage") {
        return (
            "text".into(),
            clean_text(m.get("text").and_then(Value::as_str)),
        );
    }
    // media and others: (message key, label); the caption, when any, is the text
    const KINDS: [(&str, &str); 16] = [
        ("imageMessage", "image"),
        ("videoMessage", "video"),
        ("ptvMessage", "video"),
        ("audioMessage", "audio"),
        ("documentMessage", "document"),
        ("documentWithCaptionMessage", "document"),
        ("stickerMessage", "sticker"),
        ("locationMessage", "location"),
        ("liveLocationMessage", "location"),
        ("contactMessage", "contact"),
        ("contactsArrayMessage", "contact"),
        ("reactionMessage", "reaction"),
        ("pollCreationMessage", "poll"),
        ("pollCreationMessageV2", "poll"),
        ("pollCreationMessageV3", "poll"),
        ("buttonsResponseMessage", "button_reply"),
    ];
    for (key, label) in KINDS {
        if let Some(m) = get(key) {
            let inner = if key == "documentWithCaptionMessage" {
                m.pointer("/message/documentMessage").unwrap_or(m)
            } else {
                m
            };
            let text = inner
                .get("caption")
                .or_else(|| inner.get("text")) // reactions carry their emoji as `text`
                .or_else(|| inner.get("name")) // location name, poll question
                .or_else(|| inner.get("displayName")) // contact card
                .and_then(Value::as_str);
            return (label.into(), clean_text(text));
        }
    }
    ("unknown".into(), None)
}

/// Whether the message carries nothing a person wrote: protocol messages (revokes, edits,
/// ephemeral settings, history-sync notices) and key distribution alone. Such events are stored
/// and ignored rather than shown as empty chat lines.
pub fn is_protocol_only(message: &Value) -> bool {
    let Some(object) = message.as_object() else {
        return true;
    };
    let meaningful = object.iter().any(|(k, v)| {
        !v.is_null()
            && !matches!(
                k.as_str(),
                "protocolMessage" | "senderKeyDistributionMessage" | "messageContextInfo"
            )
    });
    !meaningful
}

/// Reads a `Message` event. `Ok(None)`: a protocol-only message (nothing to show); `Err`: not
/// understandable (no id, no chat, JIDs that are not JIDs).
pub fn parse_message(event: &Value) -> Result<Option<InboundMessage>, Malformed> {
    let inner = event
        .get("event")
        .and_then(Value::as_object)
        .ok_or_else(|| Malformed("Message without an `event` object".into()))?;
    let info = inner
        .get("Info")
        .and_then(Value::as_object)
        .ok_or_else(|| Malformed("Message without `event.Info`".into()))?;
    let id = message_id(info.get("ID"), "event.Info.ID")?;
    let chat = jid(info.get("Chat"), "event.Info.Chat")?
        .ok_or_else(|| Malformed("Message without `event.Info.Chat`".into()))?;
    let from_me = info
        .get("IsFromMe")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let is_group = info
        .get("IsGroup")
        .and_then(Value::as_bool)
        .unwrap_or(false)
        || chat.ends_with("@g.us");
    let sender = jid(info.get("Sender"), "event.Info.Sender")?.unwrap_or_else(|| chat.clone());
    let message = inner.get("Message").cloned().unwrap_or(Value::Null);
    if message.is_null() || is_protocol_only(&message) {
        return Ok(None);
    }
    let (kind, text) = content(&message);
    Ok(Some(InboundMessage {
        id,
        chat,
        sender,
        from_me,
        is_group,
        push_name: clean_name(info.get("PushName").and_then(Value::as_str)),
        text,
        kind,
        timestamp: info
            .get("Timestamp")
            .and_then(Value::as_str)
            .and_then(parse_timestamp),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(info: Value, message: Value) -> Value {
        json!({"type": "Message", "event": {"Info": info, "Message": message}})
    }

    #[test]
    fn device_suffixes_are_stripped_and_lids_kept() {
        assert_eq!(
            normalize_jid("6281233784490:24@s.whatsapp.net"),
            "6281233784490@s.whatsapp.net"
        );
        assert_eq!(normalize_jid("93849498181695:24@lid"), "93849498181695@lid");
        assert_eq!(normalize_jid("152690717905008@lid"), "152690717905008@lid");
        assert_eq!(
            normalize_jid("6281233784490.0:3@s.whatsapp.net"),
            "6281233784490@s.whatsapp.net"
        );
        assert_eq!(
            normalize_jid("120363025246125486@g.us"),
            "120363025246125486@g.us"
        );
    }

    #[test]
    fn texts_captions_and_media_labels() {
        assert_eq!(
            content(&json!({"conversation": "ya"})),
            ("text".into(), Some("ya".into()))
        );
        assert_eq!(
            content(&json!({"extendedTextMessage": {"text": "owh iya"}})),
            ("text".into(), Some("owh iya".into()))
        );
        assert_eq!(
            content(
                &json!({"imageMessage": {"caption": "look", "mimetype": "image/jpeg"}, "messageContextInfo": {}})
            ),
            ("image".into(), Some("look".into()))
        );
        assert_eq!(
            content(&json!({"audioMessage": {"ptt": true}})),
            ("audio".into(), None)
        );
        assert_eq!(
            content(
                &json!({"documentWithCaptionMessage": {"message": {"documentMessage": {"caption": "invoice"}}}})
            ),
            ("document".into(), Some("invoice".into()))
        );
        assert_eq!(content(&json!({"stickerMessage": {}})).0, "sticker");
        assert_eq!(content(&json!({"locationMessage": {}})).0, "location");
        assert_eq!(
            content(&json!({"contactMessage": {"displayName": "Sari"}})).1,
            Some("Sari".into())
        );
        assert_eq!(content(&json!({"somethingNew": {}})).0, "unknown");
        let long = "x".repeat(MAX_TEXT_CHARS + 10);
        assert_eq!(
            content(&json!({"conversation": long}))
                .1
                .map(|t| t.chars().count()),
            Some(MAX_TEXT_CHARS)
        );
    }

    #[test]
    fn messages_parse_with_group_sender_and_direction() {
        let parsed = parse_message(&event(
            json!({"ID": "A1", "Chat": "120363025246125486@g.us", "Sender": "6281233784490:24@s.whatsapp.net",
                   "IsFromMe": false, "IsGroup": true, "PushName": " Yoga ", "Timestamp": "2025-08-14T14:56:24+07:00"}),
            json!({"conversation": "hi all"}),
        ))
        .expect("valid")
        .expect("shown");
        assert_eq!(parsed.chat, "120363025246125486@g.us");
        assert_eq!(parsed.sender, "6281233784490@s.whatsapp.net");
        assert!(parsed.is_group && !parsed.from_me);
        assert_eq!(parsed.push_name.as_deref(), Some("Yoga"));
        assert_eq!(
            parsed.timestamp.map(|t| t.to_rfc3339()),
            Some("2025-08-14T07:56:24+00:00".into())
        );
        // protocol-only messages are nothing to show
        let revoke = event(
            json!({"ID": "A2", "Chat": "62812@s.whatsapp.net"}),
            json!({"protocolMessage": {"type": 0}, "messageContextInfo": {}}),
        );
        assert_eq!(parse_message(&revoke), Ok(None));
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            json!({"type": "Message"}),
            json!({"type": "Message", "event": {}}),
            event(
                json!({"Chat": "62812@s.whatsapp.net"}),
                json!({"conversation": "x"}),
            ),
            event(
                json!({"ID": "", "Chat": "62812@s.whatsapp.net"}),
                json!({"conversation": "x"}),
            ),
            event(json!({"ID": "A"}), json!({"conversation": "x"})),
            event(
                json!({"ID": "A", "Chat": "not a jid"}),
                json!({"conversation": "x"}),
            ),
            event(
                json!({"ID": "A", "Chat": "62812@s.whatsapp.net", "Sender": 5}),
                json!({}),
            ),
        ] {
            assert!(parse_message(&bad).is_err(), "{bad}");
        }
    }
}
