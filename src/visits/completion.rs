//! Visit results (a partner's report for a visit it was launched for, or a clinician finishing
//! one), stored by the burst writer (`burst.rs`).
//!
//! Filing a result: the visit completed (it must be open for the result and belong to the
//! partner and patient the delivery names; its first result wins), its write-back job queued,
//! its pending poll dropped, its trail entry chained, in four statements whatever the batch's
//! size. A burst's receipt is one narrow row in `result_receipts`, stored only for a visit
//! open for it and holding none yet; filing it later applies the same guards. The same SQL
//! runs on PostgreSQL.

use std::collections::{HashMap, HashSet};

use sqlx::{AnyConnection, Row};

use super::{
    PartnerId, VisitId, VisitState,
    burst::{self, Burst, BurstWriter, receipt_practice},
    lifecycle,
};
use crate::{
    audit::{self, Action, Actor, Entry, Pending},
    config::ResultSettings,
    db::{Db, now_ms, placeholders},
    error::AppError,
    jobs::{self, Job, JobSignal, NewJob},
    tenancy::PracticeId,
    visits::{poll::PollPartner, write_back::SyncInteraction},
};

/// A result to store.
pub struct Completion {
    pub practice_id: PracticeId,
    pub visit_id: VisitId,
    /// The partner the visit must belong to.
    pub partner: PartnerId,
    /// Who completed it (the partner's delivery, or a clinician finishing it), for the trail.
    pub actor: Actor,
    /// When the partner named the patient, the visit's patient must match it.
    pub patient_id: Option<String>,
    /// The result JSON, sealed as the visit's `result` column.
    pub result: String,
}

/// Handle to the writer (`burst.rs`).
#[derive(Clone, Debug)]
pub struct Completions(BurstWriter<Results>);

impl Completions {
    /// Starts the writer and its filing task (they end when every handle is dropped).
    pub fn spawn(
        db: Db,
        trail: audit::Recorder,
        jobs: JobSignal,
        max_attempts: i64,
        settings: ResultSettings,
    ) -> Self {
        let results = Results {
            db,
            trail,
            jobs,
            max_attempts,
        };
        Self(BurstWriter::spawn(results, settings))
    }

    /// Stores the result; true when it completed the visit (or will: a receipt), false when the
    /// visit was not open for it (already completed or holding a result, cancelled, unknown,
    /// another partner's or patient's).
    pub async fn complete(&self, completion: Completion) -> Result<bool, AppError> {
        self.0
            .submit(completion)
            .await
            .map_err(|e| AppError::from(anyhow::Error::new(e)))
    }
}

/// Visit results, as the burst writer stores them.
struct Results {
    db: Db,
    /// Chains the filings' trail entries.
    trail: audit::Recorder,
    jobs: JobSignal,
    max_attempts: i64,
}

impl Burst for Results {
    type Item = Completion;
    type Outcome = bool;
    type Key = Key;
    const WHAT: &'static str = "a visit result";

    fn key(item: &Completion) -> Key {
        key(item)
    }

    fn db(&self) -> &Db {
        &self.db
    }

    fn left_receipt(applied: &bool) -> bool {
        *applied
    }

    async fn store_receipts(
        &self,
        connection: &mut AnyConnection,
        items: &[Completion],
    ) -> Result<Vec<bool>, sqlx::Error> {
        let applied = store_receipts(connection, items).await?;
        Ok(items.iter().map(|c| applied.contains(&key(c))).collect())
    }

    async fn file_now(&self, items: &[Completion]) -> Result<Vec<bool>, sqlx::Error> {
        let applied = file_now(self, items).await?;
        if !applied.is_empty() {
            self.jobs.wake();
        }
        Ok(items.iter().map(|c| applied.contains(&key(c))).collect())
    }

    async fn file_receipts(&self, limit: usize) -> Result<usize, sqlx::Error> {
        let taken = file_receipts(self, limit).await?;
        if taken > 0 {
            self.jobs.wake();
        }
        Ok(taken)
    }
}

/// (practice id, visit id) as the statements return them.
type Key = (String, String);

fn key(c: &Completion) -> Key {
    (
        c.practice_id.as_str().to_string(),
        c.visit_id.as_str().to_string(),
    )
}

