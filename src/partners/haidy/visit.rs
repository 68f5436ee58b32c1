//! A Haidy visit once launched: its page (deep link, each file's outcome, more files; the
//! report once in) and the poll that collects the approved consultation.

use askama::Template;
use serde_json::Value;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{
    Haidy, HaidyConnection, HaidyLaunch, HaidyResult, ID, StoredReport,
    client::{ConsultationSummary, HaidyError, Report},
};
use crate::{
    audit::Actor,
    db::now_ms,
    error::AppError,
    hint::Frame,
    jobs::{JobError, JobOutcome},
    partners::connection,
    tenancy::PracticeId,
    visits::AppState,
    visits::{self, Visit},
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

fn approved_ms(c: &ConsultationSummary) -> Option<i64> {
    let at = OffsetDateTime::parse(c.approved_at.as_deref()?, &Rfc3339).ok()?;
    Some((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn job_error(e: HaidyError) -> JobError {
    JobError::transient(e)
}

/// The `PollPartner` job: the first approved consultation of the patient's context since the
/// visit started (and not already another visit's) completes it; none within `give_up_after`
/// fails it with a reason.
pub async fn poll(
    haidy: &Haidy,
    app: &AppState,
    practice_id: &PracticeId,
    visit: &Visit,
) -> Result<JobOutcome, JobError> {
    let settings = &haidy.settings;
    let now = now_ms();
    let check_again = JobOutcome::CheckAgainAt(now + settings.poll_every.as_millis() as i64);
    let launch: HaidyLaunch = visit.launch_data().map_err(JobError::permanent)?;
    let Some(context_id) = launch.context_id.as_deref() else {
        // Without our context id there is nothing to match: wait for the give-up.
        return give_up_or(haidy, app, practice_id, visit, now, check_again).await;
    };
    let connection = connection::load::<HaidyConnection>(app, practice_id)
        .await?
        .ok_or_else(|| JobError::transient("Haidy is no longer set up for this practice"))?;
    let mut approved = haidy
        .client
        .approved_consultations(&connection.api_token, context_id)
        .await
        .map_err(job_error)?;
    approved.sort_by_key(|c| approved_ms(c).unwrap_or(i64::MAX));
    for consultation in approved {
        if approved_ms(&consultation).is_some_and(|at| at < visit.created_at) {
            continue;
        }
        let claimed =
            visits::claim_partner_ref(app, practice_id, &visit.id, ID, &consultation.id).await?;
        if !claimed {
            continue;
        }
        let report = match haidy
            .client
            .report(&connection.api_token, &consultation.id)
            .await
        {
            Ok(Report::Json(json)) => StoredReport::Json(json),
            Ok(Report::Text(text)) => StoredReport::Text(text),
            Err(e) => return Err(job_error(e)),
        };
        haidy
            .client
            .mark_downloaded(&connection.api_token, &consultation.id)
            .await
            .map_err(job_error)?;
        visits::complete(
            app,
            practice_id,
            &visit.id,
            ID,
            None,
            &HaidyResult {
                consultation_id: consultation.id.clone(),
                approved_at: consultation.approved_at.clone(),
                report,
            },
            &Actor::partner(ID.as_str()),
        )
        .await?;
        tracing::info!(%practice_id, visit_id = %visit.id, "haidy report collected");
        return Ok(JobOutcome::Done);
    }
    give_up_or(haidy, app, practice_id, visit, now, check_again).await
}

async fn give_up_or(
    haidy: &Haidy,
    app: &AppState,
    practice_id: &PracticeId,
    visit: &Visit,
    now: i64,
    otherwise: JobOutcome,
) -> Result<JobOutcome, JobError> {
    let give_up_after = haidy.settings.give_up_after;
    if now - visit.created_at <= give_up_after.as_millis() as i64 {
        return Ok(otherwise);
    }
    let days = (give_up_after.as_secs() / 86_400).max(1);
    visits::fail(
        app,
        practice_id,
        &visit.id,
        &format!(
            "Haidy approved no consultation for this patient within {days} day(s) of the launch."
        ),
    )
    .await?;
    Ok(JobOutcome::Done)
}
