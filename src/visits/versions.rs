//! Corrections: a partner that sends a different result for a signed visit addends it. The
//! visit keeps the latest result; each earlier one is kept sealed (`stored.rs` reads them back)
//! with when it was replaced and what the correction changed.

use serde::Serialize;

use super::{
    AppState, PartnerId, VisitId, VisitState, chart_note, get_latest,
    stored::{seal, version_aad},
    to_json,
    transitions::enqueue_sync,
};
use crate::{
    audit::{Action, Actor, Entry},
    db::{new_ordered_id, now_ms},
    error::AppError,
    tenancy::PracticeId,
};

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
    let version_id = new_ordered_id("ver");
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
            .seal(before.as_bytes(), &version_aad(practice_id.as_str(), &version_id)),
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
    state
        .audit
        .record_in(&mut tx, practice_id, actor, entry)
        .await?;
    enqueue_sync(&mut tx, state, practice_id, visit_id).await?;
    tx.commit().await?;
    state.jobs.wake();
    Ok(Correction::Addended)
}
