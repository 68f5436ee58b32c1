//! The Haidy section of the settings surface (admins): API token (write-only), patient group,
//! integration id.

use askama::Template;
use axum::{Form, extract::State, http::StatusCode, response::Html};
use serde::Deserialize;

use super::HaidyConnection;
use crate::{
    error::AppError,
    hint::{PracticeSession, Role},
    partners::{save_outcome, section_status},
    state::AppState,
};

#[derive(Template)]
#[template(path = "partners/haidy_settings.html")]
struct HaidySettingsSection {
    configured: bool,
    patient_group: String,
    integration_id: String,
    saved: bool,
    error: Option<String>,
}

/// The section, showing `entered` (after a refused save) or what is stored.
pub async fn section(
    state: &AppState,
    session: &PracticeSession,
    entered: Option<&HaidySettingsForm>,
    outcome: Option<Result<(), String>>,
) -> Result<String, AppError> {
    let stored = HaidyConnection::load(state, &session.practice_id).await?;
    let section = HaidySettingsSection {
        configured: stored.is_some(),
        patient_group: entered
            .map(|f| f.patient_group.clone())
            .or_else(|| stored.as_ref().map(|c| c.patient_group.clone()))
            .unwrap_or_default(),
        integration_id: entered
            .map(|f| f.integration_id.clone())
            .or_else(|| stored.as_ref().map(|c| c.integration_id.clone()))
            .unwrap_or_default(),
        saved: matches!(outcome, Some(Ok(()))),
        error: outcome.and_then(Result::err),
    };
    Ok(section.render()?)
}

#[derive(Deserialize)]
pub struct HaidySettingsForm {
    #[serde(default)]
    api_token: String,
    #[serde(default)]
    patient_group: String,
    #[serde(default)]
    integration_id: String,
}

/// `POST /hint/settings/haidy` (htmx): saves and answers the section again.
pub async fn save(
    State(state): State<AppState>,
    session: PracticeSession,
    Form(input): Form<HaidySettingsForm>,
) -> Result<(StatusCode, Html<String>), AppError> {
    session.require(Role::Admin)?;
    let saved = HaidyConnection::save(
        &state,
        &session.practice_id,
        &input.api_token,
        &input.patient_group,
        &input.integration_id,
        &session.user_id,
    )
    .await;
    let outcome = save_outcome(saved)?;
    let entered = outcome.is_err().then_some(&input);
    Ok((
        section_status(&outcome),
        Html(section(&state, &session, entered, Some(outcome)).await?),
    ))
}
