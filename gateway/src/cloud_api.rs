//! [`CloudApiClient`]: the [`Gateway`] adapter for the WhatsApp Cloud API (Meta's Graph API), the
//! second gateway a session may name as its `provider` (docs/decisions/0063, docs/cloud-api.md).
//!
//! - Sends: `POST {graph}/{phone_number_id}/messages` with `Authorization: Bearer <access token>`:
//!   text, image (by a media id) or an approved template. The message id is Meta's `wamid`
//!   (`messages[0].id`), which statuses refer to.
//! - Images: the processed JPEG is uploaded once per number and image (`POST
//!   {graph}/{phone_number_id}/media`, multipart) and the media id is remembered for this
//!   process; concurrent first sends of one image wait for the one upload.
//! - The `token` the [`Gateway`] methods take is a number's credentials as
//!   [`credentials_token`] joins them (`<phone_number_id>:<access token>`); it is never logged.
//! - Meta's answers are classified in `answer` (transient, halt, permanent).

mod answer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use sha2::{Digest, Sha256};

use crate::wuzapi::{secret_header, transport_error};
use crate::{
    Gateway, GatewayContact, GatewayError, MessageContent, OutboundMessage, SendAccepted,
    SessionStatus,
};

/// The Graph API base unless `HERALD_META_GRAPH_URL` says otherwise.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.facebook.com/v21.0";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request limit (a media upload of a few hundred KB included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Media ids remembered per process before the cache starts over.
const MAX_REMEMBERED_MEDIA: usize = 10_000;

/// One number's credentials as the [`Gateway`] methods take them: `<phone_number_id>:<token>`.
/// (Phone number ids are digits, so the first `:` separates them.)
pub fn credentials_token(phone_number_id: &str, access_token: &str) -> String {
    format!("{phone_number_id}:{access_token}")
}

/// Splits [`credentials_token`]'s form again.
fn credentials(token: &str) -> Result<(&str, &str), GatewayError> {
    match token.split_once(':') {
        Some((id, access)) if crate::meta::valid_phone_number_id(id) && !access.is_empty() => {
            Ok((id, access))
        }
        _ => Err(GatewayError::permanent(
            "the session's Cloud API credentials are incomplete",
        )),
    }
}

type MediaKey = (String, [u8; 32]);

/// Talks to one Graph API base URL. Cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct CloudApiClient {
    http: reqwest::Client,
    base_url: String,
    /// (phone number id, SHA-256 of the image) → its media id, uploaded once.
    media: Arc<Mutex<HashMap<MediaKey, Arc<tokio::sync::OnceCell<String>>>>>,
}

impl std::fmt::Debug for CloudApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudApiClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

struct RawAnswer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

impl CloudApiClient {
    /// A client for the Graph API at `base_url` (e.g. `https://graph.facebook.com/v21.0`).
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        let trimmed = base_url.trim().trim_end_matches('/');
        let parsed = reqwest::Url::parse(trimmed)
            .map_err(|e| anyhow::anyhow!("invalid Graph API URL {trimmed:?}: {e}"))?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "http" | "https"),
            "the Graph API URL must be http(s), got {:?}",
            parsed.scheme()
        );
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            // the token goes to the Graph host only, never where a redirect points
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(CloudApiClient {
            http,
            base_url: trimmed.to_string(),
            media: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The base URL requests go to, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn post(
        &self,
        phone_number_id: &str,
        what: &str,
        access_token: &str,
    ) -> Result<RequestBuilder, GatewayError> {
        Ok(self
            .http
            .post(format!("{}/{phone_number_id}/{what}", self.base_url))
            .header(
                reqwest::header::AUTHORIZATION,
                secret_header(&format!("Bearer {access_token}"))?,
            ))
    }

    async fn execute(&self, request: RequestBuilder) -> Result<RawAnswer, GatewayError> {
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(3600)));
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = answer::MAX_BODY_BYTES - body.len();
                    if chunk.len() >= room {
                        body.extend_from_slice(&chunk[..room]);
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if status.is_success() => return Err(transport_error(e)),
                Err(_) => break,
            }
        }
        Ok(RawAnswer {
            status,
            retry_after,
            body,
        })
    }

    /// The media id of `data_url`'s image for this number, uploading it on first use.
    async fn media_id(
        &self,
        phone_number_id: &str,
        access_token: &str,
        data_url: &str,
    ) -> Result<String, GatewayError> {
        let digest: [u8; 32] = Sha256::digest(data_url.as_bytes()).into();
        let cell = {
            let mut media = self
                .media
                .lock()
                .map_err(|_| GatewayError::transient("media cache poisoned"))?;
            if media.len() >= MAX_REMEMBERED_MEDIA {
                media.clear();
            }
            media
                .entry((phone_number_id.to_string(), digest))
                .or_default()
                .clone()
        };
        let id = cell
            .get_or_try_init(|| self.upload(phone_number_id, access_token, data_url, &digest))
            .await?;
        Ok(id.clone())
    }

    /// `POST {graph}/{phone_number_id}/media`: `messaging_product=whatsapp`, `type=image/jpeg`,
    /// `file` (multipart/form-data).
    #[tracing::instrument(skip_all, fields(phone_number_id = %phone_number_id))]
    async fn upload(
        &self,
        phone_number_id: &str,
        access_token: &str,
        data_url: &str,
        digest: &[u8; 32],
    ) -> Result<String, GatewayError> {
        let (mime, bytes) = decode_data_url(data_url)?;
        let boundary = format!("herald-{}", hex::encode(&digest[..16]));
        let body = multipart(&boundary, &mime, &bytes);
        let request = self
            .post(phone_number_id, "media", access_token)?
            .header(
                CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        let answer = self.execute(request).await?;
        if !answer.status.is_success() {
            return Err(answer::failure(
                answer.status,
                answer.retry_after,
                &answer.body,
            ));
        }
        let id = answer::media_id(&answer.body)?;
        tracing::debug!("image uploaded to the Cloud API");
        Ok(id)
    }
}

