//! Each practice's patients in our database, for search at any practice size: filled once by
//! paging through Hint's list within the practice's budget (resumable: a fill cut short goes on
//! from the page it reached), then kept fresh by `patient.*` webhooks (one row at a time) and
//! by an incremental sync that asks Hint only for what changed (`updated_at[gt]`).
//!
//! The rows are PHI: the name and date of birth are sealed per row, like a visit's patient
//! name; only Hint's opaque id is plain. Search runs on each instance's decrypted copy
//! (`directory.rs`), never on Hint.
//!
//! Deletions: Hint's list does not show removed patients, so a removal arrives only as a
//! `patient.destroyed` or `patient.inactive` webhook (Hint retries those for days).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{HintAuth, HintError, HintState, Patient, installations};
use crate::{
    crypto::row_aad,
    db::now_ms,
    ids::ExternalId,
    jobs::{self, Job, JobError, JobOutcome, NewJob, RunJob},
    tenancy::PracticeId,
};

/// Fill the practice's patient index from Hint's list, then keep it in step with Hint's
/// changes (`updated_at[gt]`), again and again. `practice_id` is the job's own practice,
/// repeated because the dedupe key (one such job per practice) is made from the job alone; a
/// job whose two disagree dies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPatients {
    pub practice_id: ExternalId,
}

impl SyncPatients {
    pub fn of(practice_id: &PracticeId) -> Self {
        Self {
            practice_id: practice_id.as_external().clone(),
        }
    }
}

impl Job for SyncPatients {
    const KIND: &'static str = "sync_patients";
    const DESCRIPTION: &'static str = "Read the practice's patients from Hint for search";
    const STANDING: bool = true;

    fn subject(&self) -> String {
        self.practice_id.to_string()
    }
}

#[async_trait::async_trait]
impl<S: AsRef<HintState> + Send + Sync + 'static> RunJob<S> for SyncPatients {
    async fn run(&self, state: &S, practice_id: &PracticeId) -> Result<JobOutcome, JobError> {
        if self.practice_id.as_str() != practice_id.as_str() {
            return Err(JobError::permanent("the job names another practice"));
        }
        match sync(state.as_ref(), practice_id).await {
            Ok(_) => Ok(JobOutcome::CheckAgainAt(
                now_ms() + SYNC_EVERY.as_millis() as i64,
            )),
            Err(e) => Err(JobError::transient(e)),
        }
    }
}

/// Hint's largest page.
const PAGE: usize = 100;
/// How often a filled index asks Hint what changed.
pub const SYNC_EVERY: Duration = Duration::from_secs(10 * 60);
/// Hint's `updated_at` is kept to the second: each sync asks again from a little before the
/// last change it saw (upserts are idempotent), so one made in the same second is not missed.
const OVERLAP: time::Duration = time::Duration::seconds(2);
/// A fill takes minutes at worst; changes made meanwhile are asked for again from its start,
/// less this margin for clocks.
const FILL_MARGIN: time::Duration = time::Duration::minutes(2);

/// What is sealed per row: what search shows and matches, nothing else.
#[derive(Serialize, Deserialize)]
struct Sealed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dob: Option<String>,
}

fn aad(practice_id: &str, patient_id: &str) -> String {
    row_aad("patient_index", "sealed", practice_id, patient_id)
}

/// Where a practice's index stands.
#[derive(Debug, Clone, Default)]
pub struct IndexState {
    /// The first fill's next offset (while `filled_at` is `None`).
    pub fill_offset: i64,
    pub fill_started: Option<String>,
    /// When the first fill completed: the index is complete from then on.
    pub filled_at: Option<i64>,
    /// The `updated_at` from which the next sync asks Hint for changes.
    pub synced_through: Option<String>,
}

pub async fn state(
    state: &HintState,
    practice_id: &PracticeId,
) -> Result<Option<IndexState>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT fill_offset, fill_started, filled_at, synced_through FROM patient_index_state WHERE practice_id = $1",
    )
    .bind(practice_id)
    .fetch_optional(state.db.reader())
    .await?;
    row.map(|row| {
        Ok(IndexState {
            fill_offset: row.try_get("fill_offset")?,
            fill_started: row.try_get("fill_started")?,
            filled_at: row.try_get("filled_at")?,
            synced_through: row.try_get("synced_through")?,
        })
    })
    .transpose()
}

