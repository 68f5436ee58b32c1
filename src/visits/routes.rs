//! Starting and cancelling a visit from the frame, and the visit's page.
//!
//! `POST /hint/visits` starts a one-click partner: the form posts with `target="_blank"`, so
//! the answer (a redirect to the partner) opens in a new tab without tripping popup blockers;
//! a refusal renders there as a page that says why.

use axum::{
    Form, Router,
    extract::{Path, State},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde::Deserialize;

use super::{LaunchStyle, PartnerError, VisitId, page};
use crate::{
    error::AppError,
    hint::{self, PracticeSession, Role},
    ids::ExternalId,
    visits::AppState,
};

/// The visit routes every partner shares.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/hint/visits", post(start_visit))
        .route("/hint/visits/{visit_id}/cancel", post(cancel_visit))
        .route("/hint/clinical_interaction", get(page::page))
}

#[derive(Debug, Deserialize)]
pub struct StartVisitForm {
    pub patient_id: ExternalId,
    pub partner: String,
}

/// `POST /hint/visits` (clinicians): starts a one-click partner and sends the tab there.
pub async fn start_visit(
    State(state): State<AppState>,
    session: PracticeSession,
    Form(form): Form<StartVisitForm>,
) -> Result<Response, AppError> {
    session.require(Role::Clinician)?;
    let partner = state
        .partners
        .get(&form.partner)
        .map_err(|_| AppError::BadRequest(format!("Unknown partner {:?}.", form.partner)))?
        .clone();
    if !matches!(partner.launch_style(), LaunchStyle::Direct { .. }) {
        return Err(AppError::BadRequest(format!(
            "{} is not started with one click.",
            partner.name()
        )));
    }
    let patient = hint::patient_for(&state, &session, &form.patient_id).await?;
    let launch = partner.launch(&state, &session, &patient).await?;
    Ok(Redirect::to(launch.as_str()).into_response())
}

/// `POST /hint/visits/{visit_id}/cancel` (clinicians, htmx): the partner's side first (an
/// invite revoked), then the visit; Hint's interaction becomes `deleted`. Answers the visit's
/// page, with the reason when it could not be cancelled.
pub async fn cancel_visit(
    State(state): State<AppState>,
    session: PracticeSession,
    Path(visit_id): Path<ExternalId>,
) -> Result<axum::response::Response, AppError> {
    session.require(Role::Clinician)?;
    let visit_id = VisitId::from(visit_id);
    let visit = super::get_latest(&state, &session.practice_id, &visit_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let partner = state.partners.of(&visit)?;
    let refusal = if !visit.state().is_open() {
        Some(format!(
            "This visit is already {}; it can no longer be cancelled.",
            visit.state().label().to_lowercase()
        ))
    } else if !partner.cancellable() {
        Some(format!(
            "{} visits cannot be cancelled here.",
            partner.name()
        ))
    } else {
        match partner.cancel(&state, &session.practice_id, &visit).await {
            Ok(()) => {
                super::cancel(&state, &session.practice_id, &visit.id, &session.actor()).await?;
                None
            }
            Err(PartnerError::Internal(e)) => return Err(e),
            Err(refused) => Some(refused.message()),
        }
    };
    page::answer(&state, &session, &visit_id, refusal).await
}
