//! The backstop: a Tiep visit with no webhook after `poll_after` asks Tiep for its session,
//! and completes when the report is saved; after `give_up_after` the visit fails with a reason.

use super::{ID, Tiep, TiepConnection, webhook::TiepReport};
use crate::{
    audit::Actor,
    db::now_ms,
    jobs::{JobError, JobOutcome},
    partners::connection,
    tenancy::PracticeId,
    visits::AppState,
    visits::{self, Visit},
};

pub async fn poll(
    tiep: &Tiep,
    app: &AppState,
    practice_id: &PracticeId,
    visit: &Visit,
) -> Result<JobOutcome, JobError> {
    let settings = &tiep.settings;
    let now = now_ms();
    if now - visit.created_at > settings.give_up_after.as_millis() as i64 {
        let hours = settings.give_up_after.as_secs() / 3600;
        let reason = format!("Tiep sent no saved report within {hours} hours of the launch.");
        visits::fail(app, practice_id, &visit.id, &reason).await?;
        return Ok(JobOutcome::Done);
    }
    let check_again = JobOutcome::CheckAgainAt(now + settings.poll_every.as_millis() as i64);
    let Some(session_id) = visit.partner_ref.as_deref() else {
        return Ok(check_again);
    };
    let connection = connection::load::<TiepConnection>(app, practice_id)
        .await?
        .ok_or_else(|| JobError::transient("Tiep is no longer set up for this practice"))?;
    let session = match tiep
        .client
        .get_session(&connection.api_key, session_id)
        .await
    {
        Ok(session) => session,
        Err(e) if e.is_status(reqwest::StatusCode::NOT_FOUND) => {
            let reason = "Tiep no longer knows this session.";
            visits::fail(app, practice_id, &visit.id, reason).await?;
            return Ok(JobOutcome::Done);
        }
        Err(e) => return Err(JobError::transient(e)),
    };
    if session.status != "report_saved" {
        return Ok(check_again);
    }
    let Some(payload) = session.payload else {
        return Ok(check_again);
    };
    let report: TiepReport = serde_json::from_value(payload).map_err(JobError::permanent)?;
    if report
        .context
        .visit_id
        .as_ref()
        .is_some_and(|id| id.as_str() != visit.id.as_str())
    {
        return Err(JobError::permanent(
            "Tiep's session carries another visit's context",
        ));
    }
    let result = report.into_result().map_err(JobError::permanent)?;
    let tiep = Actor::partner(ID.as_str());
    visits::complete(app, practice_id, &visit.id, ID, None, &result, &tiep).await?;
    tracing::info!(%practice_id, visit_id = %visit.id, "tiep report fetched by polling");
    Ok(JobOutcome::Done)
}
