//! Corrections: a partner that sends a different result for a signed visit addends it. The
//! visit keeps the latest result; each earlier one is kept here, sealed, with when it was
//! replaced and what the correction changed.

use serde::Serialize;
use sqlx::Row;

use super::{
    AppState, PartnerId, Visit, VisitId, VisitState, chart_note, get_latest, stored::seal, to_json,
    transitions::enqueue_sync,
};
use crate::{
    audit::{self, Action, Actor, Entry},
    crypto::row_aad,
    db::{new_id, now_ms},
    error::AppError,
    tenancy::PracticeId,
};

/// An earlier result of a visit.
#[derive(Debug, Clone)]
pub struct Version {
    /// 1 for the first result, 2 for the first correction's, …
    pub version: i64,
    /// The partner's result as it was (its own serde struct, as JSON).
    pub result: String,
    pub replaced_at: i64,
    /// What the correction that replaced it changed (field names, Markdown).
    pub what_changed: String,
}

fn aad(practice_id: &str, id: &str) -> String {
    row_aad("visit_versions", "result_sealed", practice_id, id)
}

/// How a later result for a signed visit was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correction {
    /// The same result again: nothing changed.
    Identical,
    /// A different result: the visit is addended.
    Addended,
    /// Not a signed visit of this partner and patient: nothing to correct.
    NotCorrectable,
}

/// A later `result` from `partner` for a visit already completed: the same one changes nothing;
/// a different one replaces it, the earlier kept sealed, the change in the trail, and Hint's
/// interaction and document brought level by the write-back.
pub async fn correct(
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
    partner: PartnerId,
    patient_id: Option<&str>,
    result: &impl Serialize,
    actor: &Actor,
) -> Result<Correction, AppError> {
    let Some(visit) = get_latest(state, practice_id, visit_id).await? else {
        return Ok(Correction::NotCorrectable);
    };
    let mismatched = patient_id.is_some_and(|p| p != visit.patient_id);
    if !visit.is_of(partner) || visit.state() != VisitState::Completed || mismatched {
        return Ok(Correction::NotCorrectable);
    }
    let Some(before) = visit.result.clone() else {
        return Ok(Correction::NotCorrectable);
    };
    let after = to_json(result);
    if after == before {
        return Ok(Correction::Identical);
    }
    let what_changed = {
        let tool = state.partners.of(&visit)?;
        let mut corrected = visit.clone();
        corrected.result = Some(after.clone());
        match (tool.chart_note(&visit)?, tool.chart_note(&corrected)?) {
            (Some(old), Some(new)) => chart_note::what_changed(&old.body, &new.body),
            _ => "The result".to_string(),
        }
    };
    let now = now_ms();
    let version_id = new_id("ver");
    let mut tx = state.db.begin().await?;
    // Only from the result read above: a correction that raced another one loses.
    let moved = sqlx::query(
        "UPDATE visits SET result = $1, addenda = addenda + 1, updated_at = $2 \
         WHERE practice_id = $3 AND id = $4 AND state = $5 AND addenda = $6",
    )
    .bind(seal(state, "result", practice_id, visit_id, &after))
    .bind(now)
    .bind(practice_id)
    .bind(visit_id)
    .bind(VisitState::Completed)
    .bind(visit.addenda)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 0 {
        return Ok(Correction::NotCorrectable);
    }
    sqlx::query(
        "INSERT INTO visit_versions (id, practice_id, visit_id, version, result_sealed, replaced_at, what_changed) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&version_id)
    .bind(practice_id)
    .bind(visit_id)
    .bind(visit.addenda + 1)
    .bind(
        state
            .secrets
            .seal(before.as_bytes(), &aad(practice_id.as_str(), &version_id)),
    )
    .bind(now)
    .bind(&what_changed)
    .execute(&mut *tx)
    .await?;
    let detail = format!("{partner}: {}", what_changed.replace('\\', ""));
    let entry = Entry::new(Action::VisitAddended)
        .patient(&visit.patient_id)
        .visit(visit_id.as_str())
        .detail(&detail);
    audit::record(&mut tx, practice_id, actor, entry).await?;
    enqueue_sync(&mut tx, state, practice_id, visit_id).await?;
    tx.commit().await?;
    state.jobs.wake();
    Ok(Correction::Addended)
}

/// A visit's earlier results, oldest first.
pub async fn of_visit(
    state: &AppState,
    practice_id: &PracticeId,
    visit: &Visit,
) -> Result<Vec<Version>, AppError> {
    let rows = sqlx::query(
        "SELECT id, version, result_sealed, replaced_at, what_changed FROM visit_versions \
         WHERE practice_id = $1 AND visit_id = $2 ORDER BY version",
    )
    .bind(practice_id)
    .bind(&visit.id)
    .fetch_all(state.db.reader())
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = row.try_get("id")?;
            let sealed: String = row.try_get("result_sealed")?;
            let result = state
                .secrets
                .open(&sealed, &aad(practice_id.as_str(), &id))?;
            Ok(Version {
                version: row.try_get("version")?,
                result: String::from_utf8(result).map_err(|_| crate::crypto::CryptoError::Open)?,
                replaced_at: row.try_get("replaced_at")?,
                what_changed: row.try_get("what_changed")?,
            })
        })
        .collect()
}
