//! Visits: one launch of a partner tool for one patient, and its result.
//!
//! The states and the moves between them are in [`lifecycle`]; every move goes through one
//! transition function here and enqueues the `SyncInteraction` job in the same transaction,
//! so Hint's partner interaction always converges to the visit's state, whatever crashes in
//! between. Every query takes the practice first: a visit is only ever found within it.
//!
//! - [`partner`]: the seam to the partners (trait, registry, errors);
//! - [`launch`]: the one launch sequence; [`routes`]: start and cancel from the frame;
//! - [`page`]: the `clinical_interaction` surface, the visit's own page;
//! - [`completion`]: results, group-committed; [`poll`] and [`write_back`]: the jobs.

mod app_state;
mod burst;
pub mod completion;
pub mod health;
pub mod launch;
pub mod lifecycle;
pub mod page;
pub mod partner;
pub mod poll;
pub mod recording;
pub mod routes;
pub mod write_back;

use serde::{Serialize, de::DeserializeOwned};
use sqlx::AnyConnection;

pub use app_state::AppState;
pub use lifecycle::VisitState;
pub use partner::{LaunchStyle, PartnerError, PartnerId, PartnerState, PartnerTool, Partners};

pub use crate::ids::VisitId;

use crate::{
    audit::{self, Action, Actor, Entry},
    crypto::{CryptoError, SecretBox, row_aad},
    db::now_ms,
    error::AppError,
    jobs::{self, Job, NewJob},
    tenancy::PracticeId,
};

/// A visit. Read from the database only through [`StoredVisit`], which opens its sealed
/// columns.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Visit {
    pub id: VisitId,
    pub patient_id: String,
    pub patient_name: String,
    pub user_id: String,
    pub user_name: String,
    /// The partner's id (`PartnerTool::id`); `Partners::of` finds the partner.
    pub partner: String,
    pub state: VisitState,
    pub partner_ref: Option<String>,
    /// The partner's launch data (its own serde struct, as JSON), e.g. Tiep's form.
    pub launch: String,
    /// The partner's result (its own serde struct, as JSON) once it came.
    pub result: Option<String>,
    pub error_message: Option<String>,
    pub hint_interaction_id: Option<String>,
    pub hint_status: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
}

/// A visit as stored: `patient_name`, `launch`, `result` and `error_message` hold patient data
/// and are sealed ([`SecretBox::seal_text`], the row's practice and id as associated data);
/// [`StoredVisit::open`] reads them. Ids, states, times and the clinician's name stay plain:
/// the queries sort and filter by them.
#[derive(Debug, Clone)]
pub struct StoredVisit(Visit);

impl<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> for StoredVisit {
    fn from_row(row: &'r sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
        Visit::from_row(row).map(StoredVisit)
    }
}

impl StoredVisit {
    /// Opens the sealed columns of a row of `practice_id`.
    pub fn open(self, secrets: &SecretBox, practice_id: &str) -> Result<Visit, CryptoError> {
        let mut visit = self.0;
        let aad = |column: &str| row_aad("visits", column, practice_id, visit.id.as_str());
        let (name, launch) = (aad("patient_name"), aad("launch"));
        let (result, error) = (aad("result"), aad("error_message"));
        visit.patient_name = secrets.open_text(&visit.patient_name, &name)?;
        visit.launch = secrets.open_text(&visit.launch, &launch)?;
        if let Some(r) = visit.result.take() {
            visit.result = Some(secrets.open_text(&r, &result)?);
        }
        if let Some(m) = visit.error_message.take() {
            visit.error_message = Some(secrets.open_text(&m, &error)?);
        }
        Ok(visit)
    }
}

/// Seals a patient-data column of a visit for storing.
fn seal(
    state: &AppState,
    column: &str,
    practice_id: &PracticeId,
    visit_id: &VisitId,
    plain: &str,
) -> String {
    seal_for(state, column, practice_id.as_str(), visit_id, plain)
}

fn seal_for(
    state: &AppState,
    column: &str,
    practice: &str,
    visit_id: &VisitId,
    plain: &str,
) -> String {
    state.secrets.seal_text(
        plain,
        &row_aad("visits", column, practice, visit_id.as_str()),
    )
}

