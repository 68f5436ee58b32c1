//! `POST /webhooks/mediquo/{practice_id}`: MediQuo's events. The shared value in
//! `x-webhook-signature` is compared in constant time before the body is read. Finished
//! consultations and sent reports become completed visits (one per consultation id, or per
//! body when MediQuo gives none); other types are acknowledged and ignored. A signed delivery
//! we cannot place (no patient code, a code Hint does not know for this practice, an off-shape
//! payload) is kept for admins, never dropped. One whose patient Hint cannot confirm now (Hint
//! down, no token) is never stored as this practice's visit on MediQuo's word: it waits,
//! kept, and the queue places it once Hint confirms (`retry`).

use axum::{
    Extension, Json,
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
    audit::Actor,
    caller::ClientAddr,
    crypto::{SignatureError, sha256_hex},
    error::{ApiError, AppError},
    hint::{HintAuth, installations, patient_index},
    ids::{ExternalId, clean_text},
    jobs::{JobError, JobOutcome},
    partners::{connection, unmatched},
    tenancy::PracticeId,
    visits::AppState,
    visits::versions::Correction,
    visits::{self, NewVisit, PartnerState, VisitId},
};

type Answer = (StatusCode, Json<Value>);

pub async fn receive(
    State(mediquo): State<PartnerState<MediQuo>>,
    Path(practice_id): Path<ExternalId>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Answer, ApiError> {
    let state = &mediquo.app;
    let presented = headers.get("x-webhook-signature").map(|v| v.as_bytes());
    let client = client.map(|Extension(ClientAddr(ip))| ip);
    let practice_id =
        connection::verify_delivery::<MediquoConnection>(state, practice_id, |secrets| {
            match presented {
                None | Some(b"") => Err(SignatureError::Missing),
                Some(value) if !secrets.accepts(value) => Err(SignatureError::Mismatch),
                Some(_) if !secrets.admits(client) => Err(SignatureError::Source),
                Some(_) => Ok(()),
            }
        })
        .await?;
    let kept = || json!({"received": true, "matched": false});
    match place(state, &practice_id, &body).await? {
        Placed::Recorded(visit_id) => Ok((
            StatusCode::OK,
            Json(json!({"received": true, "visit_id": visit_id})),
        )),
        Placed::Duplicate => Ok((
            StatusCode::OK,
            Json(json!({"received": true, "duplicate": true})),
        )),
        Placed::Corrected(visit_id) => Ok((
            StatusCode::OK,
            Json(json!({"received": true, "corrected": true, "visit_id": visit_id})),
        )),
        Placed::Ignored => Ok((
            StatusCode::OK,
            Json(json!({"received": true, "ignored": true})),
        )),
        Placed::Unplaceable { reason, reference } => {
            unmatched::keep(
                state,
                &practice_id,
                ID,
                &reason,
                reference.as_deref(),
                &body,
            )
            .await?;
            Ok((StatusCode::ACCEPTED, Json(kept())))
        }
        Placed::Unconfirmed { reference } => {
            let reference = Some(reference.as_str());
            unmatched::keep_to_retry(state, &practice_id, ID, UNCONFIRMED, reference, &body)
                .await?;
            Ok((StatusCode::ACCEPTED, Json(kept())))
        }
    }
}

/// Why a delivery waits while its patient cannot be confirmed.
const UNCONFIRMED: &str = "Hint could not confirm the patient yet (Hint did not answer, or \
     Chartbridge has no Hint access for this practice). Chartbridge tries again by itself.";

/// Tries again to place a delivery kept because its patient could not be confirmed
/// (`RetryDelivery`): placed, it leaves the list; still unconfirmed, the job retries.
pub async fn retry(
    state: &AppState,
    practice_id: &PracticeId,
    delivery_id: &str,
) -> Result<JobOutcome, JobError> {
    let Some(body) = unmatched::open_body(state, practice_id, delivery_id).await? else {
        // Dismissed by an admin meanwhile, or gone: nothing to place.
        return Ok(JobOutcome::Done);
    };
    match place(state, practice_id, &body).await? {
        Placed::Recorded(_) | Placed::Corrected(_) | Placed::Duplicate | Placed::Ignored => {
            unmatched::placed(state, practice_id, delivery_id).await?;
            tracing::info!(%practice_id, delivery_id, "a kept mediquo delivery was placed");
            Ok(JobOutcome::Done)
        }
        Placed::Unplaceable { reason, .. } => {
            unmatched::explain(state, practice_id, delivery_id, &reason).await?;
            Ok(JobOutcome::Done)
        }
        Placed::Unconfirmed { .. } => Err(JobError::transient(
            "the patient of a kept MediQuo delivery could not be confirmed with Hint yet",
        )),
    }
}

/// Where a verified delivery ends up.
enum Placed {
    Recorded(VisitId),
    /// The consultation again, with changes: the visit is addended.
    Corrected(VisitId),
    Duplicate,
    Ignored,
    /// It cannot be placed: kept for admins, with the reason.
    Unplaceable {
        reason: String,
        reference: Option<String>,
    },
    /// Its patient cannot be confirmed now: kept, and tried again.
    Unconfirmed {
        reference: String,
    },
}

/// Places a verified delivery: a completed visit for a patient Hint confirms.
async fn place(
    state: &AppState,
    practice_id: &PracticeId,
    body: &[u8],
) -> Result<Placed, AppError> {
    let unplaceable = |reason: &str, reference: Option<&str>| Placed::Unplaceable {
        reason: reason.to_string(),
        reference: reference.map(String::from),
    };
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| AppError::BadRequest(format!("malformed event: {e}")))?;
    let kind = clean_text(&envelope.kind, 80);
    let incoming = match Incoming::from_envelope(envelope, || sha256_hex(body)) {
        Ok(Some(incoming)) => incoming,
        Ok(None) => {
            tracing::info!(%practice_id, event = %kind, "mediquo event ignored");
            return Ok(Placed::Ignored);
        }
        Err(problem) => return Ok(unplaceable(&problem, None)),
    };
    let Some(code) = incoming.patient_code.as_deref().filter(|c| !c.is_empty()) else {
        return Ok(unplaceable(
            "The delivery names no patient (patient.code is missing).",
            None,
        ));
    };
    let Ok(patient_id) = ExternalId::parse(code) else {
        return Ok(unplaceable("patient.code is not a Hint patient id.", None));
    };
    // A patient from the practice's loaded list answers without a call (bursts stay under
    // Hint's rate, and the insert below stores a reference once). One Hint must confirm is
    // first looked for among the stored deliveries: a repeat needs no call.
    // Not in this instance's memory (it keeps a few dozen practices' lists): the practice's
    // stored index, one row, before Hint.
    let cached = match state.patients.cached(practice_id, &patient_id) {
        Some(patient) => Some(patient),
        None => patient_index::load_one(state, practice_id, patient_id.as_str()).await?,
    };
    let patient_name = match cached {
        Some(patient) => clean_text(&patient.display_name(), 200),
        None => {
            if visits::find_by_partner_ref(state, practice_id, ID, &incoming.reference)
                .await?
                .is_some()
            {
                return again(state, practice_id, &patient_id, &incoming).await;
            }
            match patient_from_hint(state, practice_id, &patient_id).await {
                PatientLookup::Found(name) => name,
                PatientLookup::Unknown => {
                    return Ok(unplaceable(
                        "MediQuo named a patient code that is not a patient of this practice in Hint.",
                        Some(&incoming.reference),
                    ));
                }
                // Not stored as this practice's visit on MediQuo's word alone.
                PatientLookup::Unavailable => {
                    return Ok(Placed::Unconfirmed {
                        reference: incoming.reference,
                    });
                }
            }
        }
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
        practice_id,
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
    Ok(match recorded {
        Some(visit_id) => {
            tracing::info!(%practice_id, %visit_id, event = %kind, "mediquo consultation recorded");
            Placed::Recorded(visit_id)
        }
        None => again(state, practice_id, &patient_id, &incoming).await?,
    })
}

/// A consultation already recorded, delivered again: the same changes nothing; with changes
/// (MediQuo sent it again corrected) it addends the visit.
async fn again(
    state: &AppState,
    practice_id: &PracticeId,
    patient_id: &str,
    incoming: &Incoming,
) -> Result<Placed, AppError> {
    let Some(visit) =
        visits::find_by_partner_ref(state, practice_id, ID, &incoming.reference).await?
    else {
        // Stored as a receipt a moment ago and not filed yet: the first one stands.
        return Ok(Placed::Duplicate);
    };
    let correction = visits::versions::correct(
        state,
        practice_id,
        &visit.id,
        ID,
        Some(patient_id),
        &incoming.result,
        &Actor::partner(ID.as_str()),
    )
    .await?;
    Ok(match correction {
        Correction::Addended => Placed::Corrected(visit.id),
        Correction::Identical | Correction::NotCorrectable => Placed::Duplicate,
    })
}

enum PatientLookup {
    Found(String),
    Unknown,
    Unavailable,
}

/// The patient MediQuo named, asked of Hint with the practice's token.
async fn patient_from_hint(
    state: &AppState,
    practice_id: &PracticeId,
    patient_id: &str,
) -> PatientLookup {
    let token = match installations::practice_token(state, practice_id).await {
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
