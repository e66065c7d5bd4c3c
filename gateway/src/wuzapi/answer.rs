//! Reading WuzAPI's answers: the envelope, the send result, the session status, `Retry-After`, and
//! which failures are worth retrying. Pure functions over bytes and JSON, so every case is tested
//! without a server.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use reqwest::StatusCode;
use serde_json::Value;

use crate::{GatewayContact, GatewayError, QrOutcome, SendAccepted, SessionStatus};

/// The most of an answer we read. WuzAPI's answers are a few hundred bytes; anything bigger is
/// not an answer we can use, and reading it would only cost memory.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// `/user/contacts` of a phone with many thousands of contacts is megabytes; past this it is not
/// a contact list we should hold in memory.
pub(crate) const MAX_CONTACTS_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Most contacts read from one answer.
pub(crate) const MAX_CONTACTS: usize = 100_000;

/// Longest JID or name kept from a contact entry; longer ones are not WhatsApp's.
const MAX_CONTACT_TEXT: usize = 512;

/// How much of an unexpected body goes into an error message.
const SNIPPET_CHARS: usize = 160;

/// Passes a 2xx body through and classifies everything else: 5xx and 429 are transient (with the
/// answer's `Retry-After`), any other status is permanent. The message is WuzAPI's own `error`
/// text when the body carries one, so users see e.g. `missing Phone in Payload`.
pub(crate) fn success_body(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<&[u8], GatewayError> {
    if status.is_success() {
        return Ok(body);
    }
    let message = error_text(body).unwrap_or_else(|| {
        let snippet = snippet(body);
        if snippet.is_empty() {
            format!("gateway answered HTTP {status}")
        } else {
            format!("gateway answered HTTP {status}: {snippet}")
        }
    });
    // the reason may be stored (a failed delivery's): without what Postgres cannot store
    let message = herald_domain::text::without_nul(&message).into_owned();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        Err(GatewayError::Transient {
            message,
            retry_after,
        })
    } else {
        Err(GatewayError::Permanent { message })
    }
}

/// The `data` of a success envelope. A 2xx that is not one (a proxy's HTML page, a truncated
/// body, `success: false`) is transient: the request may or may not have been acted on, and a
/// retry under the same message id is the safe way to find out.
pub(crate) fn envelope_data(body: &[u8]) -> Result<Value, GatewayError> {
    // what the gateway answers may be stored (contact names, ids): NULs removed (decision 0037)
    let Ok(Value::Object(mut envelope)) = herald_domain::text::parse_cleaned(body) else {
        return Err(unexpected_body(body));
    };
    if envelope.get("success") == Some(&Value::Bool(false)) {
        let message = envelope
            .get("error")
            .map(text_of)
            .unwrap_or_else(|| "gateway reported failure in a 2xx answer".to_owned());
        return Err(GatewayError::transient(message));
    }
    match envelope.remove("data") {
        Some(data @ (Value::Object(_) | Value::Array(_))) => Ok(data),
        // Tolerate a gateway that double-encodes `data` as a JSON string.
        Some(Value::String(text)) => match herald_domain::text::parse_cleaned(text.as_bytes()) {
            Ok(data @ Value::Object(_)) => Ok(data),
            _ => Err(unexpected_body(body)),
        },
        _ => Err(unexpected_body(body)),
    }
}

/// The send result from `data` `{"Details", "Id", "Timestamp"}`. The gateway's `Id` wins because
/// receipts will carry it; when absent, WuzAPI used the `Id` we sent.
pub(crate) fn send_accepted(data: &Value, requested_id: &str) -> SendAccepted {
    let message_id = field(data, &["Id", "ID", "id"])
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .unwrap_or(requested_id)
        .to_owned();
    let timestamp = field(data, &["Timestamp", "timestamp"]).and_then(parse_timestamp);
    SendAccepted {
        message_id,
        timestamp,
    }
}

/// WuzAPI's send `Timestamp`: an RFC 3339 string in older releases, Unix seconds in newer ones.
/// Anything else (or Go's zero time) is `None` rather than an error: the message was sent either
/// way, and Herald records its own time too.
pub(crate) fn parse_timestamp(value: &Value) -> Option<DateTime<Utc>> {
    let parsed = match value {
        Value::String(text) => {
            let text = text.trim();
            match DateTime::parse_from_rfc3339(text) {
                Ok(time) => Some(time.with_timezone(&Utc)),
                Err(_) => text.parse::<i64>().ok().and_then(from_unix),
            }
        }
        Value::Number(number) => match number.as_i64() {
            Some(whole) => from_unix(whole),
            None => number.as_f64().and_then(|secs| {
                let millis = (secs * 1000.0).round();
                // Range-checked above, so the cast cannot saturate silently.
                (millis.is_finite() && millis.abs() < 1e15)
                    .then(|| Utc.timestamp_millis_opt(millis as i64).single())
                    .flatten()
            }),
        },
        _ => None,
    };
    parsed.filter(|time| time.timestamp() > 0)
}

