//! The queue's rows: enqueueing (with the business transaction), bringing a job forward,
//! what needs a person (dead or failing jobs) and putting a dead job back, and counts.

use sqlx::{AnyConnection, Row};

use super::{Job, JobSignal, JobState, Registry};
use crate::{
    audit::{self, Action, Actor, Entry, Pending},
    db::{Db, new_ordered_id, now_ms},
    ids::VisitId,
    tenancy::PracticeId,
};

/// A job to enqueue, as the queue stores it.
pub struct NewJob<'a> {
    practice_id: &'a PracticeId,
    kind: &'static str,
    dedupe_key: String,
    payload: String,
    /// Unix ms; `now_ms()` for "as soon as possible".
    run_at: i64,
}

impl<'a> NewJob<'a> {
    /// `job` for the practice, to run at `run_at` (Unix ms; `now_ms()` for "as soon as
    /// possible").
    pub fn new<J: Job>(practice_id: &'a PracticeId, job: &J, run_at: i64) -> Self {
        Self {
            practice_id,
            kind: J::KIND,
            dedupe_key: job.dedupe_key(),
            payload: serde_json::to_string(job).expect("a job serialises"),
            run_at,
        }
    }
}

/// Enqueues `job` on `conn` (pass the business transaction). Call `state.jobs.wake()` after
/// the commit so a worker picks it up at once.
pub async fn enqueue(
    conn: &mut AnyConnection,
    max_attempts: i64,
    job: NewJob<'_>,
) -> Result<(), sqlx::Error> {
    enqueue_many(conn, max_attempts, std::slice::from_ref(&job)).await
}

/// Enqueues several jobs in one statement. Their dedupe keys must differ. A job already queued
/// keeps the earlier of the two times; one running is asked to run once more; a dead one is
/// revived.
pub async fn enqueue_many(
    conn: &mut AnyConnection,
    max_attempts: i64,
    jobs: &[NewJob<'_>],
) -> Result<(), sqlx::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    // Per row: id, practice, kind, dedupe key, payload, run_at; then shared values.
    let n = jobs.len() * 6;
    let (max_attempts_p, now_p, queued_p, dead_p) = (n + 1, n + 2, n + 3, n + 4);
    let rows: Vec<String> = (0..jobs.len())
        .map(|i| {
            let p = i * 6;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${queued_p}, 0, ${max_attempts_p}, ${}, NULL, NULL, 0, NULL, ${now_p}, ${now_p})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO jobs (id, practice_id, kind, dedupe_key, payload, state, attempts, max_attempts, run_at, \
         locked_by, locked_until, rerun, last_error, created_at, updated_at) VALUES {} \
         ON CONFLICT (dedupe_key) DO UPDATE SET \
           rerun = CASE WHEN jobs.locked_by IS NOT NULL THEN 1 ELSE jobs.rerun END, \
           attempts = CASE WHEN jobs.state = ${dead_p} THEN 0 ELSE jobs.attempts END, \
           state = ${queued_p}, \
           run_at = CASE WHEN excluded.run_at < jobs.run_at OR jobs.state = ${dead_p} THEN excluded.run_at ELSE jobs.run_at END, \
           payload = excluded.payload, \
           updated_at = excluded.updated_at",
        rows.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for new in jobs {
        query = query
            .bind(new_ordered_id("job"))
            .bind(new.practice_id)
            .bind(new.kind)
            .bind(&new.dedupe_key)
            .bind(&new.payload)
            .bind(new.run_at);
    }
    query
        .bind(max_attempts)
        .bind(now)
        .bind(JobState::Queued)
        .bind(JobState::Dead)
        .execute(conn)
        .await?;
    Ok(())
}

/// Brings `job` forward to run now when it is queued for later than `not_after` (Unix ms),
/// is not running and is not backing off after a failure. Answers whether it did; call
/// `state.jobs.wake()` then.
pub async fn hasten<J: Job>(
    db: &Db,
    practice_id: &PracticeId,
    job: &J,
    not_after: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE jobs SET run_at = $1, updated_at = $1 \
         WHERE practice_id = $2 AND dedupe_key = $3 AND state = $4 AND attempts = 0 \
         AND locked_by IS NULL AND run_at > $5",
    )
    .bind(now_ms())
    .bind(practice_id)
    .bind(job.dedupe_key())
    .bind(JobState::Queued)
    .bind(not_after)
    .execute(db.writer())
    .await?;
    Ok(done.rows_affected() > 0)
}

