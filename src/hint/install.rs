//! Instant On: `POST /hint/connect/{code}` (and the browser redirect with `?code=`). We exchange
//! the code with Hint (its newer `installations/connect`, or the older OAuth token endpoint)
//! and keep the practice token sealed (`installations.rs`), then start the practice's patient
//! index.

use axum::{
    Json,
    extract::{Path, Query, State},
    response::{Html, IntoResponse, Response},
};
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::{
    HintState,
    installations::{InstallStatus, token_aad},
};
use crate::{
    db::now_ms,
    error::{ApiError, AppError},
    ids::ExternalId,
    tenancy::PracticeId,
};

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
    super::patient_index::start(&mut tx, &practice_id, state.settings.jobs.max_attempts).await?;
    tx.commit().await?;
    tracing::info!(%practice_id, status = status.as_str(), "practice installed via Instant On");
    Ok(practice_id)
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
