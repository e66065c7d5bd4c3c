//! The record of what the simulator accepted: every send (up to a cap), duplicate-id detection,
//! and the counters behind `/sim/stats`.
//!
//! Duplicate detection is the point of the simulator in Herald's tests: a send whose `Id` was
//! already accepted means Herald sent one delivery twice. Ids are kept as 128-bit fingerprints
//! rather than strings, so detection continues (at 16 bytes an id) after the message store is
//! full.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::lock::lock;

/// How many sends are kept with their content; after that only the counters and id fingerprints
/// grow. A million short records is a few hundred MB at most.
pub(crate) const MAX_STORED_MESSAGES: usize = 1_000_000;

/// The counters `/sim/stats` answers. `accepted == unique_ids + duplicate_ids`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Sends answered 200.
    pub accepted: u64,
    /// Distinct message ids among accepted sends.
    pub unique_ids: u64,
    /// Accepted sends whose id had already been accepted: each one is a message sent twice.
    pub duplicate_ids: u64,
    /// Sends answered 5xx (simulated failures and `no session`); not delivered.
    pub failed: u64,
    /// Sends answered 429; not delivered.
    pub rate_limited: u64,
    /// `POST /chat/presence` calls that showed "typing…" (`State: composing`).
    #[serde(default)]
    pub composing: u64,
}

/// Which send route a message came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Text,
    Image,
}

/// One accepted send, as `/sim/messages` lists it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SentMessage {
    #[serde(serialize_with = "shared_str")]
    token: Arc<str>,
    phone: Box<str>,
    id: Box<str>,
    kind: Kind,
    /// The body of a text, the caption of an image (never the image itself).
    text: Box<str>,
    /// Images: the decoded image's size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    image_bytes: Option<u64>,
    /// Images: lowercase hex SHA-256 of the decoded image.
    #[serde(skip_serializing_if = "Option::is_none")]
    image_sha256: Option<Box<str>>,
    #[serde(serialize_with = "rfc3339_millis")]
    at: DateTime<Utc>,
}

/// What a send handler reports after answering 200.
pub(crate) struct Accepted<'a> {
    pub(crate) token: Arc<str>,
    pub(crate) phone: &'a str,
    pub(crate) id: &'a str,
    pub(crate) kind: Kind,
    pub(crate) text: &'a str,
    /// Images: `(decoded bytes, hex SHA-256)`.
    pub(crate) image: Option<(usize, String)>,
}

#[derive(Default)]
pub(crate) struct Ledger {
    records: Mutex<Records>,
    /// Set once the store is full, so later sends skip building a record they cannot keep.
    full: AtomicBool,
    failed: AtomicU64,
    rate_limited: AtomicU64,
    composing: AtomicU64,
}

#[derive(Default)]
struct Records {
    messages: Vec<SentMessage>,
    ids: HashSet<u128, BuildHasherDefault<FingerprintHasher>>,
    accepted: u64,
    duplicates: u64,
}

impl Ledger {
    /// Records an accepted send. The record is built before taking the lock, so the critical
    /// section is a hash insert and a push.
    pub(crate) fn record(&self, send: Accepted<'_>) {
        let fingerprint = fingerprint(send.id);
        let message = (!self.full.load(Ordering::Relaxed)).then(|| SentMessage {
            token: send.token,
            phone: send.phone.into(),
            id: send.id.into(),
            kind: send.kind,
            text: send.text.into(),
            image_bytes: send.image.as_ref().map(|(n, _)| *n as u64),
            image_sha256: send.image.map(|(_, sha)| sha.into()),
            at: Utc::now(),
        });
        let mut records = lock(&self.records);
        records.accepted += 1;
        if !records.ids.insert(fingerprint) {
            records.duplicates += 1;
        }
        if let Some(message) = message {
            if records.messages.len() < MAX_STORED_MESSAGES {
                records.messages.push(message);
            } else {
                self.full.store(true, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn count_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_composing(&self) {
        self.composing.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> SimStats {
        let records = lock(&self.records);
        SimStats {
            accepted: records.accepted,
            unique_ids: records.ids.len() as u64,
            duplicate_ids: records.duplicates,
            failed: self.failed.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            composing: self.composing.load(Ordering::Relaxed),
        }
    }

    /// The most recent `limit` accepted sends matching the filters, oldest first. Copied out so
    /// serialising a large answer does not hold up sends.
    pub(crate) fn messages(
        &self,
        phone: Option<&str>,
        token: Option<&str>,
        limit: usize,
    ) -> Vec<SentMessage> {
        let records = lock(&self.records);
        let mut found: Vec<SentMessage> = records
            .messages
            .iter()
            .rev()
            .filter(|m| phone.is_none_or(|p| &*m.phone == p))
            .filter(|m| token.is_none_or(|t| &*m.token == t))
            .take(limit)
            .cloned()
            .collect();
        drop(records);
        found.reverse();
        found
    }

    /// Forgets every record and counter.
    pub(crate) fn reset(&self) {
        let old = std::mem::take(&mut *lock(&self.records));
        self.full.store(false, Ordering::Relaxed);
        self.failed.store(0, Ordering::Relaxed);
        self.rate_limited.store(0, Ordering::Relaxed);
        self.composing.store(0, Ordering::Relaxed);
        // A million records take a while to free; do it after the lock is released.
        drop(old);
    }
}

/// Two SipHash runs with different prefixes: 128 bits make an accidental collision (a false
/// duplicate) practically impossible at any volume a test reaches.
fn fingerprint(id: &str) -> u128 {
    let half = |salt: u8| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut hasher);
        id.hash(&mut hasher);
        hasher.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// The fingerprint is already uniformly distributed, so the set uses its low half as the hash
/// instead of hashing it again.
#[derive(Default, Clone, Copy)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, value: u128) {
        // Truncation intended: the low 64 bits are one full SipHash output.
        self.0 = value as u64;
    }
}

fn shared_str<S: serde::Serializer>(text: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(text)
}

fn rfc3339_millis<S: serde::Serializer>(
    at: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(ledger: &Ledger, phone: &str, id: &str) {
        ledger.record(Accepted {
            token: Arc::from("t"),
            phone,
            id,
            kind: Kind::Text,
            text: "hi",
            image: None,
        });
    }

    #[test]
    fn duplicates_are_counted_and_reset_forgets_everything() {
        let ledger = Ledger::default();
        accept(&ledger, "1", "A");
        accept(&ledger, "2", "B");
        accept(&ledger, "1", "A");
        ledger.count_failed();
        ledger.count_rate_limited();
        assert_eq!(
            ledger.stats(),
            SimStats {
                accepted: 3,
                unique_ids: 2,
                duplicate_ids: 1,
                failed: 1,
                rate_limited: 1,
                composing: 0,
            }
        );
        let for_one = ledger.messages(Some("1"), None, 10);
        assert_eq!(for_one.len(), 2);
        let last = ledger.messages(None, Some("t"), 1);
        assert_eq!(&*last[0].phone, "1");
        ledger.reset();
        assert_eq!(ledger.stats(), SimStats::default());
        assert!(ledger.messages(None, None, 10).is_empty());
    }

    #[test]
    fn fingerprints_differ_for_different_ids() {
        assert_ne!(fingerprint("0A"), fingerprint("A"));
        assert_eq!(fingerprint("ABC"), fingerprint("ABC"));
    }
}
