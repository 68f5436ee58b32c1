//! The durable job queue: every call to an outside party that must not be lost.
//!
//! A job is enqueued in the same transaction as the state change that needs it, claimed with a
//! lease (a crashed worker's job is taken over when its lease runs out), retried with doubling
//! back-off and jitter, and never dropped: a job that exhausts its attempts becomes `dead` and
//! is shown on the practice's core page with a retry button.
//!
//! One live job per `dedupe_key`: enqueueing work for a job that is running sets `rerun`, so
//! the job runs once more when it finishes instead of two copies racing each other.

mod runner;

use std::{sync::Arc, time::Duration};

use serde::Serialize;
use sqlx::{AnyConnection, Row};
use tokio::sync::Notify;

pub use runner::JobRunner;

use crate::{
    db::{new_id, now_ms},
    error::AppError,
    state::AppState,
};

/// What a job does. Stored by name so the queue survives upgrades that add kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Make Hint's partner interaction match the visit (create, then patch).
    SyncInteraction,
    /// Ask the partner whether a visit's result is ready.
    PollPartner,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::SyncInteraction => "sync_interaction",
            JobKind::PollPartner => "poll_partner",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sync_interaction" => Some(JobKind::SyncInteraction),
            "poll_partner" => Some(JobKind::PollPartner),
            _ => None,
        }
    }

    /// Words for the core page.
    pub fn describe(self) -> &'static str {
        match self {
            JobKind::SyncInteraction => "Write the visit to the Hint chart",
            JobKind::PollPartner => "Fetch the visit's result from the partner",
        }
    }
}

/// A job to enqueue.
pub struct NewJob<'a> {
    pub practice_id: &'a str,
    pub kind: JobKind,
    pub dedupe_key: String,
    pub payload: serde_json::Value,
    /// Unix ms; `now_ms()` for "as soon as possible".
    pub run_at: i64,
}

/// A job a worker holds the lease on.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: String,
    pub practice_id: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub attempts: i64,
    pub max_attempts: i64,
}

impl ClaimedJob {
    /// A string field of the payload.
    pub fn payload_str(&self, field: &str) -> Result<&str, JobError> {
        self.payload
            .get(field)
            .and_then(|v| v.as_str())
            .ok_or_else(|| JobError::permanent(format!("payload has no {field}")))
    }
}

/// How a job run ended well.
#[derive(Debug)]
pub enum JobOutcome {
    Done,
    /// Not ready yet (e.g. the partner is still working): look again at this time (Unix ms)
    /// without counting an attempt.
    CheckAgainAt(i64),
}

/// How a job run failed.
#[derive(Debug)]
pub struct JobError {
    pub message: String,
    /// Retrying cannot help (e.g. Hint refused the request as invalid): dead at once.
    pub permanent: bool,
}

impl JobError {
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }
}

impl From<sqlx::Error> for JobError {
    fn from(e: sqlx::Error) -> Self {
        JobError::retry(format!("database: {e}"))
    }
}

impl From<AppError> for JobError {
    fn from(e: AppError) -> Self {
        JobError::retry(crate::error::error_chain(&e))
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

/// Enqueues several jobs in one statement. Their dedupe keys must differ.
pub async fn enqueue_many(
    conn: &mut AnyConnection,
    max_attempts: i64,
    jobs: &[NewJob<'_>],
) -> Result<(), sqlx::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let rows: Vec<String> = (0..jobs.len())
        .map(|i| {
            let p = i * 6;
            format!(
                "(${}, ${}, ${}, ${}, ${}, 'queued', 0, ${}, ${}, NULL, NULL, 0, NULL, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                jobs.len() * 6 + 1,
                p + 6,
                jobs.len() * 6 + 2,
                jobs.len() * 6 + 2
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO jobs (id, practice_id, kind, dedupe_key, payload, state, attempts, max_attempts, run_at, \
         locked_by, locked_until, rerun, last_error, created_at, updated_at) VALUES {} \
         ON CONFLICT (dedupe_key) DO UPDATE SET \
           rerun = CASE WHEN jobs.locked_by IS NOT NULL THEN 1 ELSE jobs.rerun END, \
           attempts = CASE WHEN jobs.state = 'dead' THEN 0 ELSE jobs.attempts END, \
           state = 'queued', \
           run_at = CASE WHEN excluded.run_at < jobs.run_at OR jobs.state = 'dead' THEN excluded.run_at ELSE jobs.run_at END, \
           payload = excluded.payload, \
           updated_at = excluded.updated_at",
        rows.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for job in jobs {
        query = query
            .bind(new_id("job"))
            .bind(job.practice_id)
            .bind(job.kind.as_str())
            .bind(&job.dedupe_key)
            .bind(job.payload.to_string())
            .bind(job.run_at);
    }
    query.bind(max_attempts).bind(now).execute(conn).await?;
    Ok(())
}

/// A job that needs a person's attention: dead, or failing repeatedly.
#[derive(Debug, Clone, Serialize)]
pub struct StuckJob {
    pub id: String,
    pub kind: String,
    pub description: String,
    pub visit_id: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub last_error: String,
    pub updated_at: i64,
}

/// This practice's dead jobs and jobs that failed at least three times.
pub async fn stuck_for_practice(
    state: &AppState,
    practice_id: &str,
) -> Result<Vec<StuckJob>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, kind, payload, state, attempts, last_error, updated_at FROM jobs \
         WHERE practice_id = $1 AND (state = 'dead' OR (attempts >= 3 AND last_error IS NOT NULL)) \
         ORDER BY updated_at DESC LIMIT 50",
    )
    .bind(practice_id)
    .fetch_all(state.db.reader())
    .await?;
    rows.into_iter()
        .map(|row| {
            let kind: String = row.try_get("kind")?;
            let payload: String = row.try_get("payload")?;
            let payload: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
            Ok(StuckJob {
                id: row.try_get("id")?,
                description: JobKind::parse(&kind)
                    .map(|k| k.describe())
                    .unwrap_or("Background work")
                    .to_string(),
                kind,
                visit_id: payload
                    .get("visit_id")
                    .and_then(|v| v.as_str())
                    .map(String::from),
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
    state: &AppState,
    practice_id: &str,
    job_id: &str,
) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let done = sqlx::query(
        "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $1, updated_at = $1 \
         WHERE id = $2 AND practice_id = $3 AND state = 'dead'",
    )
    .bind(now)
    .bind(job_id)
    .bind(practice_id)
    .execute(state.db.writer())
    .await?;
    if done.rows_affected() == 1 {
        state.jobs.wake();
        return Ok(true);
    }
    Ok(false)
}

/// Counts of queued and dead jobs, for tests and operators.
pub async fn counts(state: &AppState) -> Result<(i64, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COALESCE(SUM(CASE WHEN state = 'queued' THEN 1 ELSE 0 END), 0) AS queued, \
         COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0) AS dead FROM jobs",
    )
    .fetch_one(state.db.reader())
    .await?;
    Ok((row.try_get("queued")?, row.try_get("dead")?))
}
