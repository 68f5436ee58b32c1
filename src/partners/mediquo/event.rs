//! MediQuo's webhook events, decoded permissively (fields may be missing or null) into what we
//! store and show. Ids may come as text or numbers.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `{"type", "occurred_on", "payload"}`.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub occurred_on: Option<i64>,
    #[serde(default)]
    pub payload: Value,
}

/// The events that become visits.
pub const CONSULTATION_FINISHED: &str = "patient_consultation_finished";
pub const REPORT_SENT: &str = "patient_report_sent";

/// Text or a number, read as text (anything else as absent); written as it is.
mod loose_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    }

    pub fn serialize<S: Serializer>(text: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        text.serialize(s)
    }
}

/// A list, or nothing when null or missing.
fn loose_list<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Consultation {
    #[serde(with = "loose_text", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `appointment` or `chat`.
    #[serde(
        rename = "type",
        with = "loose_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<String>,
    #[serde(with = "loose_text", skip_serializing_if = "Option::is_none")]
    pub start_date: Option<String>,
    #[serde(with = "loose_text", skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speciality: Option<Named>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Named {
    #[serde(with = "loose_text", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(with = "loose_text", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Subjective, objective, assessment, plan.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SoapContent {
    #[serde(with = "loose_text", skip_serializing_if = "Option::is_none")]
    pub subjective: Option<String>,
    #[serde(with = "loose_text", skip_serializing_if = "Option::is_none")]
    pub objective: Option<String>,
    #[serde(with = "loose_text", skip_serializing_if = "Option::is_none")]
    pub assessment: Option<String>,
    #[serde(with = "loose_text", skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Report {
    #[serde(with = "loose_text", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(
        rename = "type",
        with = "loose_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub kind: Option<String>,
    pub content: SoapContent,
}

/// An allergy, disease or medication in the patient's history.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct HistoryItem {
    #[serde(with = "loose_text", skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(with = "loose_text", skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(with = "loose_text", skip_serializing_if = "Option::is_none")]
    pub posology: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Prescription {
    #[serde(with = "loose_text", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(deserialize_with = "loose_list", skip_serializing_if = "Vec::is_empty")]
    pub active_substances: Vec<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct PatientPart {
    #[serde(with = "loose_text")]
    pub code: Option<String>,
    #[serde(deserialize_with = "loose_list")]
    pub allergies: Vec<HistoryItem>,
    #[serde(deserialize_with = "loose_list")]
    pub diseases: Vec<HistoryItem>,
    #[serde(deserialize_with = "loose_list")]
    pub medications: Vec<HistoryItem>,
}

/// `patient_consultation_finished`'s payload.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ConsultationFinished {
    pub consultation: Consultation,
    #[serde(deserialize_with = "loose_list")]
    pub reports: Vec<Report>,
    pub patient: PatientPart,
    pub professional: Option<Named>,
    #[serde(deserialize_with = "loose_list")]
    pub prescriptions: Vec<Prescription>,
}

/// `patient_report_sent`'s payload: one report, no report id.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReportSent {
    #[serde(rename = "type", with = "loose_text")]
    pub kind: Option<String>,
    pub content: SoapContent,
    pub patient: PatientPart,
}

/// What a visit stores and the interaction page shows. Absent fields and empty lists are left
/// out when it is stored and read back as their defaults (`event` alone is required, so the
/// defaults are per field): the sealed result is most of what a delivery writes
/// (docs/performance.md).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct MediquoResult {
    /// The event it came from.
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_on: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consultation: Option<Consultation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub professional: Option<Named>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<Report>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prescriptions: Vec<Prescription>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allergies: Vec<HistoryItem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diseases: Vec<HistoryItem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub medications: Vec<HistoryItem>,
}

/// A delivery that becomes a visit: the patient it names, MediQuo's id for it (for
/// deduplication), and the result.
pub struct Incoming {
    pub patient_code: Option<String>,
    /// `consultation:<id>`, or `report:<sha256 of the body>` when MediQuo gives no id.
    pub reference: String,
    pub result: MediquoResult,
}

