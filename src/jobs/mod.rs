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

mod runner;

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use tokio::sync::Notify;

pub use runner::{JobRunner, RunJob, RunnerStatus};

use crate::{
    audit::{self, Action, Actor, Entry},
    db::{Db, new_id, now_ms},
    error::AppError,
    ids::{ExternalId, VisitId},
    tenancy::PracticeId,
};

/// The kind of the standing job (always queued again when it ends).
const STANDING: &str = "sync_patients";

/// A job: what to do and its data. Stored as `kind` (the variant's name) and `payload` (its
/// fields as JSON), so the queue survives upgrades; a row this code cannot read fails loudly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "payload", rename_all = "snake_case")]
pub enum Job {
    /// Make Hint's partner interaction match the visit (create, then patch).
    SyncInteraction { visit_id: VisitId },
    /// Ask the partner whether a visit's result is ready (and fail a launch that never
    /// completed).
    PollPartner { visit_id: VisitId },
    /// Try again to place a partner delivery kept because its patient could not be confirmed
    /// (Hint was unreachable, or the practice's token missing).
    RetryDelivery {
        partner: String,
        delivery_id: String,
    },
    /// Fill the practice's patient index from Hint's list, then keep it in step with Hint's
    /// changes (`updated_at[gt]`), again and again. `practice_id` is the job's own practice,
    /// repeated because the dedupe key (one such job per practice) is made from the job alone;
    /// a job whose two disagree dies.
    SyncPatients { practice_id: ExternalId },
}

impl Job {
    /// The stored `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Job::SyncInteraction { .. } => "sync_interaction",
            Job::PollPartner { .. } => "poll_partner",
            Job::RetryDelivery { .. } => "retry_delivery",
            Job::SyncPatients { .. } => STANDING,
        }
    }

    /// One live job per key: enqueueing the same work again reschedules it.
    pub fn dedupe_key(&self) -> String {
        match self {
            Job::SyncInteraction { visit_id } | Job::PollPartner { visit_id } => {
                format!("{}:{visit_id}", self.kind())
            }
            Job::RetryDelivery { delivery_id, .. } => format!("{}:{delivery_id}", self.kind()),
            Job::SyncPatients { practice_id } => format!("{}:{practice_id}", self.kind()),
        }
    }

    /// The visit the job is about, if it is about one.
    pub fn visit_id(&self) -> Option<&VisitId> {
        match self {
            Job::SyncInteraction { visit_id } | Job::PollPartner { visit_id } => Some(visit_id),
            Job::RetryDelivery { .. } | Job::SyncPatients { .. } => None,
        }
    }

    /// Words for the core page.
    pub fn describe(&self) -> &'static str {
        match self {
            Job::SyncInteraction { .. } => "Write the visit to the Hint chart",
            Job::PollPartner { .. } => "Fetch the visit's result from the partner",
            Job::RetryDelivery { .. } => "Place a kept partner delivery with its patient",
            Job::SyncPatients { .. } => "Read the practice's patients from Hint for search",
        }
    }

    /// The stored `payload`.
    fn payload(&self) -> String {
        let mut tagged = serde_json::to_value(self).expect("a job serialises");
        tagged["payload"].take().to_string()
    }

    /// Reads a stored job back.
    pub fn decode(kind: &str, payload: &str) -> Result<Job, JobDecodeError> {
        let payload: serde_json::Value =
            serde_json::from_str(payload).map_err(|source| JobDecodeError {
                kind: kind.chars().take(40).collect(),
                source,
            })?;
        serde_json::from_value(serde_json::json!({"kind": kind, "payload": payload})).map_err(
            |source| JobDecodeError {
                kind: kind.chars().take(40).collect(),
                source,
            },
        )
    }
}

/// A stored job of an unknown kind or with a payload its kind does not take.
#[derive(Debug, thiserror::Error)]
#[error("cannot read a stored {kind:?} job")]
pub struct JobDecodeError {
    kind: String,
    #[source]
    source: serde_json::Error,
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

/// A job to enqueue.
pub struct NewJob<'a> {
    pub practice_id: &'a PracticeId,
    pub job: Job,
    /// Unix ms; `now_ms()` for "as soon as possible".
    pub run_at: i64,
}

