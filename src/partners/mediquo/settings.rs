//! The MediQuo section of the settings surface (admins): the webhook URL to give MediQuo and
//! the shared signature value (write-only: saved, never shown).

use askama::Template;
use axum::{Form, extract::State, http::StatusCode, response::Html};
use serde::Deserialize;

use super::{is_configured, webhook_url};
use crate::{
    error::AppError,
    hint::{PracticeSession, Role},
    partners::{save_outcome, section_status},
    state::AppState,
};

#[derive(Template)]
#[template(path = "partners/mediquo_settings.html")]
struct MediquoSettingsSection {
    configured: bool,
    webhook_url: String,
    saved: bool,
    error: Option<String>,
}

/// The section; `outcome` is what a save just did (Ok: saved, Err: why not).
pub async fn section(
    state: &AppState,
    session: &PracticeSession,
    outcome: Option<Result<(), String>>,
) -> Result<String, AppError> {
    let section = MediquoSettingsSection {
        configured: is_configured(state, &session.practice_id).await?,
        webhook_url: webhook_url(state, &session.practice_id),
        saved: matches!(outcome, Some(Ok(()))),
        error: outcome.and_then(Result::err),
    };
    Ok(section.render()?)
}

#[derive(Deserialize)]
pub struct MediquoSettingsForm {
    #[serde(default)]
    signature: String,
}

/// `POST /hint/settings/mediquo` (htmx): saves and answers the section again.
pub async fn save(
    State(state): State<AppState>,
    session: PracticeSession,
    Form(input): Form<MediquoSettingsForm>,
) -> Result<(StatusCode, Html<String>), AppError> {
    session.require(Role::Admin)?;
    let outcome = save_outcome(
        super::save(
            &state,
            &session.practice_id,
            &input.signature,
            &session.user_id,
        )
        .await,
    )?;
    Ok((
        section_status(&outcome),
        Html(section(&state, &session, Some(outcome)).await?),
    ))
}
