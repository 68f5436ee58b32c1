//! Launching Tiep: a visit row (and its draft in Hint), a launch token, and the Tiep URL whose
//! context always carries the patient and our visit id.

use serde_json::{Value, json};
use url::Url;

use super::{TiepConnection, TiepLaunch, client::Doctor};
use crate::{
    db::now_ms,
    error::AppError,
    hint::{PracticeSession, client::Patient},
    partners::Partner,
    state::AppState,
    visits,
};

/// The context Tiep carries back in its webhook: a FHIR-like Patient plus our visit id.
pub fn context(patient: &Patient, visit_id: &str) -> Value {
    let mut fhir_patient = json!({
        "resourceType": "Patient",
        "identifier": [{"value": patient.id}],
        "name": [{"text": patient.display_name()}],
    });
    if let Some(dob) = patient.dob.as_deref().filter(|d| !d.is_empty()) {
        fhir_patient["birthDate"] = json!(dob);
    }
    json!({"patient": fhir_patient, "visit_id": visit_id})
}

pub async fn launch(
    state: &AppState,
    session: &PracticeSession,
    patient: &Patient,
) -> Result<Url, AppError> {
    let connection = TiepConnection::load(state, &session.practice_id).await?.ok_or_else(|| {
        AppError::Unprocessable(
            "Tiep is not set up for this practice yet. Ask a practice admin to enter the Tiep facility key in Chartbridge settings.".into(),
        )
    })?;
    let visit_id = visits::start_for_patient(
        state,
        session,
        patient,
        Partner::Tiep,
        &TiepLaunch {
            form: connection.form.clone(),
            tiep_session_id: None,
        },
    )
    .await?;

    let doctor = Doctor {
        id: &session.user_id,
        name: &session.user_name,
        specialties: vec![],
    };
    let token = match state
        .tiep
        .generate_token(&connection.api_key, &doctor, &connection.form)
        .await
    {
        Ok(token) => token,
        Err(e) => {
            tracing::warn!(practice_id = %session.practice_id, %visit_id, error = %crate::error::error_chain(&e), "tiep launch refused");
            let reason = super::client::for_clinician(&e);
            visits::fail(state, &session.practice_id, &visit_id, &reason).await?;
            return Err(AppError::Upstream(reason));
        }
    };
    let poll_at = now_ms() + state.settings.tiep.poll_after.as_millis() as i64;
    let launched = visits::mark_launched(
        state,
        &session.practice_id,
        &visit_id,
        Some(&token.session_id),
        &TiepLaunch {
            form: connection.form,
            tiep_session_id: Some(token.session_id.clone()),
        },
        Some(poll_at),
    )
    .await?;
    if !launched {
        return Err(AppError::Conflict(
            "The visit ended before Tiep answered (it took too long, or it was cancelled). Start it again.".into(),
        ));
    }
    Ok(state.tiep.launch_url(&token, &context(patient, &visit_id)))
}
