//! [`WuzapiClient`]: the [`Gateway`] adapter for WuzAPI's REST API.
//!
//! Everything here follows docs/wuzapi.md: user routes authenticate with a `Token` header, answers
//! come in a `{"code", "data" | "error", "success"}` envelope, and the message id Herald chose is
//! sent as `Id` so receipts and retries refer to it. The shape of answers (and how failures are
//! classified) lives in the `answer` module, so it can be unit-tested without a server.

mod answer;
mod forward;

use std::time::Duration;

use reqwest::header::{HeaderValue, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;

use crate::{
    ConnectOutcome, Gateway, GatewayContact, GatewayError, LogoutOutcome, MessageContent,
    OutboundMessage, QrOutcome, SendAccepted, SessionStatus, TRANSPORT_FAILURES,
};

use answer::parse_session_status;

/// How long to wait for a TCP (and TLS) connection: a gateway that does not accept in 5 s is down,
/// and the dispatcher should back off rather than pile up connections.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Whole-request limit: image sends upload media to WhatsApp before answering, which can take a
/// while, but a send hanging past this is treated as a transient failure (and retried under the
/// same id).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Enough idle connections to keep a few hundred concurrent sends from reconnecting.
const MAX_IDLE_PER_HOST: usize = 256;

/// Talks to one WuzAPI deployment. Cheap to clone (the connection pool is shared), safe to use
/// from many tasks at once.
#[derive(Clone)]
pub struct WuzapiClient {
    http: reqwest::Client,
    /// Without a trailing slash, so paths can be appended as-is.
    base_url: String,
    /// WuzAPI's `WUZAPI_ADMIN_TOKEN`, needed only for `/admin/*` calls.
    admin_token: Option<String>,
}

impl std::fmt::Debug for WuzapiClient {
    // Hand-written so the admin token can never end up in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WuzapiClient")
            .field("base_url", &self.base_url)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `POST /chat/send/text`; WuzAPI's field names are capitalised.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SendTextRequest<'a> {
    phone: &'a str,
    body: &'a str,
    id: &'a str,
}

/// `POST /chat/send/image`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SendImageRequest<'a> {
    phone: &'a str,
    image: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    caption: Option<&'a str>,
    id: &'a str,
}

/// `POST /webhook`.
#[derive(Serialize)]
struct SetWebhookRequest<'a> {
    #[serde(rename = "webhookURL")]
    webhook_url: &'a str,
    events: &'a [&'a str],
}

/// `POST /session/hmac/config`.
#[derive(Serialize)]
struct HmacConfigRequest<'a> {
    hmac_key: &'a str,
}

/// `POST /admin/users`; WuzAPI takes the event list as one comma-separated string here.
#[derive(Serialize)]
struct CreateUserRequest<'a> {
    name: &'a str,
    token: &'a str,
    webhook: &'a str,
    events: String,
}

/// `POST /session/connect`. `Immediate`: answer at once instead of waiting for the connection,
/// so a slow WhatsApp handshake never holds an API request.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConnectRequest<'a> {
    subscribe: &'a [&'a str],
    immediate: bool,
}

/// The part of an HTTP answer classification needs, read before the connection is released.
struct RawAnswer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

impl WuzapiClient {
    /// Builds a client for the WuzAPI at `base_url` (e.g. `http://wuzapi:8080`). `admin_token` is
    /// only needed for [`WuzapiClient::create_user`].
    pub fn new(base_url: &str, admin_token: Option<String>) -> anyhow::Result<Self> {
        let trimmed = base_url.trim().trim_end_matches('/');
        let parsed = reqwest::Url::parse(trimmed)
            .map_err(|e| anyhow::anyhow!("invalid WuzAPI base URL {trimmed:?}: {e}"))?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "http" | "https"),
            "WuzAPI base URL must be http(s), got {:?}",
            parsed.scheme()
        );
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .tcp_keepalive(Some(Duration::from_secs(60)))
            .tcp_nodelay(true)
            // A redirected POST would silently turn into a GET; treat redirects as answers.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            base_url: trimmed.to_owned(),
            admin_token: admin_token.filter(|t| !t.is_empty()),
        })
    }

    /// The base URL requests go to, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The shared connection pool (the pass-through's requests use it too).
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    fn admin_request(&self, method: Method, path: &str) -> Result<RequestBuilder, GatewayError> {
        let admin = self
            .admin_token
            .as_deref()
            .ok_or_else(|| GatewayError::permanent("no WuzAPI admin token configured"))?;
        Ok(self
            .request(method, path)
            .header("Authorization", secret_header(admin)?))
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base_url, path))
    }

    fn user_request(
        &self,
        method: Method,
        path: &str,
        token: &str,
    ) -> Result<RequestBuilder, GatewayError> {
        Ok(self
            .request(method, path)
            .header("Token", secret_header(token)?))
    }

    /// Sends the request and reads at most [`answer::MAX_BODY_BYTES`] of the answer. Only
    /// transport failures are errors here; the status is classified by the caller's parser.
    async fn execute(&self, request: RequestBuilder) -> Result<RawAnswer, GatewayError> {
        self.execute_limited(request, answer::MAX_BODY_BYTES).await
    }

    /// [`Self::execute`] reading at most `max_body` bytes (a body of `max_body` or more was cut).
    async fn execute_limited(
        &self,
        request: RequestBuilder,
        max_body: usize,
    ) -> Result<RawAnswer, GatewayError> {
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| answer::parse_retry_after(v, chrono::Utc::now()));
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = max_body - body.len();
                    if chunk.len() >= room {
                        // The rest is never needed: a valid answer is far smaller than the cap.
                        body.extend_from_slice(&chunk[..room]);
                        break;
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                // A failed 2xx body is unreadable (retry); a failed error body still has a
                // status that classifies it, so keep what arrived.
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

    /// Runs a user-route call and returns the envelope's `data`.
    async fn call_data(&self, request: RequestBuilder) -> Result<serde_json::Value, GatewayError> {
        let answer = self.execute(request).await?;
        let body = answer::success_body(answer.status, answer.retry_after, &answer.body)?;
        answer::envelope_data(body)
    }
}

