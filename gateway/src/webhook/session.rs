//! Session events WuzAPI posts (`Connected`, `Disconnected`, `LoggedOut`, `QR`, ...): what each
//! means for the linked number, and the QR image check shared by the webhook path and the
//! client's `/session/qr`.
//!
//! `QR` is the odd one: its `event` is the STRING `"code"` and the image is a top-level
//! `qrCodeBase64` data URL. WuzAPI also posts `QRTimeout` when nobody scanned in time (and then
//! drops the connection) and `ConnectFailure` when reconnecting a paired number failed.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{parse_timestamp, Malformed};

/// The largest QR data URL accepted. WuzAPI's are 256x256 PNGs, a few kilobytes once encoded.
pub const MAX_QR_DATA_URL_BYTES: usize = 256 * 1024;

/// What a session event says about the linked number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionSignal {
    /// Connected and paired: it can send.
    Connected,
    /// The connection dropped (or could not be made); still paired.
    Disconnected,
    /// Unpaired, from the phone or by `/session/logout`: a new QR scan is needed.
    LoggedOut,
    /// A new pairing code to scan, as a `data:image/...;base64,` URL.
    Qr(String),
    /// Nobody scanned in time; WuzAPI dropped the connection.
    QrTimeout,
}

/// One session event, with the time it carries when it carries one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUpdate {
    pub signal: SessionSignal,
    /// `event.Timestamp` when present and usable; most session events carry none.
    pub timestamp: Option<DateTime<Utc>>,
}

/// Whether events of this `type` are session events ([`parse_session_event`] understands them).
pub fn is_session_event(event_type: &str) -> bool {
    matches!(
        event_type,
        "Connected" | "Disconnected" | "LoggedOut" | "QR" | "QRTimeout" | "ConnectFailure"
    )
}

/// What a session event means. `Ok(None)` for a `QR` post that is not a code (whatsmeow's
/// `success`/`timeout` channel items, when a release forwards them under `QR`); `Err` when a
/// code cannot be understood.
pub fn parse_session_event(event: &Value) -> Result<Option<SessionUpdate>, Malformed> {
    let event_type = super::event_type(event)?;
    let timestamp = event
        .get("event")
        .and_then(|inner| inner.get("Timestamp"))
        .and_then(Value::as_str)
        .and_then(parse_timestamp);
    let signal = match event_type {
        "Connected" => SessionSignal::Connected,
        "Disconnected" | "ConnectFailure" => SessionSignal::Disconnected,
        "LoggedOut" => SessionSignal::LoggedOut,
        "QRTimeout" => SessionSignal::QrTimeout,
        "QR" => match event.get("event").and_then(Value::as_str) {
            Some("code") => {
                let image = event
                    .get("qrCodeBase64")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .ok_or_else(|| Malformed("QR event without a `qrCodeBase64` string".into()))?;
                if !is_qr_image(image) {
                    return Err(Malformed(format!(
                        "the QR event's `qrCodeBase64` is not a base64 image data URL of at most {MAX_QR_DATA_URL_BYTES} bytes"
                    )));
                }
                SessionSignal::Qr(image.to_owned())
            }
            Some("timeout") => SessionSignal::QrTimeout,
            _ => return Ok(None),
        },
        other => return Err(Malformed(format!("`{other}` is not a session event"))),
    };
    Ok(Some(SessionUpdate { signal, timestamp }))
}

