//! Herald's side of the WhatsApp gateway: the [`Gateway`] trait the dispatcher sends through, and
//! the WuzAPI adapter that speaks it over HTTP. (The WuzAPI-compatible simulator for the default
//! run, tests and benchmarks is a crate of its own, `herald-simulator`, so this adapter compiles
//! no web server.)
//!
//! The dispatcher only ever sees [`Gateway`], so tests can fake it and a second gateway (e.g. the
//! Cloud API) can be added without touching the domain. What the dispatcher needs from a gateway is
//! small: send one message under an id Herald chose (so receipts and retries match it), point the
//! gateway's webhooks at Herald, and tell whether the linked number is usable. Failures come back
//! already classified: [`GatewayError::Transient`] is retried with backoff (honouring
//! `Retry-After`), [`GatewayError::Permanent`] fails the recipient with the gateway's own message.
//!
//! # Layout
//!
//! - [`lib.rs`](crate) — the gateway vocabulary: [`OutboundMessage`], [`SendAccepted`],
//!   [`SessionStatus`], [`GatewayError`] and the [`Gateway`] trait.
//! - [`wuzapi`] — [`WuzapiClient`], the reqwest adapter for WuzAPI's REST API (see
//!   docs/wuzapi.md): request shapes, answer-envelope parsing and failure classification.
//! - [`webhook`] — the webhooks WuzAPI posts: encodings, `x-hmac-signature`, receipt events.
//! - [`meta`] — the WhatsApp Cloud API's webhooks: `X-Hub-Signature-256`, statuses and messages.
//! - [`cloud_api`] — [`CloudApiClient`], the adapter for sending through the WhatsApp Cloud API
//!   (docs/cloud-api.md): text, images uploaded once, approved templates, Meta's error codes.
//! - [`passthrough`] — forwarding a tenant's request for a WuzAPI feature Herald has no endpoint
//!   for: which paths may pass, and the forwarding itself.
//! - [`meta_graph`] — asking Meta's Graph API whether an access token may use a phone number id.

use std::time::Duration;

pub mod cloud_api;
pub mod meta;
pub mod meta_graph;
pub mod passthrough;
pub mod webhook;
pub mod wuzapi;

pub use cloud_api::CloudApiClient;
pub use wuzapi::WuzapiClient;

/// What one message says. Kept to the kinds campaigns send; new kinds are added here first so
/// every gateway has to decide how to carry them.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageContent {
    /// A plain text message.
    Text { body: String },
    /// An image, carried inline as a `data:image/...;base64,...` URL because WuzAPI only reliably
    /// accepts data URLs (Herald fetches and caps the image once, not per recipient).
    Image {
        data_url: String,
        caption: Option<String>,
    },
    /// A template Meta approved for the number (WhatsApp Cloud API only): its name, language
    /// code and the body parameters already rendered for this recipient.
    Template {
        name: String,
        language: String,
        params: Vec<String>,
    },
}

/// One message to one recipient, as the dispatcher hands it to a gateway.
#[derive(Debug, Clone)]
pub struct OutboundMessage {
    /// E.164 digits without `+` (e.g. `6281234567890`), or a full JID containing `@`.
    pub phone: String,
    /// Herald's deterministic id for this delivery (uppercase hex, at most 32 characters). Sent as
    /// WuzAPI's `Id` so receipts carry it and a retry reuses it instead of minting a new message.
    pub message_id: String,
    /// What to send.
    pub content: MessageContent,
}

/// The gateway took the message.
#[derive(Debug, Clone)]
pub struct SendAccepted {
    /// The id the gateway used; receipts refer to it. Equals the requested id unless the gateway
    /// chose its own.
    pub message_id: String,
    /// When the gateway says it sent the message, when it says so in a form we understand.
    pub timestamp: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why a gateway call did not succeed, classified so the caller knows whether to retry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    /// Network error, timeout, 5xx, 429 or an answer we could not read: worth retrying later.
    #[error("{message}")]
    Transient {
        message: String,
        /// The gateway's `Retry-After`, when it gave one; the caller's backoff should not retry
        /// sooner.
        retry_after: Option<Duration>,
    },
    /// Other 4xx answers, which cannot succeed by retrying: fail with the gateway's message.
    #[error("{message}")]
    Permanent { message: String },
    /// The number cannot send anything right now (logged out, held for spam, its credentials
    /// refused): the recipient is not at fault and stays queued, and the number's running
    /// campaigns pause with `reason` (the circuit breaker, docs/decisions/0064).
    #[error("{message}")]
    Halt { reason: HaltReason, message: String },
}