/// Unix seconds, or milliseconds when the number is too large to be seconds (year 5138+).
fn from_unix(value: i64) -> Option<DateTime<Utc>> {
    if value.abs() >= 100_000_000_000 {
        Utc.timestamp_millis_opt(value).single()
    } else {
        Utc.timestamp_opt(value, 0).single()
    }
}

/// `/session/status` `data`, in either spelling: older `{"Connected", "LoggedIn"}`, newer
/// `{"connected", "loggedIn", "jid"}`. `None` when no connected flag is present at all.
pub(crate) fn parse_session_status(data: &Value) -> Option<SessionStatus> {
    let connected = field(data, &["connected", "Connected"])?;
    let logged_in = field(data, &["loggedIn", "LoggedIn", "logged_in"]);
    let jid = field(data, &["jid", "Jid", "JID"]).and_then(jid_text);
    Some(SessionStatus {
        connected: truthy(connected),
        logged_in: logged_in.is_some_and(truthy),
        jid,
    })
}

/// The user id from a `POST /admin/users` answer: newer releases answer the envelope with a string
/// id in `data`, older ones a bare `{"id": 2}`.
pub(crate) fn created_user_id(body: &[u8]) -> Result<String, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| unexpected_body(body))?;
    let id = value
        .get("data")
        .and_then(|data| field(data, &["id", "Id", "ID"]))
        .or_else(|| field(&value, &["id", "Id", "ID"]));
    match id {
        Some(Value::String(id)) if is_plain_user_id(id) => Ok(id.clone()),
        Some(Value::Number(id)) if id.is_u64() => Ok(id.to_string()),
        _ => Err(unexpected_body(body)),
    }
}