/// A job that needs a person's attention: dead, or failing repeatedly.
#[derive(Debug, Clone)]
pub struct StuckJob {
    pub id: String,
    /// The job's kind as stored (`sync_interaction`, …).
    pub kind: String,
    pub description: String,
    pub visit_id: Option<VisitId>,
    pub state: JobState,
    pub attempts: i64,
    pub last_error: String,
    pub updated_at: i64,
}

/// A practice's stuck work: the newest, and how much there is in all.
#[derive(Debug, Clone, Default)]
pub struct Stuck {
    pub newest: Vec<StuckJob>,
    /// Stuck jobs in all (dead or failing).
    pub total: i64,
    /// Of them, dead: they wait for a person's retry.
    pub dead: i64,
}

/// Which jobs are stuck, as the partial index `jobs_stuck` is defined (word for word: SQLite
/// uses a partial index only for the same terms, PostgreSQL only for a predicate it can prove,
/// so the state is written out, not bound).
const STUCK: &str = "(state = 'dead' OR (attempts >= 3 AND last_error IS NOT NULL))";

/// This practice's dead jobs and jobs that failed at least three times: the newest `limit`,
/// and how many there are (counted along the index, without reading the jobs).
pub async fn stuck_for_practice<S>(
    db: &Db,
    registry: &Registry<S>,
    practice_id: &PracticeId,
    limit: i64,
) -> Result<Stuck, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT id, kind, payload, state, attempts, last_error, updated_at FROM jobs \
         WHERE practice_id = $1 AND {STUCK} ORDER BY updated_at DESC LIMIT $2"
    ))
    .bind(practice_id)
    .bind(limit)
    .fetch_all(db.reader())
    .await?;
    let mut stuck = Stuck::default();
    if rows.len() as i64 >= limit {
        let (total, dead): (i64, Option<i64>) = sqlx::query_as(&format!(
            "SELECT COUNT(*), SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END) FROM jobs \
             WHERE practice_id = $1 AND {STUCK}"
        ))
        .bind(practice_id)
        .fetch_one(db.reader())
        .await?;
        (stuck.total, stuck.dead) = (total, dead.unwrap_or_default());
    } else {
        stuck.total = rows.len() as i64;
        for row in &rows {
            if row.try_get::<JobState, _>("state")? == JobState::Dead {
                stuck.dead += 1;
            }
        }
    }
    stuck.newest = rows
        .into_iter()
        .map(|row| {
            let kind: String = row.try_get("kind")?;
            let payload: String = row.try_get("payload")?;
            Ok(StuckJob {
                id: row.try_get("id")?,
                description: registry
                    .description(&kind)
                    .unwrap_or("Work this version cannot read")
                    .to_string(),
                visit_id: registry.visit_id(&kind, &payload),
                kind,
                state: row.try_get("state")?,
                attempts: row.try_get("attempts")?,
                last_error: row
                    .try_get::<Option<String>, _>("last_error")?
                    .unwrap_or_default(),
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(stuck)
}

/// Dead jobs put back in the queue by one "Retry all" at most (the newest first): each is a
/// trail entry in the same transaction.
pub const RETRY_AT_ONCE: i64 = 500;

/// A person's retry of a practice's dead work.
pub struct Retry<'a> {
    pub db: &'a Db,
    pub trail: &'a audit::Recorder,
    pub signal: &'a JobSignal,
    pub practice_id: &'a PracticeId,
    pub actor: &'a Actor,
}

impl Retry<'_> {
    /// Puts a dead job of this practice back in the queue. False when there is none by that
    /// id.
    pub async fn one<S>(&self, registry: &Registry<S>, job_id: &str) -> Result<bool, sqlx::Error> {
        Ok(self.put_back(registry, Dead::One(job_id)).await? > 0)
    }

    /// Puts this practice's dead jobs back in the queue, the newest [`RETRY_AT_ONCE`];
    /// answers how many.
    pub async fn all<S>(&self, registry: &Registry<S>) -> Result<usize, sqlx::Error> {
        self.put_back(registry, Dead::Newest(RETRY_AT_ONCE)).await
    }
}

/// Which dead jobs.
enum Dead<'a> {
    One(&'a str),
    Newest(i64),
}

impl Retry<'_> {
    /// Queues the jobs again (their attempts from zero, due now) with a trail entry each, in one
    /// transaction; answers how many.
    async fn put_back<S>(
        &self,
        registry: &Registry<S>,
        which: Dead<'_>,
    ) -> Result<usize, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let update = "UPDATE jobs SET state = $1, attempts = 0, run_at = $2, updated_at = $2 \
                      WHERE practice_id = $3 AND state = $4";
        let sql = match which {
            Dead::One(_) => format!("{update} AND id = $5 RETURNING kind, payload"),
            Dead::Newest(_) => format!(
                "{update} AND id IN (SELECT id FROM jobs WHERE practice_id = $3 AND state = $4 \
                 ORDER BY updated_at DESC LIMIT $5) RETURNING kind, payload"
            ),
        };
        let query = sqlx::query_as(&sql)
            .bind(JobState::Queued)
            .bind(now_ms())
            .bind(self.practice_id)
            .bind(JobState::Dead);
        let query = match which {
            Dead::One(job_id) => query.bind(job_id),
            Dead::Newest(limit) => query.bind(limit),
        };
        let retried: Vec<(String, String)> = query.fetch_all(&mut *tx).await?;
        let entries: Vec<Pending> = retried
            .iter()
            .map(|(kind, payload)| {
                let visit_id = registry.visit_id(kind, payload);
                let mut entry = Entry::new(Action::JobRetried).detail(kind);
                if let Some(visit_id) = &visit_id {
                    entry = entry.visit(visit_id.as_str());
                }
                Pending::new(self.practice_id, self.actor, entry)
            })
            .collect();
        self.trail.record_all_in(&mut tx, &entries).await?;
        tx.commit().await?;
        if !retried.is_empty() {
            self.signal.wake();
        }
        Ok(retried.len())
    }
}

