//! Group commit of visit results, and receipts under a burst.
//!
//! Results arrive in bursts (webhooks), and SQLite has one writer. Each result is handed to one
//! writer task, which takes everything waiting (up to `MAX_BATCH`) and answers each caller only
//! after its transaction commits, so a 200 to a partner always means the result is stored.
//!
//! Filing a result costs several writes: the visit completed, its write-back job queued, its
//! pending poll dropped, its audit entry chained. A small batch is filed at once, in one
//! transaction. A burst (a batch of `ResultSettings::receipts_from` or more) is stored as
//! receipts instead, one narrow row each in `result_receipts` (the visit must be open for the
//! result when it arrives, and its first result wins, as when filing), and answered; the
//! receipts are filed in larger batches once no result has come for a moment, a few at least
//! every second while the burst lasts, and at once again when too many wait. Any instance
//! files any practice's receipts, so an instance that died leaves none behind.
//! The same SQL runs on PostgreSQL.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use sqlx::{AnyConnection, Row};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinSet,
};

use super::{PartnerId, VisitId, VisitState, lifecycle};
use crate::{
    audit::{self, Action, Actor, Entry, Pending},
    config::ResultSettings,
    db::{Db, now_ms, placeholders},
    error::AppError,
    ids::ExternalId,
    jobs::{self, Job, JobSignal, NewJob},
    tenancy::PracticeId,
};

const MAX_BATCH: usize = 64;
const QUEUE: usize = 4096;
/// Receipts filed in one transaction once the burst has passed, and while it lasts.
const FILE_BATCH: usize = 256;
const FILE_BATCH_IN_BURST: usize = 64;
/// How long filing pauses after it failed (the database is down, or closing).
const FILING_PAUSE_AFTER_ERROR: Duration = Duration::from_secs(1);
/// Batches of receipts written at once.
const RECEIPTS_IN_FLIGHT: usize = 2;

/// A result to store.
pub struct Completion {
    pub practice_id: PracticeId,
    pub visit_id: VisitId,
    /// The partner the visit must belong to.
    pub partner: PartnerId,
    /// Who completed it (the partner's delivery, or a clinician finishing it), for the trail.
    pub actor: Actor,
    /// When the partner named the patient, the visit's patient must match it.
    pub patient_id: Option<String>,
    /// The result JSON, sealed as the visit's `result` column.
    pub result: String,
}

struct Request {
    completion: Completion,
    reply: oneshot::Sender<Result<bool, String>>,
}

/// Handle to the writer task.
#[derive(Clone, Debug)]
pub struct Completions {
    sender: mpsc::Sender<Request>,
}

impl Completions {
    /// Starts the writer task (it ends when every handle is dropped).
    pub fn spawn(db: Db, jobs: JobSignal, max_attempts: i64, settings: ResultSettings) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let writer = Writer {
            db,
            jobs,
            max_attempts,
            settings,
            // Receipts may wait from before a restart: look at once.
            receipts_waiting: Some(0),
            last_filed: Instant::now(),
            in_burst: false,
            in_flight: JoinSet::new(),
            filing_resumes: Instant::now(),
        };
        tokio::spawn(writer.run(receiver));
        Self { sender }
    }

    /// Stores the result; true when it completed the visit (or will: a receipt), false when the
    /// visit was not open for it (already completed or holding a result, cancelled, unknown,
    /// another partner's or patient's).
    pub async fn complete(&self, completion: Completion) -> Result<bool, AppError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Request { completion, reply })
            .await
            .map_err(|_| {
                AppError::Internal(anyhow::anyhow!("the completion writer has stopped"))
            })?;
        answer
            .await
            .map_err(|_| {
                AppError::Internal(anyhow::anyhow!("the completion writer dropped a result"))
            })?
            .map_err(|e| AppError::Internal(anyhow::anyhow!("storing a visit result: {e}")))
    }
}

struct Writer {
    db: Db,
    jobs: JobSignal,
    max_attempts: i64,
    settings: ResultSettings,
    /// Receipts this writer stored and has not filed, at least (`Some(0)`: there may be some
    /// from elsewhere; `None`: none known).
    receipts_waiting: Option<usize>,
    last_filed: Instant,
    /// Results came in a burst, and no quiet moment has come since.
    in_burst: bool,
    /// Batches of receipts being written (each answers its callers), with how many stored.
    in_flight: JoinSet<usize>,
    /// No filing before this (after a failed one).
    filing_resumes: Instant,
}