impl Incoming {
    /// Decodes the payload of an event that becomes a visit; `None` for other types.
    /// `body_hash` is asked for only when the delivery has no id of its own.
    pub fn from_envelope(
        envelope: Envelope,
        body_hash: impl FnOnce() -> String,
    ) -> Result<Option<Self>, String> {
        let Envelope {
            kind,
            occurred_on,
            payload,
        } = envelope;
        let decode_error = |e: serde_json::Error| format!("malformed {kind} payload: {e}");
        match kind.as_str() {
            CONSULTATION_FINISHED => {
                // The payload is taken apart, not copied.
                let p: ConsultationFinished =
                    serde_json::from_value(payload).map_err(decode_error)?;
                let reference = match p.consultation.id.as_deref().filter(|id| !id.is_empty()) {
                    Some(id) => format!("consultation:{id}"),
                    None => format!("report:{}", body_hash()),
                };
                Ok(Some(Self {
                    patient_code: p.patient.code.clone(),
                    reference,
                    result: MediquoResult {
                        event: kind.clone(),
                        occurred_on,
                        consultation: Some(p.consultation),
                        professional: p.professional,
                        reports: p.reports,
                        prescriptions: p.prescriptions,
                        allergies: p.patient.allergies,
                        diseases: p.patient.diseases,
                        medications: p.patient.medications,
                    },
                }))
            }
            REPORT_SENT => {
                let p: ReportSent = serde_json::from_value(payload).map_err(decode_error)?;
                Ok(Some(Self {
                    patient_code: p.patient.code.clone(),
                    reference: format!("report:{}", body_hash()),
                    result: MediquoResult {
                        event: kind.clone(),
                        occurred_on,
                        reports: vec![Report {
                            id: None,
                            kind: p.kind,
                            content: p.content,
                        }],
                        allergies: p.patient.allergies,
                        diseases: p.patient.diseases,
                        medications: p.patient.medications,
                        ..MediquoResult::default()
                    },
                }))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_the_documented_finished_consultation_with_numeric_ids() {
        let envelope: Envelope = serde_json::from_value(json!({
            "type": "patient_consultation_finished", "occurred_on": 1704063600,
            "payload": {
                "consultation": {"id": 42, "type": "appointment", "speciality": {"id": 1, "name": "Medicina General"}},
                "reports": [{"id": "r1", "type": "soap", "content": {"subjective": "S", "plan": "P"}}],
                "patient": {"code": "pat-1", "allergies": null, "medications": [{"name": "m", "posology": "1/d"}]},
                "prescriptions": [{"id": "p1", "active_substances": ["a", "b"]}]
            }
        }))
        .unwrap();
        let incoming = Incoming::from_envelope(envelope, || "hash".into())
            .unwrap()
            .unwrap();
        assert_eq!(incoming.reference, "consultation:42");
        assert_eq!(incoming.patient_code.as_deref(), Some("pat-1"));
        assert_eq!(
            incoming.result.reports[0].content.plan.as_deref(),
            Some("P")
        );
        assert!(incoming.result.allergies.is_empty());
        assert_eq!(
            incoming.result.prescriptions[0].active_substances,
            ["a", "b"]
        );
    }

    #[test]
    fn a_result_is_stored_without_absent_fields_and_reads_back_the_same() {
        let envelope: Envelope = serde_json::from_value(json!({
            "type": "patient_consultation_finished",
            "payload": {
                "consultation": {"id": "c-1", "type": "chat"},
                "reports": [{"id": "r-1", "type": "soap", "content": {"plan": "rest"}}],
                "patient": {"code": "pat-1", "allergies": null}
            }
        }))
        .unwrap();
        let result = Incoming::from_envelope(envelope, || "hash".into())
            .unwrap()
            .unwrap()
            .result;
        let stored = serde_json::to_string(&result).unwrap();
        assert_eq!(
            stored,
            r#"{"event":"patient_consultation_finished","consultation":{"id":"c-1","type":"chat"},"reports":[{"id":"r-1","type":"soap","content":{"plan":"rest"}}]}"#
        );
        let read: MediquoResult = serde_json::from_str(&stored).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), stored);
        assert!(read.prescriptions.is_empty() && read.professional.is_none());
        assert_eq!(read.reports[0].content.plan.as_deref(), Some("rest"));
        assert!(serde_json::from_str::<MediquoResult>(r#"{"reports":[]}"#).is_err());
    }

    #[test]
    fn a_report_without_id_is_keyed_by_its_body_and_other_types_are_not_visits() {
        let report: Envelope = serde_json::from_value(json!({
            "type": "patient_report_sent", "occurred_on": 1,
            "payload": {"type": "soap", "content": {"assessment": "A"}, "patient": {"code": "pat-2"}}
        }))
        .unwrap();
        let incoming = Incoming::from_envelope(report, || "abc".into())
            .unwrap()
            .unwrap();
        assert_eq!(incoming.reference, "report:abc");
        let other: Envelope =
            serde_json::from_value(json!({"type": "patient_consultation_created", "payload": {}}))
                .unwrap();
        assert!(
            Incoming::from_envelope(other, || "x".into())
                .unwrap()
                .is_none()
        );
    }
}
