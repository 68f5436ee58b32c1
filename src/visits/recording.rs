//! Group commit for visits that arrive finished (MediQuo's consultations): each delivery was
//! its own transaction, holding its practice's audit head (the hash chain's row) until it
//! committed, so one practice's deliveries were written one at a time. One writer task takes
//! every delivery waiting, stores them in one transaction (each insert decides on its own: a
//! partner reference seen before is stored once) and answers each caller once it is committed.

use tokio::sync::{mpsc, oneshot};

use super::{NewVisit, VisitId, VisitState};
use crate::{
    audit::{self, Action, Actor, Entry},
    crypto::row_aad,
    db::now_ms,
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

/// One transaction for the batch: per record, the visit (unless its reference is stored), its
/// write-back job and its audit entry.
async fn write(
    state: &HintState,
    batch: &[(Record, Reply)],
) -> Result<Vec<Option<VisitId>>, sqlx::Error> {
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let mut ids = Vec::with_capacity(batch.len());
    for (record, _) in batch {
        let id = VisitId::generate();
        let practice = record.practice_id.as_str();
        let seal = |column: &str, plain: &str| {
            state
                .secrets
                .seal_text(plain, &row_aad("visits", column, practice, id.as_str()))
        };
        let inserted = sqlx::query(
            "INSERT INTO visits (id, practice_id, patient_id, patient_name, user_id, user_name, partner, state, \
             partner_ref, launch, result, error_message, hint_interaction_id, hint_status, created_at, updated_at, completed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL, NULL, $12, $12, $12) \
             ON CONFLICT (practice_id, partner, partner_ref) WHERE partner_ref IS NOT NULL DO NOTHING",
        )
        .bind(&id)
        .bind(&record.practice_id)
        .bind(&record.patient_id)
        .bind(seal("patient_name", &record.patient_name))
        .bind(&record.user_id)
        .bind(&record.user_name)
        .bind(&record.partner)
        .bind(VisitState::Completed)
        .bind(&record.partner_ref)
        .bind(seal("launch", &record.launch))
        .bind(seal("result", &record.result))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            ids.push(None);
            continue;
        }
        let job = NewJob {
            practice_id: &record.practice_id,
            job: Job::SyncInteraction {
                visit_id: id.clone(),
            },
            run_at: now,
        };
        jobs::enqueue(&mut tx, state.settings.jobs.max_attempts, job).await?;
        let arrived = Entry::new(Action::VisitFinished)
            .patient(&record.patient_id)
            .visit(id.as_str())
            .detail(&record.partner);
        let partner = Actor::partner(&record.partner);
        audit::record(&mut tx, &record.practice_id, &partner, arrived).await?;
        tracing::info!(practice_id = %record.practice_id, visit_id = %id, partner = %record.partner, "inbound visit recorded");
        ids.push(Some(id));
    }
    tx.commit().await?;
    Ok(ids)
}
