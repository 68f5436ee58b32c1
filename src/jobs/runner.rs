//! The worker loop: claims due jobs (a short lease each, renewed by a heartbeat while the job
//! runs), runs up to `workers` at once, records the outcome, and on shutdown stops claiming,
//! lets the jobs in flight finish within a grace, then stops those still running and hands
//! them back (claimable at once by any instance). What a job does is not known here: the
//! runner hands each claimed job to the [`Registry`] it was given, with the state the jobs run
//! with.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use sqlx::Row;
use tokio::{sync::watch, task::JoinSet};

use super::{ClaimedJob, JobError, JobOutcome, JobSignal, JobState, Registry};
use crate::{
    backoff::jittered,
    config::JobSettings,
    db::{Backend, Db, new_id, now_ms},
    ids::ExternalId,
    tenancy::PracticeId,
};

type JobResult = Result<JobOutcome, JobError>;

/// The practices whose background work is paused (their jobs wait, passed over by every claim),
/// as their owner knows them: asked once per claim (a short list), never per queued job.
#[async_trait::async_trait]
pub trait PausedPractices: Send + Sync + 'static {
    async fn paused(&self, db: &Db) -> Result<Vec<String>, sqlx::Error>;
}

/// Whether a job runner is running here, for `/readyz` and the metrics: the loop and its
/// heartbeat push a deadline ahead each time they look for work or renew leases.
#[derive(Clone, Default, Debug)]
pub struct RunnerStatus(Arc<AtomicI64>);

