//! A practice's connection to a partner: plain settings (JSON) and secrets (JSON, sealed with
//! the row's identity as associated data). Secrets are written, never shown back.

use serde::{Serialize, de::DeserializeOwned};
use sqlx::Row;

use super::Partner;
use crate::{db::now_ms, error::AppError, state::AppState};

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
    Ok(())
}
