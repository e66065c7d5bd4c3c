//! Standard Webhooks signing (standardwebhooks.com, docs/webhooks-out.md).
//!
//! A secret is `whsec_` + base64 of random bytes; the key is the decoded bytes. A message is
//! signed as `v1,<base64 of HMAC-SHA256("<webhook-id>.<webhook-timestamp>.<body>")>`, and
//! `webhook-signature` holds one such signature per secret in use, space-separated (two during
//! the 24 hours after a rotation). Verification (used by Herald's tests; receivers use a stock
//! library) compares through the HMAC crate's constant-time check.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "whsec_";
/// Random bytes in a new secret (the specification allows 24 to 64).
pub const SECRET_BYTES: usize = 32;

/// A signing secret as given out (`whsec_...`). Its `Debug` never shows it, so it cannot reach a
/// log through a `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(****)")
    }
}

impl SigningSecret {
    /// A new secret of [`SECRET_BYTES`] random bytes from the operating system.
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        SigningSecret(format!("{PREFIX}{}", STANDARD.encode(bytes)))
    }

    /// A stored or given secret; `None` when it is not `whsec_` + base64 of at least 24 bytes.
    pub fn parse(text: &str) -> Option<Self> {
        let key = STANDARD.decode(text.strip_prefix(PREFIX)?).ok()?;
        (24..=64)
            .contains(&key.len())
            .then(|| SigningSecret(text.to_string()))
    }

    /// The text to show the tenant once (creation, rotation) and to store.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn key(&self) -> Vec<u8> {
        // `parse` and `generate` only make secrets that decode
        self.0
            .strip_prefix(PREFIX)
            .and_then(|b64| STANDARD.decode(b64).ok())
            .unwrap_or_default()
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length
        let mut mac = HmacSha256::new_from_slice(&self.key())
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<base64 signature>` of one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// Whether any `v1` signature of a `webhook-signature` header is this secret's.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        header
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|b64| STANDARD.decode(b64).ok())
            .any(|tag| self.mac(id, timestamp, body).verify_slice(&tag).is_ok())
    }
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn signature_header(
    secrets: &[&SigningSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The specification's own vector, as its reference libraries test it
    // (standard-webhooks/standard-webhooks, libraries/*: "test_sign").
    const SPEC_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const SPEC_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SPEC_TIMESTAMP: i64 = 1649367553;
    const SPEC_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SPEC_SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn spec_secret() -> SigningSecret {
        SigningSecret::parse(SPEC_SECRET).expect("the specification's secret parses")
    }

    #[test]
    fn signs_the_specification_vector() {
        assert_eq!(
            spec_secret().sign(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
            SPEC_SIGNATURE
        );
    }

    #[test]
    fn verifies_the_vector_among_other_signatures_and_refuses_changes() {
        let secret = spec_secret();
        // the reference libraries' multi-signature header, with the right one among wrong ones
        let header = format!(
            "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q= {SPEC_SIGNATURE} v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE="
        );
        assert!(secret.verify(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, &header));
        // without it: refused
        let wrong = "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=";
        assert!(!secret.verify(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, wrong));
        // another id, timestamp or body: refused
        assert!(!secret.verify("msg_other", SPEC_TIMESTAMP, SPEC_BODY, SPEC_SIGNATURE));
        assert!(!secret.verify(SPEC_ID, SPEC_TIMESTAMP + 1, SPEC_BODY, SPEC_SIGNATURE));
        assert!(!secret.verify(SPEC_ID, SPEC_TIMESTAMP, b"{}", SPEC_SIGNATURE));
        // another version tag is not a v1 signature
        let v2 = SPEC_SIGNATURE.replacen("v1,", "v2,", 1);
        assert!(!secret.verify(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, &v2));
    }

    #[test]
    fn a_rotated_header_carries_both_secrets_and_each_verifies() {
        let (old, new) = (spec_secret(), SigningSecret::generate());
        let header = signature_header(&[&new, &old], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], SPEC_SIGNATURE);
        assert!(new.verify(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, &header));
        assert!(old.verify(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, &header));
        assert!(!SigningSecret::generate().verify(SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY, &header));
    }

    #[test]
    fn new_secrets_are_whsec_base64_of_32_random_bytes_and_never_debug_printed() {
        let (a, b) = (SigningSecret::generate(), SigningSecret::generate());
        assert_ne!(a, b);
        let b64 = a.expose().strip_prefix("whsec_").expect("whsec_ prefix");
        assert_eq!(STANDARD.decode(b64).expect("base64").len(), 32);
        assert_eq!(SigningSecret::parse(a.expose()), Some(a.clone()));
        assert!(!format!("{a:?}").contains(b64));
        for bad in [
            "",
            "whsec_",
            "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "whsec_!!!",
            "whsec_AAAA",
        ] {
            assert_eq!(SigningSecret::parse(bad), None, "{bad}");
        }
    }
}
