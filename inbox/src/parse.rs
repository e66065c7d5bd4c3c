//! Reading a stored post: a claimed row and what its event asks for (a receipt, a session event, a chat message,
//! a Cloud API change, or nothing, with the reason as its note).

use chrono::{DateTime, Utc};
use herald_gateway::meta::MessagesValue;
use herald_gateway::webhook::{self, InboundMessage, Receipt};

use uuid::Uuid;

use crate::{conversations, session_events};

/// One claimed row, parsed.
pub(crate) struct Claimed {
    pub(crate) id: i64,
    pub(crate) session_id: Uuid,
    pub(crate) tenant_id: Option<Uuid>,
    pub(crate) received_at: DateTime<Utc>,
    pub(crate) attempts: i32,
    pub(crate) action: Action,
}

/// What a post asks for.
pub(crate) enum Action {
    Receipt(Receipt),
    /// A session event: status change and, for `QR`, the code (see [`session_events`]).
    Session(webhook::session::SessionUpdate),
    /// A chat message (WuzAPI `Message`).
    Message(InboundMessage),
    /// A Cloud API `messages` change: statuses and/or messages.
    Meta(MessagesValue),
    /// Nothing to do; the note says why.
    Done(String),
}

/// What a stored event asks for. The endpoint validated its shape already; a receipt that
/// still cannot be understood is done (retrying cannot fix it), with the reason as its note.
pub(crate) fn classify(event_type: &str, event: &str) -> Action {
    if webhook::session::is_session_event(event_type) {
        return session_events::classify(event_type, event);
    }
    if event_type == "Message" {
        return conversations::classify_message(event);
    }
    if event_type.starts_with("meta:") {
        return conversations::classify_meta(event_type, event);
    }
    if event_type != "ReadReceipt" {
        return Action::Done(format!("ignored: {event_type}"));
    }
    let value = match herald_gateway::webhook::parse_event(event.as_bytes()) {
        Ok(v) => v,
        Err(e) => return Action::Done(format!("malformed ReadReceipt: {e}")),
    };
    match webhook::parse_receipt(&value) {
        Ok(Some(receipt)) => Action::Receipt(receipt),
        Ok(None) => {
            let state = value
                .get("state")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unknown");
            Action::Done(format!("ignored: ReadReceipt {state}"))
        }
        Err(e) => Action::Done(format!("malformed ReadReceipt: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_delivered_and_read_receipts_are_acted_on() {
        assert!(
            matches!(classify("ChatPresence", "{}"), Action::Done(n) if n == "ignored: ChatPresence")
        );
        let own = r#"{"type":"ReadReceipt","state":"ReadSelf","event":{"MessageIDs":["A"]}}"#;
        assert!(
            matches!(classify("ReadReceipt", own), Action::Done(n) if n == "ignored: ReadReceipt ReadSelf")
        );
        let bad = r#"{"type":"ReadReceipt","state":"Read","event":{}}"#;
        assert!(
            matches!(classify("ReadReceipt", bad), Action::Done(n) if n.starts_with("malformed"))
        );
        let good = r#"{"type":"ReadReceipt","state":"Read","event":{"MessageIDs":["A"]}}"#;
        assert!(
            matches!(classify("ReadReceipt", good), Action::Receipt(r) if r.message_ids == ["A"])
        );
    }
}