/// A job a worker holds the lease on.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: String,
    /// The practice the job was enqueued for (verified when it was).
    pub practice_id: PracticeId,
    /// The stored kind, for logs.
    pub kind: String,
    /// The job, or why its row cannot be read (it then dies with that reason).
    pub job: Result<Job, String>,
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

/// Enqueues `job` on `conn` (pass the business transaction). Call `state.jobs.wake()` after
/// the commit so a worker picks it up at once.
pub async fn enqueue(
    conn: &mut AnyConnection,
    max_attempts: i64,
    job: NewJob<'_>,
) -> Result<(), sqlx::Error> {
    enqueue_many(conn, max_attempts, std::slice::from_ref(&job)).await
}

/// Enqueues several jobs in one statement. Their dedupe keys must differ. A job already queued
/// keeps the earlier of the two times; one running is asked to run once more; a dead one is
/// revived.
pub async fn enqueue_many(
    conn: &mut AnyConnection,
    max_attempts: i64,
    jobs: &[NewJob<'_>],
) -> Result<(), sqlx::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    // Per row: id, practice, kind, dedupe key, payload, run_at; then shared values.
    let n = jobs.len() * 6;
    let (max_attempts_p, now_p, queued_p, dead_p) = (n + 1, n + 2, n + 3, n + 4);
    let rows: Vec<String> = (0..jobs.len())
        .map(|i| {
            let p = i * 6;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${queued_p}, 0, ${max_attempts_p}, ${}, NULL, NULL, 0, NULL, ${now_p}, ${now_p})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO jobs (id, practice_id, kind, dedupe_key, payload, state, attempts, max_attempts, run_at, \
         locked_by, locked_until, rerun, last_error, created_at, updated_at) VALUES {} \
         ON CONFLICT (dedupe_key) DO UPDATE SET \
           rerun = CASE WHEN jobs.locked_by IS NOT NULL THEN 1 ELSE jobs.rerun END, \
           attempts = CASE WHEN jobs.state = ${dead_p} THEN 0 ELSE jobs.attempts END, \
           state = ${queued_p}, \
           run_at = CASE WHEN excluded.run_at < jobs.run_at OR jobs.state = ${dead_p} THEN excluded.run_at ELSE jobs.run_at END, \
           payload = excluded.payload, \
           updated_at = excluded.updated_at",
        rows.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for new in jobs {
        query = query
            .bind(new_id("job"))
            .bind(new.practice_id)
            .bind(new.job.kind())
            .bind(new.job.dedupe_key())
            .bind(new.job.payload())
            .bind(new.run_at);
    }
    query
        .bind(max_attempts)
        .bind(now)
        .bind(JobState::Queued)
        .bind(JobState::Dead)
        .execute(conn)
        .await?;
    Ok(())
}

/// Brings `job` forward to run now when it is queued for later than `not_after` (Unix ms),
/// is not running and is not backing off after a failure. Answers whether it did; call
/// `state.jobs.wake()` then.
pub async fn hasten(
    db: &Db,
    practice_id: &PracticeId,
    job: &Job,
    not_after: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET run_at = $1, updated_at = $1 \
         WHERE practice_id = $2 AND dedupe_key = $3 AND state = $4 AND attempts = 0 \
         AND locked_by IS NULL AND run_at > $5",
    )
    .bind(now_ms())
    .bind(practice_id)
    .bind(job.dedupe_key())
    .bind(JobState::Queued)
    .bind(not_after)
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// A job that needs a person's attention: dead, or failing repeatedly.
#[derive(Debug, Clone)]
pub struct StuckJob {
    pub id: String,
    /// The job's kind as stored (`sync_interaction`, …).
    pub kind: String,
    pub description: String,
    pub visit_id: Option<VisitId>,
    pub state: JobState,
    pub attempts: i64,
    pub last_error: String,
    pub updated_at: i64,
}

/// This practice's dead jobs and jobs that failed at least three times.
pub async fn stuck_for_practice(
    db: &Db,
    practice_id: &PracticeId,
) -> Result<Vec<StuckJob>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, kind, payload, state, attempts, last_error, updated_at FROM jobs \
         WHERE practice_id = $1 AND (state = $2 OR (attempts >= 3 AND last_error IS NOT NULL)) \
         ORDER BY updated_at DESC LIMIT 50",
    )
    .bind(practice_id)
    .bind(JobState::Dead)
    .fetch_all(db.reader())
    .await?;
    rows.into_iter()
        .map(|row| {
            let kind: String = row.try_get("kind")?;
            let payload: String = row.try_get("payload")?;
            let job = Job::decode(&kind, &payload).ok();
            Ok(StuckJob {
                id: row.try_get("id")?,
                kind: kind.clone(),
                description: job
                    .as_ref()
                    .map(Job::describe)
                    .unwrap_or("Work this version cannot read")
                    .to_string(),
                visit_id: job.and_then(|j| j.visit_id().cloned()),
                state: row.try_get("state")?,
                attempts: row.try_get("attempts")?,
                last_error: row
                    .try_get::<Option<String>, _>("last_error")?
                    .unwrap_or_default(),
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect()
}

/// Puts a dead job of this practice back in the queue. False when there is none by that id.
pub async fn retry_dead(
    db: &Db,
    signal: &JobSignal,
    practice_id: &PracticeId,
    job_id: &str,
    actor: &Actor,
) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    let retried: Option<(String, String)> = sqlx::query_as(
        "UPDATE jobs SET state = $1, attempts = 0, run_at = $2, updated_at = $2 \
         WHERE id = $3 AND practice_id = $4 AND state = $5 RETURNING kind, payload",
    )
    .bind(JobState::Queued)
    .bind(now)
    .bind(job_id)
    .bind(practice_id)
    .bind(JobState::Dead)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((kind, payload)) = retried else {
        return Ok(false);
    };
    let job = Job::decode(&kind, &payload).ok();
    let mut entry = Entry::new(Action::JobRetried).detail(&kind);
    if let Some(visit_id) = job.as_ref().and_then(Job::visit_id) {
        entry = entry.visit(visit_id.as_str());
    }
    audit::record(&mut tx, practice_id, actor, entry).await?;
    tx.commit().await?;
    signal.wake();
    Ok(true)
}

/// Jobs by kind and state, over every practice (for operators' metrics).
pub async fn census(db: &Db) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    let rows = sqlx::query("SELECT kind, state, COUNT(*) AS n FROM jobs GROUP BY kind, state")
        .fetch_all(db.reader())
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("kind")?,
                row.try_get("state")?,
                row.try_get("n")?,
            ))
        })
        .collect()
}

