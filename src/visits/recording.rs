//! Visits that arrive finished (MediQuo's consultations), stored by the burst writer
//! (`burst.rs`).
//!
//! Filing one: the visit created completed (a partner reference stored before, or twice in a
//! batch, is stored once), its write-back job queued and its trail entry chained, in three
//! statements whatever the batch's size. A
//! burst's receipt is one row in `recording_receipts` holding the visit as it will be stored,
//! its id chosen and its columns sealed, stored only for a reference no visit holds yet.
//! Sealing is done by each caller before the writer sees the visit: the writer only writes.

use std::collections::HashSet;

use sqlx::{AnyConnection, Row};

use super::{
    NewVisit, VisitId, VisitState,
    burst::{self, Burst, BurstWriter, receipt_practice},
};
use crate::{
    audit::{self, Action, Actor, Entry, Pending},
    config::ResultSettings,
    crypto::row_aad,
    db::{Db, now_ms, placeholders},
    error::AppError,
    hint::HintState,
    jobs::{self, JobSignal, NewJob},
    tenancy::PracticeId,
    visits::write_back::SyncInteraction,
};

/// A finished visit as it is stored, `patient_name`, `launch` and `result` sealed (owned: it
/// crosses to the writer task, and is read back from a receipt).
struct Finished {
    practice_id: PracticeId,
    visit_id: VisitId,
    patient_id: String,
    patient_name: String,
    user_id: String,
    user_name: String,
    partner: String,
    partner_ref: String,
    launch: String,
    result: String,
    received_at: i64,
}

/// Handle to the writer.
#[derive(Clone, Debug)]
pub struct Recordings {
    writer: BurstWriter<Recorder>,
    state: HintState,
}

impl Recordings {
    /// Starts the writer and its filing task (they end when every handle is dropped).
    pub fn spawn(state: HintState, jobs: JobSignal, settings: ResultSettings) -> Self {
        let recorder = Recorder {
            db: state.db.clone(),
            trail: state.audit.clone(),
            jobs,
            max_attempts: state.settings.jobs.max_attempts,
        };
        Self {
            writer: BurstWriter::spawn(recorder, settings),
            state,
        }
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
        let visit_id = VisitId::generate();
        let seal = |column: &str, plain: &str| {
            self.state.secrets.seal_text(
                plain,
                &row_aad("visits", column, practice_id.as_str(), visit_id.as_str()),
            )
        };
        let finished = Finished {
            practice_id: practice_id.clone(),
            patient_id: new.patient_id.to_string(),
            patient_name: seal("patient_name", new.patient_name),
            user_id: new.user_id.to_string(),
            user_name: new.user_name.to_string(),
            partner: new.partner.as_str().to_string(),
            partner_ref: partner_ref.to_string(),
            launch: seal("launch", &new.launch),
            result: seal("result", result),
            received_at: now_ms(),
            visit_id,
        };
        self.writer
            .submit(finished)
            .await
            .map_err(|e| AppError::from(anyhow::Error::new(e)))
    }
}

/// Finished visits, as the burst writer stores them.
struct Recorder {
    db: Db,
    /// Chains the visits' trail entries.
    trail: audit::Recorder,
    jobs: JobSignal,
    max_attempts: i64,
}

/// (practice id, partner, partner reference): one visit each.
type Key = (String, String, String);

impl Burst for Recorder {
    type Item = Finished;
    type Outcome = Option<VisitId>;
    type Key = Key;
    const WHAT: &'static str = "a finished visit";

    fn key(f: &Finished) -> Key {
        (
            f.practice_id.as_str().to_string(),
            f.partner.clone(),
            f.partner_ref.clone(),
        )
    }

    fn db(&self) -> &Db {
        &self.db
    }

    fn left_receipt(stored: &Option<VisitId>) -> bool {
        stored.is_some()
    }

    async fn store_receipts(
        &self,
        connection: &mut AnyConnection,
        items: &[Finished],
    ) -> Result<Vec<Option<VisitId>>, sqlx::Error> {
        let sql = format!(
            "INSERT INTO recording_receipts (practice_id, partner, partner_ref, visit_id, patient_id, \
             patient_name, user_id, user_name, launch, result, received_at) \
             SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, \
             v.column8, v.column9, v.column10, v.column11 \
             FROM (VALUES {rows}) AS v \
             WHERE NOT EXISTS (SELECT 1 FROM visits WHERE visits.practice_id = v.column1 \
             AND visits.partner = v.column2 AND visits.partner_ref = v.column3) \
             ON CONFLICT (practice_id, partner, partner_ref) DO NOTHING \
             RETURNING visit_id",
            rows = placeholders(items.len(), 11, |p| p),
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for f in items {
            query = query
                .bind(&f.practice_id)
                .bind(&f.partner)
                .bind(&f.partner_ref)
                .bind(&f.visit_id)
                .bind(&f.patient_id)
                .bind(&f.patient_name)
                .bind(&f.user_id)
                .bind(&f.user_name)
                .bind(&f.launch)
                .bind(&f.result)
                .bind(f.received_at);
        }
        // One statement commits itself: no BEGIN and COMMIT to wait for.
        let stored: HashSet<String> = query.fetch_all(connection).await?.into_iter().collect();
        Ok(outcomes(items, &stored))
    }

    async fn file_now(&self, items: &[Finished]) -> Result<Vec<Option<VisitId>>, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let stored = file(&mut tx, self, items).await?;
        tx.commit().await?;
        if !stored.is_empty() {
            self.jobs.wake();
        }
        Ok(outcomes(items, &stored))
    }

