//! A MediQuo consultation on the `clinical_interaction` surface: the consultation, each SOAP
//! report, prescriptions, and the patient's allergies, diseases and medications.

use askama::Template;

use super::event::{HistoryItem, MediquoResult};
use crate::{error::AppError, visits::Visit};

#[derive(Template)]
#[template(path = "partners/mediquo_result.html")]
struct MediquoResultView {
    r: MediquoResult,
    /// "Consultation finished" or "Report sent".
    heading: &'static str,
    /// Allergies, diseases, medications: (title, items).
    history: Vec<(&'static str, Vec<HistoryItem>)>,
}

impl MediquoResultView {
    /// Optional text for display.
    fn or_dash<'a>(&self, value: &'a Option<String>) -> &'a str {
        value
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or("—")
    }
}

pub fn render(visit: &Visit) -> Result<String, AppError> {
    let Some(r) = visit.result_data::<MediquoResult>()? else {
        return Ok(String::new());
    };
    let heading = if r.event == super::event::REPORT_SENT {
        "Report sent by MediQuo"
    } else {
        "Consultation finished on MediQuo"
    };
    let history = vec![
        ("Allergies", r.allergies.clone()),
        ("Diseases", r.diseases.clone()),
        ("Medications", r.medications.clone()),
    ];
    Ok(MediquoResultView {
        r,
        heading,
        history,
    }
    .render()?)
}
