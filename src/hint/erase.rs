//! A patient Hint destroyed leaves Chartbridge: within the event's transaction, their visits
//! keep ids, states and times only (the name, launch data, result and failure reason
//! emptied), and their earlier results, files, file links, receipts and pending jobs go; an
//! audit entry says what was removed and why.
//!
//! The visit tables belong to the lifecycle above this layer; like a rename, the erasure must
//! commit with the event that asks for it. On SQLite, freed space is overwritten while it runs
//! (`secure_delete`) and the write-ahead log is emptied afterwards ([`settle`]), so no sealed
//! value of the patient's stays in the file.

use sqlx::AnyConnection;

use super::HintState;
use crate::{
    audit::{Action, Actor, Entry},
    db::Backend,
    tenancy::PracticeId,
};

/// The tables of a visit's own that hold patient data, each by `visit_id`, in delete order.
const BY_VISIT: [&str; 3] = ["visit_versions", "result_receipts", "recording_receipts"];

/// Erases `patient_id`'s data on the caller's transaction. Answers how many visits it emptied.
pub async fn patient(
    tx: &mut AnyConnection,
    state: &HintState,
    practice_id: &PracticeId,
    patient_id: &str,
) -> Result<u64, sqlx::Error> {
    let sqlite = state.db.backend() == Backend::Sqlite;
    if sqlite {
        sqlx::query("PRAGMA secure_delete = ON")
            .execute(&mut *tx)
            .await?;
    }
    let visits = "SELECT id FROM visits WHERE practice_id = $1 AND patient_id = $2";
    sqlx::query(&format!(
        "DELETE FROM file_links WHERE practice_id = $1 AND file_id IN \
         (SELECT id FROM visit_files WHERE practice_id = $1 AND visit_id IN ({visits}))"
    ))
    .bind(practice_id)
    .bind(patient_id)
    .execute(&mut *tx)
    .await?;
    let mut removed = Vec::new();
    for table in ["visit_files"].into_iter().chain(BY_VISIT) {
        let done = sqlx::query(&format!(
            "DELETE FROM {table} WHERE practice_id = $1 AND visit_id IN ({visits})"
        ))
        .bind(practice_id)
        .bind(patient_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            removed.push(format!("{} {table}", done.rows_affected()));
        }
    }
    // Their visits' pending work (the write-back to a chart Hint no longer has, the poll).
    sqlx::query(&format!(
        "DELETE FROM jobs WHERE practice_id = $1 AND locked_by IS NULL AND \
         (dedupe_key IN (SELECT 'sync_interaction:' || id FROM ({visits}) v) OR \
          dedupe_key IN (SELECT 'poll_partner:' || id FROM ({visits}) w))"
    ))
    .bind(practice_id)
    .bind(patient_id)
    .execute(&mut *tx)
    .await?;
    let emptied = sqlx::query(
        "UPDATE visits SET patient_name = '', launch = '', \
         result = CASE WHEN result IS NULL THEN NULL ELSE '' END, error_message = NULL \
         WHERE practice_id = $1 AND patient_id = $2",
    )
    .bind(practice_id)
    .bind(patient_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let detail = if removed.is_empty() {
        format!("patient.destroyed in Hint: {emptied} visit(s) emptied")
    } else {
        format!(
            "patient.destroyed in Hint: {emptied} visit(s) emptied; removed {}",
            removed.join(", ")
        )
    };
    let hint = Actor {
        id: "hint".into(),
        ..Actor::chartbridge()
    };
    state
        .audit
        .record_in(
            &mut *tx,
            practice_id,
            &hint,
            Entry::new(Action::PatientErased)
                .patient(patient_id)
                .detail(&detail),
        )
        .await?;
    if sqlite {
        sqlx::query("PRAGMA secure_delete = OFF")
            .execute(&mut *tx)
            .await?;
    }
    Ok(emptied)
}

/// After the erasure's commit, on SQLite: the write-ahead log, which still holds the pages as
/// they were, is written back and emptied.
pub async fn settle(state: &HintState) {
    if state.db.backend() != Backend::Sqlite {
        return;
    }
    if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(state.db.writer())
        .await
    {
        tracing::warn!(error = %e, "emptying the write-ahead log after an erasure failed");
    }
}
