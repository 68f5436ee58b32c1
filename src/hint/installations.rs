//! The practices that installed us: each install's sealed practice token, keyed by (product,
//! practice), and where it stands.
//!
//! An install is [`InstallStatus::Active`], or [`InstallStatus::Pending`] when Chartbridge is
//! configured to install without activating (`CHARTBRIDGE_ACTIVATE_ON_INSTALL=false`) until Hint
//! sends `integration.activated`, or [`InstallStatus::Deactivated`] after
//! `integration.deactivated`. Background work runs only for an active install; a deactivated
//! practice's data stays until an operator purges it (`chartbridge practice purge`).

use secrecy::SecretString;
use sqlx::Row;

use super::HintState;
use crate::{
    db::{Db, now_ms},
    error::AppError,
    jobs::PausedPractices,
    tenancy::PracticeId,
};

/// Associated data binding a sealed practice token to its row.
pub fn token_aad(product_id: &str, practice_id: &(impl std::fmt::Display + ?Sized)) -> String {
    format!("hint_installations.token|{product_id}|{practice_id}")
}

/// Where a practice's install stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallStatus {
    Active,
    /// Installed, not activated yet: waits for `integration.activated`.
    Pending,
    /// Hint deactivated it: nothing runs for the practice; its data is kept.
    Deactivated,
}

impl InstallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstallStatus::Active => "active",
            InstallStatus::Pending => "pending",
            InstallStatus::Deactivated => "deactivated",
        }
    }

    fn parse(stored: &str) -> Result<Self, crate::db::UnknownValue> {
        match stored {
            "active" => Ok(InstallStatus::Active),
            "pending" => Ok(InstallStatus::Pending),
            "deactivated" => Ok(InstallStatus::Deactivated),
            other => Err(crate::db::UnknownValue {
                what: "install status",
                value: other.to_string(),
            }),
        }
    }
}

/// The practices whose install is not active, so their background work waits (the job runner
/// passes over their jobs until Hint activates them again).
pub struct NotActive;

#[async_trait::async_trait]
impl PausedPractices for NotActive {
    async fn paused(&self, db: &Db) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT DISTINCT practice_id FROM hint_installations WHERE status <> 'active'",
        )
        .fetch_all(db.reader())
        .await
    }
}

/// Where the practice's install stands; `None`: never installed.
pub async fn status(
    state: &HintState,
    practice_id: &PracticeId,
) -> Result<Option<InstallStatus>, AppError> {
    let stored: Option<String> = sqlx::query_scalar(
        "SELECT status FROM hint_installations WHERE product_id = $1 AND practice_id = $2",
    )
    .bind(&state.settings.hint.product_id)
    .bind(practice_id)
    .fetch_optional(state.db.reader())
    .await?;
    Ok(stored.as_deref().map(InstallStatus::parse).transpose()?)
}

/// When the practice's install last changed (its deactivation, for a deactivated one).
pub async fn changed_at(
    state: &HintState,
    practice_id: &PracticeId,
) -> Result<Option<i64>, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT updated_at FROM hint_installations WHERE product_id = $1 AND practice_id = $2",
    )
    .bind(&state.settings.hint.product_id)
    .bind(practice_id)
    .fetch_optional(state.db.reader())
    .await?)
}

/// The stored practice token for background work, if the practice's install is active.
pub async fn practice_token(
    state: &HintState,
    practice_id: &PracticeId,
) -> Result<Option<SecretString>, AppError> {
    let product_id = &state.settings.hint.product_id;
    let row = sqlx::query(
        "SELECT token_sealed FROM hint_installations WHERE product_id = $1 AND practice_id = $2 AND status = 'active'",
    )
    .bind(product_id)
    .bind(practice_id)
    .fetch_optional(state.db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let sealed: String = row.try_get("token_sealed")?;
    Ok(Some(
        state
            .secrets
            .open_str(&sealed, &token_aad(product_id, practice_id))?,
    ))
}

/// Hint activated or deactivated the practice's install (its `integration.*` events), on the
/// caller's transaction. Answers whether an install was there to change.
pub async fn set_status(
    conn: &mut sqlx::AnyConnection,
    product_id: &str,
    practice_id: &PracticeId,
    status: InstallStatus,
) -> Result<bool, AppError> {
    let changed = sqlx::query(
        "UPDATE hint_installations SET status = $1, updated_at = $2 WHERE product_id = $3 AND practice_id = $4",
    )
    .bind(status.as_str())
    .bind(now_ms())
    .bind(product_id)
    .bind(practice_id)
    .execute(conn)
    .await?;
    Ok(changed.rows_affected() > 0)
}