/// Why a number stopped sending; each is a campaign's `pause_reason` (API: "Circuit breaker").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HaltReason {
    /// The number is logged out or disconnected.
    SessionDisconnected,
    /// WhatsApp holds the number for its spam rate (Cloud API error 131048).
    SpamRateLimit,
    /// The gateway refused the number's credentials (Cloud API error 190).
    GatewayAuth,
}

impl HaltReason {
    /// The stable name API answers and events carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionDisconnected => "session_disconnected",
            Self::SpamRateLimit => "spam_rate_limit",
            Self::GatewayAuth => "gateway_auth",
        }
    }
}

impl GatewayError {
    /// The human-readable reason (the gateway's own `error` text when it gave one).
    pub fn message(&self) -> &str {
        match self {
            Self::Transient { message, .. }
            | Self::Permanent { message }
            | Self::Halt { message, .. } => message,
        }
    }

    /// Whether retrying the same call later can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// Whether the gateway could not be reached at all (refused connection, timeout, broken
    /// transfer), as opposed to an answer that said no. Callers tell users "unavailable" for
    /// these and "the gateway said ..." for the rest.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Transient { message, .. } => TRANSPORT_FAILURES
                .iter()
                .any(|prefix| message.starts_with(prefix)),
            Self::Permanent { .. } | Self::Halt { .. } => false,
        }
    }

    /// Whether the gateway's own message contains `text` (any case): how WuzAPI's few
    /// meaningful 500s (`already connected`, `already logged in`, ...) are told apart.
    pub(crate) fn says(&self, text: &str) -> bool {
        !self.is_unreachable() && self.message().to_ascii_lowercase().contains(text)
    }

    pub(crate) fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: clean(message.into()),
            retry_after: None,
        }
    }

    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: clean(message.into()),
        }
    }
}

/// A gateway's reason may end up stored (a failed delivery's): without NULs (decision 0037).
fn clean(message: String) -> String {
    match herald_domain::text::without_nul(&message) {
        std::borrow::Cow::Borrowed(_) => message,
        std::borrow::Cow::Owned(cleaned) => cleaned,
    }
}

/// How transport failures' messages start (see `wuzapi::transport_error`), so
/// [`GatewayError::is_unreachable`] can tell them from the gateway's own answers.
pub(crate) const TRANSPORT_FAILURES: [&str; 3] = [
    "gateway timed out",
    "gateway unreachable",
    "gateway request failed",
];

/// What asking a number to connect did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// The gateway started connecting (and, for an unpaired number, producing QR codes).
    Connecting,
    /// It already was connected: nothing to do.
    AlreadyConnected,
}

/// What asking for the pairing QR code gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QrOutcome {
    /// The current code as a `data:image/png;base64,...` URL.
    Code(String),
    /// The number is paired already: there is nothing to scan.
    AlreadyLoggedIn,
    /// The session is not connected, so no code is being produced: connect first.
    NotConnected,
    /// Connected but no code produced yet (it takes a moment after connecting).
    NotReady,
}

/// What asking a number to log out did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutOutcome {
    /// Unpaired: the number must scan a new QR code to be used again.
    LoggedOut,
    /// Connected but not paired: there was nothing to log out of.
    NotLoggedIn,
    /// Not connected: WuzAPI can only log out a connected session.
    NotConnected,
}

/// Whether a linked number can send right now.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionStatus {
    /// The gateway holds a websocket to WhatsApp.
    pub connected: bool,
    /// The number is paired (QR scanned); sends fail without it.
    pub logged_in: bool,
    /// The linked number's JID (`6281...@s.whatsapp.net`), when the gateway reports one.
    pub jid: Option<String>,
}

/// One entry of the linked phone's contact list, as the gateway reports it. Names are the
/// gateway's raw strings (possibly empty); Herald picks one (see `docs/contacts.md`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GatewayContact {
    /// `6281...@s.whatsapp.net`, or a privacy id `...@lid` that has no phone number.
    pub jid: String,
    pub full_name: String,
    pub business_name: String,
    pub push_name: String,
    pub first_name: String,
}