/// `data:<mime>;base64,<data>` → (mime, bytes).
fn decode_data_url(data_url: &str) -> Result<(String, Vec<u8>), GatewayError> {
    let refused = || GatewayError::permanent("the image is not a base64 data URL");
    let rest = data_url.strip_prefix("data:").ok_or_else(refused)?;
    let (meta, data) = rest.split_once(',').ok_or_else(refused)?;
    let mime = meta.strip_suffix(";base64").ok_or_else(refused)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|_| refused())?;
    let mime = if mime.is_empty() { "image/jpeg" } else { mime };
    Ok((mime.to_string(), bytes))
}

/// A multipart/form-data body with the three fields the media endpoint takes.
fn multipart(boundary: &str, mime: &str, file: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(file.len() + 512);
    for (name, value) in [("messaging_product", "whatsapp"), ("type", mime)] {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"image.jpg\"\r\nContent-Type: {mime}\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// The `/messages` body for one message (the image by its media id).
fn message_body(to: &str, content: &MessageContent, media_id: Option<&str>) -> serde_json::Value {
    let mut body = serde_json::json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
    });
    match content {
        MessageContent::Text { body: text } => {
            body["type"] = "text".into();
            body["text"] = serde_json::json!({"preview_url": false, "body": text});
        }
        MessageContent::Image { caption, .. } => {
            body["type"] = "image".into();
            let mut image = serde_json::json!({"id": media_id.unwrap_or_default()});
            if let Some(caption) = caption {
                image["caption"] = caption.as_str().into();
            }
            body["image"] = image;
        }
        MessageContent::Template {
            name,
            language,
            params,
        } => {
            body["type"] = "template".into();
            let mut template = serde_json::json!({"name": name, "language": {"code": language}});
            if !params.is_empty() {
                let parameters: Vec<serde_json::Value> = params
                    .iter()
                    .map(|text| serde_json::json!({"type": "text", "text": text}))
                    .collect();
                template["components"] =
                    serde_json::json!([{"type": "body", "parameters": parameters}]);
            }
            body["template"] = template;
        }
    }
    body
}

/// The Cloud API sends to phone numbers: digits, without `+`.
fn recipient(phone: &str) -> Result<String, GatewayError> {
    let digits = phone.trim().trim_start_matches('+');
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(GatewayError::permanent(
            "the Cloud API sends to phone numbers only (not groups or other JIDs)",
        ));
    }
    Ok(digits.to_string())
}

fn unsupported(what: &str) -> GatewayError {
    GatewayError::permanent(format!(
        "the Cloud API has no {what}: set it in the Meta app"
    ))
}

#[async_trait::async_trait]
impl Gateway for CloudApiClient {
    // skip_all: the token holds the access token
    #[tracing::instrument(skip_all, fields(message_id = %message.message_id))]
    async fn send(
        &self,
        token: &str,
        message: &OutboundMessage,
    ) -> Result<SendAccepted, GatewayError> {
        let (phone_number_id, access_token) = credentials(token)?;
        let to = recipient(&message.phone)?;
        let media_id = match &message.content {
            MessageContent::Image { data_url, .. } => Some(
                self.media_id(phone_number_id, access_token, data_url)
                    .await?,
            ),
            _ => None,
        };
        let request = self
            .post(phone_number_id, "messages", access_token)?
            .json(&message_body(&to, &message.content, media_id.as_deref()));
        let answer = self.execute(request).await?;
        if !answer.status.is_success() {
            let error = answer::failure(answer.status, answer.retry_after, &answer.body);
            tracing::debug!(transient = error.is_transient(), error = %error, "send not accepted");
            return Err(error);
        }
        Ok(SendAccepted {
            message_id: answer::message_id(&answer.body)?,
            timestamp: Some(chrono::Utc::now()),
        })
    }

