//! `chartbridge audit verify`: walks each practice's chain from its first entry and checks
//! that the sequence has no gap, that every entry's hash is the MAC of its fields and of the
//! entry before under the key it names, and that the chain ends where `audit_heads` says. A row
//! changed, inserted or deleted anywhere is reported with the practice and sequence number.
//!
//! With published checkpoints (`checkpoints.rs`), also that every entry a checkpoint vouched
//! for is still there as it was: a chain cut short with its head moved back, or a practice
//! whose trail was deleted whole, is found too.

use std::sync::Arc;

use sqlx::{Row, any::AnyRow};
use tokio::task::JoinSet;

use super::{
    ChainKeys, Event, Hashed,
    checkpoints::{Published, when},
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
    let mut practices: Vec<String> = sqlx::query_scalar(
        "SELECT practice_id FROM audit_heads UNION SELECT practice_id FROM audit_events \
         ORDER BY 1",
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

/// An entry as a walk reads it, decoded by column position (by name, each column of each row
/// was a lookup in the row's map of names).
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

impl Walk {
    async fn run(self) -> Result<Walked, sqlx::Error> {
        let mut walked = Walked::default();
        walked.broken = self.check(&mut walked).await?;
        Ok(walked)
    }

    async fn check(&self, report: &mut Walked) -> Result<Option<Broken>, sqlx::Error> {
        let (db, keys, practice_id) = (&self.db, &*self.keys, self.practice_id.as_str());
        let checkpoints = self.published.of(practice_id);
        let mut keyed = false;
        let mut last_unkeyed = 0;
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
        let mut expected_seq = 1;
        let mut prev_hash = String::new();
        for _round in 0..5 {
            let until = head.as_ref().map_or(i64::MAX, |(seq, _)| *seq);
            loop {
                let rows = sqlx::query_as::<_, Stored>(&format!(
                    "SELECT {EVENT_COLUMNS}, prev_hash, key_id FROM audit_events \
                     WHERE practice_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $4"
                ))
                .bind(practice_id)
                .bind(expected_seq)
                .bind(until)
                .bind(PAGE)
                .fetch_all(db.reader())
                .await?;
                if rows.is_empty() {
                    break;
                }
                for Stored {
                    event,
                    prev_hash: stored_prev,
                    key_id,
                } in rows
                {
                    if event.seq != expected_seq {
                        return Ok(broken(expected_seq, "an entry is missing"));
                    }
                    if stored_prev != prev_hash {
                        return Ok(broken(event.seq, "it does not follow the entry before"));
                    }
                    let hashed = Hashed {
                        practice_id,
                        seq: event.seq,
                        at: event.at,
                        actor_id: &event.actor_id,
                        actor_roles: &event.actor_roles,
                        platform_support: event.platform_support != 0,
                        action: &event.action,
                        patient_id: event.patient_id.as_deref(),
                        visit_id: event.visit_id.as_deref(),
                        detail: &event.detail,
                        request_id: event.request_id.as_deref(),
                        prev_hash: &stored_prev,
                    };
                    let key = if key_id.is_empty() {
                        if keyed {
                            return Ok(broken(event.seq, "an unkeyed entry follows keyed ones"));
                        }
                        report.unkeyed += 1;
                        last_unkeyed = event.seq;
                        None
                    } else {
                        keyed = true;
                        match keys.by_id(&key_id) {
                            Some(key) => Some(key),
                            None => {
                                let problem = format!(
                                    "it was chained under key {key_id}, which is not configured here \
                                 (CHARTBRIDGE_OLD_AUDIT_KEYS, CHARTBRIDGE_OLD_SECRET_KEYS)"
                                );
                                return Ok(broken(event.seq, &problem));
                            }
                        }
                    };
                    if hashed.hash(key) != event.hash {
                        return Ok(broken(event.seq, "the entry was changed"));
                    }
                    let mut vouched = checkpoints
                        .and_then(|c| c.get(&event.seq))
                        .into_iter()
                        .flatten();
                    if let Some(c) = vouched.find(|c| c.head != event.hash) {
                        let problem = format!(
                            "it is not the entry the checkpoint of {} recorded (the trail was rewritten)",
                            when(c.at)
                        );
                        return Ok(broken(event.seq, &problem));
                    }
                    prev_hash = event.hash;
                    expected_seq += 1;
                    report.entries += 1;
                }
            }
            let again = read_head().await?;
            let moved = matches!((&head, &again), (Some((a, _)), Some((b, _))) if b > a);
            head = again;
            if !moved {
                break;
            }
        }
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
