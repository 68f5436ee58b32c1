//! The partner tools a clinician can launch, and what is common to them.
//!
//! Partners differ in shape, so the common ground is small and explicit:
//! - `connection`: each partner's per-practice settings, secrets sealed at rest;
//! - `launch`: start a visit and answer where to send the clinician (Tiep: a tokenised URL);
//! - results come back by webhook (each partner's own route), by `poll` (the `PollPartner`
//!   job), or by the clinician finishing the visit in our frame;
//! - each partner renders its own result on the `clinical_interaction` surface.
//!
//! Adding a partner is one module here plus its arm in the `match`es below.

pub mod connection;
pub mod tiep;
pub mod unmatched;

use axum::Router;
use url::Url;

use crate::{
    db::now_ms,
    error::AppError,
    hint::{PracticeSession, client::Patient},
    jobs::{ClaimedJob, JobError, JobOutcome},
    state::AppState,
    visits::{Visit, VisitState},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partner {
    Tiep,
}

impl Partner {
    pub const ALL: [Partner; 1] = [Partner::Tiep];

    pub fn as_str(self) -> &'static str {
        match self {
            Partner::Tiep => "tiep",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tiep" => Some(Partner::Tiep),
            _ => None,
        }
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Partner::Tiep => "Tiep scribe",
        }
    }

    /// The button a clinician clicks.
    pub fn launch_label(self) -> &'static str {
        match self {
            Partner::Tiep => "Start Tiep scribe",
        }
    }
}

/// Routes partners call (webhooks).
pub fn router() -> Router<AppState> {
    Router::new().merge(tiep::router())
}

/// Starts a visit with `partner` for `patient`; answers the URL to send the clinician to.
pub async fn launch(
    state: &AppState,
    session: &PracticeSession,
    partner: Partner,
    patient: &Patient,
) -> Result<Url, AppError> {
    match partner {
        Partner::Tiep => tiep::launch::launch(state, session, patient).await,
    }
}

/// The `PollPartner` job: asks the visit's partner whether the result is ready.
pub async fn poll(state: &AppState, job: &ClaimedJob) -> Result<JobOutcome, JobError> {
    let visit_id = job.payload_str("visit_id")?;
    let Some(visit) = crate::visits::get_latest(state, &job.practice_id, visit_id).await? else {
        return Ok(JobOutcome::Done);
    };
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
            visit.partner_name()
        );
        crate::visits::fail(state, &job.practice_id, &visit.id, &reason).await?;
        return Ok(JobOutcome::Done);
    }
    match visit.partner() {
        Some(Partner::Tiep) => tiep::poll::poll(state, &visit).await,
        None => Err(JobError::permanent(format!(
            "unknown partner {}",
            visit.partner
        ))),
    }
}

/// The partner's result as HTML for the `clinical_interaction` surface.
pub fn render_result(visit: &Visit) -> Result<String, AppError> {
    match visit.partner() {
        Some(Partner::Tiep) => tiep::result::render(visit),
        None => Ok(String::new()),
    }
}
