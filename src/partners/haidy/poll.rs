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
        let (result, pdf) = fetch(haidy, &connection, &consultation).await?;
        keep_pdf(app, practice_id, visit, &consultation.id, "report_pdf", pdf).await?;
        mark_downloaded(haidy, &connection, &consultation.id).await?;
        visits::complete(
            app,
            practice_id,
            &visit.id,
            ID,
            None,
            &result,
            &Actor::partner(ID.as_str()),
        )
        .await?;
        tracing::info!(%practice_id, visit_id = %visit.id, "haidy report collected");
        // The doctor may approve it again with changes: watched for a while.
        return Ok(recheck_later(haidy, now));
    }
    give_up_or(haidy, app, practice_id, visit, now, check_again).await
}

/// The consultation's report (JSON, else text) and its PDF, if Haidy renders one. Asks
/// nothing to change at Haidy.
async fn fetch(
    haidy: &Haidy,
    connection: &HaidyConnection,
    consultation: &ConsultationSummary,
) -> Result<(HaidyResult, Option<Vec<u8>>), JobError> {
    let token = &connection.api_token;
    let report = match haidy
        .client
        .report(token, &consultation.id)
        .await
        .map_err(job_error)?
    {
        Report::Json(json) => StoredReport::Json(json),
        Report::Text(text) => StoredReport::Text(text),
    };
    // The report as Haidy renders it on paper, for the chart's copy; a report Haidy gives
    // no PDF of (4xx) is recorded by its text alone.
    let pdf = match haidy
        .client
        .report_pdf(token, &consultation.id, files::MAX_FILE)
        .await
    {
        Ok(pdf) => Some(pdf),
        Err(e) if e.is_refusal() => None,
        Err(e) => return Err(job_error(e)),
    };
    let result = HaidyResult {
        consultation_id: consultation.id.clone(),
        approved_at: consultation.approved_at.clone(),
        report,
    };
    Ok((result, pdf))
}

/// Keeps the report's PDF with the visit under `key` (one per approval).
async fn keep_pdf(
    app: &AppState,
    practice_id: &PracticeId,
    visit: &Visit,
    consultation_id: &str,
    key: &str,
    pdf: Option<Vec<u8>>,
) -> Result<(), JobError> {
    let Some(pdf) = pdf else {
        tracing::info!(%practice_id, visit_id = %visit.id, "haidy gave no report PDF");
        return Ok(());
    };
    let name = match key {
        "report_pdf" => format!("haidy-report-{consultation_id}.pdf"),
        _ => format!("haidy-report-{consultation_id}-{key}.pdf"),
    };
    files::keep(
        app,
        practice_id,
        &visit.id,
        key,
        &name,
        "application/pdf",
        &pdf,
    )
    .await?;
    Ok(())
}

async fn mark_downloaded(
    haidy: &Haidy,
    connection: &HaidyConnection,
    consultation_id: &str,
) -> Result<(), JobError> {
    haidy
        .client
        .mark_downloaded(&connection.api_token, consultation_id)
        .await
        .map_err(job_error)
}

fn recheck_later(haidy: &Haidy, now: i64) -> JobOutcome {
    if haidy.settings.corrections_for.is_zero() {
        JobOutcome::Done
    } else {
        JobOutcome::CheckAgainAt(now + haidy.settings.recheck_every.as_millis() as i64)
    }
}

/// The `PollPartner` job of a signed Haidy visit: a doctor who reopens the consultation and
/// approves it again (a later approval time, its report not downloaded since) corrects the
/// visit; the same report again changes nothing. Watched until `corrections_for` after the
/// last approval.
pub async fn recheck(
    haidy: &Haidy,
    app: &AppState,
    practice_id: &PracticeId,
    visit: &Visit,
) -> Result<JobOutcome, JobError> {
    let now = now_ms();
    let Some(signed): Option<HaidyResult> = visit.result_data().map_err(JobError::permanent)?
    else {
        return Ok(JobOutcome::Done);
    };
    let last_approved = signed
        .approved_at
        .as_deref()
        .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
        .map(|at| (at.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(visit.updated_at);
    if now - last_approved > haidy.settings.corrections_for.as_millis() as i64 {
        return Ok(JobOutcome::Done);
    }
    let again = recheck_later(haidy, now);
    let launch: HaidyLaunch = visit.launch_data().map_err(JobError::permanent)?;
    let Some(context_id) = launch.context_id.as_deref() else {
        return Ok(JobOutcome::Done);
    };
    let Some(connection) = connection::load::<HaidyConnection>(app, practice_id).await? else {
        // Haidy is no longer set up for the practice: nothing more can come.
        return Ok(JobOutcome::Done);
    };
    let approved = haidy
        .client
        .approved_consultations(&connection.api_token, context_id)
        .await
        .map_err(job_error)?;
    let Some(consultation) = approved.into_iter().find(|c| {
        c.id == signed.consultation_id
            && !c.downloaded
            && approved_ms(c).is_some_and(|at| at > last_approved)
    }) else {
        return Ok(again);
    };
    let (result, pdf) = fetch(haidy, &connection, &consultation).await?;
    if serde_json::to_value(&result.report).ok() == serde_json::to_value(&signed.report).ok() {
        // Approved again as it was: the record stands.
        mark_downloaded(haidy, &connection, &consultation.id).await?;
        return Ok(again);
    }
    // Kept and corrected before Haidy hears it was downloaded: a crash before the correction
    // commits finds the approval again next time; one after it leaves Haidy unaware that the
    // report was collected, which changes nothing here.
    let pdf_key = format!("report_pdf_{}", approved_ms(&consultation).unwrap_or(now));
    keep_pdf(app, practice_id, visit, &consultation.id, &pdf_key, pdf).await?;
    let correction = visits::versions::correct(
        app,
        practice_id,
        &visit.id,
        ID,
        None,
        &result,
        &Actor::partner(ID.as_str()),
    )
    .await?;
    mark_downloaded(haidy, &connection, &consultation.id).await?;
    tracing::info!(%practice_id, visit_id = %visit.id, ?correction, "haidy consultation approved again");
    Ok(again)
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
