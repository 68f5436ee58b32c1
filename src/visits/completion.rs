//! Group commit of visit results.
//!
//! Results arrive in bursts (webhooks), and SQLite has one writer. Each result is handed to one
//! writer task, which takes everything waiting (up to `MAX_BATCH`) and stores it in a single
//! transaction with three multi-row statements: complete the visits, enqueue their write-back,
//! drop their pending polls. Each caller is answered only after the commit, so a 200 to a
//! partner always means the result is stored. The same SQL runs on PostgreSQL.

use std::collections::{HashMap, HashSet};

use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

use super::{PartnerId, VisitId, VisitState, lifecycle};
use crate::{
    audit::{self, Action, Actor, Entry, Pending},
    db::{Db, now_ms},
    error::AppError,
    jobs::{self, Job, JobSignal, NewJob},
    tenancy::PracticeId,
};

const MAX_BATCH: usize = 64;
const QUEUE: usize = 4096;

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
    /// The result JSON.
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
    pub fn spawn(db: Db, jobs: JobSignal, max_attempts: i64) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, jobs, max_attempts, receiver));
        Self { sender }
    }

    /// Stores the result; true when it completed the visit, false when the visit was not open
    /// for it (already completed, cancelled, unknown, another partner's or patient's).
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

async fn run(db: Db, jobs: JobSignal, max_attempts: i64, mut receiver: mpsc::Receiver<Request>) {
    let mut waiting: Vec<Request> = Vec::new();
    loop {
        if waiting.is_empty() {
            match receiver.recv().await {
                Some(first) => waiting.push(first),
                None => return,
            }
        }
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
        let outcome = write(&db, max_attempts, &batch).await;
        if matches!(&outcome, Ok(applied) if !applied.is_empty()) {
            jobs.wake();
        }
        for request in batch {
            let answer = match &outcome {
                Ok(applied) => Ok(applied.contains(&key(&request.completion))),
                Err(e) => Err(e.to_string()),
            };
            let _ = request.reply.send(answer);
        }
    }
}

/// (practice id, visit id) as the statement returns them.
type Key = (String, String);

fn key(c: &Completion) -> Key {
    (
        c.practice_id.as_str().to_string(),
        c.visit_id.as_str().to_string(),
    )
}

async fn write(db: &Db, max_attempts: i64, batch: &[Request]) -> Result<HashSet<Key>, sqlx::Error> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    let rows: Vec<String> = (0..batch.len())
        .map(|i| {
            let p = i * 5;
            format!(
                "(${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5
            )
        })
        .collect();
    let n = batch.len() * 5;
    let sql = format!(
        "UPDATE visits SET state = ${completed}, result = v.column5, error_message = NULL, updated_at = ${now}, completed_at = ${now} \
         FROM (VALUES {rows}) AS v \
         WHERE visits.id = v.column1 AND visits.practice_id = v.column2 AND visits.partner = v.column3 \
         AND (v.column4 = '' OR visits.patient_id = v.column4) \
         AND {guard} \
         RETURNING visits.practice_id, visits.id, visits.patient_id",
        now = n + 1,
        completed = n + 2,
        rows = rows.join(", "),
        guard = lifecycle::guard("visits", VisitState::Completed),
    );
    let mut query = sqlx::query(&sql);
    for request in batch {
        let c = &request.completion;
        query = query
            .bind(&c.visit_id)
            .bind(&c.practice_id)
            .bind(c.partner.as_str())
            .bind(c.patient_id.as_deref().unwrap_or(""))
            .bind(&c.result);
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
    // The completions that applied, each once (the batch holds one per visit).
    let done: Vec<&Completion> = batch
        .iter()
        .map(|r| &r.completion)
        .filter(|c| applied.contains(&key(c)))
        .collect();
    if !done.is_empty() {
        let new_jobs: Vec<NewJob<'_>> = done
            .iter()
            .map(|c| NewJob {
                practice_id: &c.practice_id,
                job: Job::SyncInteraction {
                    visit_id: c.visit_id.clone(),
                },
                run_at: now,
            })
            .collect();
        jobs::enqueue_many(&mut tx, max_attempts, &new_jobs).await?;
        let placeholders: Vec<String> = (1..=done.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "DELETE FROM jobs WHERE locked_by IS NULL AND dedupe_key IN ({})",
            placeholders.join(", ")
        );
        // Planned on each use (see the runner's claim): the queue's size changes fast.
        let mut delete = sqlx::query(&sql).persistent(false);
        for c in &done {
            let poll = Job::PollPartner {
                visit_id: c.visit_id.clone(),
            };
            delete = delete.bind(poll.dedupe_key());
        }
        delete.execute(&mut *tx).await?;
        // The trail, on the same transaction: each completion by whoever completed it.
        let finished: Vec<Pending> = done
            .iter()
            .map(|c| {
                let entry = Entry::new(Action::VisitFinished)
                    .patient(&patients[&key(c)])
                    .visit(c.visit_id.as_str())
                    .detail(c.partner.as_str());
                Pending::new(&c.practice_id, &c.actor, entry)
            })
            .collect();
        audit::record_many(&mut tx, &finished).await?;
    }
    tx.commit().await?;
    Ok(applied)
}
