//! Reads of visits, the practice's filter always first.

use super::{AppState, PartnerId, StoredVisit, VISIT_COLUMNS, Visit, VisitId, stored::open_rows};
use crate::tenancy::PracticeId;

/// Deliveries acknowledged in a burst and not filed yet, on every instance (`burst.rs`;
/// metrics, and tests waiting for them).
pub async fn receipts_waiting(db: &crate::db::Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM result_receipts) + (SELECT COUNT(*) FROM recording_receipts)",
    )
    .fetch_one(db.reader())
    .await
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