/// The columns a query reads a [`StoredVisit`] from.
pub const VISIT_COLUMNS: &str = "id, patient_id, patient_name, user_id, user_name, partner, state, \
    partner_ref, launch, result, error_message, hint_interaction_id, hint_status, created_at, updated_at, completed_at";

/// Opens rows read for `practice_id`; a row that does not open is a row that does not decode.
fn open_rows(
    state: &AppState,
    practice_id: &PracticeId,
    rows: Vec<StoredVisit>,
) -> Result<Vec<Visit>, sqlx::Error> {
    rows.into_iter()
        .map(|row| {
            row.open(&state.secrets, practice_id.as_str())
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))
        })
        .collect()
}

/// Seals the patient data of rows written before sealing began (run at start; a no-op once
/// done). Answers how many rows it sealed.
pub async fn seal_stored(state: &AppState) -> Result<u64, sqlx::Error> {
    let unsealed = format!(
        "SELECT practice_id, {VISIT_COLUMNS} FROM visits WHERE patient_name NOT LIKE '{p}%' \
         OR launch NOT LIKE '{p}%' OR (result IS NOT NULL AND result NOT LIKE '{p}%') \
         OR (error_message IS NOT NULL AND error_message NOT LIKE '{p}%') LIMIT 500",
        p = crate::crypto::SEALED_TEXT
    );
    let mut sealed = 0;
    loop {
        let rows = sqlx::query(&unsealed).fetch_all(state.db.writer()).await?;
        if rows.is_empty() {
            return Ok(sealed);
        }
        for row in rows {
            use sqlx::{FromRow, Row};
            // A maintenance pass over every practice's rows: each is sealed for its own.
            let practice: String = row.try_get("practice_id")?;
            let stored = StoredVisit::from_row(&row)?;
            let read = stored.0.clone();
            let visit = stored
                .open(&state.secrets, &practice)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            let id = &visit.id;
            let p = practice.as_str();
            // Only if the row is still as read: another instance may have written it since.
            let done = sqlx::query(
                "UPDATE visits SET patient_name = $1, launch = $2, result = $3, error_message = $4 \
                 WHERE practice_id = $5 AND id = $6 AND patient_name = $7 AND launch = $8 \
                 AND COALESCE(result, '') = $9 AND COALESCE(error_message, '') = $10",
            )
            .bind(seal_for(state, "patient_name", p, id, &visit.patient_name))
            .bind(seal_for(state, "launch", p, id, &visit.launch))
            .bind(
                visit
                    .result
                    .as_deref()
                    .map(|r| seal_for(state, "result", p, id, r)),
            )
            .bind(
                visit
                    .error_message
                    .as_deref()
                    .map(|m| seal_for(state, "error_message", p, id, m)),
            )
            .bind(p)
            .bind(id)
            .bind(&read.patient_name)
            .bind(&read.launch)
            .bind(read.result.as_deref().unwrap_or_default())
            .bind(read.error_message.as_deref().unwrap_or_default())
            .execute(state.db.writer())
            .await?
            .rows_affected();
            sealed += done;
        }
    }
}

/// Launch or result data that does not read as the partner's struct (written by another
/// version, or for another partner): an error, never a silent default.
#[derive(Debug, thiserror::Error)]
#[error("the stored {what} of visit {visit_id} does not read")]
pub struct VisitDataError {
    what: &'static str,
    visit_id: VisitId,
    #[source]
    source: serde_json::Error,
}

impl From<VisitDataError> for AppError {
    fn from(e: VisitDataError) -> Self {
        AppError::Internal(anyhow::Error::new(e))
    }
}

impl Visit {
    pub fn state(&self) -> VisitState {
        self.state
    }

    /// Whether the visit is `partner`'s.
    pub fn is_of(&self, partner: PartnerId) -> bool {
        self.partner == partner.as_str()
    }

    /// The partner's launch data.
    pub fn launch_data<T: DeserializeOwned>(&self) -> Result<T, VisitDataError> {
        serde_json::from_str(&self.launch).map_err(|source| VisitDataError {
            what: "launch data",
            visit_id: self.id.clone(),
            source,
        })
    }

