//! Which practice a request, a delivery or a job acts for.
//!
//! Every row of practice data carries `practice_id`, and every function that reads or writes
//! such rows takes a [`PracticeId`] as its first argument after the state. A `PracticeId` is
//! not made from any string: `PracticeId::verified` is called only where the practice has
//! been proven, and a test below keeps that list closed:
//!
//! - `hint/session/extractor.rs`: the session of a request (opened by a signed handshake);
//! - `hint/handshake.rs`: the signed handshake itself;
//! - `hint/webhooks.rs`: a signed Hint event;
//! - `hint/install.rs`: Hint's answer to an Instant On code;
//! - `partners/connection/delivery.rs`: a partner delivery to `/webhooks/{partner}/{practice}` that
//!   carries that practice's own secret;
//! - `jobs/runner.rs`: a job claimed from the queue (enqueued under a verified practice);
//! - `hint/directory/mod.rs`: a patient change announced by our own database (`NOTIFY`, sent by an
//!   instance that had verified the practice);
//! - `visits/burst.rs`: a partner's receipt read back to be filed (stored by the delivery that
//!   proved its practice).

use serde::Serialize;

use crate::{db::Db, ids::ExternalId};

/// Every core table holding a practice's data, by its `practice_id` column, in the order a
/// purge deletes them; `practices` (keyed by `id`) goes last. Partners declare their own tables
/// (`PartnerTool::practice_tables`), deleted first. A test keeps the lists complete.
pub const PRACTICE_TABLES: &[&str] = &[
    "jobs",
    "result_receipts",
    "recording_receipts",
    "inbound_events",
    "unmatched_deliveries",
    "partner_health",
    "partner_connections",
    "file_links",
    "visit_files",
    "visit_versions",
    "visits",
    "hint_sessions",
    "handshake_signatures",
    "hint_installations",
    "hint_budget_calls",
    "hint_budget_slots",
    "hint_budgets",
    "patient_index",
    "patient_index_state",
];

/// Tables with a `practice_id` that a purge keeps: the PHI audit trail (who opened which chart
/// and when), which outlives the practice's use of Chartbridge (HIPAA keeps such records six
/// years). It holds Hint's opaque ids, never a name or a result.
pub const KEPT_ON_PURGE: [&str; 2] = ["audit_events", "audit_heads"];

/// Deletes every row of a practice's data in `tables` (every table of practice data:
/// `Partners::practice_tables`) and its `practices` row (an operator's decision, after Hint
/// deactivated the practice: `chartbridge practice purge`), in one transaction. Answers the
/// rows per table.
pub async fn purge(
    db: &Db,
    practice_id: &ExternalId,
    tables: &[&'static str],
) -> Result<Vec<(&'static str, u64)>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let mut deleted = Vec::new();
    for &table in tables {
        let done = sqlx::query(&format!("DELETE FROM {table} WHERE practice_id = $1"))
            .bind(practice_id.as_str())
            .execute(&mut *tx)
            .await?;
        deleted.push((table, done.rows_affected()));
    }
    let done = sqlx::query("DELETE FROM practices WHERE id = $1")
        .bind(practice_id.as_str())
        .execute(&mut *tx)
        .await?;
    deleted.push(("practices", done.rows_affected()));
    tx.commit().await?;
    Ok(deleted)
}

/// A practice whose identity was verified (see the module's list).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct PracticeId(ExternalId);

impl PracticeId {
    /// Only for the places listed in this module's documentation.
    pub(crate) fn verified(id: ExternalId) -> Self {
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn as_external(&self) -> &ExternalId {
        &self.0
    }
}

impl std::fmt::Display for PracticeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl sqlx::Type<sqlx::Any> for PracticeId {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <String as sqlx::Type<sqlx::Any>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Any> for PracticeId {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Any as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'q, sqlx::Any>>::encode(self.as_str().to_string(), buf)
    }
}

#[cfg(test)]
mod tests {
    /// The files that may call `PracticeId::verified` (see the module's documentation).
    const VERIFIED_IN: [&str; 8] = [
        "hint/session/extractor.rs",
        "hint/handshake.rs",
        "hint/webhooks.rs",
        "hint/install.rs",
        "partners/connection/delivery.rs",
        "jobs/runner.rs",
        "hint/directory/mod.rs",
        "visits/burst.rs",
    ];

    fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn a_practice_id_is_made_only_where_the_practice_was_verified() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let needle = ["PracticeId", "::verified"].concat();
        let mut found: Vec<String> = files
            .iter()
            .filter(|f| std::fs::read_to_string(f).unwrap().contains(&needle))
            .map(|f| {
                f.strip_prefix(&src)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/")
            })
            .filter(|f| f != "tenancy.rs")
            .collect();
        found.sort();
        let mut expected: Vec<String> = VERIFIED_IN.iter().map(|f| f.to_string()).collect();
        expected.sort();
        assert_eq!(found, expected);
    }
}
