//! A Haidy visit's page once launched: the deep link, each file's outcome, more files, and the
//! report once in.

use askama::Template;
use serde_json::Value;

use super::{HaidyLaunch, HaidyResult, StoredReport};
use crate::{
    error::AppError,
    hint::Frame,
    visits::{
        Visit,
        chart_note::{ChartNote, Markdown},
    },
};

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

/// The approved consultation in the chart: its report's sections (or text), then each document
/// sent to Haidy and its outcome.
pub fn chart_note(visit: &Visit) -> Result<Option<ChartNote>, AppError> {
    let Some(result) = visit.result_data::<HaidyResult>()? else {
        return Ok(None);
    };
    let launch: HaidyLaunch = visit.launch_data()?;
    let mut body = Markdown::new();
    if let Some(approved) = result.approved_at.as_deref() {
        // As people read a time (minutes, UTC); as Haidy gave it if it does not parse.
        let readable =
            time::OffsetDateTime::parse(approved, &time::format_description::well_known::Rfc3339)
                .map(|at| crate::db::format_ms((at.unix_timestamp_nanos() / 1_000_000) as i64))
                .unwrap_or_else(|_| approved.to_string());
        body.field("Approved", &readable);
    }
    match &result.report {
        StoredReport::Json(json) => {
            for (title, text) in sections_of(json) {
                if title.is_empty() {
                    body.paragraph(&text);
                } else {
                    body.field(&title, &text);
                }
            }
        }
        StoredReport::Text(text) => {
            body.paragraph(text);
        }
    }
    if !launch.uploads.is_empty() {
        body.heading("Documents sent to Haidy")
            .list(
                launch
                    .uploads
                    .iter()
                    .map(|u| match (u.ok, &u.size, &u.reason) {
                        (true, size, _) => format!(
                            "{}: sent{}",
                            u.filename,
                            size.as_deref()
                                .map(|s| format!(" ({s})"))
                                .unwrap_or_default()
                        ),
                        (false, _, reason) => format!(
                            "{}: not sent ({})",
                            u.filename,
                            reason.as_deref().unwrap_or("refused")
                        ),
                    }),
            );
    }
    Ok(Some(ChartNote {
        title: "Haidy consultation report".to_string(),
        body: body.finish(),
    }))
}