    /// The partner's result, once it came.
    pub fn result_data<T: DeserializeOwned>(&self) -> Result<Option<T>, VisitDataError> {
        self.result
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|source| VisitDataError {
                what: "result",
                visit_id: self.id.clone(),
                source,
            })
    }

    pub fn created(&self) -> String {
        crate::db::format_ms(self.created_at)
    }

    /// Whether Hint's chart, as Hint last confirmed it, says what the visit says.
    pub fn in_hint_as_here(&self) -> bool {
        self.hint_status.as_deref() == Some(self.state.interaction_status().as_str())
    }

    /// The Hint chart's status as last confirmed by Hint, or "not yet in Hint".
    pub fn hint_label(&self) -> String {
        match (&self.hint_interaction_id, &self.hint_status) {
            (Some(_), Some(status)) => format!("In Hint as {status}"),
            _ => "Not yet in Hint".into(),
        }
    }
}

/// What starting a visit needs (the practice is passed beside it).
pub struct NewVisit<'a> {
    pub patient_id: &'a str,
    pub patient_name: &'a str,
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub partner: PartnerId,
    /// The partner's launch data as JSON (`to_json`).
    pub launch: String,
}

/// Deliveries acknowledged in a burst and not filed yet, on every instance (`burst.rs`;
/// metrics, and tests waiting for them).
pub async fn receipts_waiting(db: &crate::db::Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM result_receipts) + (SELECT COUNT(*) FROM recording_receipts)",
    )
    .fetch_one(db.reader())
    .await
}

/// The partner's launch or result data as stored.
pub fn to_json(data: &impl Serialize) -> String {
    serde_json::to_string(data).expect("launch and result data serialise")
}

/// Enqueues `job` for the practice on the caller's transaction.
async fn enqueue(
    conn: &mut AnyConnection,
    state: &AppState,
    practice_id: &PracticeId,
    job: Job,
    run_at: i64,
) -> Result<(), sqlx::Error> {
    let new = NewJob {
        practice_id,
        job,
        run_at,
    };
    jobs::enqueue(conn, state.settings.jobs.max_attempts, new).await
}

/// Enqueues the write-back of a visit (on the caller's transaction).
async fn enqueue_sync(
    conn: &mut AnyConnection,
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
) -> Result<(), sqlx::Error> {
    let job = Job::SyncInteraction {
        visit_id: visit_id.clone(),
    };
    enqueue(conn, state, practice_id, job, now_ms()).await
}

/// Schedules a look at the partner for the visit's result at `run_at` (Unix ms).
async fn schedule_poll(
    conn: &mut AnyConnection,
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
    run_at: i64,
) -> Result<(), sqlx::Error> {
    let job = Job::PollPartner {
        visit_id: visit_id.clone(),
    };
    enqueue(conn, state, practice_id, job, run_at).await
}

/// Drops a pending poll for a visit that no longer needs one (one running now ends by itself).
async fn cancel_poll(conn: &mut AnyConnection, visit_id: &VisitId) -> Result<(), sqlx::Error> {
    let poll = Job::PollPartner {
        visit_id: visit_id.clone(),
    };
    sqlx::query("DELETE FROM jobs WHERE dedupe_key = $1 AND locked_by IS NULL")
        .bind(poll.dedupe_key())
        .execute(conn)
        .await?;
    Ok(())
}

/// What a move sets besides the state.
enum Change<'a> {
    /// In progress: the partner's reference for the visit and the launch data.
    Launched {
        partner_ref: Option<&'a str>,
        launch: &'a str,
    },
    /// Failed, with the reason shown to people and written to Hint.
    Failed {
        reason: &'a str,
    },
    Cancelled,
}

