//! The audit trail for practice admins: `GET /hint/audit` (filter by patient, user and dates,
//! newest first, a page at a time) and `GET /hint/audit.csv` (the same, as a file: every entry,
//! streamed). Exporting is itself an entry of the trail.

use askama::Template;
use axum::{
    extract::{Query, State},
    http::header,
    response::{Html, IntoResponse, Response},
};
use serde::Deserialize;

use super::streamed::{self, BoxError};
use crate::{
    audit::{self, Action, Before, Entry, Event, Filter},
    error::AppError,
    hint::{Frame, PracticeSession, Role},
    ids::ExternalId,
    tenancy::PracticeId,
    visits::{AppState, Partners},
};

/// Entries per page, and per page read for an export.
const PAGE: i64 = 100;
const EXPORT_PAGE: i64 = 5_000;

/// The filters as the form sends them (blank means any).
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    patient: String,
    #[serde(default)]
    user: String,
    /// `YYYY-MM-DD`, UTC, inclusive.
    #[serde(default)]
    from: String,
    /// `YYYY-MM-DD`, UTC, inclusive.
    #[serde(default)]
    to: String,
    /// Page back from this entry (`<at>.<seq>`, `audit::Before`).
    #[serde(default)]
    before: Option<String>,
}

impl AuditQuery {
    fn filter(&self) -> Result<Filter, AppError> {
        let id = |value: &str, what: &str| -> Result<Option<String>, AppError> {
            let value = value.trim();
            if value.is_empty() {
                return Ok(None);
            }
            ExternalId::parse(value)
                .map(|id| Some(id.to_string()))
                .map_err(|_| AppError::BadRequest(format!("{what} is not an id.")))
        };
        let day = |value: &str, what: &str| -> Result<Option<i64>, AppError> {
            let value = value.trim();
            if value.is_empty() {
                return Ok(None);
            }
            let format = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(value, &format)
                .map(|d| Some(d.midnight().assume_utc().unix_timestamp() * 1000))
                .map_err(|_| AppError::BadRequest(format!("{what} is not a date (YYYY-MM-DD).")))
        };
        Ok(Filter {
            patient_id: id(&self.patient, "The patient")?,
            actor_id: id(&self.user, "The user")?,
            from: day(&self.from, "From")?,
            until: day(&self.to, "To")?.map(|ms| ms + 86_400_000),
            before: match self.before.as_deref().filter(|b| !b.is_empty()) {
                Some(raw) => Some(Before::parse(raw).ok_or_else(|| {
                    AppError::BadRequest("That page of the trail does not exist.".into())
                })?),
                None => None,
            },
            through_seq: None,
        })
    }

    /// The filters as query parameters (for the export link and the next page).
    fn params(&self) -> String {
        let mut to = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("patient", &self.patient),
            ("user", &self.user),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !value.trim().is_empty() {
                to.append_pair(name, value.trim());
            }
        }
        to.finish()
    }
}

/// One entry as the page shows it.
pub struct Row {
    seq: i64,
    at: crate::db::Moment,
    when: String,
    who: String,
    roles: String,
    support: bool,
    action: String,
    patient_id: String,
    visit_id: String,
    detail: String,
    request_id: String,
}

impl Row {
    fn new(e: &Event, partners: &Partners) -> Self {
        Row {
            seq: e.seq,
            at: crate::db::Moment(e.at),
            when: timestamp(e.at),
            who: e.actor_id.clone(),
            roles: e.actor_roles.clone(),
            support: e.platform_support != 0,
            action: Action::parse(&e.action)
                .or_else(|| partners.audit_action(&e.action).map(Action::Partner))
                .map(|a| a.label().to_string())
                .unwrap_or_else(|| e.action.clone()),
            patient_id: e.patient_id.clone().unwrap_or_default(),
            visit_id: e.visit_id.clone().unwrap_or_default(),
            detail: e.detail.clone(),
            request_id: e.request_id.clone().unwrap_or_default(),
        }
    }
}

