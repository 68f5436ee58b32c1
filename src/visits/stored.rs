//! A visit as stored: its patient data sealed with the row's identity, opened as it is read;
//! the one-off sealing of rows written before sealing began; and a corrected visit's earlier
//! results, sealed the same way.

use sqlx::Row;

use super::{AppState, Visit, VisitId};
use crate::{
    crypto::{CryptoError, SecretBox, row_aad},
    error::AppError,
    tenancy::PracticeId,
};

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
    /// Its place in the practice's visits, oldest first (created, then id): for paging.
    pub fn key(&self) -> (i64, String) {
        (self.0.created_at, self.0.id.to_string())
    }

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
pub(super) fn seal(
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
    partner_ref, launch, result, error_message, hint_interaction_id, hint_status, hint_document_id, addenda, document_addenda, created_at, updated_at, completed_at";

/// Opens rows read for `practice_id`; a row that does not open is a row that does not decode.
pub(super) fn open_rows(
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

/// The pass of [`seal_stored`], once done (`maintenance_passes`): a new database records it
/// at its first start.
pub const SEALED_PASS: &str = "visits sealed";

/// Seals the patient data of rows written before sealing began (run at start). Once a pass
/// finds nothing left it is recorded as done, and later starts skip it: every visit since is
/// written sealed, and the scan reads the whole table.
pub async fn seal_stored(state: &AppState) -> Result<u64, sqlx::Error> {
    let done: Option<i64> =
        sqlx::query_scalar("SELECT done_at FROM maintenance_passes WHERE name = $1")
            .bind(SEALED_PASS)
            .fetch_optional(state.db.reader())
            .await?;
    if done.is_some() {
        return Ok(0);
    }
    // Written before sealing: neither empty (an erased patient's) nor in a sealed form.
    let unsealed = format!(
        "SELECT practice_id, {VISIT_COLUMNS} FROM visits WHERE \
         (patient_name <> '' AND patient_name NOT LIKE '{p}%') \
         OR (launch <> '' AND launch NOT LIKE '{p}%') \
         OR (result IS NOT NULL AND result <> '' AND result NOT LIKE '{p}%') \
         OR (error_message IS NOT NULL AND error_message <> '' AND error_message NOT LIKE '{p}%') LIMIT 500",
        p = crate::crypto::SEALED
    );
    let mut sealed = 0;
    loop {
        let rows = sqlx::query(&unsealed).fetch_all(state.db.writer()).await?;
        if rows.is_empty() {
            sqlx::query(
                "INSERT INTO maintenance_passes (name, done_at) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(SEALED_PASS)
            .bind(crate::db::now_ms())
            .execute(state.db.writer())
            .await?;
            return Ok(sealed);
        }
        for row in rows {
            use sqlx::{FromRow, Row};
            // A maintenance pass over every practice's rows: each is sealed for its own.
            let practice: String = row.try_get("practice_id")?;
            let read = StoredVisit::from_row(&row)?.0;
            let visit = open_plain_or_sealed(&state.secrets, &practice, read.clone())
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

/// A row of `seal_stored`: each column plain (written before sealing) or already sealed.
fn open_plain_or_sealed(
    secrets: &SecretBox,
    practice_id: &str,
    mut visit: Visit,
) -> Result<Visit, CryptoError> {
    let id = visit.id.clone();
    let open = |column: &str, value: String| {
        if value.starts_with(crate::crypto::SEALED) {
            secrets.open_text(&value, &row_aad("visits", column, practice_id, id.as_str()))
        } else {
            Ok(value)
        }
    };
    visit.patient_name = open("patient_name", visit.patient_name)?;
    visit.launch = open("launch", visit.launch)?;
    visit.result = visit.result.map(|r| open("result", r)).transpose()?;
    visit.error_message = visit
        .error_message
        .map(|m| open("error_message", m))
        .transpose()?;
    Ok(visit)
}

/// An earlier result of a visit.
#[derive(Debug, Clone)]
pub struct Version {
    /// The partner's result as it was (its own serde struct, as JSON).
    pub result: String,
    pub replaced_at: i64,
    /// What the correction that replaced it changed (field names, Markdown).
    pub what_changed: String,
}

pub(super) fn version_aad(practice_id: &str, id: &str) -> String {
    row_aad("visit_versions", "result_sealed", practice_id, id)
}

/// A visit's earlier results, oldest first.
pub async fn versions_of(
    state: &AppState,
    practice_id: &PracticeId,
    visit: &Visit,
) -> Result<Vec<Version>, AppError> {
    let rows = sqlx::query(
        "SELECT id, result_sealed, replaced_at, what_changed FROM visit_versions \
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
                .open(&sealed, &version_aad(practice_id.as_str(), &id))?;
            Ok(Version {
                result: String::from_utf8(result).map_err(|_| crate::crypto::CryptoError::Open)?,
                replaced_at: row.try_get("replaced_at")?,
                what_changed: row.try_get("what_changed")?,
            })
        })
        .collect()
}
