//! Launching Tiep: a visit row (and its draft in Hint), a launch token, and the Tiep URL whose
//! context always carries the patient and our visit id.

use serde_json::{Value, json};
use url::Url;

use super::{ID, Tiep, TiepConnection, TiepLaunch, client::Doctor, client::for_clinician};
use crate::{
    error::AppError,
    hint::{Patient, PracticeSession},
    partners::connection,
    visits::AppState,
    visits::{
        PartnerError, VisitId,
        launch::{self, Launched},
    },
};

/// The context Tiep carries back in its webhook: a FHIR-like Patient plus our visit id.
pub fn context(patient: &Patient, visit_id: &VisitId) -> Value {
    let mut fhir_patient = json!({
        "resourceType": "Patient",
        "identifier": [{"value": patient.id}],
        "name": [{"text": patient.display_name()}],
    });
    if let Some(dob) = patient.dob.as_deref().filter(|d| !d.is_empty()) {
        fhir_patient["birthDate"] = json!(dob);
    }
    json!({"patient": fhir_patient, "visit_id": visit_id.as_str()})
}

/// Starts a Tiep visit: the launch token is asked for with our visit id known, and the
/// clinician is sent to Tiep with the patient and that id in the context.
pub async fn launch(
    tiep: &Tiep,
    app: &AppState,
    session: &PracticeSession,
    patient: &Patient,
) -> Result<Url, AppError> {
    let connection = connection::load::<TiepConnection>(app, &session.practice_id)
        .await?
        .ok_or_else(|| {
            AppError::Unprocessable(
                "Tiep is not set up for this practice yet. Ask a practice admin to enter the Tiep facility key in Chartbridge settings.".into(),
            )
        })?;
    let initial = TiepLaunch {
        form: connection.form.clone(),
        tiep_session_id: None,
    };
    let doctor = Doctor {
        id: &session.user_id,
        name: &session.user_name,
        specialties: vec![],
    };
    let (_, url) = launch::launch(app, session, patient, ID, &initial, async |visit_id| {
        let token = tiep
            .client
            .generate_token(&connection.api_key, &doctor, &connection.form)
            .await
            .map_err(|e| PartnerError::upstream(for_clinician(&e), e))?;
        let url = tiep.client.launch_url(&token, &context(patient, visit_id));
        let launched = Launched {
            partner_ref: Some(token.session_id.clone()),
            data: TiepLaunch {
                form: connection.form.clone(),
                tiep_session_id: Some(token.session_id),
            },
            poll_after: Some(tiep.settings.poll_after),
        };
        Ok((launched, url))
    })
    .await?;
    Ok(url)
}
