//! The backstop: a Tiep visit with no webhook after `poll_after` asks Tiep for its session,
//! and completes when the report is saved; after `give_up_after` the visit fails with a reason.

use super::{TiepConnection, webhook::TiepReport};
use crate::{
    db::now_ms,
    jobs::{JobError, JobOutcome},
    partners::Partner,
    state::AppState,
    visits::{self, Visit},
};

pub async fn poll(state: &AppState, visit: &Visit) -> Result<JobOutcome, JobError> {
    let settings = &state.settings.tiep;
    let now = now_ms();
    if now - visit.created_at > settings.give_up_after.as_millis() as i64 {
        let hours = settings.give_up_after.as_secs() / 3600;
        visits::fail(
            state,
            &visit.practice_id,
            &visit.id,
            &format!("Tiep sent no saved report within {hours} hours of the launch."),
        )
        .await?;
        return Ok(JobOutcome::Done);
    }
    let check_again = JobOutcome::CheckAgainAt(now + settings.poll_every.as_millis() as i64);
    let Some(session_id) = visit.partner_ref.as_deref() else {
        return Ok(check_again);
    };
    let connection = TiepConnection::load(state, &visit.practice_id)
        .await?
        .ok_or_else(|| JobError::transient("Tiep is no longer set up for this practice"))?;
    let session = match state
        .tiep
        .get_session(&connection.api_key, session_id)
        .await
    {
        Ok(session) => session,
        Err(e) if e.is_status(reqwest::StatusCode::NOT_FOUND) => {
            visits::fail(
                state,
                &visit.practice_id,
                &visit.id,
                "Tiep no longer knows this session.",
            )
            .await?;
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
        .as_deref()
        .is_some_and(|id| id != visit.id)
    {
        return Err(JobError::permanent(
            "Tiep's session carries another visit's context",
        ));
    }
    let result = report.into_result().map_err(JobError::permanent)?;
    visits::complete(
        state,
        &visit.practice_id,
        &visit.id,
        Partner::Tiep,
        None,
        &result,
    )
    .await?;
    tracing::info!(practice_id = %visit.practice_id, visit_id = %visit.id, "tiep report fetched by polling");
    Ok(JobOutcome::Done)
}
