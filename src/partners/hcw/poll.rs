//! The `PollPartner` job of an HCW@Home visit: the closed consultation completes it; none in
//! time fails it with a reason. Also how a closed consultation is stored (`page.rs` finishes
//! with it too).

use super::{HcwAtHome, HcwConnection, HcwLaunch, HcwResult, ID, client::Consultation};
use crate::{
    audit::Actor,
    db::now_ms,
    error::AppError,
    jobs::{JobError, JobOutcome},
    partners::connection,
    tenancy::PracticeId,
    visits::AppState,
    visits::{self, Visit},
};

/// Completes the visit with the closed consultation; `actor` closed it (the clinician
/// finishing it, or HCW@Home, as polled).
pub(super) async fn store(
    app: &AppState,
    practice_id: &PracticeId,
    visit: &Visit,
    consultation: &Consultation,
    actor: &Actor,
) -> Result<bool, AppError> {
    let result = HcwResult {
        consultation: consultation.clone(),
    };
    visits::complete(app, practice_id, &visit.id, ID, None, &result, actor).await
}

/// The `PollPartner` job: a closed consultation completes the visit; none after
/// `give_up_after` (from the launch or the scheduled time) fails it with a reason.
pub async fn poll(
    hcw: &HcwAtHome,
    app: &AppState,
    practice_id: &PracticeId,
    visit: &Visit,
) -> Result<JobOutcome, JobError> {
    let settings = &hcw.settings;
    let now = now_ms();
    let mut launch: HcwLaunch = visit.launch_data().map_err(JobError::permanent)?;
    let scheduled = launch
        .scheduled_for
        .as_deref()
        .and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(0);
    let deadline = visit.created_at.max(scheduled) + settings.give_up_after.as_millis() as i64;
    let check_again = JobOutcome::CheckAgainAt(now + settings.poll_every.as_millis() as i64);
    let Some(invite_id) = visit.partner_ref.as_deref() else {
        return Ok(check_again);
    };
    let connection = connection::load::<HcwConnection>(app, practice_id)
        .await?
        .ok_or_else(|| JobError::transient("HCW@Home is no longer set up for this practice"))?;
    let consultation = hcw
        .client
        .consultation(practice_id, &connection, invite_id)
        .await;
    match consultation {
        Ok(Some(c)) if c.is_closed() => {
            store(app, practice_id, visit, &c, &Actor::partner(ID.as_str())).await?;
            tracing::info!(%practice_id, visit_id = %visit.id, "hcw consultation found closed by polling");
            Ok(JobOutcome::Done)
        }
        Ok(_) if now > deadline => {
            let hours = settings.give_up_after.as_secs() / 3600;
            let reason = format!(
                "No HCW@Home consultation was closed within {hours} hours. If it took place, close it in HCW@Home; the result is still collected."
            );
            visits::fail(app, practice_id, &visit.id, &reason).await?;
            Ok(JobOutcome::Done)
        }
        Ok(found) => {
            // Let the open visit page say where the call stands (patient waiting, in a call).
            let status = found.and_then(|c| c.status);
            if launch.consultation_status != status {
                launch.consultation_status = status;
                visits::update_launch(app, practice_id, &visit.id, &launch).await?;
            }
            Ok(check_again)
        }
        Err(e) if e.is_refused_address() => {
            // Asking again would call the same address: the visit ends here, with the reason.
            tracing::warn!(%practice_id, visit_id = %visit.id, "hcw address refused; polling stopped");
            visits::fail(app, practice_id, &visit.id, &e.for_clinician()).await?;
            Ok(JobOutcome::Done)
        }
        Err(e) => Err(JobError::transient(e)),
    }
}
