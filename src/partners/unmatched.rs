//! Signed partner deliveries that matched no visit: kept (sealed, since they carry patient
//! data), deduplicated by body, and listed for the practice's admins to review and dismiss.
//! A partner that does not retry never loses a report to a misconfiguration on our side.

use askama::Template;
use axum::{
    extract::{Path, State},
    response::Html,
};
use sqlx::{Row, any::AnyRow};

use crate::{
    audit::{Action, Entry},
    crypto::sha256_hex,
    db::{Moment, new_ordered_id, now_ms},
    error::AppError,
    hint::{Frame, PracticeSession, Role},
    ids::ExternalId,
    jobs::{self, NewJob},
    tenancy::PracticeId,
    visits::AppState,
    visits::PartnerId,
    visits::partner::RetryDelivery,
};

fn aad(practice_id: &PracticeId, id: &str) -> String {
    format!("unmatched_deliveries|{practice_id}|{id}")
}

/// Keeps a delivery for review. The same body twice is kept once.
pub async fn keep(
    state: &AppState,
    practice_id: &PracticeId,
    partner: PartnerId,
    reason: &str,
    reference: Option<&str>,
    body: &[u8],
) -> Result<(), AppError> {
    let mut conn = state.db.writer().acquire().await?;
    keep_on(
        &mut conn,
        state,
        practice_id,
        partner,
        reason,
        reference,
        body,
    )
    .await?;
    Ok(())
}

/// Keeps a delivery whose patient cannot be confirmed yet, and asks the queue to try again
/// (`RetryDelivery`), in one transaction: it waits, unmatched, until it can be placed.
pub async fn keep_to_retry(
    state: &AppState,
    practice_id: &PracticeId,
    partner: PartnerId,
    reason: &str,
    reference: Option<&str>,
    body: &[u8],
) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    let id = keep_on(
        &mut tx,
        state,
        practice_id,
        partner,
        reason,
        reference,
        body,
    )
    .await?;
    let job = RetryDelivery {
        partner: partner.as_str().to_string(),
        delivery_id: id,
    };
    let new = NewJob::new(practice_id, &job, now_ms());
    jobs::enqueue(&mut tx, state.settings.jobs.max_attempts, new).await?;
    tx.commit().await?;
    state.jobs.wake();
    Ok(())
}

/// Inserts the delivery (or finds it, kept before by its body); answers its id.
async fn keep_on(
    conn: &mut sqlx::AnyConnection,
    state: &AppState,
    practice_id: &PracticeId,
    partner: PartnerId,
    reason: &str,
    reference: Option<&str>,
    body: &[u8],
) -> Result<String, sqlx::Error> {
    let id = new_ordered_id("unm");
    let hash = sha256_hex(body);
    let sealed = state.secrets.seal(body, &aad(practice_id, &id));
    let kept = sqlx::query(
        "INSERT INTO unmatched_deliveries (id, practice_id, partner, reason, reference, body_sealed, body_hash, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(&id)
    .bind(practice_id)
    .bind(partner.as_str())
    .bind(reason)
    .bind(reference)
    .bind(sealed)
    .bind(&hash)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    tracing::warn!(
        %practice_id,
        %partner,
        kept,
        "a partner delivery matched no visit; kept for review"
    );
    // The same body kept before and dismissed since comes back to the list: it is undelivered.
    sqlx::query_scalar(
        "UPDATE unmatched_deliveries SET dismissed_at = NULL, dismissed_by = NULL, reason = $4 \
         WHERE practice_id = $1 AND partner = $2 AND body_hash = $3 RETURNING id",
    )
    .bind(practice_id)
    .bind(partner.as_str())
    .bind(&hash)
    .bind(reason)
    .fetch_one(&mut *conn)
    .await
}

/// A kept delivery's body, while it is not dismissed.
pub async fn open_body(
    state: &AppState,
    practice_id: &PracticeId,
    id: &str,
) -> Result<Option<Vec<u8>>, AppError> {
    let sealed: Option<String> = sqlx::query_scalar(
        "SELECT body_sealed FROM unmatched_deliveries \
         WHERE id = $1 AND practice_id = $2 AND dismissed_at IS NULL",
    )
    .bind(id)
    .bind(practice_id)
    .fetch_optional(state.db.writer())
    .await?;
    match sealed {
        Some(sealed) => Ok(Some(state.secrets.open(&sealed, &aad(practice_id, id))?)),
        None => Ok(None),
    }
}

/// A kept delivery was placed after all: off the list (`dismissed_by` says by whom).
pub async fn placed(state: &AppState, practice_id: &PracticeId, id: &str) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE unmatched_deliveries SET dismissed_at = $1, dismissed_by = 'chartbridge' \
         WHERE id = $2 AND practice_id = $3 AND dismissed_at IS NULL",
    )
    .bind(now_ms())
    .bind(id)
    .bind(practice_id)
    .execute(state.db.writer())
    .await?;
    Ok(())
}

