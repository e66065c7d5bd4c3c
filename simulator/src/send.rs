//! `POST /chat/send/text` and `/chat/send/image`: WuzAPI's validation order and messages, then the
//! injected faults, then the ledger, then (in the background) the receipts.

use std::fmt;

use salvo::http::{ParseError, StatusCode};
use salvo::{Request, Response};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::ledger::{Accepted, Kind};
use super::receipts;
use super::reply;
use super::state::Sim;
use super::token;

/// Texts are small; this only stops a runaway client.
const MAX_TEXT_PAYLOAD: usize = 1024 * 1024;
/// WuzAPI takes media up to 16 MB, which is about 21 MB once base64-encoded in a data URL.
const MAX_IMAGE_PAYLOAD: usize = 24 * 1024 * 1024;

/// The fields both send routes read. Go's JSON decoding matches field names case-insensitively,
/// so the lowercase spellings are accepted too; `null` is treated like an absent field.
#[derive(Deserialize, Default)]
struct SendPayload {
    #[serde(rename = "Phone", alias = "phone", default)]
    phone: Option<String>,
    #[serde(rename = "Body", alias = "body", default)]
    body: Option<String>,
    #[serde(rename = "Image", alias = "image", default)]
    image: Option<ImageField>,
    #[serde(rename = "Caption", alias = "caption", default)]
    caption: Option<String>,
    #[serde(rename = "Id", alias = "id", alias = "ID", default)]
    id: Option<String>,
}

/// What the simulator needs to know about `Image` without keeping a multi-megabyte string: that
/// it is a `data:image...;base64,` URL whose data decodes, and the decoded bytes' size and
/// SHA-256 (so tests can tell which image arrived).
#[derive(Default)]
struct ImageField {
    present: bool,
    is_data_url: bool,
    /// `(bytes, lowercase hex SHA-256)` of the decoded data; `None` when it does not decode.
    decoded: Option<(usize, String)>,
}

/// Decodes a data URL's base64 payload and fingerprints it.
fn fingerprint_data_url(value: &str) -> Option<(usize, String)> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let (header, data) = value.split_once(',')?;
    if !header.ends_with(";base64") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .ok()?;
    if bytes.is_empty() {
        return None;
    }
    Some((bytes.len(), hex::encode(sha2::Sha256::digest(&bytes))))
}

impl<'de> Deserialize<'de> for ImageField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ImageVisitor;
        impl Visitor<'_> for ImageVisitor {
            type Value = ImageField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an image data URL")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<ImageField, E> {
                let is_data_url = value.starts_with("data:image");
                Ok(ImageField {
                    present: !value.is_empty(),
                    is_data_url,
                    decoded: if is_data_url {
                        fingerprint_data_url(value)
                    } else {
                        None
                    },
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<ImageField, E> {
                Ok(ImageField::default())
            }
        }
        deserializer.deserialize_any(ImageVisitor)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SendResult<'a> {
    details: &'static str,
    id: &'a str,
    /// Unix seconds, as newer WuzAPI releases answer.
    timestamp: i64,
}