/// A user id Herald keeps and later puts in a path (`/admin/users/{id}`): short, and only
/// letters, digits, `-` and `_` (WuzAPI's ids are numbers or hex strings).
pub(crate) fn is_plain_user_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `/session/qr` `data`: `{"QRCode": "data:image/png;base64,..."}`. An empty code means the
/// gateway has not produced one yet; anything that is not an image data URL is not an answer.
pub(crate) fn qr_code(data: &Value) -> Result<QrOutcome, GatewayError> {
    let code = field(data, &["QRCode", "qrcode", "QrCode", "qrCode"]).and_then(Value::as_str);
    match code.map(str::trim) {
        None | Some("") => Ok(QrOutcome::NotReady),
        Some(code) if crate::webhook::session::is_qr_image(code) => {
            Ok(QrOutcome::Code(code.to_owned()))
        }
        Some(_) => Err(GatewayError::transient(
            "gateway answered /session/qr with something that is not an image data URL",
        )),
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 allows both). A date in the past
/// means "now".
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (when.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The first of `names` present in `value`; WuzAPI's spelling changed between releases.
fn field<'a>(value: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|name| value.get(*name))
}

fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(flag) => *flag,
        Value::String(text) => text.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A JID as a string, or as whatsmeow's struct form `{"User", "Server"}`.
fn jid_text(value: &Value) -> Option<String> {
    match value {
        Value::String(jid) if !jid.is_empty() => Some(jid.clone()),
        Value::Object(_) => {
            let user = field(value, &["User", "user"])?.as_str()?;
            let server = field(value, &["Server", "server"])?.as_str()?;
            (!user.is_empty()).then(|| format!("{user}@{server}"))
        }
        _ => None,
    }
}

/// The `error` text of an error envelope, if the body is one.
fn error_text(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let text = text_of(value.get("error")?);
    (!text.is_empty()).then_some(text)
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn unexpected_body(body: &[u8]) -> GatewayError {
    let snippet = snippet(body);
    GatewayError::transient(if snippet.is_empty() {
        "gateway answered 2xx with an empty body".to_owned()
    } else {
        format!("gateway answered 2xx with an unexpected body: {snippet}")
    })
}

/// The start of a body, printable and short, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut snippet: String = text
        .trim()
        .chars()
        .take(SNIPPET_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.trim().chars().count() > SNIPPET_CHARS {
        snippet.push('…');
    }
    snippet
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn timestamp_accepts_rfc3339_strings() {
        let parsed = parse_timestamp(&json!("2024-05-01T10:20:30+07:00"));
        assert_eq!(
            parsed,
            Some(Utc.with_ymd_and_hms(2024, 5, 1, 3, 20, 30).unwrap())
        );
        let nanos = parse_timestamp(&json!("2024-05-01T03:20:30.123456789Z"));
        assert_eq!(nanos.map(|t| t.timestamp()), Some(1_714_533_630));
    }

    #[test]
    fn timestamp_accepts_unix_integers() {
        let expected = Utc.with_ymd_and_hms(2024, 5, 1, 3, 20, 30).single();
        assert_eq!(parse_timestamp(&json!(1_714_533_630)), expected);
        assert_eq!(parse_timestamp(&json!("1714533630")), expected);
        assert_eq!(parse_timestamp(&json!(1_714_533_630_000_i64)), expected);
        assert_eq!(parse_timestamp(&json!(1_714_533_630.0)), expected);
    }

    #[test]
    fn timestamp_that_is_absent_or_garbage_is_none() {
        assert_eq!(parse_timestamp(&json!(null)), None);
        assert_eq!(parse_timestamp(&json!("yesterday")), None);
        assert_eq!(parse_timestamp(&json!({"t": 1})), None);
        // Go's zero time.
        assert_eq!(parse_timestamp(&json!("0001-01-01T00:00:00Z")), None);
        assert_eq!(parse_timestamp(&json!(0)), None);
    }

    #[test]
    fn send_accepted_reads_both_timestamp_forms_and_falls_back_to_our_id() {
        let newer = send_accepted(
            &json!({"Details": "Sent", "Id": "ABC", "Timestamp": 1_714_533_630}),
            "MINE",
        );
        assert_eq!(newer.message_id, "ABC");
        assert_eq!(newer.timestamp.map(|t| t.timestamp()), Some(1_714_533_630));
        let older = send_accepted(
            &json!({"Details": "Sent", "Timestamp": "2024-05-01T03:20:30Z"}),
            "MINE",
        );
        assert_eq!(older.message_id, "MINE");
        assert_eq!(older.timestamp.map(|t| t.timestamp()), Some(1_714_533_630));
    }

    #[test]
    fn session_status_parses_the_older_spelling() {
        let status = parse_session_status(&json!({"Connected": true, "LoggedIn": false}));
        assert_eq!(
            status,
            Some(SessionStatus {
                connected: true,
                logged_in: false,
                jid: None
            })
        );
    }

    #[test]
    fn session_status_parses_the_newer_spelling() {
        let data = json!({
            "connected": true,
            "loggedIn": true,
            "jid": "6281234567890:12@s.whatsapp.net",
            "webhook": "https://herald.example/hooks",
            "events": "Message,ReadReceipt",
        });
        assert_eq!(
            parse_session_status(&data),
            Some(SessionStatus {
                connected: true,
                logged_in: true,
                jid: Some("6281234567890:12@s.whatsapp.net".to_owned()),
            })
        );
        let empty_jid = parse_session_status(&json!({"connected": false, "jid": ""}));
        assert_eq!(empty_jid.and_then(|s| s.jid), None);
        let struct_jid = json!({"connected": true, "loggedIn": true,
            "jid": {"User": "6281", "Server": "s.whatsapp.net"}});
        assert_eq!(
            parse_session_status(&struct_jid).and_then(|s| s.jid),
            Some("6281@s.whatsapp.net".to_owned())
        );
        assert_eq!(parse_session_status(&json!({"details": "?"})), None);
    }

    #[test]
    fn failures_are_classified_by_status() {
        let body = br#"{"code":400,"error":"missing Phone in Payload","success":false}"#;
        assert_eq!(
            success_body(StatusCode::BAD_REQUEST, None, body),
            Err(GatewayError::Permanent {
                message: "missing Phone in Payload".into()
            })
        );
        let body = br#"{"code":500,"error":"no session","success":false}"#;
        assert_eq!(
            success_body(StatusCode::INTERNAL_SERVER_ERROR, None, body),
            Err(GatewayError::Transient {
                message: "no session".into(),
                retry_after: None
            })
        );
        let limited = success_body(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(3)),
            b"",
        );
        assert_eq!(
            limited,
            Err(GatewayError::Transient {
                message: "gateway answered HTTP 429 Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(3))
            })
        );
        let html = success_body(StatusCode::BAD_GATEWAY, None, b"<html>bad gateway</html>");
        assert_eq!(
            html.map_err(|e| e.message().to_owned()),
            Err("gateway answered HTTP 502 Bad Gateway: <html>bad gateway</html>".to_owned())
        );
        let moved = success_body(StatusCode::MOVED_PERMANENTLY, None, b"");
        assert!(matches!(moved, Err(GatewayError::Permanent { .. })));
    }

    #[test]
    fn envelope_data_rejects_what_is_not_an_envelope() {
        let ok = br#"{"code":200,"data":{"Details":"Sent","Id":"X"},"success":true}"#;
        assert_eq!(envelope_data(ok), Ok(json!({"Details": "Sent", "Id": "X"})));
        let encoded = br#"{"code":200,"data":"{\"Id\":\"X\"}","success":true}"#;
        assert_eq!(envelope_data(encoded), Ok(json!({"Id": "X"})));
        for garbage in [
            &b""[..],
            b"not json",
            b"[]",
            b"{}",
            br#"{"success":true}"#,
            br#"{"data":42}"#,
            br#"{"code":200,"data":{"Id":"X""#,
        ] {
            let error = envelope_data(garbage).expect_err("garbage must not parse");
            assert!(error.is_transient(), "{garbage:?} gave {error:?}");
        }
        let refused = envelope_data(br#"{"code":200,"error":"nope","success":false}"#);
        assert_eq!(refused, Err(GatewayError::transient("nope")));
    }

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        let now = Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap();
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 01 May 2024 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Tue, 30 Apr 2024 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn created_user_id_reads_new_and_old_answers() {
        let newer = br#"{"code":201,"data":{"id":"a1b2","name":"n"},"success":true}"#;
        assert_eq!(created_user_id(newer), Ok("a1b2".to_owned()));
        assert_eq!(created_user_id(br#"{"id": 2}"#), Ok("2".to_owned()));
        assert!(created_user_id(b"ok").is_err());
        // ids go into a path later: only plain ones are kept
        assert!(created_user_id(br#"{"data":{"id":"../x"}}"#).is_err());
        assert!(created_user_id(br#"{"id": -1}"#).is_err());
    }

    #[test]
    fn qr_codes_are_image_data_urls_or_not_ready() {
        let png = "data:image/png;base64,iVBORw0KGgo=";
        assert_eq!(
            qr_code(&json!({"QRCode": png})),
            Ok(QrOutcome::Code(png.to_owned()))
        );
        assert_eq!(qr_code(&json!({"QRCode": ""})), Ok(QrOutcome::NotReady));
        assert_eq!(qr_code(&json!({})), Ok(QrOutcome::NotReady));
        assert!(qr_code(&json!({"QRCode": "javascript:alert(1)"})).is_err());
    }

    #[test]
    fn snippets_are_short_and_printable() {
        let long = "x".repeat(1000);
        let text = snippet(long.as_bytes());
        assert_eq!(text.chars().count(), SNIPPET_CHARS + 1);
        assert_eq!(snippet(b"a\r\nb"), "a  b");
    }
}

/// `/user/contacts` `data`: a map keyed by JID, each value `{"FullName", "BusinessName",
/// "PushName", "FirstName", "Found"}`. A hostile or odd answer cannot hurt: entries that are not
/// objects, keys that are not JIDs, non-string or overlong names are dropped or blanked; an answer
/// that is not a map is an error; more than [`MAX_CONTACTS`] entries is an error.
pub(crate) fn parse_contacts(data: &Value) -> Result<Vec<GatewayContact>, GatewayError> {
    let Value::Object(map) = data else {
        return Err(GatewayError::permanent(
            "the gateway answered /user/contacts without a contact map",
        ));
    };
    if map.len() > MAX_CONTACTS {
        return Err(GatewayError::permanent(format!(
            "the gateway answered more than {MAX_CONTACTS} contacts"
        )));
    }
    let name = |entry: &Value, key: &str| -> String {
        entry
            .get(key)
            .and_then(Value::as_str)
            .filter(|text| text.len() <= MAX_CONTACT_TEXT)
            .map(|text| text.chars().filter(|c| !c.is_control()).collect::<String>())
            .map(|text| text.trim().to_owned())
            .unwrap_or_default()
    };
    Ok(map
        .iter()
        .filter(|(jid, entry)| {
            entry.is_object() && jid.contains('@') && jid.len() <= MAX_CONTACT_TEXT
        })
        .map(|(jid, entry)| GatewayContact {
            jid: jid.trim().to_owned(),
            full_name: name(entry, "FullName"),
            business_name: name(entry, "BusinessName"),
            push_name: name(entry, "PushName"),
            first_name: name(entry, "FirstName"),
        })
        .collect())
}

#[cfg(test)]
mod contact_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contact_maps_are_read_and_hostile_entries_dropped() {
        let data = json!({
            "6281234567890@s.whatsapp.net": {"FullName": " Budi ", "PushName": "B", "Found": true},
            "120363025246125888@lid": {"PushName": "Anon\u{7}"},
            "not-a-jid": {"FullName": "x"},
            "6285700000000@s.whatsapp.net": "a string",
            "6285700000001@s.whatsapp.net": {"FullName": 42, "FirstName": ["x"]},
        });
        let mut contacts = parse_contacts(&data).expect("a map");
        contacts.sort_by(|a, b| a.jid.cmp(&b.jid));
        assert_eq!(contacts.len(), 3);
        assert_eq!(contacts[0].jid, "120363025246125888@lid");
        assert_eq!(contacts[0].push_name, "Anon");
        assert_eq!(contacts[1].full_name, "Budi");
        assert_eq!(contacts[2].full_name, "");
        assert!(parse_contacts(&json!([1, 2])).is_err());
    }
}
