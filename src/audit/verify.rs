//! `chartbridge audit verify`: walks each practice's chain from its first entry and checks
//! that the sequence has no gap, that every entry's hash is the MAC of its fields and of the
//! entry before under the key it names, and that the chain ends where `audit_heads` says. A row
//! changed, inserted or deleted anywhere is reported with the practice and sequence number.
//!
//! With published checkpoints (`checkpoints.rs`), also that every entry a checkpoint vouched
//! for is still there as it was: a chain cut short with its head moved back, or a practice
//! whose trail was deleted whole, is found too.

use std::sync::Arc;

use futures_util::TryStreamExt;
use sqlx::{Row, any::AnyRow, postgres::PgRow};
use tokio::task::JoinSet;

use super::{
    ChainKeys, Event, Hashed,
    checkpoints::{Published, Vouched, when},
    search::EVENT_COLUMNS,
};
use crate::db::Db;

/// Entries read per query while walking a chain.
const PAGE: i64 = 5_000;
/// Chains walked at once: each is a sequence, but practices are independent, and the work is
/// the hashing (every core) as much as the reading.
const AT_ONCE: usize = 4;

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub practice_id: String,
    pub seq: i64,
    pub problem: String,
}

/// What a verification found.
#[derive(Debug, Default)]
pub struct Report {
    pub practices: usize,
    pub entries: u64,
    /// Entries chained before the chain was keyed (plain SHA-256): a chain holding some is
    /// broken unless a checkpoint made since vouches for them.
    pub unkeyed: u64,
    pub broken: Vec<Broken>,
}

/// Verifies every practice's chain, or only `practice`'s, under `keys`, against the
/// checkpoints `published` (none: the chains alone).
pub async fn verify(
    db: &Db,
    keys: &ChainKeys,
    practice: Option<&str>,
    published: &Published,
) -> Result<Report, sqlx::Error> {
    // The practices with entries, one index probe each (a skip along the primary key): a
    // DISTINCT over the trail read every entry first (7 s of 20,000,000).
    let mut practices: Vec<String> = sqlx::query_scalar(
        "WITH RECURSIVE p (id) AS ( \
             SELECT MIN(practice_id) FROM audit_events \
             UNION ALL \
             SELECT (SELECT MIN(practice_id) FROM audit_events WHERE practice_id > p.id) \
             FROM p WHERE p.id IS NOT NULL) \
         SELECT id FROM p WHERE id IS NOT NULL \
         UNION SELECT practice_id FROM audit_heads ORDER BY 1",
    )
    .fetch_all(db.reader())
    .await?;
    // A practice known only to the checkpoints: its trail was deleted.
    practices.extend(published.by_practice.keys().cloned());
    practices.sort();
    practices.dedup();
    let mut report = Report::default();
    let keys = Arc::new(keys.clone());
    let published = Arc::new(published.clone());
    let mut walks = JoinSet::new();
    let mut found = Vec::new();
    for practice_id in practices
        .into_iter()
        .filter(|p| practice.is_none_or(|only| only == p.as_str()))
    {
        report.practices += 1;
        if walks.len() >= AT_ONCE {
            found.push(walks.join_next().await.expect("a walk is running"));
        }
        let walk = Walk {
            db: db.clone(),
            keys: keys.clone(),
            practice_id,
            published: published.clone(),
        };
        walks.spawn(walk.run());
    }
    found.extend(walks.join_all().await.into_iter().map(Ok));
    for walked in found {
        let walked = walked.map_err(|e| sqlx::Error::Io(std::io::Error::other(e)))??;
        report.entries += walked.entries;
        report.unkeyed += walked.unkeyed;
        report.broken.extend(walked.broken);
    }
    // In the practices' order, whatever order the walks ended in.
    report
        .broken
        .sort_by(|a, b| a.practice_id.cmp(&b.practice_id));
    Ok(report)
}

/// The columns a walk reads: [`super::search::EVENT_COLUMNS`], then these two.
fn walk_query() -> String {
    format!(
        "SELECT {EVENT_COLUMNS}, prev_hash, key_id FROM audit_events \
         WHERE practice_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq"
    )
}

/// An entry as a walk checks it, borrowed from the row it was read from.
struct Entry<'r> {
    seq: i64,
    at: i64,
    actor_id: &'r str,
    actor_roles: &'r str,
    platform_support: i64,
    action: &'r str,
    patient_id: Option<&'r str>,
    visit_id: Option<&'r str>,
    detail: &'r str,
    request_id: Option<&'r str>,
    hash: &'r str,
    prev_hash: &'r str,
    key_id: &'r str,
}

