//! The `PollPartner` job: fails a launch that never completed, else asks the visit's partner
//! whether the result is ready (or, once signed, whether the partner changed it).

use serde::{Deserialize, Serialize};

use super::{
    VisitId, VisitState,
    health::{self, Observation},
};
use crate::{
    db::now_ms,
    jobs::{Job, JobError, JobOutcome, RunJob},
    tenancy::PracticeId,
    visits::AppState,
};

/// Ask the partner whether a visit's result is ready (and fail a launch that never
/// completed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollPartner {
    pub visit_id: VisitId,
}

impl Job for PollPartner {
    const KIND: &'static str = "poll_partner";
    const DESCRIPTION: &'static str = "Fetch the visit's result from the partner";

    fn subject(&self) -> String {
        self.visit_id.to_string()
    }

    fn visit_id(&self) -> Option<&VisitId> {
        Some(&self.visit_id)
    }
}

#[async_trait::async_trait]
impl RunJob<AppState> for PollPartner {
    async fn run(
        &self,
        state: &AppState,
        practice_id: &PracticeId,
    ) -> Result<JobOutcome, JobError> {
        run(state, practice_id, &self.visit_id).await
    }
}

impl PollPartner {
    pub fn of(visit_id: &VisitId) -> Self {
        Self {
            visit_id: visit_id.clone(),
        }
    }
}

async fn run(
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
) -> Result<JobOutcome, JobError> {
    let Some(visit) = super::get_latest(state, practice_id, visit_id).await? else {
        return Ok(JobOutcome::Done);
    };
    let partner = state.partners.of(&visit).map_err(JobError::permanent)?;
    if visit.state() == VisitState::Completed && !visit.is_erased() {
        return partner.recheck(state, practice_id, &visit).await;
    }
    if !visit.state().is_open() {
        return Ok(JobOutcome::Done);
    }
    if visit.state() == VisitState::Launching {
        let deadline = visit.created_at + state.settings.launch_timeout.as_millis() as i64;
        if now_ms() < deadline {
            return Ok(JobOutcome::CheckAgainAt(deadline));
        }
        let reason = format!(
            "The launch did not complete: {} was never opened.",
            partner.name()
        );
        super::fail(state, practice_id, &visit.id, &reason).await?;
        return Ok(JobOutcome::Done);
    }
    let outcome = partner.poll(state, practice_id, &visit).await;
    let observed = match &outcome {
        Ok(_) => Some(Observation::Worked),
        Err(error) => Observation::of_job_error(error),
    };
    if let Some(observed) = observed {
        health::record(state, practice_id, partner.id(), &observed).await;
    }
    outcome
}