    async fn set_webhook(&self, _: &str, _: &str, _: &[&str]) -> Result<(), GatewayError> {
        Err(unsupported("per-number webhook setting"))
    }

    /// `GET {graph}/{phone_number_id}`: 200 is a usable number (the Cloud API has no pairing).
    #[tracing::instrument(skip_all)]
    async fn session_status(&self, token: &str) -> Result<SessionStatus, GatewayError> {
        let (phone_number_id, access_token) = credentials(token)?;
        let request = self
            .http
            .get(format!("{}/{phone_number_id}", self.base_url))
            .header(
                reqwest::header::AUTHORIZATION,
                secret_header(&format!("Bearer {access_token}"))?,
            );
        let answer = self.execute(request).await?;
        if !answer.status.is_success() {
            return Err(answer::failure(
                answer.status,
                answer.retry_after,
                &answer.body,
            ));
        }
        Ok(SessionStatus {
            connected: true,
            logged_in: true,
            jid: None,
        })
    }

    async fn set_hmac_key(&self, _: &str, _: &str) -> Result<(), GatewayError> {
        Err(unsupported(
            "per-number signing key (Meta signs with the app secret)",
        ))
    }

    async fn contacts(&self, _: &str) -> Result<Vec<GatewayContact>, GatewayError> {
        Err(GatewayError::permanent(
            "the Cloud API does not share a contact list",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_travel_as_one_token_and_never_show() {
        let token = credentials_token("106540352242922", "EAAG:with:colons");
        assert_eq!(
            credentials(&token),
            Ok(("106540352242922", "EAAG:with:colons"))
        );
        assert!(credentials("not-digits:tok").is_err());
        assert!(credentials("106540352242922:").is_err());
        let client = CloudApiClient::new("http://127.0.0.1:9/v21.0/").expect("valid URL");
        assert_eq!(client.base_url(), "http://127.0.0.1:9/v21.0");
        assert!(!format!("{client:?}").contains("EAAG"));
        assert!(CloudApiClient::new("ftp://x").is_err());
    }

    #[test]
    fn message_bodies_follow_the_cloud_api() {
        let text = message_body(
            "6281234567890",
            &MessageContent::Text { body: "Hi".into() },
            None,
        );
        assert_eq!(
            text,
            serde_json::json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                "to": "6281234567890", "type": "text", "text": {"preview_url": false, "body": "Hi"}})
        );
        let image = message_body(
            "6281234567890",
            &MessageContent::Image {
                data_url: "data:image/jpeg;base64,AAAA".into(),
                caption: Some("Sale".into()),
            },
            Some("1037543291543636"),
        );
        assert_eq!(
            image["image"],
            serde_json::json!({"id": "1037543291543636", "caption": "Sale"})
        );
        let template = message_body(
            "6281234567890",
            &MessageContent::Template {
                name: "order_update".into(),
                language: "en_US".into(),
                params: vec!["Ann".into(), "42".into()],
            },
            None,
        );
        assert_eq!(
            template["template"],
            serde_json::json!({"name": "order_update", "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [
                    {"type": "text", "text": "Ann"}, {"type": "text", "text": "42"}]}]})
        );
    }

    #[test]
    fn images_upload_as_multipart_from_their_data_url() {
        let (mime, bytes) = decode_data_url("data:image/jpeg;base64,/9j/4A==").expect("decodes");
        assert_eq!(mime, "image/jpeg");
        assert_eq!(bytes, vec![0xff, 0xd8, 0xff, 0xe0]);
        assert!(decode_data_url("https://example.com/a.jpg").is_err());
        let body = multipart("b", &mime, &bytes);
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(
            "--b\r\nContent-Disposition: form-data; name=\"messaging_product\"\r\n\r\nwhatsapp\r\n"
        ));
        assert!(text.contains("name=\"type\"\r\n\r\nimage/jpeg\r\n"));
        assert!(text.ends_with("\r\n--b--\r\n"));
    }

    #[test]
    fn only_phone_numbers_are_recipients() {
        assert_eq!(recipient("+6281234567890").as_deref(), Ok("6281234567890"));
        assert!(recipient("120363025246125888@g.us").is_err());
        assert!(recipient("").is_err());
    }
}
