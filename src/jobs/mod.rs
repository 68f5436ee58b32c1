//! The durable job queue: every call to an outside party that must not be lost.
//!
//! A job is enqueued in the same transaction as the state change that needs it, claimed with a
//! short lease that a heartbeat renews while the job runs (a crashed worker's job is taken over
//! a lease after its last beat: seconds, not the job's length), retried with doubling
//! back-off and jitter, and never dropped: a job that exhausts its attempts becomes `dead` and
//! is shown on the practice's core page with a retry button.
//!
//! One live job per `dedupe_key`: enqueueing work for a job that is running sets `rerun`, so
//! the job runs once more when it finishes instead of two copies racing each other.
//!
//! What a job does belongs to its owner: a job type implements [`Job`] (its stored kind, its
//! payload, what one job is about, its words for people) and [`RunJob`] (how it runs, with the
//! state it needs), and is registered once in a [`Registry`]. The queue stores kinds and
//! payloads and knows nothing else of them.

mod queue;
mod registry;
mod runner;

use std::{sync::Arc, time::Duration};

use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::Notify;

pub use queue::{
    NewJob, RETRY_AT_ONCE, Retry, Stuck, StuckJob, census, counts, enqueue, enqueue_many, hasten,
    stuck_for_practice,
};
pub use registry::Registry;
pub use runner::{JobRunner, PausedPractices, RunnerStatus};

use crate::{error::AppError, ids::VisitId, tenancy::PracticeId};

/// A kind of job: stored as its `KIND` and its fields as JSON (the payload), so the queue
/// survives upgrades; a stored job this code cannot read dies with the reason, never silently.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stored `kind`. Never change it once live: queued rows carry it.
    const KIND: &'static str;
    /// Words for the core page, where a job that needs a person is listed.
    const DESCRIPTION: &'static str;
    /// A standing job queues itself again whenever it ends (a practice's patient sync): it is
    /// not work left to do ([`counts`]).
    const STANDING: bool = false;

    /// What one job of the kind is about (a visit, a delivery, a practice): one live job per
    /// kind and subject.
    fn subject(&self) -> String;

    /// The stored `dedupe_key`: `{kind}:{subject}`.
    fn dedupe_key(&self) -> String {
        format!("{}:{}", Self::KIND, self.subject())
    }

    /// The visit the job is about, if it is about one (the core page links to it).
    fn visit_id(&self) -> Option<&VisitId> {
        None
    }
}

/// How a job runs, with the state `S` it needs, for the practice it was enqueued for.
#[async_trait::async_trait]
pub trait RunJob<S>: Job {
    async fn run(&self, state: &S, practice_id: &PracticeId) -> Result<JobOutcome, JobError>;
}

/// A stored job of an unknown kind or with a payload its kind does not take.
#[derive(Debug, thiserror::Error)]
#[error("cannot read a stored {kind:?} job")]
pub struct JobDecodeError {
    kind: String,
    #[source]
    source: Option<serde_json::Error>,
}

/// Reads a stored payload back as its job.
pub fn decode<J: Job>(payload: &str) -> Result<J, JobDecodeError> {
    serde_json::from_str(payload).map_err(|source| JobDecodeError {
        kind: J::KIND.into(),
        source: Some(source),
    })
}

/// Where a job stands in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for its `run_at`, or running under a lease.
    Queued,
    /// Out of attempts (or refused for good): shown on the core page until retried.
    Dead,
}

crate::db::text_column!(JobState);

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Dead => "dead",
        }
    }
}

impl std::str::FromStr for JobState {
    type Err = crate::db::UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "queued" => Ok(JobState::Queued),
            "dead" => Ok(JobState::Dead),
            other => Err(crate::db::UnknownValue {
                what: "job state",
                value: other.chars().take(40).collect(),
            }),
        }
    }
}

/// A job a worker holds the lease on.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: String,
    /// The practice the job was enqueued for (verified when it was).
    pub practice_id: PracticeId,
    /// The stored kind and payload; the [`Registry`] reads them.
    pub kind: String,
    pub payload: String,
    pub attempts: i64,
    pub max_attempts: i64,
}

/// How a job run ended well.
#[derive(Debug)]
pub enum JobOutcome {
    Done,
    /// Not ready yet (e.g. the partner is still working): look again at this time (Unix ms)
    /// without counting an attempt.
    CheckAgainAt(i64),
}

/// Anything a job can fail with, boxed with its cause chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How a job run failed. The cause is kept: the job's `last_error` and the log line carry its
/// whole chain.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt later (a party is down, slow or rate limiting; the database busy).
    #[error(transparent)]
    Transient(BoxError),
    /// Retrying cannot help (the request is refused as invalid, the data is gone): dead at once.
    #[error(transparent)]
    Permanent(BoxError),
}

impl JobError {
    pub fn transient(cause: impl Into<BoxError>) -> Self {
        JobError::Transient(cause.into())
    }

    pub fn permanent(cause: impl Into<BoxError>) -> Self {
        JobError::Permanent(cause.into())
    }

    pub fn is_permanent(&self) -> bool {
        matches!(self, JobError::Permanent(_))
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::transient(e)
    }
}

impl From<AppError> for JobError {
    fn from(e: AppError) -> Self {
        JobError::transient(e)
    }
}

/// Wakes idle workers when a job is enqueued in this process.
#[derive(Clone, Default, Debug)]
pub struct JobSignal(Arc<Notify>);

impl JobSignal {
    pub fn wake(&self) {
        self.0.notify_waiters();
    }
    pub(crate) async fn wait(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.0.notified()).await;
    }
}
