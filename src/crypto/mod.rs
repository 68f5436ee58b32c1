//! Secrets at rest and signatures on the wire.
//!
//! [`SecretBox`] (`sealing.rs`) seals secrets with XChaCha20-Poly1305 under a key it names; the
//! row's identity is the associated data, so a ciphertext copied to another row (another
//! practice) does not open. `verify_hmac_sha256` checks `sha256=<hex>` signatures in constant
//! time on raw bytes.

mod sealing;

pub use sealing::{CryptoError, SEALED, SEALED_TEXT, SecretBox, row_aad};

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// (practice id, partner id).
type CacheKey = (String, &'static str);
/// When the secrets were opened, and their bytes.
type Opened = (Instant, Arc<[u8]>);

/// Recently opened partner secrets, so a burst of webhooks neither re-reads nor re-opens the
/// row for each delivery. Callers that see a signature mismatch read the row again, so a secret
/// rotated on another instance is accepted at once; the old one stops being accepted here
/// after `ttl` (`Settings::secrets_cache_ttl`).
pub struct SecretsCache {
    ttl: Duration,
    entries: RwLock<HashMap<CacheKey, Opened>>,
}

impl std::fmt::Debug for SecretsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsCache([redacted])")
    }
}

impl SecretsCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::default(),
        }
    }

    pub fn get(&self, practice_id: &str, partner: &'static str) -> Option<Arc<[u8]>> {
        let entries = self.entries.read().expect("secrets cache lock");
        entries
            .get(&(practice_id.to_string(), partner))
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, bytes)| bytes.clone())
    }

    pub fn put(&self, practice_id: &str, partner: &'static str, bytes: Arc<[u8]>) {
        let mut entries = self.entries.write().expect("secrets cache lock");
        if entries.len() > 10_000 {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        entries.insert((practice_id.to_string(), partner), (Instant::now(), bytes));
    }

    pub fn forget(&self, practice_id: &str, partner: &'static str) {
        self.entries
            .write()
            .expect("secrets cache lock")
            .remove(&(practice_id.to_string(), partner));
    }
}

/// Why a signature was refused (all map to 401; the reason is for logs).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("signature header missing")]
    Missing,
    #[error("signature header malformed")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
    #[error("sent from an address the practice does not allow")]
    Source,
    #[error("no secret configured")]
    NoSecret,
}

/// Verifies `header` = `sha256=<64 hex>` as HMAC-SHA256 of `body` under `secret`.
pub fn verify_hmac_sha256(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    if secret.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let hex_digest = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_digest.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(secret).map_err(|_| SignatureError::NoSecret)?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// `sha256=<hex>` of HMAC-SHA256(body, secret): what a sender puts in the header.
pub fn sign_hmac_sha256(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Hex SHA-256, used to store session keys and dedupe bodies without keeping them.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Constant-time equality for static shared values: compares keyed digests of both sides, so
/// neither the position of the first difference nor the lengths leak through timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    const KEY: &[u8] = b"chartbridge-constant-time-eq";
    let digest = |data: &[u8]| {
        let mut mac =
            <HmacSha256 as Mac>::new_from_slice(KEY).expect("HMAC takes keys of any length");
        mac.update(data);
        mac
    };
    let expected = digest(a).finalize().into_bytes();
    digest(b).verify_slice(&expected).is_ok()
}

/// An unguessable token: 32 random bytes, URL-safe base64.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret_0123456789";

    #[test]
    fn accepts_a_correct_signature() {
        let body = br#"{"a":1}"#;
        let header = sign_hmac_sha256(SECRET, body);
        assert_eq!(verify_hmac_sha256(SECRET, Some(&header), body), Ok(()));
    }

    #[test]
    fn known_vector() {
        // RFC 4231 test case 2.
        let header = sign_hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            header,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn refuses_the_negative_cases() {
        let body = br#"{"a":1}"#;
        let good = sign_hmac_sha256(SECRET, body);
        let zeros = format!("sha256={}", "0".repeat(64));
        assert_eq!(
            verify_hmac_sha256(SECRET, None, body),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_hmac_sha256(SECRET, Some(""), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_hmac_sha256(SECRET, Some("sha256="), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_hmac_sha256(SECRET, Some(&zeros), body),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_hmac_sha256(SECRET, Some(&good[..good.len() - 2]), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_hmac_sha256(SECRET, Some(&good.replace("sha256=", "sha1=")), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_hmac_sha256(SECRET, Some(&good), br#"{"a":2}"#),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_hmac_sha256(b"", Some(&good), body),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
