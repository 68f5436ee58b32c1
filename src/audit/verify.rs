//! `chartbridge audit verify`: walks each practice's chain from its first entry and checks
//! that the sequence has no gap, that every entry's hash is the hash of its fields and of the
//! entry before, and that the chain ends where `audit_heads` says. A row changed, inserted or
//! deleted anywhere (the last included) is reported with the practice and sequence number.

use sqlx::Row;

use super::{Event, Hashed};
use crate::db::Db;

/// Entries read per query while walking a chain.
const PAGE: i64 = 5_000;

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
    pub broken: Vec<Broken>,
}

/// Verifies every practice's chain, or only `practice`'s.
pub async fn verify(db: &Db, practice: Option<&str>) -> Result<Report, sqlx::Error> {
    let practices: Vec<String> = sqlx::query_scalar(
        "SELECT practice_id FROM audit_heads UNION SELECT practice_id FROM audit_events \
         ORDER BY 1",
    )
    .fetch_all(db.reader())
    .await?;
    let mut report = Report::default();
    for practice_id in practices
        .iter()
        .filter(|p| practice.is_none_or(|only| only == p.as_str()))
    {
        report.practices += 1;
        if let Some(broken) = verify_practice(db, practice_id, &mut report.entries).await? {
            report.broken.push(broken);
        }
    }
    Ok(report)
}

async fn verify_practice(
    db: &Db,
    practice_id: &str,
    entries: &mut u64,
) -> Result<Option<Broken>, sqlx::Error> {
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
            let rows = sqlx::query(
                "SELECT seq, at, actor_id, actor_roles, platform_support, action, patient_id, visit_id, \
                 detail, request_id, hash, prev_hash FROM audit_events \
                 WHERE practice_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq LIMIT $4",
            )
            .bind(practice_id)
            .bind(expected_seq)
            .bind(until)
            .bind(PAGE)
            .fetch_all(db.reader())
            .await?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let event = <Event as sqlx::FromRow<_>>::from_row(&row)?;
                let stored_prev: String = row.try_get("prev_hash")?;
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
                if hashed.hash() != event.hash {
                    return Ok(broken(event.seq, "the entry was changed"));
                }
                prev_hash = event.hash;
                expected_seq += 1;
                *entries += 1;
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
    match head {
        None => Ok(broken(last, "the chain's head is missing")),
        Some((seq, _)) if seq != last => Ok(broken(last + 1, "entries after this one are missing")),
        Some((_, hash)) if hash != prev_hash => Ok(broken(last, "the last entry was changed")),
        Some(_) => {
            let beyond: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM audit_events WHERE practice_id = $1 AND seq > $2",
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
