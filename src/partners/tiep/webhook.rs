//! `POST /webhooks/tiep/{practice_id}`: Tiep posts the saved report, signed with the
//! practice's hook secret (`X-Signature-256: sha256=<hex>`). Correlated by `context.visit_id`;
//! the same report twice has one effect.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
};
use serde::Deserialize;
use serde_json::Value;

use super::{ID, Tiep, TiepConnection, TiepResult};
use crate::{
    audit::Actor,
    crypto::verify_hmac_sha256,
    error::{ApiError, AppError},
    ids::ExternalId,
    partners::{connection, unmatched},
    visits::versions::Correction,
    visits::{self, PartnerState, VisitId},
};

#[derive(Debug, Deserialize)]
pub struct TiepReport {
    pub context: ReportContext,
    /// SIMPLE payload type: the form's answers.
    #[serde(default)]
    pub payload: Option<Value>,
    /// HL7_V2 payload type: a FHIR Bundle.
    #[serde(default)]
    pub fhir: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct ReportContext {
    #[serde(default)]
    pub visit_id: Option<ExternalId>,
    #[serde(default)]
    pub patient: Option<Value>,
}

impl TiepReport {
    /// The result we store: the answers (SIMPLE) or the bundle (HL7_V2).
    pub fn into_result(self) -> Result<TiepResult, AppError> {
        match (self.payload, self.fhir) {
            (Some(Value::Object(answers)), _) => Ok(TiepResult::Simple { answers }),
            (_, Some(bundle)) if bundle.is_object() => Ok(TiepResult::Fhir { bundle }),
            _ => Err(AppError::Unprocessable(
                "the report has neither a payload object nor a fhir bundle".into(),
            )),
        }
    }

    /// The patient id the context names, if any.
    pub fn patient_id(&self) -> Option<&str> {
        self.context
            .patient
            .as_ref()?
            .get("identifier")?
            .get(0)?
            .get("value")?
            .as_str()
    }
}

pub async fn receive(
    State(tiep): State<PartnerState<Tiep>>,
    Path(practice_id): Path<ExternalId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let app = &tiep.app;
    let signature = headers.get("x-signature-256").and_then(|v| v.to_str().ok());
    let practice_id = connection::verify_delivery::<TiepConnection>(app, practice_id, |secrets| {
        verify_hmac_sha256(secrets.hook_secret.as_bytes(), signature, &body)
    })
    .await?;

    let report: TiepReport = serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("malformed report: {e}")))?;
    let visit_id: VisitId = report
        .context
        .visit_id
        .clone()
        .ok_or_else(|| AppError::Unprocessable("context.visit_id is missing".into()))?
        .into();
    let patient_id = report.patient_id().map(ExternalId::parse).transpose()?;
    let result = report.into_result()?;
    let applied = visits::complete(
        app,
        &practice_id,
        &visit_id,
        ID,
        patient_id.as_deref(),
        &result,
        &Actor::partner(ID.as_str()),
    )
    .await?;
    if !applied {
        // Not open for this report: a duplicate delivery, or a report we cannot place. Tiep
        // does not retry, so one we cannot place is kept for an admin instead of refused.
        let visit = visits::get(app, &practice_id, &visit_id)
            .await?
            .filter(|v| v.is_of(ID));
        let problem = match &visit {
            None => Some("No Tiep visit of this practice has this visit id."),
            Some(v) if patient_id.as_deref().is_some_and(|p| p != v.patient_id) => {
                Some("The report names another patient than the visit's.")
            }
            Some(_) => None,
        };
        if let Some(reason) = problem {
            unmatched::keep(
                app,
                &practice_id,
                ID,
                reason,
                Some(visit_id.as_str()),
                &body,
            )
            .await?;
            return Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({"received": true, "matched": false})),
            ));
        }
    }
    // Saved again for a signed visit: the same report changes nothing; a different one is a
    // correction (the visit addended, the earlier report kept).
    let corrected = !applied
        && visits::versions::correct(
            app,
            &practice_id,
            &visit_id,
            ID,
            patient_id.as_deref(),
            &result,
            &Actor::partner(ID.as_str()),
        )
        .await?
            == Correction::Addended;
    tracing::info!(%practice_id, %visit_id, applied, corrected, "tiep report received");
    Ok((
        StatusCode::OK,
        Json(serde_json::json!({
            "received": true,
            "duplicate": !applied && !corrected,
            "corrected": corrected,
        })),
    ))
}