/// `data:image/<kind>;base64,<base64>`, bounded in size. Checked rather than decoded: Herald only
/// stores the URL and hands it back to the owner, and this keeps anything that is not an image
/// (a `javascript:` URL, HTML) from ever being served as one.
pub fn is_qr_image(url: &str) -> bool {
    if url.len() > MAX_QR_DATA_URL_BYTES {
        return false;
    }
    let Some(rest) = url.strip_prefix("data:image/") else {
        return false;
    };
    let Some((kind, data)) = rest.split_once(";base64,") else {
        return false;
    };
    !kind.is_empty()
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !data.is_empty()
        && data.len() % 4 == 0
        && data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// A session event as WuzAPI posts it (the simulator's output). `Connected` and `Disconnected`
/// carry an empty `event`, like whatsmeow's; `QR` the string `"code"` and the image.
pub fn session_event(signal: &SessionSignal) -> Value {
    use serde_json::json;
    match signal {
        SessionSignal::Connected => json!({"type": "Connected", "event": {}}),
        SessionSignal::Disconnected => json!({"type": "Disconnected", "event": {}}),
        SessionSignal::LoggedOut => {
            json!({"type": "LoggedOut", "event": {"OnConnect": false, "Reason": 401}})
        }
        SessionSignal::Qr(image) => json!({"type": "QR", "event": "code", "qrCodeBase64": image}),
        SessionSignal::QrTimeout => json!({"type": "QRTimeout", "event": "timeout"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PNG: &str = "data:image/png;base64,iVBORw0KGgo=";

    #[test]
    fn each_session_event_type_has_its_meaning() {
        let connected = json!({"type": "Connected", "token": "t", "event": {
            "Action": {"name": "~"}, "Timestamp": "2025-08-14T14:55:41.474+07:00"}});
        let update = parse_session_event(&connected)
            .expect("valid")
            .expect("a signal");
        assert_eq!(update.signal, SessionSignal::Connected);
        assert_eq!(
            update.timestamp.map(|t| t.to_rfc3339()),
            Some("2025-08-14T07:55:41.474+00:00".to_owned())
        );
        let empty = json!({"type": "Connected", "event": {}});
        assert_eq!(
            parse_session_event(&empty),
            Ok(Some(SessionUpdate {
                signal: SessionSignal::Connected,
                timestamp: None
            }))
        );
        let qr = json!({"type": "QR", "event": "code", "qrCodeBase64": PNG});
        assert_eq!(
            parse_session_event(&qr).map(|u| u.map(|u| u.signal)),
            Ok(Some(SessionSignal::Qr(PNG.to_owned())))
        );
        for (kind, signal) in [
            ("Disconnected", SessionSignal::Disconnected),
            ("ConnectFailure", SessionSignal::Disconnected),
            ("LoggedOut", SessionSignal::LoggedOut),
            ("QRTimeout", SessionSignal::QrTimeout),
        ] {
            let event = json!({"type": kind, "event": {}});
            assert_eq!(
                parse_session_event(&event).map(|u| u.map(|u| u.signal)),
                Ok(Some(signal))
            );
            assert!(is_session_event(kind));
        }
        assert!(!is_session_event("Message"));
    }

    #[test]
    fn simulated_events_parse_back_to_their_signal() {
        for signal in [
            SessionSignal::Connected,
            SessionSignal::Disconnected,
            SessionSignal::LoggedOut,
            SessionSignal::Qr(PNG.to_owned()),
            SessionSignal::QrTimeout,
        ] {
            let event = session_event(&signal);
            assert_eq!(
                parse_session_event(&event).map(|u| u.map(|u| u.signal)),
                Ok(Some(signal))
            );
        }
    }

    #[test]
    fn qr_posts_need_an_image_data_url() {
        let success = json!({"type": "QR", "event": "success"});
        assert_eq!(parse_session_event(&success), Ok(None));
        for bad in [
            json!({"type": "QR", "event": "code"}),
            json!({"type": "QR", "event": "code", "qrCodeBase64": 5}),
            json!({"type": "QR", "event": "code", "qrCodeBase64": "javascript:alert(1)"}),
            json!({"type": "QR", "event": "code", "qrCodeBase64": "data:text/html;base64,PGI+"}),
            json!({"type": "QR", "event": "code", "qrCodeBase64": "data:image/png;base64,<b>"}),
            json!({"type": "QR", "event": "code", "qrCodeBase64": "data:image/png;base64,"}),
            json!({"type": "QR", "event": "code",
                   "qrCodeBase64": format!("data:image/png;base64,{}", "A".repeat(MAX_QR_DATA_URL_BYTES))}),
        ] {
            assert!(parse_session_event(&bad).is_err(), "{bad}");
        }
        assert!(parse_session_event(&json!({"type": "Message"})).is_err());
        assert!(is_qr_image(PNG));
        assert!(is_qr_image("data:image/svg+xml;base64,PHN2Zz4="));
    }
}
