//! Sealing values at rest: XChaCha20-Poly1305 under the current secret key, the row's identity
//! as associated data, the key's id in the sealed form, so that a key can be replaced:
//! `sealed:v2:<key id>:<base64(nonce || ciphertext)>`.
//!
//! Older keys (`CHARTBRIDGE_OLD_SECRET_KEYS`) still open what they sealed until
//! `chartbridge keys rotate` has sealed it again under the current one. Values sealed before
//! key ids (`sealed:v1:` text, or bare base64 secrets) are opened by trying each key held: they
//! are authenticated, so no one without a key can plant one. A text column that holds neither
//! form is refused: it is never read as plain text.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit, Payload},
};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::config::{KeySettings, SecretKey};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed value is malformed, was sealed for another row, or under a key not held")]
    Open,
    #[error("a value that should be sealed is not")]
    Unsealed,
}

impl From<CryptoError> for crate::error::AppError {
    fn from(e: CryptoError) -> Self {
        crate::error::AppError::Internal(anyhow::Error::new(e).context("sealed secret"))
    }
}

/// What every sealed value starts with (base64 never holds `:`).
pub const SEALED: &str = "sealed:";
/// The form with a key id: `sealed:v2:<key id>:<base64>`.
const V2: &str = "sealed:v2:";
/// Text sealed before key ids.
pub const SEALED_TEXT: &str = "sealed:v1:";

/// The associated data of a sealed column: the table, the column, and the row's practice and
/// id. A sealed value moved to another column, row or practice does not open.
pub fn row_aad(table: &str, column: &str, practice_id: &str, row_id: &str) -> String {
    format!("{table}.{column}|{practice_id}|{row_id}")
}

/// One key: its id (8 hex digits, not secret) and its cipher.
#[derive(Clone)]
struct Sealer {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    fn new(key: &SecretKey) -> Self {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes keys of any length");
        mac.update(b"chartbridge sealing key id");
        Sealer {
            id: hex::encode(&mac.finalize().into_bytes()[..4]),
            cipher: XChaCha20Poly1305::new((&key.0).into()),
        }
    }

    fn open(&self, raw: &[u8], aad: &str) -> Result<Vec<u8>, CryptoError> {
        if raw.len() < 24 + 16 {
            return Err(CryptoError::Open);
        }
        let (nonce, ciphertext) = raw.split_at(24);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)
    }
}

/// Seals and opens secrets stored in the database.
#[derive(Clone)]
pub struct SecretBox {
    current: Sealer,
    older: Vec<Sealer>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBox(key {}, [redacted])", self.current.id)
    }
}

impl SecretBox {
    /// One key, nothing older.
    pub fn new(key: &SecretKey) -> Self {
        Self {
            current: Sealer::new(key),
            older: Vec::new(),
        }
    }

    /// The current key and the older ones configured.
    pub fn from_settings(keys: &KeySettings) -> Self {
        Self {
            current: Sealer::new(&keys.secret),
            older: keys.old_secrets.iter().map(Sealer::new).collect(),
        }
    }

    /// The id of the key new values are sealed under.
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// What a value sealed under the current key starts with.
    pub fn current_prefix(&self) -> String {
        format!("{V2}{}:", self.current.id)
    }

