//! Group commit for visits that arrive finished (MediQuo's consultations): each delivery was
//! its own transaction, holding its practice's audit head (the hash chain's row) until it
//! committed, so one practice's deliveries were written one at a time. One writer task takes
//! every delivery waiting, stores them in one transaction (each insert decides on its own: a
//! partner reference seen before is stored once) and answers each caller once it is committed.

use std::collections::HashSet;

use tokio::sync::{mpsc, oneshot};

use super::{NewVisit, VisitId, VisitState};
use crate::{
    audit::{self, Action, Actor, Entry, Pending},
    crypto::row_aad,
    db::{now_ms, placeholders},
    error::AppError,
    hint::HintState,
    jobs::{self, Job, JobSignal, NewJob},
    tenancy::PracticeId,
};

/// Most deliveries written together, and how many may wait.
const MAX_BATCH: usize = 128;
const QUEUE: usize = 4096;

/// A finished visit to store (owned: it crosses to the writer task).
struct Record {
    practice_id: PracticeId,
    patient_id: String,
    patient_name: String,
    user_id: String,
    user_name: String,
    partner: String,
    launch: String,
    partner_ref: String,
    result: String,
}

type Reply = oneshot::Sender<Result<Option<VisitId>, String>>;

/// Handle to the writer task.
#[derive(Clone, Debug)]
pub struct Recordings {
    sender: mpsc::Sender<(Record, Reply)>,
}

impl Recordings {
    /// Starts the writer task (it ends when every handle is dropped).
    pub fn spawn(state: HintState, jobs: JobSignal) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(state, jobs, receiver));
        Self { sender }
    }

    /// Stores a finished visit with its result and its write-back job; `None` when the
    /// partner's reference was stored before (a repeated delivery).
    pub async fn record(
        &self,
        practice_id: &PracticeId,
        new: NewVisit<'_>,
        partner_ref: &str,
        result: &str,
    ) -> Result<Option<VisitId>, AppError> {
        let record = Record {
            practice_id: practice_id.clone(),
            patient_id: new.patient_id.to_string(),
            patient_name: new.patient_name.to_string(),
            user_id: new.user_id.to_string(),
            user_name: new.user_name.to_string(),
            partner: new.partner.as_str().to_string(),
            launch: new.launch,
            partner_ref: partner_ref.to_string(),
            result: result.to_string(),
        };
        let stopped = || AppError::Internal(anyhow::anyhow!("the visit recorder has stopped"));
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((record, reply))
            .await
            .map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(|e| AppError::Internal(anyhow::anyhow!("storing a finished visit: {e}")))
    }
}

async fn run(state: HintState, jobs: JobSignal, mut receiver: mpsc::Receiver<(Record, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = receiver.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let written = write(&state, &batch).await;
        if matches!(&written, Ok(ids) if ids.iter().any(Option::is_some)) {
            jobs.wake();
        }
        match written {
            Ok(ids) => {
                for ((_, reply), id) in batch.drain(..).zip(ids) {
                    let _ = reply.send(Ok(id));
                }
            }
            Err(e) => {
                let reason = e.to_string();
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(reason.clone()));
                }
            }
        }
    }
}

/// One transaction for the batch, three statements whatever its size: the visits (one insert;
/// a partner reference already stored, or twice in the batch, is stored once), their
/// write-back jobs and their audit entries. Row by row, a batch of 32 took ~150 round trips.
async fn write(
    state: &HintState,
    batch: &[(Record, Reply)],
) -> Result<Vec<Option<VisitId>>, sqlx::Error> {
    let now = now_ms();
    let ids: Vec<VisitId> = batch.iter().map(|_| VisitId::generate()).collect();
    // Eleven values a visit, then the time they all share.
    let at = batch.len() * 11 + 1;
    let rows = placeholders(batch.len(), 11, |list| {
        format!("{list}, NULL, NULL, NULL, ${at}, ${at}, ${at}")
    });
    let sql = format!(
        "INSERT INTO visits (id, practice_id, patient_id, patient_name, user_id, user_name, partner, state, \
         partner_ref, launch, result, error_message, hint_interaction_id, hint_status, created_at, updated_at, completed_at) \
         VALUES {rows} \
         ON CONFLICT (practice_id, partner, partner_ref) WHERE partner_ref IS NOT NULL DO NOTHING \
         RETURNING id"
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql);
    for ((record, _), id) in batch.iter().zip(&ids) {
        let practice = record.practice_id.as_str();
        let seal = |column: &str, plain: &str| {
            state
                .secrets
                .seal_text(plain, &row_aad("visits", column, practice, id.as_str()))
        };
        query = query
            .bind(id)
            .bind(&record.practice_id)
            .bind(&record.patient_id)
            .bind(seal("patient_name", &record.patient_name))
            .bind(&record.user_id)
            .bind(&record.user_name)
            .bind(&record.partner)
            .bind(VisitState::Completed)
            .bind(&record.partner_ref)
            .bind(seal("launch", &record.launch))
            .bind(seal("result", &record.result));
    }
    let mut tx = state.db.begin().await?;
    let inserted: HashSet<String> = query
        .bind(now)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    let stored: Vec<(&Record, &VisitId)> = batch
        .iter()
        .zip(&ids)
        .filter(|(_, id)| inserted.contains(id.as_str()))
        .map(|((record, _), id)| (record, id))
        .collect();
    if !stored.is_empty() {
        let new_jobs: Vec<NewJob<'_>> = stored
            .iter()
            .map(|(record, id)| NewJob {
                practice_id: &record.practice_id,
                job: Job::SyncInteraction {
                    visit_id: (*id).clone(),
                },
                run_at: now,
            })
            .collect();
        jobs::enqueue_many(&mut tx, state.settings.jobs.max_attempts, &new_jobs).await?;
        let arrived: Vec<Pending> = stored
            .iter()
            .map(|(record, id)| {
                let entry = Entry::new(Action::VisitFinished)
                    .patient(&record.patient_id)
                    .visit(id.as_str())
                    .detail(&record.partner);
                Pending::new(&record.practice_id, &Actor::partner(&record.partner), entry)
            })
            .collect();
        audit::record_many(&mut tx, &arrived).await?;
    }
    tx.commit().await?;
    for (record, id) in &stored {
        tracing::info!(practice_id = %record.practice_id, visit_id = %id, partner = %record.partner, "inbound visit recorded");
    }
    Ok(ids
        .into_iter()
        .map(|id| inserted.contains(id.as_str()).then_some(id))
        .collect())
}