/// Moves a visit of this practice to `change`'s state if the lifecycle allows it from where
/// the visit is (the guard comes from [`lifecycle::guard`]), on the caller's transaction.
/// Answers the visit's patient when it moved; `None` when the visit was not in a state that
/// may move there (or is not this practice's). A visit that ends also asks Hint for the
/// change and drops its pending poll.
async fn transition(
    conn: &mut AnyConnection,
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
    change: Change<'_>,
) -> Result<Option<String>, sqlx::Error> {
    let to = match change {
        Change::Launched { .. } => VisitState::InProgress,
        Change::Failed { .. } => VisitState::Failed,
        Change::Cancelled => VisitState::Cancelled,
    };
    // $1 state, $2 now, $3 practice, $4 id; the change's own values follow.
    let set = match change {
        Change::Launched { .. } => "partner_ref = $5, launch = $6",
        Change::Failed { .. } => "error_message = $5, completed_at = $2",
        Change::Cancelled => "completed_at = $2",
    };
    let sql = format!(
        "UPDATE visits SET state = $1, updated_at = $2, {set} \
         WHERE practice_id = $3 AND id = $4 AND {} RETURNING patient_id",
        lifecycle::guard("visits", to)
    );
    let query = sqlx::query_scalar::<_, String>(&sql)
        .bind(to)
        .bind(now_ms())
        .bind(practice_id)
        .bind(visit_id);
    let query = match change {
        Change::Launched {
            partner_ref,
            launch,
        } => query
            .bind(partner_ref)
            .bind(seal(state, "launch", practice_id, visit_id, launch)),
        Change::Failed { reason } => {
            let reason: String = reason.chars().take(500).collect();
            query.bind(seal(state, "error_message", practice_id, visit_id, &reason))
        }
        Change::Cancelled => query,
    };
    let patient = query.fetch_optional(&mut *conn).await?;
    if patient.is_some() && !to.is_open() {
        enqueue_sync(conn, state, practice_id, visit_id).await?;
        cancel_poll(conn, visit_id).await?;
    }
    Ok(patient)
}

/// Creates a visit in `launching` and asks for its draft interaction in Hint, atomically. If
/// the launch never completes (a crash, a partner that never answers), the poll scheduled for
/// `launch_timeout` fails it with a reason.
pub async fn start(
    state: &AppState,
    practice_id: &PracticeId,
    new: NewVisit<'_>,
    actor: &Actor,
) -> Result<VisitId, sqlx::Error> {
    let id = VisitId::generate();
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "INSERT INTO visits (id, practice_id, patient_id, patient_name, user_id, user_name, partner, state, \
         partner_ref, launch, result, error_message, hint_interaction_id, hint_status, created_at, updated_at, completed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, NULL, NULL, NULL, NULL, $10, $10, NULL)",
    )
    .bind(&id)
    .bind(practice_id)
    .bind(new.patient_id)
    .bind(seal(state, "patient_name", practice_id, &id, new.patient_name))
    .bind(new.user_id)
    .bind(new.user_name)
    .bind(new.partner.as_str())
    .bind(VisitState::Launching)
    .bind(seal(state, "launch", practice_id, &id, &new.launch))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    enqueue_sync(&mut tx, state, practice_id, &id).await?;
    let launched = Entry::new(Action::VisitLaunched)
        .patient(new.patient_id)
        .visit(id.as_str())
        .detail(new.partner.as_str());
    audit::record(&mut tx, practice_id, actor, launched).await?;
    let launch_deadline = now + state.settings.launch_timeout.as_millis() as i64;
    schedule_poll(&mut tx, state, practice_id, &id, launch_deadline).await?;
    tx.commit().await?;
    state.jobs.wake();
    tracing::info!(%practice_id, visit_id = %id, partner = %new.partner, "visit started");
    Ok(id)
}

/// A visit that arrives finished from an inbound-only partner (MediQuo): stored completed with
/// its result, and its signed interaction asked of Hint, in one transaction (shared with the
/// other deliveries arriving with it: `recording.rs`). `partner_ref` is the partner's own id for
/// it: the same one twice is stored once (`None` the second time).
pub async fn record_completed(
    state: &AppState,
    practice_id: &PracticeId,
    new: NewVisit<'_>,
    partner_ref: &str,
    result: &str,
) -> Result<Option<VisitId>, AppError> {
    state
        .recordings
        .record(practice_id, new, partner_ref, result)
        .await
}