/// Work left to do, as (queued, dead) jobs: every job but the standing ones that reschedule
/// themselves for ever (a practice's patient sync).
pub async fn counts(db: &Db) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COALESCE(SUM(CASE WHEN state = $1 THEN 1 ELSE 0 END), 0) AS queued, \
         COALESCE(SUM(CASE WHEN state = $2 THEN 1 ELSE 0 END), 0) AS dead FROM jobs WHERE kind <> $3",
    )
    .bind(JobState::Queued)
    .bind(JobState::Dead)
    .bind(STANDING)
    .fetch_one(db.reader())
    .await?;
    Ok((row.try_get("queued")?, row.try_get("dead")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_stored_as_kind_and_payload_and_read_back() {
        for job in [
            Job::SyncInteraction {
                visit_id: "vis_1".parse().unwrap(),
            },
            Job::PollPartner {
                visit_id: "vis_2".parse().unwrap(),
            },
            Job::RetryDelivery {
                partner: "mediquo".into(),
                delivery_id: "unm_3".into(),
            },
            Job::SyncPatients {
                practice_id: ExternalId::parse("pra-4").unwrap(),
            },
        ] {
            let (kind, payload) = (job.kind(), job.payload());
            assert_eq!(Job::decode(kind, &payload).unwrap(), job);
            assert!(job.dedupe_key().starts_with(&format!("{kind}:")));
        }
        assert_eq!(
            Job::SyncInteraction {
                visit_id: "vis_1".parse().unwrap()
            }
            .payload(),
            r#"{"visit_id":"vis_1"}"#,
            "the payload rows already in queues keep their shape"
        );
        assert!(Job::decode("send_fax", r#"{"visit_id":"vis_1"}"#).is_err());
        assert!(Job::decode("poll_partner", r#"{"visit":"vis_1"}"#).is_err());
        assert!(Job::decode("poll_partner", "not json").is_err());
        assert!("queued".parse::<JobState>().is_ok() && "done".parse::<JobState>().is_err());
    }
}
