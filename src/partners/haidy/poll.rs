//! The `PollPartner` job of a Haidy visit: the approved consultation's report completes it.

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{
    Haidy, HaidyConnection, HaidyLaunch, HaidyResult, ID, StoredReport,
    client::{ConsultationSummary, HaidyError, Report},
};
use crate::{
    audit::Actor,
    db::now_ms,
    jobs::{JobError, JobOutcome},
    partners::connection,
    tenancy::PracticeId,
    visits::AppState,
    visits::{self, Visit, files},
};

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
        // The report as Haidy renders it on paper, for the chart's copy; a report Haidy gives
        // no PDF of (4xx) is recorded by its text alone.
        match haidy
            .client
            .report_pdf(&connection.api_token, &consultation.id, files::MAX_FILE)
            .await
        {
            Ok(pdf) => {
                let name = format!("haidy-report-{}.pdf", consultation.id);
                files::keep(
                    app,
                    practice_id,
                    &visit.id,
                    "report_pdf",
                    &name,
                    "application/pdf",
                    &pdf,
                )
                .await?;
            }
            Err(e) if e.is_refusal() => {
                tracing::info!(%practice_id, visit_id = %visit.id, "haidy gave no report PDF");
            }
            Err(e) => return Err(job_error(e)),
        }
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
