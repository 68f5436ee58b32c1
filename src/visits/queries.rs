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

/// What a list naming visits shows of each: its patient and partner.
#[derive(Debug, Clone)]
pub struct VisitLabel {
    pub id: VisitId,
    pub patient_id: String,
    pub patient_name: String,
    pub partner: String,
}

/// The labels of several visits of this practice (those that exist) in one read, opening
/// only the patient's name: for a list naming visits, which needs neither their launch nor
/// their result.
pub async fn labels(
    state: &AppState,
    practice_id: &PracticeId,
    visit_ids: &[&VisitId],
) -> Result<Vec<VisitLabel>, sqlx::Error> {
    if visit_ids.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = (0..visit_ids.len())
        .map(|i| format!("${}", i + 2))
        .collect();
    let sql = format!(
        "SELECT id, patient_id, patient_name, partner FROM visits WHERE practice_id = $1 AND id IN ({})",
        list.join(", ")
    );
    // Planned with its values each time: PostgreSQL's plan kept for the statement (after five
    // uses) sized the practice by the average one and intersected its whole index with the
    // ids, 13 ms of CPU a page for a practice of 100,000 visits (docs/performance.md).
    let mut query = sqlx::query_as::<_, (VisitId, String, String, String)>(&sql)
        .persistent(false)
        .bind(practice_id);
    for id in visit_ids {
        query = query.bind(*id);
    }
    query
        .fetch_all(state.db.reader())
        .await?
        .into_iter()
        .map(|(id, patient_id, sealed, partner)| {
            let aad =
                crate::crypto::row_aad("visits", "patient_name", practice_id.as_str(), id.as_str());
            let patient_name = state
                .secrets
                .open_text(&sealed, &aad)
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            Ok(VisitLabel {
                id,
                patient_id,
                patient_name,
                partner,
            })
        })
        .collect()
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

/// Where a page of visits starts: after this visit, in the lists' order (newest first by start
/// time, then by id). Carried in links as `<created_at>.<id>`: a page is found through the
/// index whatever its depth, where an offset would read every row before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    pub created_at: i64,
    pub id: String,
}

impl After {
    /// The cursor of the page after `visit`.
    pub fn of(visit: &Visit) -> Self {
        After {
            created_at: visit.created_at,
            id: visit.id.as_str().to_string(),
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        let (at, id) = value.split_once('.')?;
        let id = crate::ids::ExternalId::parse(id).ok()?;
        Some(After {
            created_at: at.parse().ok()?,
            id: id.as_str().to_string(),
        })
    }
}

impl std::fmt::Display for After {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.created_at, self.id)
    }
}

/// Newest first, after `after` when given: the placeholders `$n` and `$n+1` hold its time and
/// id (the start of time and no id when not), `$n+2` the page size.
fn page_of(n: usize) -> String {
    format!(
        "created_at <= ${n} AND (created_at < ${n} OR id < ${}) ORDER BY created_at DESC, id DESC LIMIT ${}",
        n + 1,
        n + 2
    )
}

fn cursor(after: Option<&After>) -> (i64, &str) {
    after.map_or((i64::MAX, ""), |a| (a.created_at, a.id.as_str()))
}

/// This practice's visits for one patient, newest first, a page of `limit`.
pub async fn for_patient(
    state: &AppState,
    practice_id: &PracticeId,
    patient_id: &str,
    after: Option<&After>,
    limit: i64,
) -> Result<Vec<Visit>, sqlx::Error> {
    let sql = visits_of_practice(&format!("patient_id = $2 AND {}", page_of(3)));
    let (at, id) = cursor(after);
    let rows = sqlx::query_as::<_, StoredVisit>(&sql)
        .bind(practice_id)
        .bind(patient_id)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(state.db.reader())
        .await?;
    open_rows(state, practice_id, rows)
}

/// This practice's visits, newest first, a page of `limit`.
pub async fn recent(
    state: &AppState,
    practice_id: &PracticeId,
    after: Option<&After>,
    limit: i64,
) -> Result<Vec<Visit>, sqlx::Error> {
    let sql = visits_of_practice(&page_of(2));
    let (at, id) = cursor(after);
    let rows = sqlx::query_as::<_, StoredVisit>(&sql)
        .bind(practice_id)
        .bind(at)
        .bind(id)
        .bind(limit)
        .fetch_all(state.db.reader())
        .await?;
    open_rows(state, practice_id, rows)
}
