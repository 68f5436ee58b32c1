//! The Tiep section of the settings surface (admins only): facility API key, hook secret, form,
//! and the exact webhook URL to paste into Tiep. Secrets are write-only: saved, never shown.

use askama::Template;
use axum::{Form, extract::State, http::StatusCode, response::Html};
use serde::Deserialize;

use super::{TiepConnection, default_form, webhook_url};
use crate::{
    error::AppError,
    hint::{PracticeSession, Role},
    partners::save_outcome,
    state::AppState,
};

#[derive(Template)]
#[template(path = "partners/tiep_settings.html")]
pub struct TiepSettingsSection {
    pub session_key: String,
    pub configured: bool,
    pub webhook_url: String,
    pub form_json: String,
    pub saved: bool,
    pub error: Option<String>,
}

impl TiepSettingsSection {
    pub async fn load(state: &AppState, session: &PracticeSession) -> Result<Self, AppError> {
        let connection = TiepConnection::load(state, &session.practice_id).await?;
        let form = connection
            .as_ref()
            .map(|c| c.form.clone())
            .unwrap_or_else(default_form);
        Ok(Self {
            session_key: session.key.clone(),
            configured: connection.is_some(),
            webhook_url: webhook_url(state, &session.practice_id),
            form_json: serde_json::to_string_pretty(&form).unwrap_or_default(),
            saved: false,
            error: None,
        })
    }
}

#[derive(Deserialize)]
pub struct TiepSettingsForm {
    #[serde(default)]
    api_key: String,
    #[serde(default)]
    hook_secret: String,
    #[serde(default)]
    form: String,
}

/// `POST /hint/settings/tiep` (htmx): saves and answers the section again.
pub async fn save(
    State(state): State<AppState>,
    session: PracticeSession,
    Form(input): Form<TiepSettingsForm>,
) -> Result<(StatusCode, Html<String>), AppError> {
    session.require(Role::Admin)?;
    let existing = TiepConnection::load(&state, &session.practice_id).await?;
    // Blank secret fields keep the stored values, so an admin can change only the form.
    let api_key = match (input.api_key.trim(), &existing) {
        ("", Some(c)) => secrecy::ExposeSecret::expose_secret(&c.api_key).to_string(),
        (key, _) => key.to_string(),
    };
    let hook_secret = match (input.hook_secret.as_str(), &existing) {
        ("", Some(c)) => secrecy::ExposeSecret::expose_secret(&c.hook_secret).to_string(),
        (secret, _) => secret.to_string(),
    };
    let mut section = TiepSettingsSection::load(&state, &session).await?;
    section.form_json = input.form.clone();
    let outcome = match serde_json::from_str::<serde_json::Value>(&input.form) {
        Err(e) => Err(AppError::Unprocessable(format!(
            "The form is not valid JSON: {e}."
        ))),
        Ok(form) => {
            TiepConnection::save(
                &state,
                &session.practice_id,
                &api_key,
                &hook_secret,
                form,
                &session.user_id,
            )
            .await
        }
    };
    match save_outcome(outcome)? {
        Ok(()) => {
            section = TiepSettingsSection::load(&state, &session).await?;
            section.saved = true;
        }
        Err(message) => section.error = Some(message),
    }
    let status = if section.saved {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, Html(section.render()?)))
}
