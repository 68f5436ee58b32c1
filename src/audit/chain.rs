//! Chaining entries: the fields each entry's hash covers ([`Hashed`]), and appending a batch
//! of entries to their practices' chains on the caller's transaction ([`record_many`]).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sqlx::AnyConnection;

use super::{ChainKey, Pending};
use crate::{crypto::sha256_hex, db::now_ms};

/// The fields an entry's hash covers, in order. Public so that a tool writing a trail in bulk
/// (the scale benchmark's seeder) chains it exactly as the app does.
#[derive(Serialize, Clone, Copy)]
pub struct Hashed<'a> {
    pub practice_id: &'a str,
    pub seq: i64,
    pub at: i64,
    pub actor_id: &'a str,
    pub actor_roles: &'a str,
    pub platform_support: bool,
    pub action: &'a str,
    pub patient_id: Option<&'a str>,
    pub visit_id: Option<&'a str>,
    pub detail: &'a str,
    pub request_id: Option<&'a str>,
    pub prev_hash: &'a str,
}

/// What a keyed entry's MAC is made for (no other signature of the key is made over it).
const ENTRY_DOMAIN: &str = "chartbridge audit entry v1";

impl Hashed<'_> {
    /// The entry's hash: the MAC of its fields under `key`; without a key, the plain SHA-256
    /// entries were chained with before the chain was keyed (read by `verify` only).
    pub fn hash(&self, key: Option<&ChainKey>) -> String {
        let fields = serde_json::to_vec(self).expect("an entry serialises");
        match key {
            Some(key) => key.sign(ENTRY_DOMAIN, &[&fields]),
            None => sha256_hex(&fields),
        }
    }
}

/// Appends entries, in order, on the caller's transaction, whatever the number of practices
/// they span in a few statements: the practices' heads locked in one order (concurrent
/// writers take turns on those rows and never wait on each other in a circle) and moved on by
/// their entries' count, the entries inserted, the new last hashes stored.
pub(super) async fn record_many(
    conn: &mut AnyConnection,
    key: &ChainKey,
    pending: &[Pending],
) -> Result<(), sqlx::Error> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for p in pending {
        *counts.entry(p.practice_id.as_str()).or_default() += 1;
    }
    let mut heads = move_heads(conn, &counts).await?;
    if heads.len() < counts.len() {
        // Practices' first entries: their heads start the chain.
        let missing: Vec<&str> = counts
            .keys()
            .filter(|p| !heads.contains_key(**p))
            .copied()
            .collect();
        let sql = format!(
            "INSERT INTO audit_heads (practice_id, seq, hash) VALUES {} ON CONFLICT (practice_id) DO NOTHING",
            crate::db::placeholders(missing.len(), 1, |p| format!("{p}, 0, ''"))
        );
        let mut insert = sqlx::query(&sql);
        for practice in &missing {
            insert = insert.bind(*practice);
        }
        insert.execute(&mut *conn).await?;
        let first: BTreeMap<&str, i64> = missing.iter().map(|p| (*p, counts[p])).collect();
        heads.extend(move_heads(conn, &first).await?);
    }
    // Each practice's entries follow its head, in the order given.
    let at = now_ms();
    let mut next: HashMap<String, (i64, String)> = heads
        .into_iter()
        .map(|(practice, (last, hash))| {
            let first = last - counts[practice.as_str()] + 1;
            (practice, (first, hash))
        })
        .collect();
    let mut rows = Vec::with_capacity(pending.len());
    for p in pending {
        let (seq, prev_hash) = next
            .get_mut(p.practice_id.as_str())
            .expect("every practice's head was moved");
        let hash = Hashed {
            practice_id: p.practice_id.as_str(),
            seq: *seq,
            at,
            actor_id: &p.actor.id,
            actor_roles: &p.actor.roles,
            platform_support: p.actor.platform_support,
            action: p.action.as_str(),
            patient_id: p.patient_id.as_deref(),
            visit_id: p.visit_id.as_deref(),
            detail: &p.detail,
            request_id: p.actor.request_id.as_deref(),
            prev_hash,
        }
        .hash(Some(key));
        rows.push((p, *seq, std::mem::replace(prev_hash, hash.clone()), hash));
        *seq += 1;
    }
    for chunk in rows.chunks(MAX_ROWS) {
        let sql = format!(
            "INSERT INTO audit_events (practice_id, seq, at, actor_id, actor_roles, platform_support, \
             action, patient_id, visit_id, detail, request_id, prev_hash, hash, key_id) VALUES {}",
            crate::db::placeholders(chunk.len(), 14, |list| list)
        );
        let mut insert = sqlx::query(&sql);
        for (p, seq, prev, hash) in chunk {
            insert = insert
                .bind(&p.practice_id)
                .bind(*seq)
                .bind(at)
                .bind(&p.actor.id)
                .bind(&p.actor.roles)
                .bind(i64::from(p.actor.platform_support))
                .bind(p.action.as_str())
                .bind(p.patient_id.as_deref())
                .bind(p.visit_id.as_deref())
                .bind(&p.detail)
                .bind(p.actor.request_id.as_deref())
                .bind(prev)
                .bind(hash)
                .bind(key.id());
        }
        insert.execute(&mut *conn).await?;
    }
    let sql = format!(
        "UPDATE audit_heads SET hash = v.column2 FROM (VALUES {}) AS v \
         WHERE audit_heads.practice_id = v.column1",
        crate::db::placeholders(next.len(), 2, |list| list)
    );
    let mut update = sqlx::query(&sql);
    for (practice, (_, hash)) in &next {
        update = update.bind(practice).bind(hash);
    }
    update.execute(&mut *conn).await?;
    Ok(())
}

/// Most entries in one insert (14 values each, well within both databases' limits).
const MAX_ROWS: usize = 500;

/// Moves the heads of these practices on by their counts, locked in the practices' order;
/// answers each moved head's new last sequence number and its hash before the move (a
/// practice without a head is left out).
async fn move_heads(
    conn: &mut AnyConnection,
    counts: &BTreeMap<&str, i64>,
) -> Result<HashMap<String, (i64, String)>, sqlx::Error> {
    let practices = crate::db::placeholders(counts.len(), 1, |p| p);
    if conn.backend_name() == "PostgreSQL" {
        let lock = format!(
            "SELECT practice_id FROM audit_heads WHERE practice_id IN ({}) \
             ORDER BY practice_id FOR UPDATE",
            practices.replace(['(', ')'], "")
        );
        let mut query = sqlx::query(&lock);
        for practice in counts.keys() {
            query = query.bind(*practice);
        }
        query.fetch_all(&mut *conn).await?;
    }
    let sql = format!(
        "UPDATE audit_heads SET seq = audit_heads.seq + CAST(v.column2 AS BIGINT) \
         FROM (VALUES {}) AS v WHERE audit_heads.practice_id = v.column1 \
         RETURNING audit_heads.practice_id, audit_heads.seq, audit_heads.hash",
        crate::db::placeholders(counts.len(), 2, |list| list)
    );
    let mut query = sqlx::query_as::<_, (String, i64, String)>(&sql);
    for (practice, n) in counts {
        query = query.bind(*practice).bind(*n);
    }
    Ok(query
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|(practice, seq, hash)| (practice, (seq, hash)))
        .collect())
}