impl RunnerStatus {
    /// Running, and seen within the last lease.
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed) >= now_ms()
    }

    fn seen(&self, lease: Duration) {
        self.0
            .store(now_ms() + lease.as_millis() as i64, Ordering::Relaxed);
    }

    fn stopped(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

pub struct JobRunner<S> {
    db: Db,
    settings: JobSettings,
    signal: JobSignal,
    /// What the jobs run with, and the job types by kind.
    state: Arc<S>,
    registry: Arc<Registry<S>>,
    worker_id: String,
    /// Jobs of one practice run at once at most, so a practice's backlog neither holds every
    /// worker while other practices wait nor takes every Hint slot from a clinician waiting in
    /// the frame.
    per_practice: usize,
    status: RunnerStatus,
    /// Which practices' jobs wait, asked before a claim.
    paused: Option<Arc<dyn PausedPractices>>,
}

impl<S: Send + Sync + 'static> JobRunner<S> {
    pub fn new(
        db: Db,
        settings: JobSettings,
        signal: JobSignal,
        per_practice: usize,
        state: S,
        registry: Arc<Registry<S>>,
    ) -> Self {
        Self {
            db,
            settings,
            signal,
            state: Arc::new(state),
            registry,
            worker_id: new_id("worker"),
            per_practice: per_practice.max(1),
            status: RunnerStatus::default(),
            paused: None,
        }
    }

    /// Passes over the jobs of the practices `paused` names, as long as it names them.
    pub fn passing_over(mut self, paused: impl PausedPractices) -> Self {
        self.paused = Some(Arc::new(paused));
        self
    }

    /// Reports whether it runs to `status`.
    pub fn reporting_to(mut self, status: RunnerStatus) -> Self {
        self.status = status;
        self
    }

    /// Runs every due job, one at a time in the caller's task, until none is due; answers how
    /// many ran. For tests and tools that want the queue's effects now, without the loop.
    pub async fn run_until_empty(&self) -> Result<usize, sqlx::Error> {
        let mut ran = 0;
        while let Some(job) = self.claim(&[]).await? {
            let result = self.dispatch(&job).await;
            self.record_outcome(&job, result).await?;
            ran += 1;
        }
        Ok(ran)
    }

    async fn dispatch(&self, job: &ClaimedJob) -> JobResult {
        self.registry
            .run(&self.state, &job.practice_id, &job.kind, &job.payload)
            .await
    }

    /// Runs until `shutdown` turns true, then waits (bounded) for the jobs in flight.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let settings = self.settings.clone();
        let mut running: JoinSet<JobResult> = JoinSet::new();
        let mut in_flight: HashMap<tokio::task::Id, ClaimedJob> = HashMap::new();
        tracing::info!(worker = %self.worker_id, workers = settings.workers, "job runner started");
        // Ends with this loop, however it ends (dropped mid-flight too: no beat outlives it).
        let _heartbeat = AbortOnDrop(tokio::spawn(renew_leases(
            self.db.clone(),
            self.worker_id.clone(),
            settings.lease,
            self.status.clone(),
        )));

        // A claim that passes over saturated practices first probes for the practices with due
        // jobs (`claim`); after one finds nothing, the next waits `poll_interval`, whatever
        // wakes the runner meanwhile (each stored webhook does, and each finished job: a busy
        // practice finishing its jobs one by one would have the runner probe ten times a
        // second). Another practice's job waits at most that long.
        let mut skip_scan_after = tokio::time::Instant::now();
        while !*shutdown.borrow() {
            self.status.seen(settings.lease);
            while running.len() < settings.workers {
                let skip = saturated_practices(&in_flight, self.per_practice);
                if !skip.is_empty() && tokio::time::Instant::now() < skip_scan_after {
                    break;
                }
                match self.claim(&skip).await {
                    Ok(Some(job)) => {
                        let (state, registry) = (self.state.clone(), self.registry.clone());
                        let for_task = job.clone();
                        let handle = running.spawn(async move {
                            let job = &for_task;
                            registry
                                .run(&state, &job.practice_id, &job.kind, &job.payload)
                                .await
                        });
                        in_flight.insert(handle.id(), job);
                    }
                    Ok(None) => {
                        if !skip.is_empty() {
                            skip_scan_after = tokio::time::Instant::now() + settings.poll_interval;
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "claiming a job failed");
                        break;
                    }
                }
            }
            tokio::select! {
                Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                    self.record(done, &mut in_flight).await;
                }
                _ = self.signal.wait(settings.poll_interval), if running.len() < settings.workers => {}
                _ = shutdown.changed() => {}
            }
        }

        self.status.stopped();
        tracing::info!(in_flight = running.len(), "job runner draining");
        let drain = async {
            while let Some(done) = running.join_next_with_id().await {
                self.record(done, &mut in_flight).await;
            }
        };
        if tokio::time::timeout(settings.shutdown_grace, drain)
            .await
            .is_err()
        {
            self.stop_and_hand_back(running, in_flight).await;
        }
        tracing::info!("job runner stopped");
    }

    /// At the end of the shutdown grace: aborts the jobs still running and, for each that has
    /// really stopped (its task ended: none of its code runs again), releases its lease so that
    /// any instance may claim it at once. A job is never released while it may still run (it
    /// could run twice): one that does not stop within [`STOP_WAIT`] (busy without yielding)
    /// keeps its lease, which runs out once this process has gone. What an aborted job did
    /// before it stopped is as after a crash: a job looks for what a lost answer may have
    /// created before it creates it again.
    async fn stop_and_hand_back(
        &self,
        mut running: JoinSet<JobResult>,
        mut in_flight: HashMap<tokio::task::Id, ClaimedJob>,
    ) {
        running.abort_all();
        let mut stopped = Vec::new();
        let ended = async {
            while let Some(done) = running.join_next_with_id().await {
                match done {
                    Err(e) if e.is_cancelled() => {
                        if let Some(job) = in_flight.remove(&e.id()) {
                            stopped.push(job.id);
                        }
                    }
                    // It finished (or panicked) before the abort reached it.
                    done => self.record(done, &mut in_flight).await,
                }
            }
        };
        if tokio::time::timeout(STOP_WAIT, ended).await.is_err() {
            tracing::warn!("jobs that did not stop are left to their leases");
        }
        match release(&self.db, &self.worker_id, &stopped).await {
            Ok(released) => {
                tracing::info!(released, "jobs stopped at shutdown were handed back")
            }
            // Their leases run out and another worker takes them over; nothing is lost.
            Err(e) => tracing::warn!(error = %e, "handing back stopped jobs failed"),
        }
    }

    /// Claims the next due job, passing over the practices in `skip`.
    async fn claim(&self, skip: &[String]) -> Result<Option<ClaimedJob>, sqlx::Error> {
        let mut skip = skip.to_vec();
        if let Some(paused) = &self.paused {
            skip.extend(paused.paused(&self.db).await?);
        }
        // Passing over some practices, the claim looks among the others only: found first by
        // probing an index once per practice, not by reading the passed-over backlogs (a
        // `NOT IN` reads them in `run_at` order, row by row).
        let now = now_ms();
        let among = if skip.is_empty() {
            Vec::new()
        } else {
            let others: Vec<String> = practices_due(&self.db, now)
                .await?
                .into_iter()
                .filter(|p| !skip.contains(p))
                .collect();
            if others.is_empty() {
                return Ok(None);
            }
            others
        };
        let lease_until = now + self.settings.lease.as_millis() as i64;
        let lock = match self.db.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let among_clause = if among.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = (0..among.len()).map(|i| format!("${}", i + 5)).collect();
            format!(" AND practice_id IN ({})", list.join(", "))
        };
        let sql = format!(
            "UPDATE jobs SET locked_by = $1, locked_until = $2, attempts = attempts + 1, rerun = 0, updated_at = $3 \
             WHERE id = (SELECT id FROM jobs WHERE state = $4 AND run_at <= $3 \
                         AND (locked_until IS NULL OR locked_until < $3){among_clause} ORDER BY run_at LIMIT 1{lock}) \
             AND state = $4 AND (locked_until IS NULL OR locked_until < $3) \
             RETURNING id, practice_id, kind, payload, attempts, max_attempts"
        );
        // Planned on each use: a plan kept from when the queue was short would scan all of it
        // once the queue has grown.
        let mut query = sqlx::query(&sql)
            .persistent(false)
            .bind(&self.worker_id)
            .bind(lease_until)
            .bind(now)
            .bind(JobState::Queued);
        for practice_id in &among {
            query = query.bind(practice_id);
        }
        let row = query.fetch_optional(self.db.writer()).await?;
        let Some(row) = row else { return Ok(None) };
        let kind: String = row.try_get("kind")?;
        let payload: String = row.try_get("payload")?;
        let practice_id: String = row.try_get("practice_id")?;
        let practice_id =
            ExternalId::try_from(practice_id).map_err(|e| sqlx::Error::Decode(e.into()))?;
        Ok(Some(ClaimedJob {
            id: row.try_get("id")?,
            // Enqueued under a verified practice, in the same transaction as its work.
            practice_id: PracticeId::verified(practice_id),
            kind,
            payload,
            attempts: row.try_get("attempts")?,
            max_attempts: row.try_get("max_attempts")?,
        }))
    }

    async fn record(
        &self,
        done: Result<(tokio::task::Id, JobResult), tokio::task::JoinError>,
        in_flight: &mut HashMap<tokio::task::Id, ClaimedJob>,
    ) {
        let (task_id, result) = match done {
            Ok((id, result)) => (id, result),
            Err(e) => {
                let message = if e.is_panic() {
                    "the job panicked"
                } else {
                    "the job was cancelled"
                };
                (e.id(), Err(JobError::transient(message)))
            }
        };
        let Some(job) = in_flight.remove(&task_id) else {
            return;
        };
        if let Err(e) = self.record_outcome(&job, result).await {
            // The lease runs out and the job is retried; nothing is lost.
            tracing::error!(job_id = %job.id, error = %e, "recording a job outcome failed");
        }
    }

    async fn record_outcome(&self, job: &ClaimedJob, result: JobResult) -> Result<(), sqlx::Error> {
        match result {
            Ok(JobOutcome::Done) => self.finish(job).await,
            Ok(JobOutcome::CheckAgainAt(at)) => self.check_again(job, at).await,
            Err(error) => self.fail(job, error).await,
        }
    }

    async fn finish(&self, job: &ClaimedJob) -> Result<(), sqlx::Error> {
        let deleted =
            sqlx::query("DELETE FROM jobs WHERE id = $1 AND locked_by = $2 AND rerun = 0")
                .bind(&job.id)
                .bind(&self.worker_id)
                .execute(self.db.writer())
                .await?;
        if deleted.rows_affected() == 0 {
            // More work arrived while it ran: run it again now.
            let now = now_ms();
            sqlx::query(
                "UPDATE jobs SET locked_by = NULL, locked_until = NULL, rerun = 0, attempts = 0, \
                 run_at = $1, last_error = NULL, updated_at = $1 WHERE id = $2 AND locked_by = $3",
            )
            .bind(now)
            .bind(&job.id)
            .bind(&self.worker_id)
            .execute(self.db.writer())
            .await?;
            self.signal.wake();
        }
        tracing::debug!(job_id = %job.id, kind = %job.kind, "job done");
        Ok(())
    }

    async fn check_again(&self, job: &ClaimedJob, at: i64) -> Result<(), sqlx::Error> {
        let now = now_ms();
        sqlx::query(
            "UPDATE jobs SET locked_by = NULL, locked_until = NULL, attempts = 0, last_error = NULL, \
             run_at = CASE WHEN rerun = 1 THEN $1 ELSE $2 END, rerun = 0, updated_at = $1 \
             WHERE id = $3 AND locked_by = $4",
        )
        .bind(now)
        .bind(at)
        .bind(&job.id)
        .bind(&self.worker_id)
        .execute(self.db.writer())
        .await?;
        Ok(())
    }

    async fn fail(&self, job: &ClaimedJob, error: JobError) -> Result<(), sqlx::Error> {
        let settings = &self.settings;
        let exponent = (job.attempts.max(1) - 1).min(20) as u32;
        let delay = settings
            .base_backoff
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(settings.max_backoff);
        let now = now_ms();
        let retry_at = now + jittered(delay).as_millis() as i64;
        let dead = error.is_permanent() || job.attempts >= job.max_attempts;
        let message: String = crate::error::error_chain(&error)
            .chars()
            .take(500)
            .collect();
        sqlx::query(
            "UPDATE jobs SET locked_by = NULL, locked_until = NULL, last_error = $1, updated_at = $2, \
             state = CASE WHEN rerun = 0 THEN $3 ELSE $4 END, \
             run_at = CASE WHEN rerun = 1 THEN $2 ELSE $5 END, rerun = 0 \
             WHERE id = $6 AND locked_by = $7",
        )
        .bind(&message)
        .bind(now)
        .bind(if dead {
            JobState::Dead
        } else {
            JobState::Queued
        })
        .bind(JobState::Queued)
        .bind(retry_at)
        .bind(&job.id)
        .bind(&self.worker_id)
        .execute(self.db.writer())
        .await?;
        if dead {
            tracing::error!(job_id = %job.id, kind = %job.kind, practice_id = %job.practice_id, error = %message, "job is dead; shown on the core page");
        } else {
            tracing::warn!(job_id = %job.id, kind = %job.kind, attempt = job.attempts, error = %message, "job failed; will retry");
        }
        Ok(())
    }
}

