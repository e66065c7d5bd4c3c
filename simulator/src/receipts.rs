//! Receipts posted back like WuzAPI: after an accepted send, when the user has a webhook URL (and
//! subscribes to `ReadReceipt`), a `Delivered` then a `Read` receipt, each in its own task so the
//! send is answered at once. Encoded as `form` or `json` and signed with the user's HMAC key when
//! it has one. Knobs for tests: duplicates (every receipt posted twice) and read-first (the Read
//! receipt before the Delivered one, whose timestamp stays the earlier one).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use herald_gateway::webhook::{self, Encoding, ReceiptState};

/// Attempts per receipt post; a network error or a 5xx is tried again after 200 ms, then 400 ms
/// (WuzAPI also retries with exponential backoff).
const POST_ATTEMPTS: u32 = 3;

/// The receipt knobs as `/sim/config` shows and takes them, and as [`super::SimulatorConfig`]
/// carries them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReceiptSettings {
    /// Post receipts at all.
    pub enabled: bool,
    /// After the send is accepted, when the Delivered receipt happens.
    pub delivered_after_ms: u64,
    /// After the send is accepted, when the Read receipt happens (at least `delivered_after_ms`).
    pub read_after_ms: u64,
    /// `form` (WuzAPI's default) or `json`.
    pub encoding: Encoding,
    /// Post every receipt twice, like a WuzAPI retry after a lost answer.
    pub duplicates: bool,
    /// Post the Read receipt first and the Delivered one after it.
    pub read_first: bool,
}

impl ReceiptSettings {
    /// Off: what a library user (tests, the benchmark) gets unless it asks. `herald sim` turns
    /// them on with [`ReceiptSettings::on`].
    pub fn off() -> Self {
        ReceiptSettings {
            enabled: false,
            ..Self::on()
        }
    }

    /// On, with short delays (Delivered after 50 ms, Read after 150 ms), form-encoded.
    pub fn on() -> Self {
        ReceiptSettings {
            enabled: true,
            delivered_after_ms: 50,
            read_after_ms: 150,
            encoding: Encoding::Form,
            duplicates: false,
            read_first: false,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.read_after_ms < self.delivered_after_ms {
            return Err(format!(
                "receipt_read_after_ms ({}) must not be less than receipt_delivered_after_ms ({})",
                self.read_after_ms, self.delivered_after_ms
            ));
        }
        if self.encoding == Encoding::Multipart {
            return Err("receipt_encoding must be form or json".into());
        }
        Ok(())
    }
}

impl Default for ReceiptSettings {
    fn default() -> Self {
        Self::off()
    }
}

/// The settings in atomics: every accepted send reads them.
pub(crate) struct Receipts {
    enabled: AtomicBool,
    delivered_after_ms: AtomicU64,
    read_after_ms: AtomicU64,
    encoding: AtomicU8,
    duplicates: AtomicBool,
    read_first: AtomicBool,
    counters: Arc<Counters>,
    http: reqwest::Client,
}

/// Receipts posted (answered 2xx) and given up on, shared with the posting tasks.
#[derive(Default)]
struct Counters {
    posted: AtomicU64,
    failed: AtomicU64,
}

/// What `GET /sim/receipts` answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptStats {
    /// Receipt posts the webhook answered 2xx (duplicates counted each time).
    pub posted: u64,
    /// Receipt posts given up on (refused, or no answer after the retries).
    pub failed: u64,
}

impl Receipts {
    pub(crate) fn new(settings: ReceiptSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let receipts = Receipts {
            enabled: AtomicBool::new(false),
            delivered_after_ms: AtomicU64::new(0),
            read_after_ms: AtomicU64::new(0),
            encoding: AtomicU8::new(0),
            duplicates: AtomicBool::new(false),
            read_first: AtomicBool::new(false),
            counters: Arc::default(),
            http,
        };
        receipts.set(settings);
        Ok(receipts)
    }