/// The partner accepted the launch: record its reference and the launch data, and look for
/// the result after `poll_at` (Unix ms) unless it arrives first. False when the visit was no
/// longer launching (it timed out, or was cancelled, meanwhile).
pub async fn mark_launched(
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
    partner_ref: Option<&str>,
    launch: &impl Serialize,
    poll_at: Option<i64>,
) -> Result<bool, sqlx::Error> {
    let launch = to_json(launch);
    let mut tx = state.db.begin().await?;
    let change = Change::Launched {
        partner_ref,
        launch: &launch,
    };
    let moved = transition(&mut tx, state, practice_id, visit_id, change)
        .await?
        .is_some();
    if moved {
        if let Some(at) = poll_at {
            schedule_poll(&mut tx, state, practice_id, visit_id, at).await?;
        }
    }
    tx.commit().await?;
    state.jobs.wake();
    Ok(moved)
}

/// Replaces the launch data of an open visit (e.g. files added while it runs).
pub async fn update_launch(
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
    launch: &impl Serialize,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "UPDATE visits SET launch = $1, updated_at = $2 \
         WHERE practice_id = $3 AND id = $4 AND {}",
        lifecycle::open_guard("visits")
    );
    let updated = sqlx::query(&sql)
        .bind(seal(
            state,
            "launch",
            practice_id,
            visit_id,
            &to_json(launch),
        ))
        .bind(now_ms())
        .bind(practice_id)
        .bind(visit_id)
        .execute(state.db.writer())
        .await?
        .rows_affected();
    Ok(updated == 1)
}

