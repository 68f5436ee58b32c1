//! `clinical_chart`: the patient Hint has open. Their visits and the launch buttons.

use askama::Template;
use axum::{
    extract::{Query, State},
    response::Html,
};
use serde::Deserialize;

use super::{LaunchButton, VisitRow, launch_buttons};
use crate::{
    audit::{Action, Entry},
    error::AppError,
    hint::{self, Frame, PracticeSession},
    ids::ExternalId,
    visits::AppState,
    visits::{self, LaunchStyle},
};

#[derive(Template)]
#[template(path = "surfaces/clinical_chart.html")]
struct ClinicalChart {
    frame: Frame,
    patient_id: String,
    patient_name: String,
    patient_dob: String,
    patient_error: Option<String>,
    buttons: Vec<LaunchButton>,
    visits: Vec<VisitRow>,
    older: Option<String>,
    paged: bool,
    patient_filter: String,
    /// Why writing this patient's visits to Hint is failing, if it is.
    hint_failing: Option<&'static str>,
}

#[derive(Deserialize)]
pub struct ChartQuery {
    /// The patient picked in search (when Hint opened Chartbridge without one).
    #[serde(default)]
    patient_id: Option<ExternalId>,
}

/// `GET /hint/clinical_chart`: the patient Hint has open, or, in a session Hint opened without
/// one, the patient picked in search (`?patient_id=`, checked with Hint as this practice's).
pub async fn page(
    State(state): State<AppState>,
    session: PracticeSession,
    Query(query): Query<ChartQuery>,
) -> Result<Html<String>, AppError> {
    let patient_id = session
        .patient_id
        .clone()
        .or_else(|| query.patient_id.map(|p| p.to_string()))
        .ok_or_else(|| {
            AppError::BadRequest(
                "Hint opened the chart without a patient. Pick one in search, or reopen \
                 Chartbridge from a patient's chart."
                    .into(),
            )
        })?;
    let (patient_name, patient_dob, patient_error) =
        match hint::patient_for(&state, &session, &patient_id).await {
            Ok(p) => (p.display_name(), p.dob.unwrap_or_default(), None),
            Err(AppError::NotFound) => return Err(AppError::NotFound),
            Err(e) => (patient_id.clone(), String::new(), Some(e.public_message())),
        };
    let rows = visits::for_patient(
        &state,
        &session.practice_id,
        &patient_id,
        None,
        super::core_page::PATIENT_VISITS_PAGE,
    )
    .await?;
    let viewed = Entry::new(Action::ChartViewed).patient(&patient_id);
    state
        .audit
        .record(&session.practice_id, &session.actor(), viewed)
        .await?;
    let patient_id_for_warning = patient_id.clone();
    let page = ClinicalChart {
        frame: Frame::new(&session, "clinical_chart"),
        patient_filter: patient_id.clone(),
        patient_id,
        patient_name,
        patient_dob,
        patient_error,
        buttons: launch_buttons(&state, &session.practice_id).await?,
        older: super::core_page::older_than(&rows, super::core_page::PATIENT_VISITS_PAGE),
        paged: false,
        visits: VisitRow::all(&rows, &state.partners),
        hint_failing: super::attention::hint_writes_failing_for(
            &state,
            &session.practice_id,
            &patient_id_for_warning,
        )
        .await?,
    };
    Ok(Html(page.render()?))
}
