//! `POST /webhooks/mediquo/{practice_id}`: MediQuo's events. The shared value in
//! `x-webhook-signature` is compared in constant time before the body is read. Finished
//! consultations and sent reports become completed visits (one per consultation id, or per
//! body when MediQuo gives none); other types are acknowledged and ignored. A signed delivery
//! we cannot place (no patient code, a code Hint does not know for this practice, an off-shape
//! payload) is kept for admins, never dropped.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
};
use serde_json::{Value, json};

use super::{
    ID, MediQuo, MediquoConnection, MediquoLaunch,
    event::{Envelope, Incoming},
};
use crate::{
    crypto::{SignatureError, constant_time_eq, sha256_hex},
    error::{ApiError, AppError},
    hint::{HintAuth, install},
    ids::{ExternalId, clean_text},
    partners::{connection, unmatched},
    tenancy::PracticeId,
    visits::AppState,
    visits::{self, NewVisit, PartnerState},
};

type Answer = (StatusCode, Json<Value>);

pub async fn receive(
    State(mediquo): State<PartnerState<MediQuo>>,
    Path(practice_id): Path<ExternalId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Answer, ApiError> {
    let state = &mediquo.app;
    let presented = headers.get("x-webhook-signature").map(|v| v.as_bytes());
    let practice_id =
        connection::verify_delivery::<MediquoConnection>(state, practice_id, |secrets| {
            match presented {
                None | Some(b"") => Err(SignatureError::Missing),
                Some(value) if constant_time_eq(secrets.signature.as_bytes(), value) => Ok(()),
                Some(_) => Err(SignatureError::Mismatch),
            }
        })
        .await?;

    let envelope: Envelope = serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("malformed event: {e}")))?;
    let kind = clean_text(&envelope.kind, 80);
    let incoming = match Incoming::from_envelope(envelope, &sha256_hex(&body)) {
        Ok(Some(incoming)) => incoming,
        Ok(None) => {
            tracing::info!(%practice_id, event = %kind, "mediquo event ignored");
            return Ok((
                StatusCode::OK,
                Json(json!({"received": true, "ignored": true})),
            ));
        }
        Err(problem) => return keep(state, &practice_id, &problem, None, &body).await,
    };
    let Some(code) = incoming.patient_code.as_deref().filter(|c| !c.is_empty()) else {
        return keep(
            state,
            &practice_id,
            "The delivery names no patient (patient.code is missing).",
            None,
            &body,
        )
        .await;
    };
    let Ok(patient_id) = ExternalId::parse(code) else {
        return keep(
            state,
            &practice_id,
            "patient.code is not a Hint patient id.",
            None,
            &body,
        )
        .await;
    };
    if visits::find_by_partner_ref(state, &practice_id, ID, &incoming.reference)
        .await?
        .is_some()
    {
        return Ok(duplicate());
    }
    let patient_name = match patient_name(state, &practice_id, &patient_id).await {
        PatientLookup::Found(name) => name,
        PatientLookup::Unknown => {
            let reason =
                "MediQuo named a patient code that is not a patient of this practice in Hint.";
            return keep(
                state,
                &practice_id,
                reason,
                Some(&incoming.reference),
                &body,
            )
            .await;
        }
        // Hint is unreachable now: keep the visit under the code; the write-back retries.
        PatientLookup::Unavailable => format!("Patient {patient_id}"),
    };
    let professional = incoming
        .result
        .professional
        .as_ref()
        .and_then(|p| p.name.as_deref())
        .map(|n| clean_text(n, 200))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "MediQuo professional".into());
    let recorded = visits::record_completed(
        state,
        &practice_id,
        NewVisit {
            patient_id: &patient_id,
            patient_name: &patient_name,
            user_id: "mediquo",
            user_name: &professional,
            partner: ID,
            launch: visits::to_json(&MediquoLaunch {
                event: kind.clone(),
            }),
        },
        &incoming.reference,
        &visits::to_json(&incoming.result),
    )
    .await?;
    match recorded {
        Some(visit_id) => {
            tracing::info!(%practice_id, %visit_id, event = %kind, "mediquo consultation recorded");
            Ok((
                StatusCode::OK,
                Json(json!({"received": true, "visit_id": visit_id})),
            ))
        }
        None => Ok(duplicate()),
    }
}

fn duplicate() -> Answer {
    (
        StatusCode::OK,
        Json(json!({"received": true, "duplicate": true})),
    )
}

async fn keep(
    state: &AppState,
    practice_id: &PracticeId,
    reason: &str,
    reference: Option<&str>,
    body: &[u8],
) -> Result<Answer, ApiError> {
    unmatched::keep(state, practice_id, ID, reason, reference, body).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"received": true, "matched": false})),
    ))
}

enum PatientLookup {
    Found(String),
    Unknown,
    Unavailable,
}

/// The patient MediQuo named: from the practice's loaded list, else asked of Hint with the
/// practice's token.
async fn patient_name(
    state: &AppState,
    practice_id: &PracticeId,
    patient_id: &str,
) -> PatientLookup {
    // A list loaded for patient search answers without a call (bursts stay under Hint's rate).
    if let Some(patient) = state.patients.cached(practice_id, patient_id) {
        return PatientLookup::Found(clean_text(&patient.display_name(), 200));
    }
    let token = match install::practice_token(state, practice_id).await {
        Ok(Some(token)) => token,
        _ => return PatientLookup::Unavailable,
    };
    let auth = HintAuth {
        practice_id,
        token: &token,
    };
    match state.hint.get_patient(&auth, patient_id).await {
        Ok(patient) => PatientLookup::Found(clean_text(&patient.display_name(), 200)),
        Err(e) if e.is_status(reqwest::StatusCode::NOT_FOUND) => PatientLookup::Unknown,
        Err(e) => {
            tracing::warn!(%practice_id, error = %crate::error::error_chain(&e), "hint patient lookup for a mediquo delivery failed");
            PatientLookup::Unavailable
        }
    }
}