/// Ties an open visit to the partner's result `partner_ref` (e.g. a consultation id); false
/// when another visit of the practice already holds it, or the visit is no longer open.
pub async fn claim_partner_ref(
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
    partner: PartnerId,
    partner_ref: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = state.db.begin().await?;
    let taken: Option<VisitId> = sqlx::query_scalar(
        "SELECT id FROM visits WHERE practice_id = $1 AND partner = $2 AND partner_ref = $3",
    )
    .bind(practice_id)
    .bind(partner.as_str())
    .bind(partner_ref)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(holder) = taken {
        tx.rollback().await?;
        return Ok(&holder == visit_id);
    }
    let sql = format!(
        "UPDATE visits SET partner_ref = $1, updated_at = $2 \
         WHERE practice_id = $3 AND id = $4 AND {}",
        lifecycle::open_guard("visits")
    );
    let updated = sqlx::query(&sql)
        .bind(partner_ref)
        .bind(now_ms())
        .bind(practice_id)
        .bind(visit_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(updated == 1)
}

/// Stores the partner's result and asks Hint to sign the interaction (group-committed, see
/// `completion`). False when the visit was not open for it: already completed (a duplicate
/// delivery), cancelled, unknown, or another partner's or patient's.
pub async fn complete(
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
    partner: PartnerId,
    patient_id: Option<&str>,
    result: &impl Serialize,
    actor: &Actor,
) -> Result<bool, AppError> {
    let applied = state
        .completions
        .complete(completion::Completion {
            practice_id: practice_id.clone(),
            visit_id: visit_id.clone(),
            partner,
            actor: actor.clone(),
            patient_id: patient_id.map(String::from),
            result: seal(state, "result", practice_id, visit_id, &to_json(result)),
        })
        .await?;
    if applied {
        tracing::info!(%practice_id, %visit_id, "visit completed");
    }
    Ok(applied)
}

/// Ends an open visit as failed with `reason` (shown to people and written to Hint). Chartbridge
/// decides it (a refusal, a timeout): the trail says so.
pub async fn fail(
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = state.db.begin().await?;
    let change = Change::Failed { reason };
    let patient = transition(&mut tx, state, practice_id, visit_id, change).await?;
    if let Some(patient) = &patient {
        let failed = Entry::new(Action::VisitFailed)
            .patient(patient)
            .visit(visit_id.as_str());
        audit::record(&mut tx, practice_id, &Actor::chartbridge(), failed).await?;
    }
    let moved = patient.is_some();
    tx.commit().await?;
    if moved {
        state.jobs.wake();
        tracing::info!(%practice_id, %visit_id, "visit failed");
    }
    Ok(moved)
}

/// Ends an open visit as cancelled by a clinician (Hint: the interaction is deleted).
pub async fn cancel(
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
    actor: &Actor,
) -> Result<bool, sqlx::Error> {
    let mut tx = state.db.begin().await?;
    let patient = transition(&mut tx, state, practice_id, visit_id, Change::Cancelled).await?;
    if let Some(patient) = &patient {
        let cancelled = Entry::new(Action::VisitCancelled)
            .patient(patient)
            .visit(visit_id.as_str());
        audit::record(&mut tx, practice_id, actor, cancelled).await?;
    }
    let moved = patient.is_some();
    tx.commit().await?;
    if moved {
        state.jobs.wake();
        tracing::info!(%practice_id, %visit_id, "visit cancelled");
    }
    Ok(moved)
}

/// Every read of visits: the practice filter first, then `rest` (`$2`… are its values).
fn visits_of_practice(rest: &str) -> String {
    format!("SELECT {VISIT_COLUMNS} FROM visits WHERE practice_id = $1 AND {rest}")
}

/// One visit of this practice.
pub async fn get(
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
) -> Result<Option<Visit>, sqlx::Error> {
    one(state, state.db.reader(), practice_id, visit_id).await
}

/// One visit of this practice, read on the writer: for work that must see the latest state.
pub async fn get_latest(
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
) -> Result<Option<Visit>, sqlx::Error> {
    one(state, state.db.writer(), practice_id, visit_id).await
}

async fn one(
    state: &AppState,
    pool: &sqlx::AnyPool,
    practice_id: &PracticeId,
    visit_id: &VisitId,
) -> Result<Option<Visit>, sqlx::Error> {
    let row = sqlx::query_as::<_, StoredVisit>(&visits_of_practice("id = $2"))
        .bind(practice_id)
        .bind(visit_id)
        .fetch_optional(pool)
        .await?;
    Ok(open_rows(state, practice_id, row.into_iter().collect())?.pop())
}

/// The visit a partner knows by `partner_ref` (its session, invite or consultation id).
pub async fn find_by_partner_ref(
    state: &AppState,
    practice_id: &PracticeId,
    partner: PartnerId,
    partner_ref: &str,
) -> Result<Option<Visit>, sqlx::Error> {
    let row =
        sqlx::query_as::<_, StoredVisit>(&visits_of_practice("partner = $2 AND partner_ref = $3"))
            .bind(practice_id)
            .bind(partner.as_str())
            .bind(partner_ref)
            .fetch_optional(state.db.reader())
            .await?;
    Ok(open_rows(state, practice_id, row.into_iter().collect())?.pop())
}

/// The visit behind a Hint partner interaction of this practice.
pub async fn find_by_interaction(
    state: &AppState,
    practice_id: &PracticeId,
    interaction_id: &str,
) -> Result<Option<Visit>, sqlx::Error> {
    let row = sqlx::query_as::<_, StoredVisit>(&visits_of_practice("hint_interaction_id = $2"))
        .bind(practice_id)
        .bind(interaction_id)
        .fetch_optional(state.db.reader())
        .await?;
    Ok(open_rows(state, practice_id, row.into_iter().collect())?.pop())
}

/// This practice's visits for one patient, newest first.
pub async fn for_patient(
    state: &AppState,
    practice_id: &PracticeId,
    patient_id: &str,
) -> Result<Vec<Visit>, sqlx::Error> {
    let sql = visits_of_practice("patient_id = $2 ORDER BY created_at DESC LIMIT 100");
    let rows = sqlx::query_as::<_, StoredVisit>(&sql)
        .bind(practice_id)
        .bind(patient_id)
        .fetch_all(state.db.reader())
        .await?;
    open_rows(state, practice_id, rows)
}

/// This practice's most recent visits.
pub async fn recent(
    state: &AppState,
    practice_id: &PracticeId,
    limit: i64,
) -> Result<Vec<Visit>, sqlx::Error> {
    let sql = visits_of_practice("1 = 1 ORDER BY created_at DESC LIMIT $2");
    let rows = sqlx::query_as::<_, StoredVisit>(&sql)
        .bind(practice_id)
        .bind(limit)
        .fetch_all(state.db.reader())
        .await?;
    open_rows(state, practice_id, rows)
}
