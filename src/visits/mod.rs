//! The lifecycle of a visit: one launch of a partner tool for one patient.
//!
//! ```text
//! launching ──launched──▶ in_progress ──result──▶ completed   (Hint: draft → signed)
//!     │                       │
//!     └──────error────────────┴──────▶ failed                 (Hint: failed + reason)
//!                                      cancelled              (Hint: deleted)
//! ```
//! Every transition enqueues the `SyncInteraction` job in the same transaction, so Hint's
//! partner interaction always converges to the visit's state, whatever crashes in between.
//! A late result still completes a failed visit: nothing a partner sends is thrown away.

pub mod completion;
pub mod routes;
pub mod write_back;

use serde::Serialize;
use sqlx::AnyConnection;

use crate::{
    db::{new_id, now_ms},
    error::AppError,
    hint::client::InteractionStatus,
    jobs::{self, JobKind, NewJob},
    partners::Partner,
    state::AppState,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitState {
    Launching,
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

impl VisitState {
    pub fn as_str(self) -> &'static str {
        match self {
            VisitState::Launching => "launching",
            VisitState::InProgress => "in_progress",
            VisitState::Completed => "completed",
            VisitState::Failed => "failed",
            VisitState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "launching" => VisitState::Launching,
            "in_progress" => VisitState::InProgress,
            "completed" => VisitState::Completed,
            "cancelled" => VisitState::Cancelled,
            _ => VisitState::Failed,
        }
    }

    /// Words for people.
    pub fn label(self) -> &'static str {
        match self {
            VisitState::Launching => "Starting",
            VisitState::InProgress => "In progress",
            VisitState::Completed => "Completed",
            VisitState::Failed => "Failed",
            VisitState::Cancelled => "Cancelled",
        }
    }

    /// What Hint's partner interaction should say for this state.
    pub fn interaction_status(self) -> InteractionStatus {
        match self {
            VisitState::Launching | VisitState::InProgress => InteractionStatus::Draft,
            VisitState::Completed => InteractionStatus::Signed,
            VisitState::Failed => InteractionStatus::Failed,
            VisitState::Cancelled => InteractionStatus::Deleted,
        }
    }

    pub fn is_open(self) -> bool {
        matches!(self, VisitState::Launching | VisitState::InProgress)
    }
}

/// A visit row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Visit {
    pub id: String,
    pub practice_id: String,
    pub patient_id: String,
    pub patient_name: String,
    pub user_id: String,
    pub user_name: String,
    pub partner: String,
    pub state: String,
    pub partner_ref: Option<String>,
    /// Partner-specific launch data (JSON), e.g. Tiep's form schema.
    pub launch: String,
    /// The partner's result (JSON) once it came.
    pub result: Option<String>,
    pub error_message: Option<String>,
    pub hint_interaction_id: Option<String>,
    pub hint_status: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
}

const VISIT_COLUMNS: &str = "id, practice_id, patient_id, patient_name, user_id, user_name, partner, state, \
    partner_ref, launch, result, error_message, hint_interaction_id, hint_status, created_at, updated_at, completed_at";

impl Visit {
    pub fn state(&self) -> VisitState {
        VisitState::parse(&self.state)
    }

    pub fn partner(&self) -> Option<Partner> {
        Partner::parse(&self.partner)
    }

    pub fn launch_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.launch).unwrap_or_default()
    }

    pub fn result_json(&self) -> Option<serde_json::Value> {
        self.result
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok())
    }

    pub fn partner_name(&self) -> &'static str {
        self.partner()
            .map(|p| p.display_name())
            .unwrap_or("Partner")
    }

    pub fn created(&self) -> String {
        crate::db::format_ms(self.created_at)
    }

    /// The Hint chart's status as last confirmed by Hint, or "not yet in Hint".
    pub fn hint_label(&self) -> String {
        match (&self.hint_interaction_id, &self.hint_status) {
            (Some(_), Some(status)) => format!("In Hint as {status}"),
            _ => "Not yet in Hint".into(),
        }
    }
}

/// What starting a visit needs.
pub struct NewVisit<'a> {
    pub practice_id: &'a str,
    pub patient_id: &'a str,
    pub patient_name: &'a str,
    pub user_id: &'a str,
    pub user_name: &'a str,
    pub partner: Partner,
    pub launch: serde_json::Value,
}

