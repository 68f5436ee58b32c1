//! Instant On: `POST /hint/connect/{code}` (and the browser redirect with `?code=`). We exchange
//! the code with Hint (its newer `installations/connect`, or the older OAuth token endpoint)
//! and keep the practice token sealed, keyed by (product, practice).
//!
//! An install is [`InstallStatus::Active`], or [`InstallStatus::Pending`] when Chartbridge is
//! configured to install without activating (`CHARTBRIDGE_ACTIVATE_ON_INSTALL=false`) until Hint
//! sends `integration.activated`, or [`InstallStatus::Deactivated`] after
//! `integration.deactivated`. Background work runs only for an active install; a deactivated
//! practice's data stays until an operator purges it (`chartbridge practice purge`).

use axum::{
    Json,
    extract::{Path, Query, State},
    response::{Html, IntoResponse, Response},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::Row;

use super::HintState;
use crate::{
    db::now_ms,
    error::{ApiError, AppError},
    ids::ExternalId,
    jobs::{self, Job, NewJob},
    tenancy::PracticeId,
};

/// Associated data binding a sealed practice token to its row.
pub fn token_aad(product_id: &str, practice_id: &(impl std::fmt::Display + ?Sized)) -> String {
    format!("hint_installations.token|{product_id}|{practice_id}")
}

/// Headless install: Hint posts the code.
pub async fn connect<S: AsRef<HintState>>(
    State(state): State<S>,
    Path(code): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let practice_id = install(state.as_ref(), &code).await?;
    Ok(Json(
        serde_json::json!({ "connected": true, "practice_id": practice_id }),
    ))
}

#[derive(Deserialize)]
pub struct RedirectQuery {
    code: Option<String>,
}

/// Browser install: Hint redirects the admin here with `?code=`.
pub async fn connect_redirect<S: AsRef<HintState>>(
    State(state): State<S>,
    Query(query): Query<RedirectQuery>,
) -> Response {
    let state = state.as_ref();
    let Some(code) = query.code.filter(|c| !c.is_empty()) else {
        return AppError::BadRequest(
            "The install link has no code. Start the install again from Hint.".into(),
        )
        .into_response();
    };
    match install(state, &code).await {
        Ok(_) => Html(
            "<!doctype html><meta charset=utf-8><title>Chartbridge installed</title>\
             <p>Chartbridge is connected to your practice. You can close this tab and open Chartbridge from Hint.</p>",
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Shortest and longest code we send to Hint.
const CODE_LEN: std::ops::RangeInclusive<usize> = 8..=512;

/// Whether `code` has the shape of an OAuth code (8 to 512 of the URL's unreserved
/// characters). Anything else is refused without asking Hint: a flood of junk never spends
/// the partner key's budget.
pub fn well_formed_code(code: &str) -> bool {
    CODE_LEN.contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
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
pub const PRACTICES_NOT_ACTIVE: &str =
    "SELECT DISTINCT practice_id FROM hint_installations WHERE status <> 'active'";

async fn install(state: &HintState, code: &str) -> Result<PracticeId, AppError> {
    if !well_formed_code(code) {
        return Err(AppError::BadRequest(
            "This is not an install code. Start the install again from Hint.".into(),
        ));
    }
    let activate = state.settings.hint.activate_on_install;
    let grant = state
        .hint
        .exchange_code(code, activate)
        .await
        .map_err(|e| {
            if e.is_refusal() && !e.is_status(reqwest::StatusCode::TOO_MANY_REQUESTS) {
                AppError::BadRequest(
                    "Hint did not accept the install code (expired or already used).".into(),
                )
            } else {
                AppError::upstream_because(
                    format!("Could not complete the install with Hint: {e}."),
                    e,
                )
            }
        })?;
    let practice_id = match ExternalId::try_from(grant.practice.id.trim().to_string()) {
        // Hint's own answer to the code it issued: the practice is verified.
        Ok(id) if !grant.token.expose_secret().is_empty() => PracticeId::verified(id),
        _ => {
            return Err(AppError::upstream(
                "Hint answered the install without a practice or token.",
            ));
        }
    };
    let product_id = &state.settings.hint.product_id;
    let sealed = state
        .secrets
        .seal_str(&grant.token, &token_aad(product_id, &practice_id));
    let status = if grant.active {
        InstallStatus::Active
    } else {
        InstallStatus::Pending
    };
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "INSERT INTO practices (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at",
    )
    .bind(&practice_id)
    .bind(
        grant
            .practice
            .name
            .as_deref()
            .unwrap_or(practice_id.as_str()),
    )
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO hint_installations (product_id, practice_id, integration_id, token_sealed, installed_at, updated_at, status) \
         VALUES ($1, $2, $3, $4, $5, $5, $6) \
         ON CONFLICT (product_id, practice_id) DO UPDATE SET integration_id = excluded.integration_id, \
         token_sealed = excluded.token_sealed, updated_at = excluded.updated_at, status = excluded.status",
    )
    .bind(product_id)
    .bind(&practice_id)
    .bind(grant.integration_id.as_deref())
    .bind(sealed)
    .bind(now)
    .bind(status.as_str())
    .execute(&mut *tx)
    .await?;
    // Search needs the practice's patients: the install starts reading them from Hint.
    if super::patient_index::start(&mut tx, &practice_id).await? {
        let job = NewJob {
            practice_id: &practice_id,
            job: Job::SyncPatients {
                practice_id: ExternalId::parse(practice_id.as_str())?,
            },
            run_at: now,
        };
        jobs::enqueue(&mut tx, state.settings.jobs.max_attempts, job).await?;
    }
    tx.commit().await?;
    tracing::info!(%practice_id, status = status.as_str(), "practice installed via Instant On");
    Ok(practice_id)
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

#[cfg(test)]
mod tests {
    use super::well_formed_code;

    #[test]
    fn only_code_shaped_values_go_to_hint() {
        for ok in ["Xk3-9_aZ.~q1", &"a".repeat(43), &"b".repeat(512)] {
            assert!(well_formed_code(ok), "{ok}");
        }
        for bad in [
            "",
            "abc",
            "short12",
            &"c".repeat(513),
            "code with spaces",
            "c%6Fde12345",
            "cöde123456",
            "abc/def12345",
        ] {
            assert!(!well_formed_code(bad), "{bad:?}");
        }
    }
}
