//! Instant On: `POST /hint/connect/{code}` (and the browser redirect with `?code=`). We exchange
//! the code with Hint and keep the practice token sealed, keyed by (product, practice).

use axum::{
    Json,
    extract::{Path, Query, State},
    response::{Html, IntoResponse, Response},
};
use secrecy::SecretString;
use serde::Deserialize;
use sqlx::Row;

use super::HintState;
use crate::{
    db::now_ms,
    error::{ApiError, AppError},
    ids::ExternalId,
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

async fn install(state: &HintState, code: &str) -> Result<PracticeId, AppError> {
    if !well_formed_code(code) {
        return Err(AppError::BadRequest(
            "This is not an install code. Start the install again from Hint.".into(),
        ));
    }
    let grant = state.hint.exchange_code(code).await.map_err(|e| {
        if e.is_refusal() && !e.is_status(reqwest::StatusCode::TOO_MANY_REQUESTS) {
            AppError::BadRequest(
                "Hint did not accept the install code (expired or already used).".into(),
            )
        } else {
            AppError::upstream_because(format!("Could not complete the install with Hint: {e}."), e)
        }
    })?;
    let practice_id = match ExternalId::try_from(grant.practice.id.trim().to_string()) {
        // Hint's own answer to the code it issued: the practice is verified.
        Ok(id) if !grant.access_token.is_empty() => PracticeId::verified(id),
        _ => {
            return Err(AppError::upstream(
                "Hint answered the install without a practice or token.",
            ));
        }
    };
    let product_id = &state.settings.hint.product_id;
    let sealed = state.secrets.seal(
        grant.access_token.as_bytes(),
        &token_aad(product_id, &practice_id),
    );
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
        "INSERT INTO hint_installations (product_id, practice_id, integration_id, token_sealed, installed_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) \
         ON CONFLICT (product_id, practice_id) DO UPDATE SET integration_id = excluded.integration_id, \
         token_sealed = excluded.token_sealed, updated_at = excluded.updated_at",
    )
    .bind(product_id)
    .bind(&practice_id)
    .bind(grant.id.as_deref())
    .bind(sealed)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(%practice_id, "practice installed via Instant On");
    Ok(practice_id)
}

/// The stored practice token for background work, if the practice has installed us.
pub async fn practice_token(
    state: &HintState,
    practice_id: &PracticeId,
) -> Result<Option<SecretString>, AppError> {
    let product_id = &state.settings.hint.product_id;
    let row = sqlx::query(
        "SELECT token_sealed FROM hint_installations WHERE product_id = $1 AND practice_id = $2",
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

/// Forgets a practice's token (Hint sent `integration.deactivated`), on the caller's transaction.
pub async fn uninstall(
    conn: &mut sqlx::AnyConnection,
    product_id: &str,
    practice_id: &PracticeId,
) -> Result<(), AppError> {
    sqlx::query("DELETE FROM hint_installations WHERE product_id = $1 AND practice_id = $2")
        .bind(product_id)
        .bind(practice_id)
        .execute(conn)
        .await?;
    Ok(())
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