impl<'r> Entry<'r> {
    /// From PostgreSQL's row as it arrived: the strings are not copied.
    fn from_pg(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        Ok(Entry {
            seq: row.try_get(0)?,
            at: row.try_get(1)?,
            actor_id: row.try_get(2)?,
            actor_roles: row.try_get(3)?,
            platform_support: row.try_get(4)?,
            action: row.try_get(5)?,
            patient_id: row.try_get(6)?,
            visit_id: row.try_get(7)?,
            detail: row.try_get(8)?,
            request_id: row.try_get(9)?,
            hash: row.try_get(10)?,
            prev_hash: row.try_get(11)?,
            key_id: row.try_get(12)?,
        })
    }

    fn of(stored: &'r Stored) -> Self {
        let event = &stored.event;
        Entry {
            seq: event.seq,
            at: event.at,
            actor_id: &event.actor_id,
            actor_roles: &event.actor_roles,
            platform_support: event.platform_support,
            action: &event.action,
            patient_id: event.patient_id.as_deref(),
            visit_id: event.visit_id.as_deref(),
            detail: &event.detail,
            request_id: event.request_id.as_deref(),
            hash: &event.hash,
            prev_hash: &stored.prev_hash,
            key_id: &stored.key_id,
        }
    }
}

/// An entry as read through `Any` (SQLite), decoded by column position (by name, each column
/// of each row was a lookup in the row's map of names).
struct Stored {
    event: Event,
    prev_hash: String,
    key_id: String,
}

/// [`super::search::EVENT_COLUMNS`], then these two.
impl sqlx::FromRow<'_, AnyRow> for Stored {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Stored {
            event: Event::from_row(row)?,
            prev_hash: row.try_get(11)?,
            key_id: row.try_get(12)?,
        })
    }
}

/// One practice's chain to walk.
struct Walk {
    db: Db,
    keys: Arc<ChainKeys>,
    practice_id: String,
    published: Arc<Published>,
}

/// What one walk found.
#[derive(Default)]
struct Walked {
    entries: u64,
    unkeyed: u64,
    broken: Option<Broken>,
}

/// A walk along one chain: where it stands and what it has seen.
struct Chain<'w> {
    walk: &'w Walk,
    checkpoints: Option<&'w Vouched>,
    expected_seq: i64,
    prev_hash: String,
    keyed: bool,
    last_unkeyed: i64,
    report: &'w mut Walked,
}

impl Chain<'_> {
    fn broken(&self, seq: i64, problem: &str) -> Broken {
        Broken {
            practice_id: self.walk.practice_id.clone(),
            seq,
            problem: problem.to_string(),
        }
    }

    /// Checks the next entry and steps past it.
    fn step(&mut self, entry: &Entry) -> Result<(), Broken> {
        if entry.seq != self.expected_seq {
            return Err(self.broken(self.expected_seq, "an entry is missing"));
        }
        if entry.prev_hash != self.prev_hash {
            return Err(self.broken(entry.seq, "it does not follow the entry before"));
        }
        let hashed = Hashed {
            practice_id: &self.walk.practice_id,
            seq: entry.seq,
            at: entry.at,
            actor_id: entry.actor_id,
            actor_roles: entry.actor_roles,
            platform_support: entry.platform_support != 0,
            action: entry.action,
            patient_id: entry.patient_id,
            visit_id: entry.visit_id,
            detail: entry.detail,
            request_id: entry.request_id,
            prev_hash: entry.prev_hash,
        };
        let key = if entry.key_id.is_empty() {
            if self.keyed {
                return Err(self.broken(entry.seq, "an unkeyed entry follows keyed ones"));
            }
            self.report.unkeyed += 1;
            self.last_unkeyed = entry.seq;
            None
        } else {
            self.keyed = true;
            match self.walk.keys.by_id(entry.key_id) {
                Some(key) => Some(key),
                None => {
                    let problem = format!(
                        "it was chained under key {}, which is not configured here \
                         (CHARTBRIDGE_OLD_AUDIT_KEYS, CHARTBRIDGE_OLD_SECRET_KEYS)",
                        entry.key_id
                    );
                    return Err(self.broken(entry.seq, &problem));
                }
            }
        };
        if hashed.hash(key) != entry.hash {
            return Err(self.broken(entry.seq, "the entry was changed"));
        }
        let mut vouched = self
            .checkpoints
            .and_then(|c| c.get(&entry.seq))
            .into_iter()
            .flatten();
        if let Some(c) = vouched.find(|c| c.head != entry.hash) {
            let problem = format!(
                "it is not the entry the checkpoint of {} recorded (the trail was rewritten)",
                when(c.at)
            );
            return Err(self.broken(entry.seq, &problem));
        }
        self.prev_hash.clear();
        self.prev_hash.push_str(entry.hash);
        self.expected_seq += 1;
        self.report.entries += 1;
        Ok(())
    }

    /// Reads and checks the entries from the next expected one up to `until`.
    async fn walk_to(&mut self, until: i64) -> Result<Result<(), Broken>, sqlx::Error> {
        let (db, practice_id) = (&self.walk.db, self.walk.practice_id.as_str());
        if let Some(pg) = db.postgres() {
            // One query, its rows checked as they arrive.
            let sql = walk_query();
            let mut rows = sqlx::query(&sql)
                .bind(practice_id)
                .bind(self.expected_seq)
                .bind(until)
                .fetch(pg);
            while let Some(row) = rows.try_next().await? {
                if let Err(broken) = self.step(&Entry::from_pg(&row)?) {
                    return Ok(Err(broken));
                }
            }
            return Ok(Ok(()));
        }
        let sql = format!("{} LIMIT $4", walk_query());
        loop {
            let rows = sqlx::query_as::<_, Stored>(&sql)
                .bind(practice_id)
                .bind(self.expected_seq)
                .bind(until)
                .bind(PAGE)
                .fetch_all(db.reader())
                .await?;
            if rows.is_empty() {
                return Ok(Ok(()));
            }
            for stored in &rows {
                if let Err(broken) = self.step(&Entry::of(stored)) {
                    return Ok(Err(broken));
                }
            }
        }
    }
}