/// `2026-11-30 05:12:09 UTC`.
fn timestamp(ms: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

#[derive(Template)]
#[template(path = "surfaces/audit.html")]
struct AuditPage {
    frame: Frame,
    query: AuditQuery,
    rows: Vec<Row>,
    params: String,
    older: Option<Before>,
}

/// `GET /hint/audit` (admins).
pub async fn page(
    State(state): State<AppState>,
    session: PracticeSession,
    Query(query): Query<AuditQuery>,
) -> Result<Html<String>, AppError> {
    session.require(Role::Admin)?;
    let filter = query.filter()?;
    let events = audit::search(&state.db, &session.practice_id, &filter, PAGE + 1).await?;
    let older = (events.len() as i64 > PAGE).then(|| Before::of(&events[PAGE as usize - 1]));
    let rows = events
        .iter()
        .take(PAGE as usize)
        .map(|e| Row::new(e, &state.partners))
        .collect();
    let page = AuditPage {
        frame: Frame::new(&session, "audit"),
        params: query.params(),
        query,
        rows,
        older,
    };
    Ok(Html(page.render()?))
}

/// `GET /hint/audit.csv` (admins): the filtered trail as a file, newest first: every entry
/// the filters select, however many, written a page at a time while it is sent (memory stays
/// flat). Entries recorded while it is written are left to the next export.
pub async fn export(
    State(state): State<AppState>,
    session: PracticeSession,
    Query(query): Query<AuditQuery>,
) -> Result<Response, AppError> {
    session.require(Role::Admin)?;
    let filter = query.filter()?;
    let summary = match query.params() {
        p if p.is_empty() => "everything".to_string(),
        p => p,
    };
    let exported = Entry::new(Action::AuditExported).detail(&summary);
    state
        .audit
        .record(&session.practice_id, &session.actor(), exported)
        .await?;
    let (out, body) = streamed::channel();
    let practice_id = session.practice_id.clone();
    tokio::spawn(async move {
        if let Err(e) = write_csv(&state, &practice_id, filter, &out).await {
            tracing::warn!(%practice_id, error = %crate::error::error_chain(e.as_ref()), "the audit export stopped");
            out.fail(e).await;
        }
    });
    let filename = format!(
        "chartbridge-audit-{}.csv",
        session.practice_id.as_str().to_lowercase()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// The trail under `filter`, newest first, from the newest entry when the export began: a page
/// of [`EXPORT_PAGE`] entries read by sequence number (the index's order), then sent.
async fn write_csv(
    state: &AppState,
    practice_id: &PracticeId,
    mut filter: Filter,
    out: &streamed::Sender,
) -> Result<(), BoxError> {
    out.send(CSV_HEADER).await?;
    filter.through_seq = sqlx::query_scalar::<_, Option<i64>>(
        "SELECT MAX(seq) FROM audit_events WHERE practice_id = $1",
    )
    .bind(practice_id)
    .fetch_one(state.db.reader())
    .await?;
    if filter.through_seq.is_none() {
        return Ok(());
    }
    loop {
        let events = audit::search(&state.db, practice_id, &filter, EXPORT_PAGE).await?;
        let Some(oldest) = events.last().map(Before::of) else {
            return Ok(());
        };
        let mut chunk = String::with_capacity(events.len() * 220);
        for e in &events {
            push_csv_line(&mut chunk, e);
        }
        out.send(chunk).await?;
        filter.before = Some(oldest);
    }
}

/// The trail's CSV columns.
pub const CSV_HEADER: &str = "time_utc,user_id,roles,platform_support,action,patient_id,visit_id,detail,request_id,seq,hash\r\n";

/// One entry as a CSV line (with its line end).
pub fn csv_line(e: &Event) -> String {
    let mut line = String::with_capacity(256);
    push_csv_line(&mut line, e);
    line
}

/// Appends one entry as a CSV line to `out` (no allocation per field: an export writes
/// millions).
pub fn push_csv_line(out: &mut String, e: &Event) {
    let seq = e.seq.to_string();
    let fields: [&str; 11] = [
        &timestamp(e.at),
        &e.actor_id,
        &e.actor_roles,
        if e.platform_support != 0 {
            "true"
        } else {
            "false"
        },
        &e.action,
        e.patient_id.as_deref().unwrap_or_default(),
        e.visit_id.as_deref().unwrap_or_default(),
        &e.detail,
        e.request_id.as_deref().unwrap_or_default(),
        &seq,
        &e.hash,
    ];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_csv_field(out, field);
    }
    out.push_str("\r\n");
}

/// A CSV field, quoted; one a spreadsheet would run as a formula is prefixed with `'`.
fn push_csv_field(out: &mut String, value: &str) {
    out.push('"');
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        out.push('\'');
    }
    for part in value.split_inclusive('"') {
        out.push_str(part);
        if part.ends_with('"') {
            out.push('"');
        }
    }
    out.push('"');
}

#[cfg(test)]
fn csv_field(value: &str) -> String {
    let mut out = String::new();
    push_csv_field(&mut out, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "\"plain\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1+1"), "\"'-1+1\"");
    }

    #[test]
    fn filters_are_checked() {
        let query = AuditQuery {
            patient: "pat-1".into(),
            from: "2026-11-01".into(),
            to: "2026-11-30".into(),
            ..AuditQuery::default()
        };
        let filter = query.filter().unwrap();
        assert_eq!(filter.patient_id.as_deref(), Some("pat-1"));
        assert_eq!(
            filter.until.unwrap() - filter.from.unwrap(),
            30 * 86_400_000,
            "the last day is included"
        );
        for bad in [
            AuditQuery {
                from: "30/11/2026".into(),
                ..AuditQuery::default()
            },
            AuditQuery {
                patient: "pat 1\u{0}".into(),
                ..AuditQuery::default()
            },
        ] {
            assert!(bad.filter().is_err());
        }
    }
}