/// Jobs by kind and state, over every practice (for operators' metrics).
pub async fn census(db: &Db) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    let rows = sqlx::query("SELECT kind, state, COUNT(*) AS n FROM jobs GROUP BY kind, state")
        .fetch_all(db.reader())
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get("kind")?,
                row.try_get("state")?,
                row.try_get("n")?,
            ))
        })
        .collect()
}

/// Work left to do, as (queued, dead) jobs: every job but the standing ones that reschedule
/// themselves for ever (a practice's patient sync).
pub async fn counts<S>(db: &Db, registry: &Registry<S>) -> Result<(i64, i64), sqlx::Error> {
    let standing = registry.standing_kinds();
    let not_standing = if standing.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = (0..standing.len()).map(|i| format!("${}", i + 3)).collect();
        format!(" WHERE kind NOT IN ({})", list.join(", "))
    };
    let sql = format!(
        "SELECT COALESCE(SUM(CASE WHEN state = $1 THEN 1 ELSE 0 END), 0) AS queued, \
         COALESCE(SUM(CASE WHEN state = $2 THEN 1 ELSE 0 END), 0) AS dead FROM jobs{not_standing}"
    );
    let mut query = sqlx::query(&sql)
        .bind(JobState::Queued)
        .bind(JobState::Dead);
    for kind in standing {
        query = query.bind(kind);
    }
    let row = query.fetch_one(db.reader()).await?;
    Ok((row.try_get("queued")?, row.try_get("dead")?))
}