impl Writer {
    async fn run(mut self, mut receiver: mpsc::Receiver<Request>) {
        let mut waiting: Vec<Request> = Vec::new();
        // Whether the last thing done was filing (the quiet has been waited for already).
        let mut filing = false;
        loop {
            if waiting.is_empty() {
                // Quiet: file receipts while no result arrives, else wait for the next one.
                let quiet = match self.receipts_waiting {
                    Some(_) if filing => Duration::ZERO,
                    Some(_) => self.settings.file_when_quiet,
                    None if self.in_burst => self.settings.file_when_quiet,
                    None => self.settings.look_for_left,
                }
                .max(
                    self.filing_resumes
                        .saturating_duration_since(Instant::now()),
                );
                let next = match receiver.try_recv() {
                    Ok(request) => Ok(Some(request)),
                    Err(mpsc::error::TryRecvError::Disconnected) => Ok(None),
                    Err(mpsc::error::TryRecvError::Empty) if quiet.is_zero() => Err(()),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        tokio::time::timeout(quiet, receiver.recv())
                            .await
                            .map_err(|_| ())
                    }
                };
                match next {
                    Ok(Some(first)) => waiting.push(first),
                    Ok(None) => {
                        // Every handle is gone: let the receipts being written finish.
                        self.settle_all().await;
                        return;
                    }
                    Err(()) => {
                        self.in_burst = false;
                        self.file_receipts(FILE_BATCH).await;
                        filing = true;
                        continue;
                    }
                }
            }
            filing = false;
            while waiting.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(request) => waiting.push(request),
                    Err(_) => break,
                }
            }
            // One row per visit in a batch; a second result for the same visit waits for the next.
            let mut seen = HashSet::new();
            let (batch, later): (Vec<Request>, Vec<Request>) = waiting
                .drain(..)
                .partition(|r| seen.insert(key(&r.completion)));
            waiting = later;
            // A burst lasts until a quiet moment: small batches within it (the receipts are
            // quick to write) stay receipts.
            if batch.len() + waiting.len() + receiver.len() >= self.settings.receipts_from {
                self.in_burst = true;
            }
            let as_receipts =
                self.in_burst && self.receipts_waiting.unwrap_or(0) < self.settings.max_waiting;
            if as_receipts {
                // The receipts of a burst do not wait on each other's commit: a few batches
                // are in flight at once (a visit's second result finds the first's row).
                if self.in_flight.len() >= RECEIPTS_IN_FLIGHT {
                    self.settle_one().await;
                }
                self.receipts_waiting.get_or_insert(0);
                let db = self.db.clone();
                self.in_flight.spawn(async move {
                    let outcome = store_receipts(&db, &batch).await;
                    let stored = outcome.as_ref().map_or(0, HashSet::len);
                    answer(batch, &outcome);
                    stored
                });
            } else {
                self.settle_all().await;
                let outcome = file_now(&self.db, self.max_attempts, &batch).await;
                if matches!(&outcome, Ok(applied) if !applied.is_empty()) {
                    self.jobs.wake();
                }
                answer(batch, &outcome);
            }
            // A burst that does not pause still files a few every so often, and a busy
            // instance still looks for receipts another left.
            let due = match self.receipts_waiting {
                Some(_) => self.settings.file_at_least_every,
                None => self.settings.look_for_left,
            };
            if self.last_filed.elapsed() >= due && Instant::now() >= self.filing_resumes {
                self.file_receipts(FILE_BATCH_IN_BURST).await;
            }
        }
    }

    /// Waits for one batch of receipts in flight.
    async fn settle_one(&mut self) {
        if let Some(Ok(stored)) = self.in_flight.join_next().await {
            *self.receipts_waiting.get_or_insert(0) += stored;
        }
    }

    /// Waits for every batch of receipts in flight.
    async fn settle_all(&mut self) {
        while !self.in_flight.is_empty() {
            self.settle_one().await;
        }
    }

    /// Files up to `limit` waiting receipts (any instance's).
    async fn file_receipts(&mut self, limit: usize) {
        self.settle_all().await;
        self.last_filed = Instant::now();
        match file_receipts(&self.db, self.max_attempts, limit).await {
            Ok(taken) => {
                if taken > 0 {
                    self.jobs.wake();
                }
                self.receipts_waiting = if taken < limit {
                    None
                } else {
                    Some(self.receipts_waiting.unwrap_or(0).saturating_sub(taken))
                };
            }
            Err(e) => {
                // They stay stored; filing tries again after a pause (results are still
                // taken meanwhile).
                tracing::error!(error = %crate::error::error_chain(&e), "filing result receipts failed");
                self.receipts_waiting.get_or_insert(0);
                self.filing_resumes = Instant::now() + FILING_PAUSE_AFTER_ERROR;
            }
        }
    }
}

/// Results acknowledged in a burst and not filed yet, on every instance (metrics).
pub async fn receipts_waiting(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM result_receipts")
        .fetch_one(db.reader())
        .await
}

