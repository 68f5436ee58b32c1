//! `POST /hint/visits`: a clinician starts a partner visit for a patient from the frame.
//!
//! The form posts with `target="_blank"`, so the answer (a redirect to the partner) opens in a
//! new tab without tripping popup blockers; a refusal renders there as a page that says why.

use axum::{
    Form,
    extract::{Path, State},
    http::StatusCode,
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use crate::{
    error::AppError,
    hint::{HintAuth, PracticeSession, Role},
    ids::ExternalId,
    partners::{LaunchStyle, Partner},
    state::AppState,
    surfaces::clinical_interaction,
    visits,
};

#[derive(Debug, Deserialize)]
pub struct StartVisitForm {
    pub patient_id: ExternalId,
    pub partner: String,
}

pub async fn start_visit(
    State(state): State<AppState>,
    session: PracticeSession,
    Form(form): Form<StartVisitForm>,
) -> Result<Response, AppError> {
    session.require(Role::Clinician)?;
    let partner = Partner::parse(&form.partner)
        .ok_or_else(|| AppError::BadRequest(format!("Unknown partner {:?}.", form.partner)))?;
    if !matches!(partner.tool().launch_style(), LaunchStyle::Direct { .. }) {
        return Err(AppError::BadRequest(format!(
            "{} is not started with one click.",
            partner.display_name()
        )));
    }
    let patient = fetch_patient(&state, &session, &form.patient_id).await?;
    let launch = partner.tool().launch(&state, &session, &patient).await?;
    Ok(Redirect::to(launch.as_str()).into_response())
}

/// `POST /hint/visits/{visit_id}/cancel` (clinicians, htmx): the partner's side first (an
/// invite revoked), then the visit; Hint's interaction becomes `deleted`. Answers the visit's
/// page, with the reason when it could not be cancelled.
pub async fn cancel_visit(
    State(state): State<AppState>,
    session: PracticeSession,
    Path(visit_id): Path<ExternalId>,
) -> Result<(StatusCode, Html<String>), AppError> {
    session.require(Role::Clinician)?;
    let visit = visits::get_latest(&state, &session.practice_id, &visit_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let partner = visit.partner().ok_or(AppError::NotFound)?;
    let refusal = if !visit.state().is_open() {
        Some(format!(
            "This visit is already {}; it can no longer be cancelled.",
            visit.state().label().to_lowercase()
        ))
    } else if !partner.tool().cancellable() {
        Some(format!(
            "{} visits cannot be cancelled here.",
            partner.display_name()
        ))
    } else {
        match partner.tool().cancel(&state, &visit).await {
            Ok(()) => {
                visits::cancel(&state, &session.practice_id, &visit.id).await?;
                None
            }
            Err(AppError::Upstream(reason) | AppError::Unprocessable(reason)) => Some(reason),
            Err(other) => return Err(other),
        }
    };
    clinical_interaction::answer(&state, &session, &visit_id, refusal).await
}

/// Loads a patient of the session's practice from Hint (404 for anyone else's).
pub async fn fetch_patient(
    state: &AppState,
    session: &PracticeSession,
    patient_id: &str,
) -> Result<crate::hint::client::Patient, AppError> {
    if patient_id.is_empty() || patient_id.len() > 64 {
        return Err(AppError::BadRequest("Pick a patient first.".into()));
    }
    let token = hint_token(state, session).await?;
    let auth = HintAuth {
        practice_id: &session.practice_id,
        token: &token,
    };
    state
        .hint
        .get_patient(&auth, patient_id)
        .await
        .map_err(|e| {
            if e.is_status(reqwest::StatusCode::NOT_FOUND) {
                AppError::NotFound
            } else {
                AppError::Upstream(format!("Hint could not load the patient: {e}."))
            }
        })
}

/// The token for calls made while the user waits: the handshake's access token, else the
/// practice's Instant On token.
pub async fn hint_token(
    state: &AppState,
    session: &PracticeSession,
) -> Result<secrecy::SecretString, AppError> {
    if let Some(token) = session.access_token(state) {
        return Ok(token);
    }
    crate::hint::install::practice_token(state, &session.practice_id)
        .await?
        .ok_or_else(|| {
            AppError::Upstream(
                "Chartbridge has no Hint access for this practice yet. Ask a practice admin to install it from the Hint marketplace."
                    .into(),
            )
        })
}
