//! The HCW@Home section of the settings surface (admins): server address, service account,
//! SSO secret, and routing. Secrets are write-only: saved, never shown back.

use askama::Template;
use axum::{Form, extract::State, http::StatusCode, response::Html};
use serde::Deserialize;

use super::{HcwConnection, HcwSettingsInput, MIN_SSO_SECRET_LEN, Routing};
use crate::{
    error::AppError,
    hint::{PracticeSession, Role},
    partners::{save_outcome, section_status},
    state::AppState,
};

#[derive(Template)]
#[template(path = "partners/hcw_settings.html")]
struct HcwSettingsSection {
    configured: bool,
    base_url: String,
    service_email: String,
    routing: &'static str,
    queue: String,
    min_sso: usize,
    saved: bool,
    error: Option<String>,
}

/// The section, showing `entered` (after a refused save) or what is stored.
pub async fn section(
    state: &AppState,
    session: &PracticeSession,
    entered: Option<&HcwSettingsForm>,
    outcome: Option<Result<(), String>>,
) -> Result<String, AppError> {
    let stored = HcwConnection::load(state, &session.practice_id).await?;
    let mut section = HcwSettingsSection {
        configured: stored.is_some(),
        base_url: String::new(),
        service_email: String::new(),
        routing: "doctor_email",
        queue: String::new(),
        min_sso: MIN_SSO_SECRET_LEN,
        saved: matches!(outcome, Some(Ok(()))),
        error: outcome.and_then(Result::err),
    };
    if let Some(c) = &stored {
        section.base_url = c.base_url.to_string();
        section.service_email = c.service_email.clone();
        if let Routing::Queue { queue } = &c.routing {
            section.routing = "queue";
            section.queue = queue.clone();
        }
    }
    if let Some(form) = entered {
        section.base_url = form.base_url.clone();
        section.service_email = form.service_email.clone();
        section.routing = if form.routing == "queue" {
            "queue"
        } else {
            "doctor_email"
        };
        section.queue = form.queue.clone();
    }
    Ok(section.render()?)
}

#[derive(Deserialize)]
pub struct HcwSettingsForm {
    #[serde(default)]
    base_url: String,
    #[serde(default)]
    service_email: String,
    #[serde(default)]
    service_password: String,
    #[serde(default)]
    sso_secret: String,
    #[serde(default)]
    routing: String,
    #[serde(default)]
    queue: String,
}

/// `POST /hint/settings/hcw` (htmx): saves and answers the section again.
pub async fn save(
    State(state): State<AppState>,
    session: PracticeSession,
    Form(input): Form<HcwSettingsForm>,
) -> Result<(StatusCode, Html<String>), AppError> {
    session.require(Role::Admin)?;
    let saved = HcwConnection::save(
        &state,
        &session.practice_id,
        HcwSettingsInput {
            base_url: &input.base_url,
            service_email: &input.service_email,
            service_password: &input.service_password,
            sso_secret: &input.sso_secret,
            routing: &input.routing,
            queue: &input.queue,
        },
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