/// Answers each caller of a batch: whether its result applied, or why none could be stored.
fn answer(batch: Vec<Request>, outcome: &Result<HashSet<Key>, sqlx::Error>) {
    for request in batch {
        let answer = match outcome {
            Ok(applied) => Ok(applied.contains(&key(&request.completion))),
            Err(e) => Err(e.to_string()),
        };
        let _ = request.reply.send(answer);
    }
}

/// (practice id, visit id) as the statements return them.
type Key = (String, String);

fn key(c: &Completion) -> Key {
    (
        c.practice_id.as_str().to_string(),
        c.visit_id.as_str().to_string(),
    )
}

/// Stores a burst's results as receipts, for visits open for them and holding none yet.
async fn store_receipts(db: &Db, batch: &[Request]) -> Result<HashSet<Key>, sqlx::Error> {
    const WIDTH: usize = 9;
    let at = batch.len() * WIDTH + 1;
    let sql = format!(
        "INSERT INTO result_receipts (practice_id, visit_id, partner, result, actor_id, actor_roles, \
         actor_support, request_id, received_at) \
         SELECT v.column1, v.column2, v.column3, v.column5, v.column6, v.column7, v.column8, v.column9, ${at} \
         FROM (VALUES {rows}) AS v \
         JOIN visits ON visits.id = v.column2 AND visits.practice_id = v.column1 AND visits.partner = v.column3 \
         WHERE (v.column4 = '' OR visits.patient_id = v.column4) AND {guard} \
         ON CONFLICT (practice_id, visit_id) DO NOTHING \
         RETURNING practice_id, visit_id",
        rows = placeholders(batch.len(), WIDTH, |p| p),
        guard = lifecycle::guard("visits", VisitState::Completed),
    );
    let mut query = sqlx::query(&sql);
    for request in batch {
        let c = &request.completion;
        query = query
            .bind(&c.practice_id)
            .bind(&c.visit_id)
            .bind(c.partner.as_str())
            .bind(c.patient_id.as_deref().unwrap_or(""))
            .bind(&c.result)
            .bind(&c.actor.id)
            .bind(&c.actor.roles)
            .bind(i64::from(c.actor.platform_support))
            .bind(c.actor.request_id.as_deref());
    }
    // One statement commits itself: no BEGIN and COMMIT to wait for.
    let rows = query.bind(now_ms()).fetch_all(db.writer()).await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// Files a batch of results in one transaction.
async fn file_now(
    db: &Db,
    max_attempts: i64,
    batch: &[Request],
) -> Result<HashSet<Key>, sqlx::Error> {
    let filings: Vec<Filing<'_>> = batch
        .iter()
        .map(|r| {
            let c = &r.completion;
            Filing {
                practice_id: &c.practice_id,
                visit_id: &c.visit_id,
                partner: c.partner.as_str(),
                patient_id: c.patient_id.as_deref().unwrap_or(""),
                result: &c.result,
                actor: &c.actor,
            }
        })
        .collect();
    let mut tx = db.begin().await?;
    let applied = file(&mut tx, max_attempts, &filings).await?;
    tx.commit().await?;
    Ok(applied)
}

/// Files up to `limit` receipts in one transaction (taking them is deleting them, so two
/// instances never file the same one); answers how many it took.
async fn file_receipts(db: &Db, max_attempts: i64, limit: usize) -> Result<usize, sqlx::Error> {
    let mut tx = db.begin().await?;
    let rows = sqlx::query(
        "DELETE FROM result_receipts WHERE (practice_id, visit_id) IN \
         (SELECT practice_id, visit_id FROM result_receipts LIMIT $1) \
         RETURNING practice_id, visit_id, partner, result, actor_id, actor_roles, actor_support, request_id",
    )
    .bind(limit as i64)
    // Planned on each use: the receipts come and go in thousands.
    .persistent(false)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    struct Receipt {
        practice_id: PracticeId,
        visit_id: VisitId,
        partner: String,
        result: String,
        actor: Actor,
    }
    let receipts = rows
        .iter()
        .map(|row| {
            let practice_id: String = row.try_get("practice_id")?;
            let practice_id =
                ExternalId::try_from(practice_id).map_err(|e| sqlx::Error::Decode(e.into()))?;
            Ok(Receipt {
                // Stored under a verified practice, by the delivery it came with.
                practice_id: PracticeId::verified(practice_id),
                visit_id: row.try_get("visit_id")?,
                partner: row.try_get("partner")?,
                result: row.try_get("result")?,
                actor: Actor {
                    id: row.try_get("actor_id")?,
                    roles: row.try_get("actor_roles")?,
                    platform_support: row.try_get::<i64, _>("actor_support")? != 0,
                    request_id: row.try_get("request_id")?,
                },
            })
        })
        .collect::<Result<Vec<Receipt>, sqlx::Error>>()?;
    let filings: Vec<Filing<'_>> = receipts
        .iter()
        .map(|r| Filing {
            practice_id: &r.practice_id,
            visit_id: &r.visit_id,
            partner: &r.partner,
            // Checked when the receipt was stored (a visit's patient never changes).
            patient_id: "",
            result: &r.result,
            actor: &r.actor,
        })
        .collect();
    let applied = file(&mut tx, max_attempts, &filings).await?;
    tx.commit().await?;
    for r in &receipts {
        let key = (
            r.practice_id.as_str().to_string(),
            r.visit_id.as_str().to_string(),
        );
        if !applied.contains(&key) {
            // Cancelled by a clinician (or failed and completed otherwise) in between.
            tracing::warn!(practice_id = %r.practice_id, visit_id = %r.visit_id, "a result receipt was not filed: its visit closed meanwhile");
        }
    }
    Ok(receipts.len())
}

/// A result to file, fresh or from a receipt.
struct Filing<'a> {
    practice_id: &'a PracticeId,
    visit_id: &'a VisitId,
    partner: &'a str,
    /// The patient the partner named ('' when none).
    patient_id: &'a str,
    result: &'a str,
    actor: &'a Actor,
}

