//! The moves of one visit, each on a transaction with the jobs it needs: started (with its
//! draft asked of Hint), launched, its launch data updated, its result stored, failed,
//! cancelled. The guards come from [`super::lifecycle`].

use sqlx::AnyConnection;

use serde::Serialize;

use super::{
    AppState, NewVisit, PartnerId, VisitId, VisitState, completion, lifecycle, stored::seal,
    to_json,
};
use crate::{
    audit::{Action, Actor, Entry},
    db::now_ms,
    error::AppError,
    jobs::{self, Job, NewJob},
    tenancy::PracticeId,
    visits::{poll::PollPartner, write_back::SyncInteraction},
};

/// Enqueues `job` for the practice on the caller's transaction.
pub(super) async fn enqueue(
    conn: &mut AnyConnection,
    state: &AppState,
    practice_id: &PracticeId,
    job: &impl Job,
    run_at: i64,
) -> Result<(), sqlx::Error> {
    let new = NewJob::new(practice_id, job, run_at);
    jobs::enqueue(conn, state.settings.jobs.max_attempts, new).await
}

/// Enqueues the write-back of a visit (on the caller's transaction).
pub(super) async fn enqueue_sync(
    conn: &mut AnyConnection,
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
) -> Result<(), sqlx::Error> {
    let job = SyncInteraction::of(visit_id);
    enqueue(conn, state, practice_id, &job, now_ms()).await
}

/// Schedules a look at the partner for the visit's result at `run_at` (Unix ms).
pub(super) async fn schedule_poll(
    conn: &mut AnyConnection,
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
    run_at: i64,
) -> Result<(), sqlx::Error> {
    let job = PollPartner::of(visit_id);
    enqueue(conn, state, practice_id, &job, run_at).await
}

/// Drops a pending poll for a visit that no longer needs one (one running now ends by itself).
pub(super) async fn cancel_poll(
    conn: &mut AnyConnection,
    visit_id: &VisitId,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM jobs WHERE dedupe_key = $1 AND locked_by IS NULL")
        .bind(PollPartner::of(visit_id).dedupe_key())
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
    state
        .audit
        .record_in(&mut tx, practice_id, actor, launched)
        .await?;
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
        state
            .audit
            .record_in(&mut tx, practice_id, &Actor::chartbridge(), failed)
            .await?;
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
        state
            .audit
            .record_in(&mut tx, practice_id, actor, cancelled)
            .await?;
    }
    let moved = patient.is_some();
    tx.commit().await?;
    if moved {
        state.jobs.wake();
        tracing::info!(%practice_id, %visit_id, "visit cancelled");
    }
    Ok(moved)
}
