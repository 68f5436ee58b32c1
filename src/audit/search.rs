//! Reading the trail back: a practice's entries, newest first, filtered by patient, user and
//! time, a page at a time (the admins' page, the CSV export, the practice's archive).

use crate::{db::Db, tenancy::PracticeId};

/// One entry as read back.
#[derive(Debug, Clone, sqlx::FromRow)]
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

/// What the trail is filtered by (all optional; `from`/`until` are Unix ms, `until`
/// exclusive; `before` pages back from a sequence number).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub patient_id: Option<String>,
    pub actor_id: Option<String>,
    pub from: Option<i64>,
    pub until: Option<i64>,
    pub before: Option<i64>,
}

/// This practice's entries matching `filter`, newest first, at most `limit`.
pub async fn search(
    db: &Db,
    practice_id: &PracticeId,
    filter: &Filter,
    limit: i64,
) -> Result<Vec<Event>, sqlx::Error> {
    let mut sql = String::from(
        "SELECT seq, at, actor_id, actor_roles, platform_support, action, patient_id, visit_id, \
         detail, request_id, hash FROM audit_events WHERE practice_id = $1",
    );
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
    if filter.before.is_some() {
        clause(&mut sql, "seq <");
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", n + 1));
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
    if let Some(before) = filter.before {
        query = query.bind(before);
    }
    query.bind(limit).fetch_all(db.reader()).await
}