/// `POST /chat/presence` (WUZAPI: `{"Phone", "State": "composing"|"paused", "Media": ""}`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PresenceRequest<'a> {
    phone: &'a str,
    state: &'static str,
    media: &'static str,
}

/// A send refused because the number is not connected or not logged in (`no session`, `not
/// connected`, `not logged in`) is no fault of the recipient: the number stopped, and the circuit
/// breaker pauses its campaigns (docs/safe-sending.md).
fn halt_if_disconnected(error: GatewayError) -> GatewayError {
    if error.says("no session") || error.says("not connected") || error.says("not logged in") {
        GatewayError::Halt {
            reason: crate::HaltReason::SessionDisconnected,
            message: error.message().to_string(),
        }
    } else {
        error
    }
}

#[async_trait::async_trait]
impl Gateway for WuzapiClient {
    #[tracing::instrument(
        skip_all,
        fields(phone = %message.phone, message_id = %message.message_id, kind = content_kind(&message.content))
    )]
    async fn send(
        &self,
        token: &str,
        message: &OutboundMessage,
    ) -> Result<SendAccepted, GatewayError> {
        let request = match &message.content {
            MessageContent::Text { body } => self
                .user_request(Method::POST, "/chat/send/text", token)?
                .json(&SendTextRequest {
                    phone: &message.phone,
                    body,
                    id: &message.message_id,
                }),
            MessageContent::Image { data_url, caption } => self
                .user_request(Method::POST, "/chat/send/image", token)?
                .json(&SendImageRequest {
                    phone: &message.phone,
                    image: data_url,
                    caption: caption.as_deref(),
                    id: &message.message_id,
                }),
            MessageContent::Template { .. } => {
                return Err(GatewayError::permanent(
                    "WuzAPI cannot send Cloud API templates: use a text or image template",
                ))
            }
        };
        let result = self
            .call_data(request)
            .await
            .map(|data| answer::send_accepted(&data, &message.message_id))
            .map_err(halt_if_disconnected);
        if let Err(error) = &result {
            tracing::debug!(transient = error.is_transient(), error = %error, "send not accepted");
        }
        result
    }

    #[tracing::instrument(skip_all, fields(events = ?events))]
    async fn set_webhook(
        &self,
        token: &str,
        url: &str,
        events: &[&str],
    ) -> Result<(), GatewayError> {
        let request =
            self.user_request(Method::POST, "/webhook", token)?
                .json(&SetWebhookRequest {
                    webhook_url: url,
                    events,
                });
        self.call_data(request).await.map(|_| ())
    }

    // skip_all: the key is a secret
    #[tracing::instrument(skip_all)]
    async fn set_hmac_key(&self, token: &str, key: &str) -> Result<(), GatewayError> {
        let request = self
            .user_request(Method::POST, "/session/hmac/config", token)?
            .json(&HmacConfigRequest { hmac_key: key });
        self.call_data(request).await.map(|_| ())
    }

    #[tracing::instrument(skip_all)]
    async fn contacts(&self, token: &str) -> Result<Vec<GatewayContact>, GatewayError> {
        let request = self.user_request(Method::GET, "/user/contacts", token)?;
        let answer = self
            .execute_limited(request, answer::MAX_CONTACTS_BODY_BYTES)
            .await?;
        let body = answer::success_body(answer.status, answer.retry_after, &answer.body)?;
        if body.len() >= answer::MAX_CONTACTS_BODY_BYTES {
            return Err(GatewayError::permanent(format!(
                "the gateway's contact list is larger than {} MiB",
                answer::MAX_CONTACTS_BODY_BYTES / (1024 * 1024)
            )));
        }
        answer::parse_contacts(&answer::envelope_data(body)?)
    }

    #[tracing::instrument(skip_all)]
    async fn set_typing(
        &self,
        token: &str,
        phone: &str,
        composing: bool,
    ) -> Result<(), GatewayError> {
        let request = self
            .user_request(Method::POST, "/chat/presence", token)?
            .json(&PresenceRequest {
                phone,
                state: if composing { "composing" } else { "paused" },
                media: "",
            });
        self.call_data(request).await.map(|_| ())
    }

    #[tracing::instrument(skip_all)]
    async fn connect(&self, token: &str, events: &[&str]) -> Result<ConnectOutcome, GatewayError> {
        let request = self
            .user_request(Method::POST, "/session/connect", token)?
            .json(&ConnectRequest {
                subscribe: events,
                immediate: true,
            });
        match self.call_data(request).await {
            Ok(_) => Ok(ConnectOutcome::Connecting),
            Err(e) if e.says("already connected") => Ok(ConnectOutcome::AlreadyConnected),
            Err(e) => Err(e),
        }
    }

    #[tracing::instrument(skip_all)]
    async fn qr_code(&self, token: &str) -> Result<QrOutcome, GatewayError> {
        let request = self.user_request(Method::GET, "/session/qr", token)?;
        match self.call_data(request).await {
            Ok(data) => answer::qr_code(&data),
            Err(e) if e.says("already logged in") => Ok(QrOutcome::AlreadyLoggedIn),
            // `no session`: WuzAPI has no client for the user, i.e. it never connected
            Err(e) if e.says("not connected") || e.says("no session") => {
                Ok(QrOutcome::NotConnected)
            }
            Err(e) => Err(e),
        }
    }

    #[tracing::instrument(skip_all)]
    async fn logout(&self, token: &str) -> Result<LogoutOutcome, GatewayError> {
        let request = self.user_request(Method::POST, "/session/logout", token)?;
        match self.call_data(request).await {
            Ok(_) => Ok(LogoutOutcome::LoggedOut),
            Err(e) if e.says("not logged in") => Ok(LogoutOutcome::NotLoggedIn),
            Err(e) if e.says("not connected") || e.says("no session") => {
                Ok(LogoutOutcome::NotConnected)
            }
            Err(e) => Err(e),
        }
    }

    // skip_all: the user token is a secret
    #[tracing::instrument(skip_all, fields(name = %name))]
    async fn create_user(
        &self,
        name: &str,
        token: &str,
        webhook: &str,
        events: &[&str],
    ) -> Result<String, GatewayError> {
        let body = CreateUserRequest {
            name,
            token,
            webhook,
            events: events.join(","),
        };
        let request = self
            .admin_request(Method::POST, "/admin/users")?
            .json(&body);
        let answer = self.execute(request).await?;
        let body = answer::success_body(answer.status, answer.retry_after, &answer.body)?;
        answer::created_user_id(body)
    }

    async fn forward(
        &self,
        token: &str,
        request: crate::passthrough::ForwardRequest,
    ) -> Result<crate::passthrough::Forwarded, GatewayError> {
        self.forward_request(token, request).await
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    async fn delete_user(&self, user_id: &str) -> Result<bool, GatewayError> {
        // The id came from the gateway; only a plain one goes into a path.
        if !answer::is_plain_user_id(user_id) {
            return Err(GatewayError::permanent("not a WuzAPI user id"));
        }
        let request = self.admin_request(Method::DELETE, &format!("/admin/users/{user_id}"))?;
        let answer = self.execute(request).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        answer::success_body(answer.status, answer.retry_after, &answer.body)?;
        Ok(true)
    }

    #[tracing::instrument(skip_all)]
    async fn session_status(&self, token: &str) -> Result<SessionStatus, GatewayError> {
        let request = self.user_request(Method::GET, "/session/status", token)?;
        let data = self.call_data(request).await?;
        parse_session_status(&data).ok_or_else(|| {
            GatewayError::transient("gateway answered /session/status without a connected flag")
        })
    }
}

fn content_kind(content: &MessageContent) -> &'static str {
    match content {
        MessageContent::Text { .. } => "text",
        MessageContent::Image { .. } => "image",
        MessageContent::Template { .. } => "template",
    }
}

/// A header value marked sensitive, so hyper and any debug output redact it.
pub(crate) fn secret_header(secret: &str) -> Result<HeaderValue, GatewayError> {
    let mut value = HeaderValue::from_str(secret)
        // Retrying cannot fix a token with characters HTTP headers cannot carry. The token
        // itself stays out of the message.
        .map_err(|_| {
            GatewayError::permanent("token contains characters not allowed in a header")
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Connection failures, timeouts and broken bodies: the gateway may be back later.
pub(crate) fn transport_error(error: reqwest::Error) -> GatewayError {
    let [timed_out, unreachable, failed] = TRANSPORT_FAILURES;
    let what = if error.is_timeout() {
        timed_out
    } else if error.is_connect() {
        unreachable
    } else {
        failed
    };
    // Without the URL: a base URL may carry credentials. The source chain says what happened.
    let error = error.without_url();
    let mut message = format!("{what}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    GatewayError::transient(message)
}
