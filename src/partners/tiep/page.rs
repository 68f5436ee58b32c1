//! Tiep's report on the `clinical_interaction` surface: the form's fields in the form's order,
//! titled as the form titles them; a FHIR bundle is shown as formatted JSON.

use askama::Template;
use serde_json::Value;

use super::{TiepLaunch, TiepResult};
use crate::{
    error::AppError,
    visits::{
        Visit,
        chart_note::{ChartNote, Markdown},
    },
};

#[derive(Template)]
#[template(path = "partners/tiep_result.html")]
struct TiepResultView {
    rows: Vec<(String, String)>,
    bundle: Option<String>,
}

fn show(value: &Value) -> String {
    match value {
        Value::Null => "—".into(),
        Value::String(s) if s.is_empty() => "—".into(),
        Value::String(s) => s.clone(),
        Value::Bool(true) => "Yes".into(),
        Value::Bool(false) => "No".into(),
        other => other.to_string(),
    }
}

/// The report: the form's fields titled as the form titles them, in its order (then any
/// answer the form did not ask), or a FHIR bundle as formatted JSON.
struct Report {
    title: String,
    rows: Vec<(String, String)>,
    bundle: Option<String>,
}

fn report(visit: &Visit) -> Result<Option<Report>, AppError> {
    let Some(result) = visit.result_data::<TiepResult>()? else {
        return Ok(None);
    };
    let launch: TiepLaunch = visit.launch_data()?;
    let title = launch
        .form
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("Visit note")
        .to_string();
    let mut rows = Vec::new();
    let mut bundle = None;
    match result {
        TiepResult::Simple { answers } => {
            let properties = launch.form.get("properties").and_then(Value::as_object);
            if let Some(properties) = properties {
                for (key, field) in properties {
                    let title = field.get("title").and_then(Value::as_str).unwrap_or(key);
                    rows.push((
                        title.to_string(),
                        answers.get(key).map(show).unwrap_or_else(|| "—".into()),
                    ));
                }
            }
            for (key, value) in &answers {
                if !properties.is_some_and(|p| p.contains_key(key)) {
                    rows.push((key.clone(), show(value)));
                }
            }
        }
        TiepResult::Fhir { bundle: b } => {
            bundle = Some(serde_json::to_string_pretty(&b).unwrap_or_default());
        }
    }
    Ok(Some(Report {
        title,
        rows,
        bundle,
    }))
}

pub fn render(visit: &Visit) -> Result<String, AppError> {
    let Some(Report { rows, bundle, .. }) = report(visit)? else {
        return Ok(String::new());
    };
    Ok(TiepResultView { rows, bundle }.render()?)
}

/// The report in the chart: each field of the form and its answer, in the form's order.
pub fn chart_note(visit: &Visit) -> Result<Option<ChartNote>, AppError> {
    let Some(report) = report(visit)? else {
        return Ok(None);
    };
    let mut body = Markdown::new();
    for (title, answer) in &report.rows {
        body.field(title, answer);
    }
    if let Some(bundle) = &report.bundle {
        body.heading("FHIR bundle").paragraph(bundle);
    }
    Ok(Some(ChartNote {
        title: format!("{} (Tiep)", report.title),
        body: body.finish(),
    }))
}