    async fn file_receipts(&self, limit: usize) -> Result<usize, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let select = "SELECT practice_id, partner, partner_ref, visit_id, patient_id, \
             patient_name, user_id, user_name, launch, result, received_at FROM recording_receipts";
        let rows = burst::take_receipts(&mut tx, &self.db, select, limit).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let receipts = rows
            .iter()
            .map(|row| {
                Ok(Finished {
                    practice_id: receipt_practice(row.try_get("practice_id")?)?,
                    partner: row.try_get("partner")?,
                    partner_ref: row.try_get("partner_ref")?,
                    visit_id: row.try_get("visit_id")?,
                    patient_id: row.try_get("patient_id")?,
                    patient_name: row.try_get("patient_name")?,
                    user_id: row.try_get("user_id")?,
                    user_name: row.try_get("user_name")?,
                    launch: row.try_get("launch")?,
                    result: row.try_get("result")?,
                    received_at: row.try_get("received_at")?,
                })
            })
            .collect::<Result<Vec<Finished>, sqlx::Error>>()?;
        let stored = file(&mut tx, self, &receipts).await?;
        tx.commit().await?;
        let keys: Vec<[&str; 3]> = receipts
            .iter()
            .map(|f| [f.practice_id.as_str(), &f.partner, &f.partner_ref])
            .collect();
        let columns = ["practice_id", "partner", "partner_ref"];
        burst::delete_receipts(&self.db, "recording_receipts", columns, &keys).await?;
        for f in receipts
            .iter()
            .filter(|f| !stored.contains(f.visit_id.as_str()))
        {
            // Its reference is a visit's already (filed by an instance that died before
            // deleting the receipt): stored once, as that visit.
            tracing::warn!(practice_id = %f.practice_id, visit_id = %f.visit_id, partner = %f.partner, "a repeated delivery's receipt was not filed: its reference is stored");
        }
        if !stored.is_empty() {
            self.jobs.wake();
        }
        Ok(receipts.len())
    }
}

/// Each visit's id when it was stored (as a receipt or a visit), `None` for a repeat.
fn outcomes(items: &[Finished], stored: &HashSet<String>) -> Vec<Option<VisitId>> {
    items
        .iter()
        .map(|f| {
            stored
                .contains(f.visit_id.as_str())
                .then(|| f.visit_id.clone())
        })
        .collect()
}

/// Creates the visits (a reference already stored is skipped), their write-back jobs and
/// their trail entries on the caller's transaction; answers the ids created.
async fn file(
    tx: &mut AnyConnection,
    recorder: &Recorder,
    batch: &[Finished],
) -> Result<HashSet<String>, sqlx::Error> {
    let now = now_ms();
    // Thirteen values a visit, then the time they were filed.
    let at = batch.len() * 13 + 1;
    let rows = placeholders(batch.len(), 13, |list| {
        format!("{list}, NULL, NULL, NULL, ${at}")
    });
    let sql = format!(
        "INSERT INTO visits (id, practice_id, patient_id, patient_name, user_id, user_name, partner, state, \
         partner_ref, launch, result, created_at, completed_at, error_message, hint_interaction_id, hint_status, updated_at) \
         VALUES {rows} \
         ON CONFLICT (practice_id, partner, partner_ref) WHERE partner_ref IS NOT NULL DO NOTHING \
         RETURNING id"
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql);
    for f in batch {
        query = query
            .bind(&f.visit_id)
            .bind(&f.practice_id)
            .bind(&f.patient_id)
            .bind(&f.patient_name)
            .bind(&f.user_id)
            .bind(&f.user_name)
            .bind(&f.partner)
            .bind(VisitState::Completed)
            .bind(&f.partner_ref)
            .bind(&f.launch)
            .bind(&f.result)
            // Created and completed when the partner delivered it.
            .bind(f.received_at)
            .bind(f.received_at);
    }
    let inserted: HashSet<String> = query
        .bind(now)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
    let stored: Vec<&Finished> = batch
        .iter()
        .filter(|f| inserted.contains(f.visit_id.as_str()))
        .collect();
    if stored.is_empty() {
        return Ok(inserted);
    }
    let new_jobs: Vec<NewJob<'_>> = stored
        .iter()
        .map(|f| NewJob::new(&f.practice_id, &SyncInteraction::of(&f.visit_id), now))
        .collect();
    jobs::enqueue_many(&mut *tx, recorder.max_attempts, &new_jobs).await?;
    let arrived: Vec<Pending> = stored
        .iter()
        .map(|f| {
            let entry = Entry::new(Action::VisitFinished)
                .patient(&f.patient_id)
                .visit(f.visit_id.as_str())
                .detail(&f.partner);
            Pending::new(&f.practice_id, &Actor::partner(&f.partner), entry)
        })
        .collect();
    recorder.trail.record_all_in(&mut *tx, &arrived).await?;
    Ok(inserted)
}