/// Stores a burst's results as receipts, for visits open for them and holding none yet.
async fn store_receipts(
    connection: &mut AnyConnection,
    batch: &[Completion],
) -> Result<HashSet<Key>, sqlx::Error> {
    const WIDTH: usize = 9;
    let at = batch.len() * WIDTH + 1;
    let sql = format!(
        "INSERT INTO result_receipts (practice_id, visit_id, partner, result, actor_id, actor_roles, \
         actor_support, request_id, received_at) \
         SELECT v.column1, v.column2, v.column3, v.column5, v.column6, v.column7, v.column8, v.column9, ${at} \
         FROM (VALUES {rows}) AS v \
         JOIN visits ON visits.id = v.column2 AND visits.practice_id = v.column1 AND visits.partner = v.column3 \
         WHERE (v.column4 = '' OR visits.patient_id = v.column4) AND {guard} \
         ON CONFLICT (practice_id, visit_id) DO NOTHING \
         RETURNING practice_id, visit_id",
        rows = placeholders(batch.len(), WIDTH, |p| p),
        guard = lifecycle::guard("visits", VisitState::Completed),
    );
    let mut query = sqlx::query(&sql);
    for c in batch {
        query = query
            .bind(&c.practice_id)
            .bind(&c.visit_id)
            .bind(c.partner.as_str())
            .bind(c.patient_id.as_deref().unwrap_or(""))
            .bind(&c.result)
            .bind(&c.actor.id)
            .bind(&c.actor.roles)
            .bind(i64::from(c.actor.platform_support))
            .bind(c.actor.request_id.as_deref());
    }
    // One statement commits itself: no BEGIN and COMMIT to wait for.
    let rows = query.bind(now_ms()).fetch_all(connection).await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// Files a batch of results in one transaction.
async fn file_now(results: &Results, batch: &[Completion]) -> Result<HashSet<Key>, sqlx::Error> {
    let filings: Vec<Filing<'_>> = batch
        .iter()
        .map(|c| Filing {
            practice_id: &c.practice_id,
            visit_id: &c.visit_id,
            partner: c.partner.as_str(),
            patient_id: c.patient_id.as_deref().unwrap_or(""),
            result: &c.result,
            actor: &c.actor,
        })
        .collect();
    let mut tx = results.db.begin().await?;
    let applied = file(&mut tx, results, &filings, Origin::Delivery).await?;
    tx.commit().await?;
    Ok(applied)
}

/// Files up to `limit` receipts (see `burst::take_receipts`); answers how many it took.
async fn file_receipts(results: &Results, limit: usize) -> Result<usize, sqlx::Error> {
    let db = &results.db;
    let mut tx = db.begin().await?;
    let select = "SELECT practice_id, visit_id, partner, result, actor_id, actor_roles, \
         actor_support, request_id FROM result_receipts";
    let rows = burst::take_receipts(&mut tx, db, select, limit).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    struct Receipt {
        practice_id: PracticeId,
        visit_id: VisitId,
        partner: String,
        result: String,
        actor: Actor,
    }
    let receipts = rows
        .iter()
        .map(|row| {
            Ok(Receipt {
                practice_id: receipt_practice(row.try_get("practice_id")?)?,
                visit_id: row.try_get("visit_id")?,
                partner: row.try_get("partner")?,
                result: row.try_get("result")?,
                actor: Actor {
                    id: row.try_get("actor_id")?,
                    roles: row.try_get("actor_roles")?,
                    platform_support: row.try_get::<i64, _>("actor_support")? != 0,
                    request_id: row.try_get("request_id")?,
                },
            })
        })
        .collect::<Result<Vec<Receipt>, sqlx::Error>>()?;
    let filings: Vec<Filing<'_>> = receipts
        .iter()
        .map(|r| Filing {
            practice_id: &r.practice_id,
            visit_id: &r.visit_id,
            partner: &r.partner,
            // Checked when the receipt was stored (a visit's patient never changes).
            patient_id: "",
            result: &r.result,
            actor: &r.actor,
        })
        .collect();
    let applied = file(&mut tx, results, &filings, Origin::Receipt).await?;
    tx.commit().await?;
    let keys: Vec<[&str; 2]> = receipts
        .iter()
        .map(|r| [r.practice_id.as_str(), r.visit_id.as_str()])
        .collect();
    burst::delete_receipts(db, "result_receipts", ["practice_id", "visit_id"], &keys).await?;
    for r in &receipts {
        let key = (
            r.practice_id.as_str().to_string(),
            r.visit_id.as_str().to_string(),
        );
        if !applied.contains(&key) {
            // Cancelled by a clinician (or failed and completed otherwise) in between.
            tracing::warn!(practice_id = %r.practice_id, visit_id = %r.visit_id, "a result receipt was not filed: its visit closed meanwhile");
        }
    }
    Ok(receipts.len())
}

/// A result to file, fresh or from a receipt.
struct Filing<'a> {
    practice_id: &'a PracticeId,
    visit_id: &'a VisitId,
    partner: &'a str,
    /// The patient the partner named ('' when none).
    patient_id: &'a str,
    result: &'a str,
    actor: &'a Actor,
}

