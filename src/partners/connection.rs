//! A practice's connection to a partner: plain settings (JSON) and secrets (JSON, sealed with
//! the row's identity as associated data). Secrets are written, never shown back.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use serde::{Serialize, de::DeserializeOwned};
use sqlx::Row;

use super::Partner;
use crate::{crypto::SignatureError, db::now_ms, error::AppError, state::AppState};

fn aad(practice_id: &str, partner: Partner) -> String {
    format!("partner_connections|{practice_id}|{}", partner.as_str())
}

/// Loads `(settings, secrets)` for this practice and partner, if configured.
pub async fn load<S: DeserializeOwned, K: DeserializeOwned>(
    state: &AppState,
    practice_id: &str,
    partner: Partner,
) -> Result<Option<(S, K)>, AppError> {
    let row = sqlx::query(
        "SELECT settings, secrets_sealed FROM partner_connections WHERE practice_id = $1 AND partner = $2",
    )
    .bind(practice_id)
    .bind(partner.as_str())
    .fetch_optional(state.db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let settings: String = row.try_get("settings")?;
    let sealed: String = row.try_get("secrets_sealed")?;
    let secrets = state.secrets.open(&sealed, &aad(practice_id, partner))?;
    let settings = serde_json::from_str(&settings).map_err(|e| {
        AppError::Internal(anyhow::Error::new(e).context("stored partner settings"))
    })?;
    let secrets = serde_json::from_slice(&secrets)
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("stored partner secrets")))?;
    Ok(Some((settings, secrets)))
}

/// (practice id, partner).
type CacheKey = (String, Partner);
/// When the secrets were opened, and their JSON bytes.
type Opened = (Instant, Arc<[u8]>);

/// Recently opened connection secrets, so a burst of webhooks neither re-reads nor re-opens
/// the row for each delivery. Callers that see a signature mismatch ask again with
/// `Freshness::Reload`, so a secret rotated on another instance is accepted at once; the old
/// one stops being accepted here after `ttl` (`Settings::secrets_cache_ttl`).
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

    fn get(&self, key: &(String, Partner)) -> Option<Arc<[u8]>> {
        let entries = self.entries.read().expect("secrets cache lock");
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, bytes)| bytes.clone())
    }

    fn put(&self, key: (String, Partner), bytes: Arc<[u8]>) {
        let mut entries = self.entries.write().expect("secrets cache lock");
        if entries.len() > 10_000 {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        entries.insert(key, (Instant::now(), bytes));
    }

    fn forget(&self, key: &(String, Partner)) {
        self.entries
            .write()
            .expect("secrets cache lock")
            .remove(key);
    }
}

/// Whether a cached copy of the secrets may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Cached,
    Reload,
}

/// Loads only the secrets (the webhook hot path: no settings to parse).
pub async fn load_secrets<K: DeserializeOwned>(
    state: &AppState,
    practice_id: &str,
    partner: Partner,
    freshness: Freshness,
) -> Result<Option<K>, AppError> {
    let key = (practice_id.to_string(), partner);
    let cached = match freshness {
        Freshness::Cached => state.connection_secrets.get(&key),
        Freshness::Reload => None,
    };
    let bytes = match cached {
        Some(bytes) => bytes,
        None => {
            let sealed: Option<String> = sqlx::query_scalar(
                "SELECT secrets_sealed FROM partner_connections WHERE practice_id = $1 AND partner = $2",
            )
            .bind(practice_id)
            .bind(partner.as_str())
            .fetch_optional(state.db.reader())
            .await?;
            let Some(sealed) = sealed else {
                state.connection_secrets.forget(&key);
                return Ok(None);
            };
            let bytes: Arc<[u8]> = state
                .secrets
                .open(&sealed, &aad(practice_id, partner))?
                .into();
            state.connection_secrets.put(key, bytes.clone());
            bytes
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("stored partner secrets")))
}

/// The partners this practice has set up.
pub async fn configured(state: &AppState, practice_id: &str) -> Result<Vec<Partner>, AppError> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT partner FROM partner_connections WHERE practice_id = $1")
            .bind(practice_id)
            .fetch_all(state.db.reader())
            .await?;
    Ok(Partner::ALL
        .into_iter()
        .filter(|p| ids.iter().any(|id| id == p.as_str()))
        .collect())
}

/// Saves (inserts or replaces) this practice's connection to `partner`.
pub async fn save<S: Serialize, K: Serialize>(
    state: &AppState,
    practice_id: &str,
    partner: Partner,
    settings: &S,
    secrets: &K,
    updated_by: &str,
) -> Result<(), AppError> {
    let settings = serde_json::to_string(settings).map_err(anyhow::Error::new)?;
    let secrets = serde_json::to_vec(secrets).map_err(anyhow::Error::new)?;
    let sealed = state.secrets.seal(&secrets, &aad(practice_id, partner));
    sqlx::query(
        "INSERT INTO partner_connections (practice_id, partner, settings, secrets_sealed, updated_by, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (practice_id, partner) DO UPDATE SET settings = excluded.settings, \
         secrets_sealed = excluded.secrets_sealed, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
    .bind(practice_id)
    .bind(partner.as_str())
    .bind(settings)
    .bind(sealed)
    .bind(updated_by)
    .bind(now_ms())
    .execute(state.db.writer())
    .await?;
    state
        .connection_secrets
        .forget(&(practice_id.to_string(), partner));
    tracing::info!(
        practice_id,
        partner = partner.as_str(),
        "partner settings saved"
    );
    Ok(())
}

/// Checks a partner's delivery against the practice's stored secrets with `check`: first the
/// cached copy, then, on a mismatch, the stored one, so a secret rotated on another instance
/// counts at once. No connection: 404; a missing, malformed or wrong signature: 401.
pub async fn verify_delivery<K: DeserializeOwned>(
    state: &AppState,
    practice_id: &str,
    partner: Partner,
    check: impl Fn(&K) -> Result<(), SignatureError>,
) -> Result<(), AppError> {
    let unauthorized =
        |e: SignatureError| AppError::Unauthorized(format!("{} signature: {e}", partner.as_str()));
    let cached: K = load_secrets(state, practice_id, partner, Freshness::Cached)
        .await?
        .ok_or(AppError::NotFound)?;
    match check(&cached) {
        Ok(()) => Ok(()),
        Err(SignatureError::Mismatch) => {
            let stored: K = load_secrets(state, practice_id, partner, Freshness::Reload)
                .await?
                .ok_or(AppError::NotFound)?;
            check(&stored).map_err(unauthorized)
        }
        Err(e) => Err(unauthorized(e)),
    }
}