/// Keeps this worker's leases alive while it runs: every third of a lease, every job it holds
/// gets a whole lease again. A worker that dies (`kill -9`, a lost machine) stops renewing, so
/// its jobs are taken over one lease after its last beat, however long a job runs; a job that
/// outlives its lease here is not taken by another worker while this one still runs it.
async fn renew_leases(db: Db, worker_id: String, lease: Duration, status: RunnerStatus) {
    let mut beat = tokio::time::interval(lease / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        beat.tick().await;
        let now = now_ms();
        let renewed = sqlx::query("UPDATE jobs SET locked_until = $1 WHERE locked_by = $2")
            .bind(now + lease.as_millis() as i64)
            .bind(&worker_id)
            .execute(db.writer())
            .await;
        match renewed {
            Ok(_) => status.seen(lease),
            Err(e) => {
                tracing::warn!(error = %e, "renewing job leases failed; they may be taken over")
            }
        }
    }
}

/// How long aborted jobs are given to end at shutdown.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// Makes the jobs `ids`, held by `worker_id` and stopped, claimable now: no lease, due now (the
/// attempt counts, as a crash's would). Answers how many it released.
async fn release(db: &Db, worker_id: &str, ids: &[String]) -> Result<u64, sqlx::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let list: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 3)).collect();
    let sql = format!(
        "UPDATE jobs SET locked_by = NULL, locked_until = NULL, rerun = 0, run_at = $1, updated_at = $1 \
         WHERE locked_by = $2 AND id IN ({})",
        list.join(", ")
    );
    let mut query = sqlx::query(&sql).bind(now_ms()).bind(worker_id);
    for id in ids {
        query = query.bind(id);
    }
    Ok(query.execute(db.writer()).await?.rows_affected())
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The practices with jobs due at `now`, each found by probing the `jobs_by_practice` index
/// from the previous one. Its entries run in `run_at` order within a practice, so a probe stops
/// at the practice's first queued job when that one is due, whatever the backlog behind it; a
/// practice whose queued jobs all wait for later is read through (index entries only).
async fn practices_due(db: &Db, now: i64) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH RECURSIVE due(practice_id) AS ( \
             SELECT MIN(practice_id) FROM jobs WHERE state = $1 AND run_at <= $2 \
             UNION ALL \
             SELECT (SELECT MIN(practice_id) FROM jobs \
                     WHERE state = $1 AND run_at <= $2 AND practice_id > due.practice_id) \
             FROM due WHERE due.practice_id IS NOT NULL \
         ) \
         SELECT practice_id FROM due WHERE practice_id IS NOT NULL",
    )
    .bind(JobState::Queued)
    .bind(now)
    .fetch_all(db.reader())
    .await
}

/// Practices with `limit` jobs in flight here.
fn saturated_practices(
    in_flight: &HashMap<tokio::task::Id, ClaimedJob>,
    limit: usize,
) -> Vec<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for job in in_flight.values() {
        *counts.entry(job.practice_id.as_str()).or_default() += 1;
    }
    counts
        .into_iter()
        .filter(|(_, n)| *n >= limit)
        .map(|(p, _)| p.to_string())
        .collect()
}