/// Where the results being filed come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Deliveries filed at once: a visit holding a receipt takes none of them (its receipt's
    /// result came first).
    Delivery,
    /// The visits' own receipts.
    Receipt,
}

/// Completes the visits open for these results (one per visit), queues their write-backs,
/// drops their pending polls and chains their trail entries, on the caller's transaction: four
/// statements whatever the batch's size.
async fn file(
    tx: &mut AnyConnection,
    results: &Results,
    filings: &[Filing<'_>],
    origin: Origin,
) -> Result<HashSet<Key>, sqlx::Error> {
    let now = now_ms();
    let n = filings.len() * 5;
    let sql = format!(
        "UPDATE visits SET state = ${completed}, result = v.column5, error_message = NULL, updated_at = ${now}, completed_at = ${now} \
         FROM (VALUES {rows}) AS v \
         WHERE visits.id = v.column1 AND visits.practice_id = v.column2 AND visits.partner = v.column3 \
         AND (v.column4 = '' OR visits.patient_id = v.column4) \
         AND {guard}{no_receipt} \
         RETURNING visits.practice_id, visits.id, visits.patient_id",
        now = n + 1,
        completed = n + 2,
        rows = placeholders(filings.len(), 5, |p| p),
        guard = lifecycle::guard("visits", VisitState::Completed),
        no_receipt = match origin {
            Origin::Delivery =>
                " AND NOT EXISTS (SELECT 1 FROM result_receipts r \
                 WHERE r.practice_id = visits.practice_id AND r.visit_id = visits.id)",
            Origin::Receipt => "",
        },
    );
    let mut query = sqlx::query(&sql);
    for f in filings {
        query = query
            .bind(f.visit_id)
            .bind(f.practice_id)
            .bind(f.partner)
            .bind(f.patient_id)
            .bind(f.result);
    }
    let returned = query
        .bind(now)
        .bind(VisitState::Completed)
        .fetch_all(&mut *tx)
        .await?;
    let mut applied = HashSet::new();
    let mut patients = HashMap::new();
    for row in returned {
        let key = (row.try_get::<String, _>(0)?, row.try_get::<String, _>(1)?);
        patients.insert(key.clone(), row.try_get::<String, _>(2)?);
        applied.insert(key);
    }
    let filing_key = |f: &Filing<'_>| -> Key {
        (
            f.practice_id.as_str().to_string(),
            f.visit_id.as_str().to_string(),
        )
    };
    // The filings that applied, each once (a batch holds one per visit).
    let done: Vec<(&Filing<'_>, Key)> = filings
        .iter()
        .map(|f| (f, filing_key(f)))
        .filter(|(_, k)| applied.contains(k))
        .collect();
    if done.is_empty() {
        return Ok(applied);
    }
    let new_jobs: Vec<NewJob<'_>> = done
        .iter()
        .map(|(f, _)| NewJob::new(f.practice_id, &SyncInteraction::of(f.visit_id), now))
        .collect();
    jobs::enqueue_many(&mut *tx, results.max_attempts, &new_jobs).await?;
    let placeholders: Vec<String> = (1..=done.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "DELETE FROM jobs WHERE locked_by IS NULL AND dedupe_key IN ({})",
        placeholders.join(", ")
    );
    // Planned on each use (see the runner's claim): the queue's size changes fast.
    let mut delete = sqlx::query(&sql).persistent(false);
    for (f, _) in &done {
        delete = delete.bind(PollPartner::of(f.visit_id).dedupe_key());
    }
    delete.execute(&mut *tx).await?;
    // The trail, on the same transaction: each completion by whoever completed it.
    let finished: Vec<Pending> = done
        .iter()
        .map(|(f, k)| {
            let entry = Entry::new(Action::VisitFinished)
                .patient(&patients[k])
                .visit(f.visit_id.as_str())
                .detail(f.partner);
            Pending::new(f.practice_id, f.actor, entry)
        })
        .collect();
    results.trail.record_all_in(&mut *tx, &finished).await?;
    Ok(applied)
}