/// Says anew why a kept delivery waits (a retry learned more).
pub async fn explain(
    state: &AppState,
    practice_id: &PracticeId,
    id: &str,
    reason: &str,
) -> Result<(), AppError> {
    sqlx::query("UPDATE unmatched_deliveries SET reason = $1 WHERE id = $2 AND practice_id = $3")
        .bind(reason)
        .bind(id)
        .bind(practice_id)
        .execute(state.db.writer())
        .await?;
    Ok(())
}

/// One kept delivery as admins see it in the list (no body).
pub struct UnmatchedRow {
    pub id: String,
    pub partner: String,
    pub reason: String,
    pub reference: String,
    pub received: Moment,
}

/// This practice's deliveries not yet dismissed, newest first.
pub async fn open_for_practice(
    state: &AppState,
    practice_id: &PracticeId,
) -> Result<Vec<UnmatchedRow>, AppError> {
    let rows = sqlx::query(
        "SELECT id, partner, reason, reference, received_at FROM unmatched_deliveries \
         WHERE practice_id = $1 AND dismissed_at IS NULL ORDER BY received_at DESC LIMIT 100",
    )
    .bind(practice_id)
    .fetch_all(state.db.reader())
    .await?;
    rows.iter()
        .map(|row| UnmatchedRow::from_row(state, row))
        .collect()
}

impl UnmatchedRow {
    fn from_row(state: &AppState, row: &AnyRow) -> Result<Self, AppError> {
        let partner: String = row.try_get("partner")?;
        Ok(UnmatchedRow {
            id: row.try_get("id")?,
            partner: state.partners.name_of(&partner),
            reason: row.try_get("reason")?,
            reference: row
                .try_get::<Option<String>, _>("reference")?
                .unwrap_or_default(),
            received: Moment(row.try_get("received_at")?),
        })
    }
}

#[derive(Template)]
#[template(path = "surfaces/unmatched.html")]
struct UnmatchedPage {
    frame: Frame,
    row: UnmatchedRow,
    body: String,
    dismissed: bool,
}

/// `GET /hint/unmatched/{id}` (admins): one kept delivery with its body.
pub async fn view(
    State(state): State<AppState>,
    session: PracticeSession,
    Path(id): Path<ExternalId>,
) -> Result<Html<String>, AppError> {
    session.require(Role::Admin)?;
    let row = sqlx::query(
        "SELECT id, partner, reason, reference, received_at, body_sealed, dismissed_at FROM unmatched_deliveries \
         WHERE id = $1 AND practice_id = $2",
    )
    .bind(id.as_str())
    .bind(&session.practice_id)
    .fetch_optional(state.db.reader())
    .await?
    .ok_or(AppError::NotFound)?;
    let sealed: String = row.try_get("body_sealed")?;
    let body = state
        .secrets
        .open(&sealed, &aad(&session.practice_id, &id))?;
    let viewed = Entry::new(Action::UnmatchedViewed).detail(id.as_str());
    state
        .audit
        .record(&session.practice_id, &session.actor(), viewed)
        .await?;
    let body = serde_json::from_slice::<serde_json::Value>(&body)
        .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default())
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
    let page = UnmatchedPage {
        frame: Frame::new(&session, "settings"),
        row: UnmatchedRow::from_row(&state, &row)?,
        body,
        dismissed: row.try_get::<Option<i64>, _>("dismissed_at")?.is_some(),
    };
    Ok(Html(page.render()?))
}

/// `POST /hint/unmatched/{id}/dismiss` (admins, htmx): reviewed; hide it from the list.
pub async fn dismiss(
    State(state): State<AppState>,
    session: PracticeSession,
    Path(id): Path<ExternalId>,
) -> Result<Html<&'static str>, AppError> {
    session.require(Role::Admin)?;
    let mut tx = state.db.begin().await?;
    let done = sqlx::query(
        "UPDATE unmatched_deliveries SET dismissed_at = $1, dismissed_by = $2 \
         WHERE id = $3 AND practice_id = $4 AND dismissed_at IS NULL",
    )
    .bind(now_ms())
    .bind(&session.user_id)
    .bind(id.as_str())
    .bind(&session.practice_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if done == 0 {
        return Err(AppError::NotFound);
    }
    let dismissed = Entry::new(Action::UnmatchedDismissed).detail(id.as_str());
    state
        .audit
        .record_in(&mut tx, &session.practice_id, &session.actor(), dismissed)
        .await?;
    tx.commit().await?;
    Ok(Html("<span class=\"ok\">Dismissed.</span>"))
}