/// Starts a practice's index on the caller's transaction: its state row and, when it is new,
/// its standing [`SyncPatients`] job (wake the runner after the commit). Answers whether it was
/// new.
pub async fn start(
    conn: &mut AnyConnection,
    practice_id: &PracticeId,
    max_attempts: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO patient_index_state (practice_id, fill_offset) VALUES ($1, 0) ON CONFLICT (practice_id) DO NOTHING",
    )
    .bind(practice_id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let sync = SyncPatients::of(practice_id);
    jobs::enqueue(
        conn,
        max_attempts,
        NewJob::new(practice_id, &sync, now_ms()),
    )
    .await?;
    Ok(true)
}

/// Writes patients into the index (new or changed), on the caller's transaction.
pub async fn upsert(
    conn: &mut AnyConnection,
    state: &HintState,
    practice_id: &PracticeId,
    patients: &[Patient],
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    for chunk in patients.chunks(PAGE) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("($1, ${}, ${}, $2)", 3 + i * 2, 4 + i * 2))
            .collect();
        let sql = format!(
            "INSERT INTO patient_index (practice_id, patient_id, sealed, indexed_at) VALUES {} \
             ON CONFLICT (practice_id, patient_id) DO UPDATE SET sealed = excluded.sealed, indexed_at = excluded.indexed_at",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql).bind(practice_id).bind(now);
        for patient in chunk {
            let sealed = Sealed {
                first_name: patient.first_name.clone(),
                last_name: patient.last_name.clone(),
                name: patient.name.clone(),
                dob: patient.dob.clone(),
            };
            let json = serde_json::to_string(&sealed).expect("a sealed row serialises");
            query = query.bind(patient.id.clone()).bind(
                state
                    .secrets
                    .seal_text(&json, &aad(practice_id.as_str(), &patient.id)),
            );
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Removes a patient from the index, on the caller's transaction.
pub async fn remove(
    conn: &mut AnyConnection,
    practice_id: &PracticeId,
    patient_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM patient_index WHERE practice_id = $1 AND patient_id = $2")
        .bind(practice_id)
        .bind(patient_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Every indexed patient of the practice, opened.
pub async fn load(
    state: &HintState,
    practice_id: &PracticeId,
) -> Result<Vec<Patient>, sqlx::Error> {
    let rows = sqlx::query("SELECT patient_id, sealed FROM patient_index WHERE practice_id = $1")
        .bind(practice_id)
        .fetch_all(state.db.reader())
        .await?;
    let mut patients = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("patient_id")?;
        let sealed: String = row.try_get("sealed")?;
        if let Some(patient) = open(state, practice_id, id, &sealed) {
            patients.push(patient);
        }
    }
    Ok(patients)
}

/// One indexed patient, opened (`None`: not indexed).
pub async fn load_one(
    state: &HintState,
    practice_id: &PracticeId,
    patient_id: &str,
) -> Result<Option<Patient>, sqlx::Error> {
    let sealed: Option<String> = sqlx::query_scalar(
        "SELECT sealed FROM patient_index WHERE practice_id = $1 AND patient_id = $2",
    )
    .bind(practice_id)
    .bind(patient_id)
    .fetch_optional(state.db.reader())
    .await?;
    Ok(sealed.and_then(|s| open(state, practice_id, patient_id.to_string(), &s)))
}

fn open(state: &HintState, practice_id: &PracticeId, id: String, sealed: &str) -> Option<Patient> {
    let opened = state
        .secrets
        .open_text(sealed, &aad(practice_id.as_str(), &id))
        .map_err(|e| tracing::error!(%practice_id, error = %e, "an indexed patient does not open"))
        .ok()?;
    let fields: Sealed = serde_json::from_str(&opened).ok()?;
    Some(Patient {
        id,
        first_name: fields.first_name,
        last_name: fields.last_name,
        name: fields.name,
        dob: fields.dob,
        ..Patient::default()
    })
}

/// Why a sync could not run.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the practice has no active Hint install (no token to read its patients with)")]
    NotInstalled,
    #[error(transparent)]
    Hint(#[from] HintError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    App(#[from] crate::error::AppError),
}

/// What a sync did.
#[derive(Debug)]
pub struct Synced {
    /// Patients written (new or changed).
    pub written: usize,
}

/// One run of the practice's sync job: the first fill (from where it stopped), else the
/// changes since the last sync. Announces what changed to every instance.
pub async fn sync(state: &HintState, practice_id: &PracticeId) -> Result<Synced, SyncError> {
    let token = installations::practice_token(state, practice_id)
        .await?
        .ok_or(SyncError::NotInstalled)?;
    let auth = HintAuth {
        practice_id,
        token: &token,
    };
    let current = self::state(state, practice_id).await?.unwrap_or_default();
    let written = if current.filled_at.is_none() {
        fill(state, &auth, current).await?
    } else {
        changes(state, &auth, current).await?
    };
    if written > 0 {
        state.patients.changed(state, practice_id, None).await?;
    }
    Ok(Synced { written })
}

async fn fill(
    state: &HintState,
    auth: &HintAuth<'_>,
    current: IndexState,
) -> Result<usize, SyncError> {
    let practice_id = auth.practice_id;
    let started = match current.fill_started {
        Some(started) => started,
        None => {
            let now = OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .expect("now formats");
            sqlx::query("UPDATE patient_index_state SET fill_started = $1 WHERE practice_id = $2")
                .bind(&now)
                .bind(practice_id)
                .execute(state.db.writer())
                .await?;
            now
        }
    };
    let mut offset = current.fill_offset.max(0) as usize;
    let mut written = 0;
    loop {
        let (page, total) = state.hint.list_patients(auth, PAGE, offset, None).await?;
        let fetched = page.len();
        offset += fetched;
        let mut tx = state.db.begin().await?;
        upsert(&mut tx, state, practice_id, &page).await?;
        sqlx::query("UPDATE patient_index_state SET fill_offset = $1 WHERE practice_id = $2")
            .bind(offset as i64)
            .bind(practice_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        written += fetched;
        if fetched < PAGE || total.is_some_and(|t| offset >= t) {
            break;
        }
    }
    let from = OffsetDateTime::parse(&started, &Rfc3339)
        .map(|at| at - FILL_MARGIN)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    sqlx::query(
        "UPDATE patient_index_state SET filled_at = $1, last_sync_at = $1, synced_through = $2 WHERE practice_id = $3",
    )
    .bind(now_ms())
    .bind(from.format(&Rfc3339).expect("a time formats"))
    .bind(practice_id)
    .execute(state.db.writer())
    .await?;
    tracing::info!(%practice_id, patients = offset, "patient index filled");
    Ok(written)
}

async fn changes(
    state: &HintState,
    auth: &HintAuth<'_>,
    current: IndexState,
) -> Result<usize, SyncError> {
    let practice_id = auth.practice_id;
    let since = current
        .synced_through
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
    let mut latest: Option<OffsetDateTime> = None;
    let mut offset = 0;
    let mut written = 0;
    loop {
        let (page, total) = state
            .hint
            .list_patients(auth, PAGE, offset, Some(&since))
            .await?;
        let fetched = page.len();
        offset += fetched;
        for patient in &page {
            let at = patient
                .updated_at
                .as_deref()
                .and_then(|u| OffsetDateTime::parse(u, &Rfc3339).ok());
            latest = latest.max(at);
        }
        if fetched > 0 {
            let mut tx = state.db.begin().await?;
            upsert(&mut tx, state, practice_id, &page).await?;
            tx.commit().await?;
            written += fetched;
        }
        if fetched < PAGE || total.is_some_and(|t| offset >= t) {
            break;
        }
    }
    let through = match latest {
        Some(at) => (at - OVERLAP).format(&Rfc3339).expect("a time formats"),
        None => since,
    };
    sqlx::query(
        "UPDATE patient_index_state SET last_sync_at = $1, synced_through = $2 WHERE practice_id = $3",
    )
    .bind(now_ms())
    .bind(through)
    .bind(practice_id)
    .execute(state.db.writer())
    .await?;
    Ok(written)
}
