//! The state of the visit lifecycle and everything built on it (partners, pages, the job
//! queue's work): the Hint layer's state, the job queue's wake-up, the result writer, and the
//! registry of partners (each holding its own settings and client). The Hint layer and the
//! core never see this type.

use std::{ops::Deref, sync::Arc};

use super::{completion::Completions, partner::Partners};
use crate::{
    crypto::SecretsCache,
    hint::HintState,
    jobs::{Job, JobOutcome, JobRunner, JobSignal, RunJob, RunnerStatus},
    tenancy::PracticeId,
};

/// One pointer: a request clones its state (more than once, through the middleware), so the
/// parts are shared behind one reference count instead of an atomic add and subtract each per
/// clone (docs/performance.md).
#[derive(Clone, Debug)]
pub struct AppState(Arc<AppParts>);

/// What an [`AppState`] holds (`state.completions`, … read through it; `state.db`,
/// `state.hint`, … through its Hint state).
#[derive(Debug)]
pub struct AppParts {
    /// Configuration, database, secrets, the way out, and Hint (`state.db`, `state.hint`, …
    /// read through it).
    pub hint_state: HintState,
    /// Wakes the job runner after an enqueue.
    pub jobs: JobSignal,
    /// Whether this instance's job runner runs (`/readyz`, metrics).
    pub runner: RunnerStatus,
    /// Stores visit results (`burst.rs`).
    pub completions: Completions,
    /// Stores visits that arrive finished (MediQuo), the same way.
    pub recordings: super::recording::Recordings,
    /// Every partner, with its settings and client.
    pub partners: Partners,
    /// Recently opened partner secrets (webhook verification).
    pub connection_secrets: Arc<SecretsCache>,
    /// Which partners' signed deliveries were recorded as working lately.
    pub health_recent: Arc<super::health::Recent>,
}

impl AppState {
    /// Starts the result writer; `partners` is the registry the partners module builds.
    pub fn new(hint_state: HintState, partners: Partners) -> Self {
        let jobs = JobSignal::default();
        let completions = Completions::spawn(
            hint_state.db.clone(),
            jobs.clone(),
            hint_state.settings.jobs.max_attempts,
            hint_state.settings.results.clone(),
        );
        let recordings = super::recording::Recordings::spawn(
            hint_state.clone(),
            jobs.clone(),
            hint_state.settings.results.clone(),
        );
        Self(Arc::new(AppParts {
            recordings,
            connection_secrets: Arc::new(SecretsCache::new(hint_state.settings.secrets_cache_ttl)),
            health_recent: Arc::default(),
            hint_state,
            jobs,
            runner: RunnerStatus::default(),
            completions,
            partners,
        }))
    }
}

impl AppState {
    /// The job runner for this state's queue: one practice runs one job fewer than Hint's
    /// per-practice call cap, leaving a slot for the clinician waiting in the frame.
    pub fn job_runner(&self) -> JobRunner<AppState> {
        let per_practice = self
            .settings
            .hint
            .max_concurrency_per_practice
            .saturating_sub(1);
        JobRunner::new(
            self.db.clone(),
            self.settings.jobs.clone(),
            self.jobs.clone(),
            per_practice,
            self.clone(),
        )
        .reporting_to(self.runner.clone())
        .passing_over(crate::hint::installations::PRACTICES_NOT_ACTIVE)
    }
}

impl Deref for AppState {
    type Target = AppParts;

    fn deref(&self) -> &AppParts {
        &self.0
    }
}

impl Deref for AppParts {
    type Target = HintState;

    fn deref(&self) -> &HintState {
        &self.hint_state
    }
}

impl AsRef<HintState> for AppState {
    fn as_ref(&self) -> &HintState {
        &self.hint_state
    }
}

/// What the job queue runs for the lifecycle: Hint's write-back and the partner's poll.
#[async_trait::async_trait]
impl RunJob for AppState {
    async fn run(
        &self,
        practice_id: &PracticeId,
        job: &Job,
    ) -> Result<JobOutcome, crate::jobs::JobError> {
        match job {
            Job::SyncInteraction { visit_id } => {
                super::write_back::run(self, practice_id, visit_id).await
            }
            Job::PollPartner { visit_id } => super::poll::run(self, practice_id, visit_id).await,
            Job::SyncPatients { practice_id: named } => {
                use crate::{hint::patient_index, jobs::JobError};
                if named.as_str() != practice_id.as_str() {
                    return Err(JobError::permanent("the job names another practice"));
                }
                match patient_index::sync(self, practice_id).await {
                    Ok(_) => Ok(JobOutcome::CheckAgainAt(
                        crate::db::now_ms() + patient_index::SYNC_EVERY.as_millis() as i64,
                    )),
                    Err(e) => Err(JobError::transient(e)),
                }
            }
            Job::RetryDelivery {
                partner,
                delivery_id,
            } => {
                let partner = self
                    .partners
                    .get(partner)
                    .map_err(crate::jobs::JobError::permanent)?;
                partner.retry_delivery(self, practice_id, delivery_id).await
            }
        }
    }
}