    /// Encrypts `plaintext` bound to `aad` (the row's identity), under the current key.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> String {
        let nonce_bytes: [u8; 24] = rand::random();
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ciphertext);
        format!("{V2}{}:{}", self.current.id, STANDARD.encode(out))
    }

    /// Opens a value sealed by `seal` (under any key held) with the same `aad`.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<Vec<u8>, CryptoError> {
        if let Some(rest) = sealed.strip_prefix(V2) {
            let (id, body) = rest.split_once(':').ok_or(CryptoError::Open)?;
            let sealer = std::iter::once(&self.current)
                .chain(&self.older)
                .find(|s| s.id == id)
                .ok_or(CryptoError::Open)?;
            let raw = STANDARD.decode(body).map_err(|_| CryptoError::Open)?;
            return sealer.open(&raw, aad);
        }
        // Sealed before key ids: whichever key held opens it.
        let body = sealed.strip_prefix(SEALED_TEXT).unwrap_or(sealed);
        let raw = STANDARD.decode(body).map_err(|_| CryptoError::Open)?;
        std::iter::once(&self.current)
            .chain(&self.older)
            .find_map(|s| s.open(&raw, aad).ok())
            .ok_or(CryptoError::Open)
    }

    /// Seals a text column holding patient data.
    pub fn seal_text(&self, plaintext: &str, aad: &str) -> String {
        self.seal(plaintext.as_bytes(), aad)
    }

    /// Opens what [`SecretBox::seal_text`] wrote. An empty value is empty (an erased
    /// patient's); any other value that is not sealed is refused.
    pub fn open_text(&self, stored: &str, aad: &str) -> Result<String, CryptoError> {
        if stored.is_empty() {
            return Ok(String::new());
        }
        if !stored.starts_with(SEALED) {
            return Err(CryptoError::Unsealed);
        }
        String::from_utf8(self.open(stored, aad)?).map_err(|_| CryptoError::Open)
    }

    pub fn seal_str(&self, plaintext: &SecretString, aad: &str) -> String {
        self.seal(plaintext.expose_secret().as_bytes(), aad)
    }

    pub fn open_str(&self, sealed: &str, aad: &str) -> Result<SecretString, CryptoError> {
        let bytes = self.open(sealed, aad)?;
        String::from_utf8(bytes)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Open)
    }

    /// Whether `stored` is sealed under the current key (nothing for a rotation to do).
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(V2)
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(id, _)| id == self.current.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_only_for_its_row_and_plain_text_is_refused() {
        let (key, _) = SecretKey::generate();
        let secrets = SecretBox::new(&key);
        let aad = row_aad("visits", "patient_name", "pra-1", "vis-1");
        let sealed = secrets.seal_text("Ava Thompson", &aad);
        assert!(sealed.starts_with(&secrets.current_prefix()) && !sealed.contains("Ava"));
        assert!(secrets.is_current(&sealed));
        assert_eq!(secrets.open_text(&sealed, &aad).unwrap(), "Ava Thompson");
        for other in [
            row_aad("visits", "patient_name", "pra-2", "vis-1"),
            row_aad("visits", "patient_name", "pra-1", "vis-2"),
            row_aad("visits", "result", "pra-1", "vis-1"),
        ] {
            assert!(secrets.open_text(&sealed, &other).is_err(), "{other}");
        }
        assert!(matches!(
            secrets.open_text("written as plain text", &aad),
            Err(CryptoError::Unsealed)
        ));
        assert_eq!(secrets.open_text("", &aad).unwrap(), "");
        assert!(secrets.open_text("sealed:v1:not-base64!", &aad).is_err());
        assert!(secrets.open_text("sealed:v2:nokey:AAAA", &aad).is_err());
    }

    #[test]
    fn a_value_sealed_under_an_older_key_opens_while_that_key_is_held() {
        let (a, _) = SecretKey::generate();
        let (b, _) = SecretKey::generate();
        let under_a = SecretBox::new(&a).seal(b"practice-token", "practice|pra-1");
        let rotated = SecretBox::from_settings(&KeySettings {
            secret: b.clone(),
            old_secrets: vec![a.clone()],
            audit: None,
            old_audit: Vec::new(),
        });
        assert_eq!(
            rotated.open(&under_a, "practice|pra-1").unwrap(),
            b"practice-token"
        );
        assert!(!rotated.is_current(&under_a));
        assert!(rotated.open(&under_a, "practice|pra-2").is_err());
        let resealed = rotated.seal(b"practice-token", "practice|pra-1");
        assert!(rotated.is_current(&resealed));
        // A removed: what B sealed opens, what only A sealed does not.
        let b_only = SecretBox::new(&b);
        assert_eq!(
            b_only.open(&resealed, "practice|pra-1").unwrap(),
            b"practice-token"
        );
        assert!(b_only.open(&under_a, "practice|pra-1").is_err());
    }

    #[test]
    fn values_sealed_before_key_ids_still_open() {
        let (key, _) = SecretKey::generate();
        let secrets = SecretBox::new(&key);
        let sealed = secrets.seal(b"old", "aad");
        let body = sealed.rsplit(':').next().unwrap();
        // A bare secret, and `sealed:v1:` text, as they were written before.
        assert_eq!(secrets.open(body, "aad").unwrap(), b"old");
        let v1 = format!("{SEALED_TEXT}{body}");
        assert_eq!(secrets.open_text(&v1, "aad").unwrap(), "old");
        assert!(!secrets.is_current(&v1));
    }
}