impl Walk {
    async fn run(self) -> Result<Walked, sqlx::Error> {
        let mut walked = Walked::default();
        walked.broken = self.check(&mut walked).await?;
        Ok(walked)
    }

    async fn check(&self, report: &mut Walked) -> Result<Option<Broken>, sqlx::Error> {
        let (db, practice_id) = (&self.db, self.practice_id.as_str());
        let checkpoints = self.published.of(practice_id);
        let broken = |seq: i64, problem: &str| {
            Some(Broken {
                practice_id: practice_id.to_string(),
                seq,
                problem: problem.to_string(),
            })
        };
        // The chain is walked up to the head as read first; entries written meanwhile are walked
        // up to the head as read again, until it stands still.
        let read_head = || async {
            sqlx::query_as::<_, (i64, String)>(
                "SELECT seq, hash FROM audit_heads WHERE practice_id = $1",
            )
            .bind(practice_id)
            .fetch_optional(db.reader())
            .await
        };
        let mut head = read_head().await?;
        let mut chain = Chain {
            walk: self,
            checkpoints,
            expected_seq: 1,
            prev_hash: String::new(),
            keyed: false,
            last_unkeyed: 0,
            report,
        };
        for _round in 0..5 {
            let until = head.as_ref().map_or(i64::MAX, |(seq, _)| *seq);
            if let Err(found) = chain.walk_to(until).await? {
                return Ok(Some(found));
            }
            let again = read_head().await?;
            let moved = matches!((&head, &again), (Some((a, _)), Some((b, _))) if b > a);
            head = again;
            if !moved {
                break;
            }
        }
        let (expected_seq, prev_hash, last_unkeyed) =
            (chain.expected_seq, chain.prev_hash, chain.last_unkeyed);
        let last = expected_seq - 1;
        let vouched_last = checkpoints
            .and_then(|c| c.last_key_value())
            .and_then(|(_, c)| c.first());
        if let Some(c) = vouched_last.filter(|c| c.seq > last) {
            let problem = if last == 0 && head.is_none() {
                format!(
                    "the practice's trail is gone: the checkpoint of {} recorded {} entries",
                    when(c.at),
                    c.seq
                )
            } else {
                format!(
                    "the trail was cut short: the checkpoint of {} recorded entries up to {}",
                    when(c.at),
                    c.seq
                )
            };
            return Ok(broken(last + 1, &problem));
        }
        // Entries from before the chain was keyed are what anyone can write: only a checkpoint
        // the operator published with `--legacy` at the upgrade vouches for them (a keyed
        // entry after them does not: the app chains onto whatever head it finds).
        let vouched_legacy = checkpoints
            .into_iter()
            .flat_map(|c| c.values().flatten())
            .filter(|c| c.legacy)
            .map(|c| c.seq)
            .max();
        if last_unkeyed > 0 && vouched_legacy.is_none_or(|seq| seq < last_unkeyed) {
            let problem = "entries up to this one were chained before the chain was keyed, and \
                           no checkpoint published at the upgrade (`audit checkpoint --legacy`) \
                           vouches for them";
            return Ok(broken(last_unkeyed, problem));
        }
        match head {
            None => Ok(broken(last, "the chain's head is missing")),
            Some((seq, _)) if seq != last => {
                Ok(broken(last + 1, "entries after this one are missing"))
            }
            Some((_, hash)) if hash != prev_hash => Ok(broken(last, "the last entry was changed")),
            Some(_) => {
                let beyond: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM audit_events WHERE practice_id = $1 AND (seq > $2 OR seq < 1)",
                )
                .bind(practice_id)
                .bind(last)
                .fetch_one(db.reader())
                .await?;
                if beyond > 0 {
                    Ok(broken(last + 1, "an entry was added outside the chain"))
                } else {
                    Ok(None)
                }
            }
        }
    }
}
