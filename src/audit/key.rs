//! The key the trail is chained and its checkpoints signed under. It never lives in the
//! database: `CHARTBRIDGE_AUDIT_KEY`, or, without it, derived from `CHARTBRIDGE_SECRET_KEY`.
//! Whoever can write to the database but does not hold it cannot make a changed entry, or a
//! checkpoint, that verifies.
//!
//! Each entry stores the id of the key it was chained under (`key_id`), so a chain survives a
//! change of key: entries before it verify under the older key (`CHARTBRIDGE_OLD_AUDIT_KEYS`,
//! or derived from `CHARTBRIDGE_OLD_SECRET_KEYS`). Entries written before the chain was keyed
//! have an empty `key_id` and a plain SHA-256 hash; only a checkpoint can vouch for them.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{KeySettings, SecretKey};

type HmacSha256 = Hmac<Sha256>;

/// One chain key: its public id and its keyed MAC, ready to be cloned per use.
#[derive(Clone)]
pub struct ChainKey {
    id: String,
    mac: HmacSha256,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainKey({})", self.id)
    }
}

impl ChainKey {
    /// A key of its own (`CHARTBRIDGE_AUDIT_KEY`).
    pub fn new(key: &SecretKey) -> Self {
        let mac = HmacSha256::new_from_slice(&key.0).expect("HMAC takes keys of any length");
        let mut id_mac = mac.clone();
        id_mac.update(b"chartbridge audit key id");
        let id = hex::encode(&id_mac.finalize().into_bytes()[..4]);
        ChainKey { id, mac }
    }

    /// The key derived from the secret key that seals data at rest (the default).
    pub fn derived_from(secret: &SecretKey) -> Self {
        let mut mac = HmacSha256::new_from_slice(&secret.0).expect("HMAC takes keys of any length");
        mac.update(b"chartbridge audit chain v1");
        ChainKey::new(&SecretKey(mac.finalize().into_bytes().into()))
    }

    /// The id stored beside each entry chained under this key (8 hex digits; not secret).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Hex of the keyed MAC of `parts`, each length-prefixed (no two lists of parts collide).
    pub fn sign<P: AsRef<[u8]>>(&self, domain: &str, parts: &[P]) -> String {
        let mac = self.mac_of(domain, parts).finalize().into_bytes();
        // Into a buffer of its size: `hex::encode` goes through a char iterator, and this runs
        // for every entry written and every entry verified.
        let mut hex = [0u8; 64];
        hex::encode_to_slice(mac, &mut hex).expect("a SHA-256 MAC is 32 bytes");
        String::from_utf8(hex.to_vec()).expect("hex digits are UTF-8")
    }

    /// Whether `signature` is [`ChainKey::sign`] of the same parts (constant time).
    pub fn verifies<P: AsRef<[u8]>>(&self, domain: &str, parts: &[P], signature: &str) -> bool {
        hex::decode(signature)
            .is_ok_and(|expected| self.mac_of(domain, parts).verify_slice(&expected).is_ok())
    }

    fn mac_of<P: AsRef<[u8]>>(&self, domain: &str, parts: &[P]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(domain.as_bytes());
        for part in parts {
            let part = part.as_ref();
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }
}

/// The key new entries are chained under, and older ones that still verify.
#[derive(Clone, Debug)]
pub struct ChainKeys {
    current: ChainKey,
    older: Vec<ChainKey>,
}

impl ChainKeys {
    /// `audit_key` when set, else derived from `secret`; older: the given audit keys, those
    /// derived from older secret keys, and (when an audit key of its own is set) the one
    /// derived from the current secret, so a trail begun before it was set still verifies.
    pub fn new(
        secret: &SecretKey,
        audit_key: Option<&SecretKey>,
        older_secrets: &[SecretKey],
        older_audit_keys: &[SecretKey],
    ) -> Self {
        let current = match audit_key {
            Some(key) => ChainKey::new(key),
            None => ChainKey::derived_from(secret),
        };
        let mut older: Vec<ChainKey> = older_audit_keys.iter().map(ChainKey::new).collect();
        if audit_key.is_some() {
            older.push(ChainKey::derived_from(secret));
        }
        older.extend(older_secrets.iter().map(ChainKey::derived_from));
        older.retain(|k| k.id != current.id);
        ChainKeys { current, older }
    }

    /// The keys configured (`config::KeySettings`).
    pub fn from_settings(keys: &KeySettings) -> Self {
        ChainKeys::new(
            &keys.secret,
            keys.audit.as_ref(),
            &keys.old_secrets,
            &keys.old_audit,
        )
    }

    /// The key new entries and checkpoints are made under.
    pub fn current(&self) -> &ChainKey {
        &self.current
    }

    /// The key with this id, if it is held here.
    pub fn by_id(&self, id: &str) -> Option<&ChainKey> {
        std::iter::once(&self.current)
            .chain(&self.older)
            .find(|k| k.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_stable_distinct_ids_and_sign_only_for_themselves() {
        let a = SecretKey([1; 32]);
        let b = SecretKey([2; 32]);
        assert_eq!(ChainKey::new(&a).id(), ChainKey::new(&a).id());
        assert_ne!(ChainKey::new(&a).id(), ChainKey::new(&b).id());
        assert_ne!(ChainKey::derived_from(&a).id(), ChainKey::new(&a).id());
        let sig = ChainKey::new(&a).sign("d", &[b"x", b"y"]);
        assert!(ChainKey::new(&a).verifies("d", &[b"x", b"y"], &sig));
        assert!(!ChainKey::new(&b).verifies("d", &[b"x", b"y"], &sig));
        // Moving a byte from one part to the next changes the signature.
        assert!(!ChainKey::new(&a).verifies("d", &[&b"xy"[..], &b""[..]], &sig));
        assert!(!ChainKey::new(&a).verifies("e", &[b"x", b"y"], &sig));
        assert!(!ChainKey::new(&a).verifies("d", &[b"x", b"y"], "zz"));
    }

    #[test]
    fn a_trail_keyed_before_a_change_of_key_still_verifies() {
        let old = SecretKey([1; 32]);
        let new = SecretKey([2; 32]);
        let own = SecretKey([3; 32]);
        let before = ChainKeys::new(&old, None, &[], &[]);
        let rotated = ChainKeys::new(&new, None, std::slice::from_ref(&old), &[]);
        assert!(rotated.by_id(before.current().id()).is_some());
        assert_ne!(rotated.current().id(), before.current().id());
        let own_key = ChainKeys::new(&new, Some(&own), &[old], &[]);
        assert!(own_key.by_id(rotated.current().id()).is_some());
        assert!(own_key.by_id(before.current().id()).is_some());
        assert!(
            ChainKeys::new(&new, None, &[], &[])
                .by_id(before.current().id())
                .is_none()
        );
    }
}