/// A WhatsApp gateway as the dispatcher uses it. `token` selects the linked number (WuzAPI's user
/// token); implementations must never log it.
#[async_trait::async_trait]
pub trait Gateway: Send + Sync + 'static {
    /// Sends one message under `message.message_id`. Safe to retry on [`GatewayError::Transient`]:
    /// the id stays the same, so a duplicate is detectable downstream.
    async fn send(
        &self,
        token: &str,
        message: &OutboundMessage,
    ) -> Result<SendAccepted, GatewayError>;

    /// Points the gateway's webhooks for this number at `url`, for the given event types
    /// (e.g. `["Message", "ReadReceipt"]`).
    async fn set_webhook(
        &self,
        token: &str,
        url: &str,
        events: &[&str],
    ) -> Result<(), GatewayError>;

    /// Reports whether the number is connected and paired.
    async fn session_status(&self, token: &str) -> Result<SessionStatus, GatewayError>;

    /// Makes the gateway sign this number's webhooks with `key` (at least 32 characters), so
    /// Herald can tell its posts from forgeries. Implementations must never log the key.
    async fn set_hmac_key(&self, token: &str, key: &str) -> Result<(), GatewayError>;

    /// The linked phone's contact list (WuzAPI `GET /user/contacts`), in one call. Entries the
    /// gateway answers in a shape we cannot read are left out, never an error.
    async fn contacts(&self, token: &str) -> Result<Vec<GatewayContact>, GatewayError>;
    /// Shows "typing…" (`composing: true`) or stops it in the chat with `phone`, before a paced
    /// send (docs/safe-sending.md). The default, for gateways without chat presence (the Cloud
    /// API), does nothing.
    async fn set_typing(
        &self,
        _token: &str,
        _phone: &str,
        _composing: bool,
    ) -> Result<(), GatewayError> {
        Ok(())
    }

    /// Connects the number, subscribing its webhook to `events`. The default (for gateways
    /// without a session lifecycle, like a hosted API) refuses.
    async fn connect(
        &self,
        _token: &str,
        _events: &[&str],
    ) -> Result<ConnectOutcome, GatewayError> {
        Err(unsupported("connecting a session"))
    }

    /// The pairing QR code of a connected, unpaired number.
    async fn qr_code(&self, _token: &str) -> Result<QrOutcome, GatewayError> {
        Err(unsupported("pairing QR codes"))
    }

    /// Unpairs the number (it must scan a new QR code to be used again).
    async fn logout(&self, _token: &str) -> Result<LogoutOutcome, GatewayError> {
        Err(unsupported("logging a session out"))
    }

    /// Creates a gateway user (one linked number) whose user token is `token`, with its webhook
    /// preset; returns the gateway's id for it. Needs the gateway's admin credentials.
    async fn create_user(
        &self,
        _name: &str,
        _token: &str,
        _webhook: &str,
        _events: &[&str],
    ) -> Result<String, GatewayError> {
        Err(unsupported("creating users"))
    }

    /// Forwards a tenant's request to the number's gateway (the pass-through, see
    /// [`passthrough`]); the path was checked with [`passthrough::allowed_path`].
    async fn forward(
        &self,
        _token: &str,
        _request: passthrough::ForwardRequest,
    ) -> Result<passthrough::Forwarded, GatewayError> {
        Err(unsupported("forwarding requests"))
    }

    /// Deletes the gateway user with this id (from [`Gateway::create_user`]). `Ok(false)` when
    /// the gateway does not know it (already gone).
    async fn delete_user(&self, _user_id: &str) -> Result<bool, GatewayError> {
        Err(unsupported("deleting users"))
    }
}

fn unsupported(what: &str) -> GatewayError {
    GatewayError::permanent(format!("this gateway does not support {what}"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn gateway_is_usable_as_a_trait_object() {
        // The dispatcher holds `Arc<dyn Gateway>` so tests can swap in a fake.
        let client = WuzapiClient::new("http://127.0.0.1:8080/", None).expect("valid URL");
        assert_eq!(client.base_url(), "http://127.0.0.1:8080");
        let _gateway: Arc<dyn Gateway> = Arc::new(client);
        assert!(WuzapiClient::new("ftp://example.com", None).is_err());
        assert!(WuzapiClient::new("not a url", None).is_err());
    }

    #[test]
    fn errors_say_whether_to_retry() {
        let transient = GatewayError::Transient {
            message: "no session".into(),
            retry_after: Some(Duration::from_secs(1)),
        };
        assert!(transient.is_transient());
        assert_eq!(transient.message(), "no session");
        assert_eq!(transient.to_string(), "no session");
        let permanent = GatewayError::permanent("missing Phone in Payload");
        assert!(!permanent.is_transient());
        assert_eq!(permanent.message(), "missing Phone in Payload");
    }

    #[test]
    fn debug_output_never_shows_the_admin_token() {
        let client =
            WuzapiClient::new("http://wuzapi:8080", Some("s3cret".into())).expect("valid URL");
        let shown = format!("{client:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