    pub(crate) fn get(&self) -> ReceiptSettings {
        ReceiptSettings {
            enabled: self.enabled.load(Ordering::Relaxed),
            delivered_after_ms: self.delivered_after_ms.load(Ordering::Relaxed),
            read_after_ms: self.read_after_ms.load(Ordering::Relaxed),
            encoding: match self.encoding.load(Ordering::Relaxed) {
                1 => Encoding::Json,
                _ => Encoding::Form,
            },
            duplicates: self.duplicates.load(Ordering::Relaxed),
            read_first: self.read_first.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn set(&self, s: ReceiptSettings) {
        self.enabled.store(s.enabled, Ordering::Relaxed);
        self.delivered_after_ms
            .store(s.delivered_after_ms, Ordering::Relaxed);
        self.read_after_ms.store(s.read_after_ms, Ordering::Relaxed);
        let encoding = u8::from(s.encoding == Encoding::Json);
        self.encoding.store(encoding, Ordering::Relaxed);
        self.duplicates.store(s.duplicates, Ordering::Relaxed);
        self.read_first.store(s.read_first, Ordering::Relaxed);
    }

    /// The HTTP client webhook posts go out with (shared by session events).
    pub(crate) fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> ReceiptStats {
        ReceiptStats {
            posted: self.counters.posted.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn reset_stats(&self) {
        self.counters.posted.store(0, Ordering::Relaxed);
        self.counters.failed.store(0, Ordering::Relaxed);
    }
}

/// Where a user's receipts go, copied out of the user under its lock.
pub(crate) struct Hook {
    pub(crate) url: String,
    pub(crate) hmac_key: Option<String>,
    pub(crate) user_id: String,
    pub(crate) instance_name: String,
}

/// Posts the receipts of one accepted message in a background task.
pub(crate) fn spawn(receipts: &Receipts, hook: Hook, message_id: String, phone: &str) {
    let settings = receipts.get();
    let http = receipts.http.clone();
    let counters = Arc::clone(&receipts.counters);
    let chat = if phone.contains('@') {
        phone.to_string()
    } else {
        format!("{phone}@s.whatsapp.net")
    };
    let accepted = Utc::now();
    tokio::spawn(async move {
        let delivered_after = Duration::from_millis(settings.delivered_after_ms);
        let read_after = Duration::from_millis(settings.read_after_ms);
        let at = |after: Duration| {
            accepted
                + chrono::Duration::from_std(after).unwrap_or_else(|_| chrono::Duration::zero())
        };
        let delivered = (ReceiptState::Delivered, at(delivered_after));
        let read = (ReceiptState::Read, at(read_after));
        // (receipt, how long to wait before posting it)
        let plan = if settings.read_first {
            [(read, read_after), (delivered, delivered_after)]
        } else {
            [
                (delivered, delivered_after),
                (read, read_after - delivered_after),
            ]
        };
        for ((state, at), wait) in plan {
            tokio::time::sleep(wait).await;
            let copies = if settings.duplicates { 2 } else { 1 };
            for _ in 0..copies {
                let ok = post(
                    &http,
                    &hook,
                    settings.encoding,
                    state,
                    &message_id,
                    &chat,
                    at,
                )
                .await;
                let counter = if ok {
                    &counters.posted
                } else {
                    &counters.failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}

/// One receipt post, with WuzAPI-like retries. Whether the webhook took it (2xx).
async fn post(
    http: &reqwest::Client,
    hook: &Hook,
    encoding: Encoding,
    state: ReceiptState,
    message_id: &str,
    chat: &str,
    at: DateTime<Utc>,
) -> bool {
    let event = webhook::receipt_event(state, &[message_id], chat, at);
    post_event(http, hook, encoding, &event, "receipt").await
}

/// Posts one event to the session's webhook the way WuzAPI does (encoded, signed with the
/// session's key), retrying failures up to [`POST_ATTEMPTS`] times with backoff; a 4xx is final.
/// Whether the webhook took it (2xx). `what` names the event in debug logs.
pub(crate) async fn post_event(
    http: &reqwest::Client,
    hook: &Hook,
    encoding: Encoding,
    event: &serde_json::Value,
    what: &str,
) -> bool {
    let post = webhook::encode_post(
        event,
        encoding,
        &hook.user_id,
        &hook.instance_name,
        hook.hmac_key.as_deref(),
    );
    for attempt in 0..POST_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << (attempt - 1))).await;
        }
        let mut request = http
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, post.content_type)
            .body(post.body.clone());
        if let Some(signature) = &post.signature {
            request = request.header(webhook::SIGNATURE_HEADER, signature);
        }
        match request.send().await {
            Ok(answer) if answer.status().is_success() => return true,
            // a 4xx will not change by posting the same thing again
            Ok(answer) if answer.status().is_client_error() => {
                tracing::debug!(status = %answer.status(), what, "simulated event refused");
                return false;
            }
            Ok(answer) => {
                tracing::debug!(status = %answer.status(), what, "simulated event failed")
            }
            Err(e) => tracing::debug!(error = %e.without_url(), what, "simulated event not posted"),
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_validate_and_round_trip_through_the_atomics() {
        assert!(ReceiptSettings::on().validate().is_ok());
        let mut bad = ReceiptSettings::on();
        bad.read_after_ms = 10;
        assert!(bad.validate().is_err());
        bad = ReceiptSettings {
            encoding: Encoding::Multipart,
            ..ReceiptSettings::on()
        };
        assert!(bad.validate().is_err());
        let wanted = ReceiptSettings {
            enabled: true,
            delivered_after_ms: 1,
            read_after_ms: 2,
            encoding: Encoding::Json,
            duplicates: true,
            read_first: true,
        };
        let receipts = Receipts::new(ReceiptSettings::off()).expect("client");
        assert!(!receipts.enabled());
        receipts.set(wanted);
        assert_eq!(receipts.get(), wanted);
    }
}