/// Completes the visits open for these results (one per visit) and holding no receipt, queues
/// their write-backs, drops their pending polls and chains their trail entries, on the
/// caller's transaction: four statements whatever the batch's size.
async fn file(
    tx: &mut AnyConnection,
    max_attempts: i64,
    filings: &[Filing<'_>],
) -> Result<HashSet<Key>, sqlx::Error> {
    let now = now_ms();
    let n = filings.len() * 5;
    let sql = format!(
        "UPDATE visits SET state = ${completed}, result = v.column5, error_message = NULL, updated_at = ${now}, completed_at = ${now} \
         FROM (VALUES {rows}) AS v \
         WHERE visits.id = v.column1 AND visits.practice_id = v.column2 AND visits.partner = v.column3 \
         AND (v.column4 = '' OR visits.patient_id = v.column4) \
         AND {guard} \
         AND NOT EXISTS (SELECT 1 FROM result_receipts r WHERE r.practice_id = visits.practice_id AND r.visit_id = visits.id) \
         RETURNING visits.practice_id, visits.id, visits.patient_id",
        now = n + 1,
        completed = n + 2,
        rows = placeholders(filings.len(), 5, |p| p),
        guard = lifecycle::guard("visits", VisitState::Completed),
    );
    let mut query = sqlx::query(&sql);
    for f in filings {
        query = query
            .bind(f.visit_id)
            .bind(f.practice_id)
            .bind(f.partner)
            .bind(f.patient_id)
            .bind(f.result);
    }
    let returned = query
        .bind(now)
        .bind(VisitState::Completed)
        .fetch_all(&mut *tx)
        .await?;
    let mut applied = HashSet::new();
    let mut patients = HashMap::new();
    for row in returned {
        let key = (row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?);
        patients.insert(key.clone(), row.try_get::<String, _>(2)?);
        applied.insert(key);
    }
    let filing_key = |f: &Filing<'_>| -> Key {
        (
            f.practice_id.as_str().to_string(),
            f.visit_id.as_str().to_string(),
        )
    };
    // The filings that applied, each once (a batch holds one per visit).
    let done: Vec<(&Filing<'_>, Key)> = filings
        .iter()
        .map(|f| (f, filing_key(f)))
        .filter(|(_, k)| applied.contains(k))
        .collect();
    if done.is_empty() {
        return Ok(applied);
    }
    let new_jobs: Vec<NewJob<'_>> = done
        .iter()
        .map(|(f, _)| NewJob {
            practice_id: f.practice_id,
            job: Job::SyncInteraction {
                visit_id: f.visit_id.clone(),
            },
            run_at: now,
        })
        .collect();
    jobs::enqueue_many(&mut *tx, max_attempts, &new_jobs).await?;
    let placeholders: Vec<String> = (1..=done.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "DELETE FROM jobs WHERE locked_by IS NULL AND dedupe_key IN ({})",
        placeholders.join(", ")
    );
    // Planned on each use (see the runner's claim): the queue's size changes fast.
    let mut delete = sqlx::query(&sql).persistent(false);
    for (f, _) in &done {
        let poll = Job::PollPartner {
            visit_id: f.visit_id.clone(),
        };
        delete = delete.bind(poll.dedupe_key());
    }
    delete.execute(&mut *tx).await?;
    // The trail, on the same transaction: each completion by whoever completed it.
    let finished: Vec<Pending> = done
        .iter()
        .map(|(f, k)| {
            let entry = Entry::new(Action::VisitFinished)
                .patient(&patients[k])
                .visit(f.visit_id.as_str())
                .detail(f.partner);
            Pending::new(f.practice_id, f.actor, entry)
        })
        .collect();
    audit::record_many(&mut *tx, &finished).await?;
    Ok(applied)
}
