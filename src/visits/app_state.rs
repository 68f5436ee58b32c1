//! The app's state: the Hint layer's state ([`HintState`]: configuration, database, secrets,
//! the way out, Hint's client, sessions, audit, metrics) with what the visit lifecycle adds on
//! top: the job queue's wake-up and job types, the two burst writers (results, visits that
//! arrive finished), and the registry of partners (each holding its own settings and client).
//!
//! It is defined here, with the lifecycle, because it holds the lifecycle's parts and every
//! layer above (partners, surfaces, the server) runs on it; the Hint layer and the core never
//! see it (Hint's handlers run on anything that lends them a `HintState`). One level of
//! `Deref` reaches its parts, a second the Hint state's: `state.partners`, `state.db`.

use std::{ops::Deref, sync::Arc};

use super::{completion::Completions, partner::Partners};
use crate::{
    crypto::SecretsCache,
    hint::{HintState, installations::NotActive, patient_index::SyncPatients},
    jobs::{JobRunner, JobSignal, Registry, RunnerStatus},
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
    /// The job types the runner runs with this state, by stored kind.
    pub job_kinds: Arc<Registry<AppState>>,
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
    /// Starts the burst writers; `partners` is the registry the partners module builds.
    pub fn new(hint_state: HintState, partners: Partners) -> Self {
        let jobs = JobSignal::default();
        let completions = Completions::spawn(
            hint_state.db.clone(),
            hint_state.audit.clone(),
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
            job_kinds: Arc::new(job_kinds()),
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
            self.job_kinds.clone(),
        )
        .reporting_to(self.runner.clone())
        .passing_over(NotActive)
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

/// Every job type, each declared by its owner: Hint's write-back and the partner's poll (the
/// lifecycle), a kept delivery placed again (the partners' seam), the patient index's sync
/// (the Hint layer).
fn job_kinds() -> Registry<AppState> {
    Registry::new()
        .register::<super::write_back::SyncInteraction>()
        .register::<super::poll::PollPartner>()
        .register::<super::partner::RetryDelivery>()
        .register::<SyncPatients>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ids::{ExternalId, VisitId},
        jobs::{self, Job},
        visits::{partner::RetryDelivery, poll::PollPartner, write_back::SyncInteraction},
    };

    /// Stored as kind and payload (the shapes already in queues) and read back by kind.
    fn stored<J: Job + PartialEq + std::fmt::Debug>(job: J, payload: &str) {
        let registry = job_kinds();
        let stored = serde_json::to_string(&job).unwrap();
        assert_eq!(
            stored,
            payload,
            "{}: the payloads in queues keep their shape",
            J::KIND
        );
        assert_eq!(jobs::decode::<J>(&stored).unwrap(), job);
        assert!(job.dedupe_key().starts_with(&format!("{}:", J::KIND)));
        assert_eq!(registry.description(J::KIND), Some(J::DESCRIPTION));
        assert_eq!(registry.visit_id(J::KIND, &stored).as_ref(), job.visit_id());
    }

    #[test]
    fn every_job_type_is_registered_and_reads_back_what_queues_hold() {
        let visit: VisitId = "vis_1".parse().unwrap();
        stored(SyncInteraction::of(&visit), r#"{"visit_id":"vis_1"}"#);
        stored(PollPartner::of(&visit), r#"{"visit_id":"vis_1"}"#);
        stored(
            RetryDelivery {
                partner: "mediquo".into(),
                delivery_id: "unm_3".into(),
            },
            r#"{"partner":"mediquo","delivery_id":"unm_3"}"#,
        );
        stored(
            SyncPatients {
                practice_id: ExternalId::parse("pra-4").unwrap(),
            },
            r#"{"practice_id":"pra-4"}"#,
        );
        let registry = job_kinds();
        assert_eq!(registry.standing_kinds(), ["sync_patients"]);
        assert_eq!(registry.description("send_fax"), None);
        assert!(jobs::decode::<PollPartner>(r#"{"visit":"vis_1"}"#).is_err());
        assert!(jobs::decode::<PollPartner>("not json").is_err());
        assert!("queued".parse::<jobs::JobState>().is_ok());
        assert!("done".parse::<jobs::JobState>().is_err());
    }
}