/// Enqueues the write-back for `visit_id` (on the caller's transaction).
async fn enqueue_sync(
    conn: &mut AnyConnection,
    state: &AppState,
    practice_id: &str,
    visit_id: &str,
) -> Result<(), sqlx::Error> {
    jobs::enqueue(
        conn,
        state.settings.jobs.max_attempts,
        NewJob {
            practice_id,
            kind: JobKind::SyncInteraction,
            dedupe_key: format!("sync_interaction:{visit_id}"),
            payload: serde_json::json!({ "visit_id": visit_id }),
            run_at: now_ms(),
        },
    )
    .await
}

/// Schedules a look at the partner for the visit's result at `run_at` (Unix ms).
pub async fn schedule_poll(
    conn: &mut AnyConnection,
    state: &AppState,
    practice_id: &str,
    visit_id: &str,
    run_at: i64,
) -> Result<(), sqlx::Error> {
    jobs::enqueue(
        conn,
        state.settings.jobs.max_attempts,
        NewJob {
            practice_id,
            kind: JobKind::PollPartner,
            dedupe_key: format!("poll_partner:{visit_id}"),
            payload: serde_json::json!({ "visit_id": visit_id }),
            run_at,
        },
    )
    .await
}

/// Drops a pending poll for a visit that no longer needs one (one running now ends by itself).
async fn cancel_poll(conn: &mut AnyConnection, visit_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM jobs WHERE dedupe_key = $1 AND locked_by IS NULL")
        .bind(format!("poll_partner:{visit_id}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// Creates a visit in `launching` and asks for its draft interaction in Hint, atomically.
pub async fn start(state: &AppState, new: NewVisit<'_>) -> Result<String, sqlx::Error> {
    let id = new_id("vis");
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    sqlx::query(
        "INSERT INTO visits (id, practice_id, patient_id, patient_name, user_id, user_name, partner, state, \
         partner_ref, launch, result, error_message, hint_interaction_id, hint_status, created_at, updated_at, completed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'launching', NULL, $8, NULL, NULL, NULL, NULL, $9, $9, NULL)",
    )
    .bind(&id)
    .bind(new.practice_id)
    .bind(new.patient_id)
    .bind(new.patient_name)
    .bind(new.user_id)
    .bind(new.user_name)
    .bind(new.partner.as_str())
    .bind(new.launch.to_string())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    enqueue_sync(&mut tx, state, new.practice_id, &id).await?;
    // If the launch never completes (a crash, a partner that never answers), the poll fails it.
    let launch_deadline = now + state.settings.launch_timeout.as_millis() as i64;
    schedule_poll(&mut tx, state, new.practice_id, &id, launch_deadline).await?;
    tx.commit().await?;
    state.jobs.wake();
    tracing::info!(practice_id = new.practice_id, visit_id = %id, partner = new.partner.as_str(), "visit started");
    Ok(id)
}

/// A visit that arrives finished from an inbound-only partner (MediQuo): stored completed with
/// its result, and its signed interaction asked of Hint, in one transaction. `partner_ref` is
/// the partner's own id for it: the same one twice is stored once (`None` the second time).
pub async fn record_completed(
    state: &AppState,
    new: NewVisit<'_>,
    partner_ref: &str,
    result: &serde_json::Value,
) -> Result<Option<String>, sqlx::Error> {
    let id = new_id("vis");
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO visits (id, practice_id, patient_id, patient_name, user_id, user_name, partner, state, \
         partner_ref, launch, result, error_message, hint_interaction_id, hint_status, created_at, updated_at, completed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'completed', $8, $9, $10, NULL, NULL, NULL, $11, $11, $11) \
         ON CONFLICT (practice_id, partner, partner_ref) DO NOTHING",
    )
    .bind(&id)
    .bind(new.practice_id)
    .bind(new.patient_id)
    .bind(new.patient_name)
    .bind(new.user_id)
    .bind(new.user_name)
    .bind(new.partner.as_str())
    .bind(partner_ref)
    .bind(new.launch.to_string())
    .bind(result.to_string())
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        return Ok(None);
    }
    enqueue_sync(&mut tx, state, new.practice_id, &id).await?;
    tx.commit().await?;
    state.jobs.wake();
    tracing::info!(practice_id = new.practice_id, visit_id = %id, partner = new.partner.as_str(), "inbound visit recorded");
    Ok(Some(id))
}

/// Starts a visit the session's clinician launches for `patient` (see `start`).
pub async fn start_for_patient(
    state: &AppState,
    session: &crate::hint::PracticeSession,
    patient: &crate::hint::client::Patient,
    partner: Partner,
    launch: serde_json::Value,
) -> Result<String, sqlx::Error> {
    start(
        state,
        NewVisit {
            practice_id: &session.practice_id,
            patient_id: &patient.id,
            patient_name: &crate::ids::clean_text(&patient.display_name(), 200),
            user_id: &session.user_id,
            user_name: &session.user_name,
            partner,
            launch,
        },
    )
    .await
}

/// The partner accepted the launch: record its reference, merge launch data, and look for the
/// result after `poll_at` (Unix ms) unless it arrives first.
pub async fn mark_launched(
    state: &AppState,
    practice_id: &str,
    visit_id: &str,
    partner_ref: Option<&str>,
    launch: &serde_json::Value,
    poll_at: Option<i64>,
) -> Result<bool, sqlx::Error> {
    let mut tx = state.db.begin().await?;
    let updated = sqlx::query(
        "UPDATE visits SET state = 'in_progress', partner_ref = $1, launch = $2, updated_at = $3 \
         WHERE id = $4 AND practice_id = $5 AND state = 'launching'",
    )
    .bind(partner_ref)
    .bind(launch.to_string())
    .bind(now_ms())
    .bind(visit_id)
    .bind(practice_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 1 {
        if let Some(at) = poll_at {
            schedule_poll(&mut tx, state, practice_id, visit_id, at).await?;
        }
    }
    tx.commit().await?;
    state.jobs.wake();
    Ok(updated == 1)
}

/// Replaces the launch data of an open visit (e.g. files added while it runs).
pub async fn update_launch(
    state: &AppState,
    practice_id: &str,
    visit_id: &str,
    launch: &serde_json::Value,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE visits SET launch = $1, updated_at = $2 \
         WHERE id = $3 AND practice_id = $4 AND state IN ('launching', 'in_progress')",
    )
    .bind(launch.to_string())
    .bind(now_ms())
    .bind(visit_id)
    .bind(practice_id)
    .execute(state.db.writer())
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Ties an open visit to the partner's result `partner_ref` (e.g. a consultation id); false
/// when another visit of the practice already holds it, or the visit is no longer open.
pub async fn claim_partner_ref(
    state: &AppState,
    practice_id: &str,
    visit_id: &str,
    partner: Partner,
    partner_ref: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = state.db.begin().await?;
    let taken: Option<String> = sqlx::query_scalar(
        "SELECT id FROM visits WHERE practice_id = $1 AND partner = $2 AND partner_ref = $3",
    )
    .bind(practice_id)
    .bind(partner.as_str())
    .bind(partner_ref)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(holder) = taken {
        tx.rollback().await?;
        return Ok(holder == visit_id);
    }
    let updated = sqlx::query(
        "UPDATE visits SET partner_ref = $1, updated_at = $2 \
         WHERE id = $3 AND practice_id = $4 AND state IN ('launching', 'in_progress')",
    )
    .bind(partner_ref)
    .bind(now_ms())
    .bind(visit_id)
    .bind(practice_id)
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
    practice_id: &str,
    visit_id: &str,
    partner: Partner,
    patient_id: Option<&str>,
    result: &serde_json::Value,
) -> Result<bool, AppError> {
    let applied = state
        .completions
        .complete(completion::Completion {
            practice_id: practice_id.to_string(),
            visit_id: visit_id.to_string(),
            partner: partner.as_str(),
            patient_id: patient_id.map(String::from),
            result: result.to_string(),
        })
        .await?;
    if applied {
        tracing::info!(practice_id, visit_id, "visit completed");
    }
    Ok(applied)
}

/// Ends an open visit as failed with `reason` (shown to people and written to Hint).
pub async fn fail(
    state: &AppState,
    practice_id: &str,
    visit_id: &str,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let reason: String = reason.chars().take(500).collect();
    let mut tx = state.db.begin().await?;
    let updated = sqlx::query(
        "UPDATE visits SET state = 'failed', error_message = $1, updated_at = $2, completed_at = $2 \
         WHERE id = $3 AND practice_id = $4 AND state IN ('launching', 'in_progress')",
    )
    .bind(&reason)
    .bind(now)
    .bind(visit_id)
    .bind(practice_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 1 {
        enqueue_sync(&mut tx, state, practice_id, visit_id).await?;
        cancel_poll(&mut tx, visit_id).await?;
    }
    tx.commit().await?;
    if updated == 1 {
        state.jobs.wake();
        tracing::info!(practice_id, visit_id, "visit failed");
    }
    Ok(updated == 1)
}

/// Ends an open visit as cancelled by a clinician (Hint: the interaction is deleted).
pub async fn cancel(
    state: &AppState,
    practice_id: &str,
    visit_id: &str,
) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let mut tx = state.db.begin().await?;
    let updated = sqlx::query(
        "UPDATE visits SET state = 'cancelled', updated_at = $1, completed_at = $1 \
         WHERE id = $2 AND practice_id = $3 AND state IN ('launching', 'in_progress')",
    )
    .bind(now)
    .bind(visit_id)
    .bind(practice_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 1 {
        enqueue_sync(&mut tx, state, practice_id, visit_id).await?;
        cancel_poll(&mut tx, visit_id).await?;
    }
    tx.commit().await?;
    if updated == 1 {
        state.jobs.wake();
        tracing::info!(practice_id, visit_id, "visit cancelled");
    }
    Ok(updated == 1)
}

/// One visit of this practice.
pub async fn get(
    state: &AppState,
    practice_id: &str,
    visit_id: &str,
) -> Result<Option<Visit>, sqlx::Error> {
    sqlx::query_as::<_, Visit>(&format!(
        "SELECT {VISIT_COLUMNS} FROM visits WHERE id = $1 AND practice_id = $2"
    ))
    .bind(visit_id)
    .bind(practice_id)
    .fetch_optional(state.db.reader())
    .await
}

/// The visit a partner knows by `partner_ref` (its session, invite or consultation id).
pub async fn find_by_partner_ref(
    state: &AppState,
    practice_id: &str,
    partner: Partner,
    partner_ref: &str,
) -> Result<Option<Visit>, sqlx::Error> {
    sqlx::query_as::<_, Visit>(&format!(
        "SELECT {VISIT_COLUMNS} FROM visits WHERE practice_id = $1 AND partner = $2 AND partner_ref = $3"
    ))
    .bind(practice_id)
    .bind(partner.as_str())
    .bind(partner_ref)
    .fetch_optional(state.db.reader())
    .await
}

/// The visit behind a Hint partner interaction of this practice.
pub async fn find_by_interaction(
    state: &AppState,
    practice_id: &str,
    interaction_id: &str,
) -> Result<Option<Visit>, sqlx::Error> {
    sqlx::query_as::<_, Visit>(&format!(
        "SELECT {VISIT_COLUMNS} FROM visits WHERE practice_id = $1 AND hint_interaction_id = $2"
    ))
    .bind(practice_id)
    .bind(interaction_id)
    .fetch_optional(state.db.reader())
    .await
}

/// This practice's visits for one patient, newest first.
pub async fn for_patient(
    state: &AppState,
    practice_id: &str,
    patient_id: &str,
) -> Result<Vec<Visit>, sqlx::Error> {
    sqlx::query_as::<_, Visit>(&format!(
        "SELECT {VISIT_COLUMNS} FROM visits WHERE practice_id = $1 AND patient_id = $2 ORDER BY created_at DESC LIMIT 100"
    ))
    .bind(practice_id)
    .bind(patient_id)
    .fetch_all(state.db.reader())
    .await
}

/// This practice's most recent visits.
pub async fn recent(
    state: &AppState,
    practice_id: &str,
    limit: i64,
) -> Result<Vec<Visit>, sqlx::Error> {
    sqlx::query_as::<_, Visit>(&format!(
        "SELECT {VISIT_COLUMNS} FROM visits WHERE practice_id = $1 ORDER BY created_at DESC LIMIT $2"
    ))
    .bind(practice_id)
    .bind(limit)
    .fetch_all(state.db.reader())
    .await
}

/// A visit read on the writer, for jobs that must see the latest state.
pub async fn get_latest(
    state: &AppState,
    practice_id: &str,
    visit_id: &str,
) -> Result<Option<Visit>, sqlx::Error> {
    sqlx::query_as::<_, Visit>(&format!(
        "SELECT {VISIT_COLUMNS} FROM visits WHERE id = $1 AND practice_id = $2"
    ))
    .bind(visit_id)
    .bind(practice_id)
    .fetch_optional(state.db.writer())
    .await
}