/// Handles one send of `kind`.
pub(crate) async fn send(sim: &Sim, req: &mut Request, res: &mut Response, kind: Kind) {
    let Some(token) = token::user_token(req) else {
        return reply::error(res, StatusCode::UNAUTHORIZED, "unauthorized");
    };
    // WuzAPI checks the session before it reads the body. The receipt target is copied out
    // under the same lock, only when receipts are on.
    let receipts_on = sim.receipts.enabled();
    let (token, ready, hook) = sim.users.with(token, |user| {
        let hook = if receipts_on {
            user.receipt_hook()
        } else {
            None
        };
        (user.token.clone(), user.can_send(), hook)
    });
    if !ready {
        sim.ledger.count_failed();
        return reply::error(res, StatusCode::INTERNAL_SERVER_ERROR, "no session");
    }

    let limit = match kind {
        Kind::Text => MAX_TEXT_PAYLOAD,
        Kind::Image => MAX_IMAGE_PAYLOAD,
    };
    let payload = match req.payload_with_max_size(limit).await {
        Ok(bytes) => serde_json::from_slice::<SendPayload>(bytes).ok(),
        Err(ParseError::PayloadTooLarge) => {
            return reply::error(res, StatusCode::PAYLOAD_TOO_LARGE, "payload too large");
        }
        Err(_) => None,
    };
    let Some(payload) = payload else {
        return reply::error(res, StatusCode::BAD_REQUEST, "could not decode Payload");
    };

    let phone = payload.phone.as_deref().unwrap_or_default();
    if phone.is_empty() {
        return reply::error(res, StatusCode::BAD_REQUEST, "missing Phone in Payload");
    }
    let mut image_seen = None;
    let text = match kind {
        Kind::Text => {
            let body = payload.body.as_deref().unwrap_or_default();
            if body.is_empty() {
                return reply::error(res, StatusCode::BAD_REQUEST, "missing Body in Payload");
            }
            body
        }
        Kind::Image => {
            let image = payload.image.unwrap_or_default();
            if !image.present {
                return reply::error(res, StatusCode::BAD_REQUEST, "missing Image in Payload");
            }
            if !image.is_data_url {
                return reply::error(
                    res,
                    StatusCode::BAD_REQUEST,
                    "Image data should start with \"data:image/png;base64,\"",
                );
            }
            let Some(decoded) = image.decoded else {
                return reply::error(
                    res,
                    StatusCode::BAD_REQUEST,
                    "could not decode base64 encoded data from payload",
                );
            };
            image_seen = Some(decoded);
            payload.caption.as_deref().unwrap_or_default()
        }
    };
    let Some(phone) = recipient(phone) else {
        return reply::error(res, StatusCode::BAD_REQUEST, "could not parse Phone");
    };

    let latency = sim.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    // A 429 comes from in front of the sender, so it is decided first; neither is delivered.
    let faults = sim.faults.get();
    if sim.rng.hits(faults.rate_limit_rate) {
        sim.ledger.count_rate_limited();
        return reply::rate_limited(res, "too many requests: simulated rate limit");
    }
    if sim.rng.hits(faults.error_rate) {
        sim.ledger.count_failed();
        return reply::error(
            res,
            StatusCode::INTERNAL_SERVER_ERROR,
            "error sending message: simulated failure",
        );
    }

    let generated;
    let id = match payload.id.as_deref() {
        Some(id) if !id.is_empty() => id,
        _ => {
            generated = sim.rng.message_id();
            &generated
        }
    };
    sim.ledger.record(Accepted {
        token,
        phone,
        id,
        kind,
        text,
        image: image_seen,
    });
    if let Some(hook) = hook {
        // in its own task: the send is answered now, the receipts follow
        receipts::spawn(&sim.receipts, hook, id.to_string(), phone);
    }
    reply::ok(
        res,
        StatusCode::OK,
        SendResult {
            details: "Sent",
            id,
            timestamp: chrono::Utc::now().timestamp(),
        },
    );
}

/// WuzAPI strips a leading `+` and takes anything with `@` as a full JID; otherwise the phone
/// must be digits.
fn recipient(phone: &str) -> Option<&str> {
    let phone = phone.trim().trim_start_matches('+');
    let valid = if phone.contains('@') {
        !phone.starts_with('@')
    } else {
        !phone.is_empty() && phone.bytes().all(|b| b.is_ascii_digit())
    };
    valid.then_some(phone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_follow_wuzapi() {
        assert_eq!(recipient("+6281234"), Some("6281234"));
        assert_eq!(recipient("1203630@g.us"), Some("1203630@g.us"));
        assert_eq!(recipient("62-812"), None);
        assert_eq!(recipient("@g.us"), None);
        assert_eq!(recipient("+"), None);
    }

    #[test]
    fn payload_reads_go_style_field_names_and_nulls() {
        let payload: SendPayload = serde_json::from_str(
            r#"{"phone":"1","Body":"hi","Id":null,"Image":"data:image/png;base64,AA==","Extra":1}"#,
        )
        .expect("valid payload");
        assert_eq!(payload.phone.as_deref(), Some("1"));
        assert_eq!(payload.id, None);
        let image = payload.image.expect("image present");
        assert!(image.present && image.is_data_url);
        assert_eq!(image.decoded.map(|(n, _)| n), Some(1));
        assert!(serde_json::from_str::<SendPayload>(r#"{"Phone": 1}"#).is_err());
    }

    #[test]
    fn image_data_urls_are_decoded_and_fingerprinted() {
        let (bytes, sha) =
            fingerprint_data_url("data:image/jpeg;base64,aGVsbG8=").expect("decodes");
        assert_eq!(bytes, 5);
        assert_eq!(
            sha,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(fingerprint_data_url("data:image/jpeg;base64,@@@"), None);
        assert_eq!(fingerprint_data_url("data:image/jpeg,aGVsbG8="), None);
        assert_eq!(fingerprint_data_url("data:image/jpeg;base64,"), None);
    }
}
