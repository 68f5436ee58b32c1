//! A Haidy visit's page once launched: the deep link, each file's outcome, more files, and the
//! report once in.

use askama::Template;
use serde_json::Value;

use super::{HaidyLaunch, HaidyResult, StoredReport};
use crate::{error::AppError, hint::Frame, visits::Visit};

#[derive(Template)]
#[template(path = "partners/haidy_visit.html")]
struct VisitView {
    frame: Frame,
    visit_id: String,
    open: bool,
    deep_link: String,
    has_context: bool,
    /// (filename, ok, detail).
    uploads: Vec<(String, bool, String)>,
    /// (title, text) sections of a JSON report.
    sections: Vec<(String, String)>,
    /// A text report.
    text: Option<String>,
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "—".into(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// Sections of a JSON report: `sections: [{title, content}]` when present, else its fields.
fn sections_of(report: &Value) -> Vec<(String, String)> {
    if let Some(sections) = report.get("sections").and_then(Value::as_array) {
        return sections
            .iter()
            .map(|s| {
                (
                    s.get("title").map(text_of).unwrap_or_default(),
                    s.get("content").map(text_of).unwrap_or_default(),
                )
            })
            .collect();
    }
    match report {
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| (k.clone(), text_of(v)))
            .collect(),
        other => vec![(String::new(), text_of(other))],
    }
}

pub fn render(visit: &Visit, frame: &Frame) -> Result<String, AppError> {
    let launch: HaidyLaunch = visit.launch_data()?;
    let result: Option<HaidyResult> = visit.result_data()?;
    let uploads = launch
        .uploads
        .iter()
        .map(|u| {
            let detail = if u.ok { &u.size } else { &u.reason };
            (u.filename.clone(), u.ok, detail.clone().unwrap_or_default())
        })
        .collect();
    let (sections, text) = match result.map(|r| r.report) {
        Some(StoredReport::Json(json)) => (sections_of(&json), None),
        Some(StoredReport::Text(text)) => (vec![], Some(text)),
        None => (vec![], None),
    };
    let view = VisitView {
        frame: frame.clone(),
        visit_id: visit.id.to_string(),
        open: visit.state().is_open(),
        deep_link: launch.deep_link.clone().unwrap_or_default(),
        has_context: launch.context_id.is_some(),
        uploads,
        sections,
        text,
    };
    Ok(view.render()?)
}
