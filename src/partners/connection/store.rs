//! Connections as stored: plain settings as JSON, secrets sealed with the row's identity;
//! every write in the audit trail.

use sqlx::Row;

use super::Connection;
use crate::{
    audit::{Action, Actor, Entry},
    db::now_ms,
    error::AppError,
    tenancy::PracticeId,
    visits::{AppState, PartnerId},
};

fn aad(practice_id: &PracticeId, partner: PartnerId) -> String {
    format!("partner_connections|{practice_id}|{partner}")
}

/// This practice's connection to `C`'s partner, if set up.
pub async fn load<C: Connection>(
    app: &AppState,
    practice_id: &PracticeId,
) -> Result<Option<C>, AppError> {
    let row = sqlx::query(
        "SELECT settings, secrets_sealed FROM partner_connections WHERE practice_id = $1 AND partner = $2",
    )
    .bind(practice_id)
    .bind(C::PARTNER.as_str())
    .fetch_optional(app.db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let settings: String = row.try_get("settings")?;
    let sealed: String = row.try_get("secrets_sealed")?;
    let secrets = app.secrets.open(&sealed, &aad(practice_id, C::PARTNER))?;
    let settings = serde_json::from_str(&settings).map_err(|e| {
        AppError::Internal(anyhow::Error::new(e).context("stored partner settings"))
    })?;
    let secrets = serde_json::from_slice(&secrets)
        .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("stored partner secrets")))?;
    Ok(Some(C::from_stored(settings, secrets)))
}

/// Inserts or replaces this practice's connection, and says so in the audit trail.
pub(super) async fn store<C: Connection>(
    app: &AppState,
    practice_id: &PracticeId,
    connection: &C,
    actor: &Actor,
) -> Result<(), AppError> {
    let (settings, secrets) = connection.to_stored();
    let settings = serde_json::to_string(&settings).map_err(anyhow::Error::new)?;
    let secrets = serde_json::to_vec(&secrets).map_err(anyhow::Error::new)?;
    let sealed = app.secrets.seal(&secrets, &aad(practice_id, C::PARTNER));
    let mut tx = app.db.begin().await?;
    sqlx::query(
        "INSERT INTO partner_connections (practice_id, partner, settings, secrets_sealed, updated_by, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (practice_id, partner) DO UPDATE SET settings = excluded.settings, \
         secrets_sealed = excluded.secrets_sealed, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
    )
    .bind(practice_id)
    .bind(C::PARTNER.as_str())
    .bind(settings)
    .bind(sealed)
    .bind(&actor.id)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    let changed = Entry::new(Action::SettingsChanged).detail(C::PARTNER.as_str());
    app.audit
        .record_in(&mut tx, practice_id, actor, changed)
        .await?;
    tx.commit().await?;
    app.connection_secrets
        .forget(practice_id.as_str(), C::PARTNER.as_str());
    tracing::info!(%practice_id, partner = %C::PARTNER, "partner settings saved");
    Ok(())
}

/// The partners this practice has set up, in the registry's order.
pub async fn configured(
    app: &AppState,
    practice_id: &PracticeId,
) -> Result<Vec<PartnerId>, AppError> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT partner FROM partner_connections WHERE practice_id = $1")
            .bind(practice_id)
            .fetch_all(app.db.reader())
            .await?;
    Ok(app
        .partners
        .iter()
        .map(|p| p.id())
        .filter(|p| ids.iter().any(|id| id == p.as_str()))
        .collect())
}
