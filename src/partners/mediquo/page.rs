//! A MediQuo consultation on the `clinical_interaction` surface: the consultation, each SOAP
//! report, prescriptions, and the patient's allergies, diseases and medications.

use askama::Template;

use super::event::{HistoryItem, MediquoResult};
use crate::{
    error::AppError,
    visits::{
        Visit,
        chart_note::{ChartNote, Markdown},
    },
};

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

/// The consultation in the chart: when and with whom, each SOAP report, the prescriptions, and
/// the patient's allergies, diseases and medications as MediQuo holds them.
pub fn chart_note(visit: &Visit) -> Result<Option<ChartNote>, AppError> {
    let Some(r) = visit.result_data::<MediquoResult>()? else {
        return Ok(None);
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut body = Markdown::new();
    if let Some(c) = &r.consultation {
        let speciality = c.speciality.as_ref().and_then(|s| s.name.clone());
        let kind = [text(&c.kind), speciality.unwrap_or_default()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        body.field("Consultation", &kind)
            .field("From", &text(&c.start_date))
            .field("To", &text(&c.end_date));
    }
    if let Some(p) = &r.professional {
        body.field("Professional", &text(&p.name));
    }
    for (i, report) in r.reports.iter().enumerate() {
        let heading = if r.reports.len() > 1 {
            format!("SOAP report {}", i + 1)
        } else {
            "SOAP report".to_string()
        };
        let soap = &report.content;
        body.heading(&heading)
            .field("Subjective", &text(&soap.subjective))
            .field("Objective", &text(&soap.objective))
            .field("Assessment", &text(&soap.assessment))
            .field("Plan", &text(&soap.plan));
    }
    if !r.prescriptions.is_empty() {
        body.heading("Prescriptions")
            .list(r.prescriptions.iter().map(|p| {
                if p.active_substances.is_empty() {
                    "(no active substance listed)".to_string()
                } else {
                    p.active_substances.join(", ")
                }
            }));
    }
    for (title, items) in [
        ("Allergies", &r.allergies),
        ("Diseases", &r.diseases),
        ("Medications", &r.medications),
    ] {
        if items.is_empty() {
            continue;
        }
        body.heading(title).list(items.iter().map(|item| {
            let mut line = text(&item.name);
            if let Some(d) = item.description.as_deref().filter(|d| !d.is_empty()) {
                line.push_str(&format!(": {d}"));
            }
            if let Some(p) = item.posology.as_deref().filter(|p| !p.is_empty()) {
                line.push_str(&format!(" ({p})"));
            }
            line
        }));
    }
    let title = if r.event == super::event::REPORT_SENT {
        "MediQuo report"
    } else {
        "MediQuo consultation"
    };
    Ok(Some(ChartNote {
        title: title.to_string(),
        body: body.finish(),
    }))
}
