//! Reading the trail back: a practice's entries, newest first, filtered by patient, user and
//! time, a page at a time (the admins' page, the CSV export, the practice's archive).

use sqlx::{Row, any::AnyRow};

use crate::{db::Db, tenancy::PracticeId};

/// One entry as read back.
#[derive(Debug, Clone)]
pub struct Event {
    pub seq: i64,
    pub at: i64,
    pub actor_id: String,
    pub actor_roles: String,
    pub platform_support: i64,
    pub action: String,
    pub patient_id: Option<String>,
    pub visit_id: Option<String>,
    pub detail: String,
    pub request_id: Option<String>,
    pub hash: String,
}

/// The columns an [`Event`] is read from, in the order it decodes them (by position: by name,
/// each column of each row was a lookup in the row's map of names, on reads of millions of
/// rows: the export, `audit verify`).
pub const EVENT_COLUMNS: &str = "seq, at, actor_id, actor_roles, platform_support, action, patient_id, visit_id, detail, request_id, hash";

impl sqlx::FromRow<'_, AnyRow> for Event {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Event {
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
        })
    }
}

/// What the trail is filtered by (all optional; `from`/`until` are Unix ms, `until`
/// exclusive; `before` pages back from an entry; `through_seq` leaves out entries recorded
/// after the one with that sequence number, as an export does those recorded while it runs).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub patient_id: Option<String>,
    pub actor_id: Option<String>,
    pub from: Option<i64>,
    pub until: Option<i64>,
    pub before: Option<Before>,
    pub through_seq: Option<i64>,
}

/// A place in the trail's order, newest first: by time, then by sequence number (the order of
/// every index the filters use, so that a page stops after its entries whatever the trail's
/// size, where ordering by sequence number alone read and sorted every entry of a user or of
/// a day). A practice's entries are chained in time order, so both orders agree but for the
/// clocks of several instances; paging by both never skips or repeats an entry either way.
/// In links as `<at>.<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Before {
    pub at: i64,
    pub seq: i64,
}

impl Before {
    /// The place after `event`: the next page holds the entries older than it.
    pub fn of(event: &Event) -> Self {
        Before {
            at: event.at,
            seq: event.seq,
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        let (at, seq) = value.split_once('.')?;
        Some(Before {
            at: at.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Before {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.at, self.seq)
    }
}

/// This practice's entries matching `filter`, newest first, at most `limit`.
pub async fn search(
    db: &Db,
    practice_id: &PracticeId,
    filter: &Filter,
    limit: i64,
) -> Result<Vec<Event>, sqlx::Error> {
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE practice_id = $1");
    let mut n = 1;
    let mut clause = |sql: &mut String, condition: &str| {
        n += 1;
        sql.push_str(&format!(" AND {condition} ${n}"));
    };
    if filter.patient_id.is_some() {
        clause(&mut sql, "patient_id =");
    }
    if filter.actor_id.is_some() {
        clause(&mut sql, "actor_id =");
    }
    if filter.from.is_some() {
        clause(&mut sql, "at >=");
    }
    if filter.until.is_some() {
        clause(&mut sql, "at <");
    }
    if filter.through_seq.is_some() {
        clause(&mut sql, "seq <=");
    }
    if filter.before.is_some() {
        sql.push_str(&format!(
            " AND at <= ${a} AND (at < ${a} OR seq < ${s})",
            a = n + 1,
            s = n + 2
        ));
        n += 2;
    }
    sql.push_str(&format!(" ORDER BY at DESC, seq DESC LIMIT ${}", n + 1));
    let mut query = sqlx::query_as::<_, Event>(&sql).bind(practice_id);
    if let Some(p) = &filter.patient_id {
        query = query.bind(p);
    }
    if let Some(a) = &filter.actor_id {
        query = query.bind(a);
    }
    if let Some(from) = filter.from {
        query = query.bind(from);
    }
    if let Some(until) = filter.until {
        query = query.bind(until);
    }
    if let Some(through) = filter.through_seq {
        query = query.bind(through);
    }
    if let Some(before) = filter.before {
        query = query.bind(before.at).bind(before.seq);
    }
    query.bind(limit).fetch_all(db.reader()).await
}
