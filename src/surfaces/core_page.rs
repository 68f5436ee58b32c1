//! `core_page`: the practice-wide page. Find a patient and start a visit; recent visits; work
//! that needs attention (dead jobs) with a retry button.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    response::{Html, IntoResponse, Response},
};
use serde::Deserialize;

use super::{
    LaunchButton, VisitRow,
    attention::{self, NeedsAttention},
    launch_buttons,
};
use crate::{
    audit::{Action, Actor, Entry},
    error::AppError,
    hint::{self, Frame, HintAuth, PracticeSession, Role, directory::Found, patient_index},
    ids::ExternalId,
    jobs,
    partners::unmatched,
    tenancy::PracticeId,
    visits::AppState,
    visits::{self, LaunchStyle},
};

#[derive(Template)]
#[template(path = "surfaces/core_page.html")]
struct CorePage {
    frame: Frame,
    visits: Vec<VisitRow>,
    /// The next page's cursor, when this one is full.
    older: Option<String>,
    /// A page of older visits (not refreshed), rather than the newest.
    paged: bool,
    stuck: NeedsAttention,
    patient_filter: String,
    /// Admins are told when partner deliveries wait for review in settings.
    unmatched: usize,
    /// Partners this practice has set up (none: the page says what to do first).
    partners_set_up: usize,
    /// The partners a clinician launches, and those whose visits arrive by themselves, named
    /// for the welcome (from the registry).
    launched: String,
    inbound: String,
}

/// The names of the partners launched in one way or the other, in the registry's order.
fn partner_names(state: &AppState, inbound: bool) -> String {
    let names: Vec<&str> = state
        .partners
        .iter()
        .filter(|p| (p.launch_style() == LaunchStyle::InboundOnly) == inbound)
        .map(|p| p.name())
        .collect();
    names.join(", ")
}

pub async fn page(
    State(state): State<AppState>,
    session: PracticeSession,
) -> Result<Html<String>, AppError> {
    let recent = visits::recent(&state, &session.practice_id, None, VISITS_PAGE).await?;
    // Search is offered here: the index is started, and read into memory before a key is hit.
    start_patient_index(&state, &session.practice_id).await?;
    if !state.patients.is_loaded(&session.practice_id) {
        let (hint_state, practice_id) = (state.hint_state.clone(), session.practice_id.clone());
        tokio::spawn(async move { hint_state.patients.warm(&hint_state, &practice_id).await });
    }
    let stuck = attention::for_practice(&state, &session.practice_id).await?;
    // The page's own load; its refreshes every few seconds show the same list and are not.
    let listed = Entry::new(Action::VisitsListed).detail("recent visits");
    state
        .audit
        .record(&session.practice_id, &session.actor(), listed)
        .await?;
    let page = CorePage {
        launched: partner_names(&state, false),
        inbound: partner_names(&state, true),
        frame: Frame::new(&session, "core_page"),
        older: older_than(&recent, VISITS_PAGE),
        paged: false,
        visits: VisitRow::all(&recent, &state.partners),
        stuck,
        patient_filter: String::new(),
        partners_set_up: launch_buttons(&state, &session.practice_id).await?.len(),
        unmatched: if session.has(Role::Admin) {
            unmatched::open_for_practice(&state, &session.practice_id)
                .await?
                .len()
        } else {
            0
        },
    };
    Ok(Html(page.render()?))
}

#[derive(Template)]
#[template(path = "fragments/patient_results.html")]
struct PatientResults {
    frame: Frame,
    query: String,
    patients: Vec<PatientRow>,
    buttons: Vec<LaunchButton>,
    error: Option<String>,
    /// How many matched in all (`patients` holds the first 20).
    total: usize,
    /// While the practice's patients are still being read from Hint: how many are so far.
    indexing: Option<usize>,
}

struct PatientRow {
    id: String,
    name: String,
    dob: String,
}

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// Patients of the session's practice matching `q`, from the practice's patient index (never
/// waiting on Hint); a Hint id the index does not hold yet is asked of Hint.
async fn find_patients(
    state: &AppState,
    session: &PracticeSession,
    q: &str,
) -> Result<Result<Found, hint::HintError>, AppError> {
    let practice_id = &session.practice_id;
    start_patient_index(state, practice_id).await?;
    let found = state.patients.search(state, practice_id, q, 20).await?;
    if found.total > 0 || !q.starts_with("pat-") {
        return Ok(Ok(found));
    }
    let asked = hint::as_user(state, session, |token| async move {
        let auth = HintAuth {
            practice_id,
            token: &token,
        };
        state.hint.get_patient(&auth, q).await
    })
    .await?;
    Ok(match asked {
        Ok(patient) => Ok(Found {
            patients: vec![patient],
            total: 1,
            ..found
        }),
        Err(e) if e.is_status(reqwest::StatusCode::NOT_FOUND) => Ok(found),
        Err(e) => Err(e),
    })
}

/// Makes sure the practice's patient index exists: its first search (or page) starts the job
/// that fills it from Hint and keeps it in step afterwards.
pub async fn start_patient_index(
    state: &AppState,
    practice_id: &PracticeId,
) -> Result<(), AppError> {
    if state.patients.is_known_started(practice_id) {
        return Ok(());
    }
    if patient_index::state(state, practice_id).await?.is_some() {
        state.patients.note_started(practice_id);
        return Ok(());
    }
    let mut tx = state.db.begin().await?;
    patient_index::start(&mut tx, practice_id, state.settings.jobs.max_attempts).await?;
    tx.commit().await?;
    state.patients.note_started(practice_id);
    state.jobs.wake();
    Ok(())
}

/// `GET /hint/patients/search?q=` (htmx): patients of this practice matching the query.
pub async fn search(
    State(state): State<AppState>,
    session: PracticeSession,
    Query(query): Query<SearchQuery>,
) -> Result<Html<String>, AppError> {
    let q: String = query.q.trim().chars().take(100).collect();
    let mut results = PatientResults {
        frame: Frame::new(&session, "core_page"),
        query: q.clone(),
        patients: vec![],
        buttons: launch_buttons(&state, &session.practice_id).await?,
        error: None,
        total: 0,
        indexing: None,
    };
    if q.chars().count() >= 2 {
        match find_patients(&state, &session, &q).await? {
            Ok(found) => {
                results.total = found.total;
                if !found.complete {
                    results.indexing = Some(found.indexed);
                }
                let said = format!("{} found", found.patients.len());
                let searched = Entry::new(Action::PatientsSearched).detail(&said);
                state
                    .audit
                    .record(&session.practice_id, &session.actor(), searched)
                    .await?;
                results.patients = found
                    .patients
                    .iter()
                    .map(|p| PatientRow {
                        id: p.id.clone(),
                        name: p.display_name(),
                        dob: p.dob.clone().unwrap_or_default(),
                    })
                    .collect()
            }
            Err(e) => {
                tracing::warn!(practice_id = %session.practice_id, error = %crate::error::error_chain(&e), "patient search failed");
                results.error = Some(format!(
                    "Hint could not find this patient right now ({e}). Please try again."
                ));
            }
        }
    }
    Ok(Html(results.render()?))
}

#[derive(Template)]
#[template(path = "fragments/visit_rows.html")]
struct VisitRows {
    frame: Frame,
    visits: Vec<VisitRow>,
    older: Option<String>,
    paged: bool,
    patient_filter: String,
}

/// Visits a page of the practice's list shows.
pub const VISITS_PAGE: i64 = 25;
/// Visits a page of one patient's list shows.
pub const PATIENT_VISITS_PAGE: i64 = 100;

/// The cursor of the page after `rows`, when they fill theirs (a partial page is the last).
pub fn older_than(rows: &[visits::Visit], page: i64) -> Option<String> {
    (rows.len() as i64 >= page)
        .then(|| rows.last().map(|v| visits::After::of(v).to_string()))
        .flatten()
}

#[derive(Deserialize)]
pub struct VisitRowsQuery {
    #[serde(default)]
    patient_id: Option<ExternalId>,
    /// A page of older visits: those after this cursor (`older_than`).
    #[serde(default)]
    after: Option<String>,
}

/// `GET /hint/visits` (htmx, polled): the visit table, for the practice or one patient; with
/// `after`, a page of older visits (kept as it is: not polled).
pub async fn visit_rows(
    State(state): State<AppState>,
    session: PracticeSession,
    Query(query): Query<VisitRowsQuery>,
) -> Result<Html<String>, AppError> {
    let patient_filter = query.patient_id.map(String::from).unwrap_or_default();
    let after = match query.after.as_deref().filter(|a| !a.is_empty()) {
        Some(raw) => Some(visits::After::parse(raw).ok_or_else(|| {
            AppError::BadRequest("That page of visits does not exist; reload the list.".into())
        })?),
        None => None,
    };
    let page = if patient_filter.is_empty() {
        VISITS_PAGE
    } else {
        PATIENT_VISITS_PAGE
    };
    let rows = if patient_filter.is_empty() {
        visits::recent(&state, &session.practice_id, after.as_ref(), page).await?
    } else {
        let rows = visits::for_patient(
            &state,
            &session.practice_id,
            &patient_filter,
            after.as_ref(),
            page,
        )
        .await?;
        let listed = Entry::new(Action::VisitsListed).patient(&patient_filter);
        state
            .audit
            .record_view(&session.practice_id, &session.actor(), &session.key, listed)
            .await?;
        rows
    };
    let fragment = VisitRows {
        frame: Frame::new(&session, "core_page"),
        older: older_than(&rows, page),
        paged: after.is_some(),
        visits: VisitRow::all(&rows, &state.partners),
        patient_filter,
    };
    Ok(Html(fragment.render()?))
}

/// `POST /hint/jobs/{id}/retry`: puts a dead job of this practice back in the queue.
pub async fn retry_job(
    State(state): State<AppState>,
    session: PracticeSession,
    Path(job_id): Path<ExternalId>,
) -> Result<Response, AppError> {
    if !(session.has(Role::Admin) || session.has(Role::Clinician)) {
        return Err(AppError::Forbidden(
            "Only admins and clinicians can retry work.".into(),
        ));
    }
    let actor = session.actor();
    if !retry(&state, &session, &actor)
        .one(&state.job_kinds, &job_id)
        .await?
    {
        return Err(AppError::NotFound);
    }
    tracing::info!(practice_id = %session.practice_id, %job_id, "dead job retried by a user");
    Ok(Html(
        "<li><span class=\"ok\" role=\"status\">Queued again: Chartbridge is trying it now. \
         The visit's page shows when it is done.</span></li>",
    )
    .into_response())
}

/// `POST /hint/jobs/retry_all`: puts this practice's dead jobs back in the queue (the newest
/// [`jobs::RETRY_AT_ONCE`]; the section says how many, and how many are left).
pub async fn retry_all_jobs(
    State(state): State<AppState>,
    session: PracticeSession,
) -> Result<Response, AppError> {
    if !(session.has(Role::Admin) || session.has(Role::Clinician)) {
        return Err(AppError::Forbidden(
            "Only admins and clinicians can retry work.".into(),
        ));
    }
    let actor = session.actor();
    let retried = retry(&state, &session, &actor)
        .all(&state.job_kinds)
        .await?;
    tracing::info!(practice_id = %session.practice_id, retried, "dead jobs retried by a user");
    let left = attention::for_practice(&state, &session.practice_id)
        .await?
        .dead;
    let said = RetriedAll { retried, left };
    Ok(Html(said.render()?).into_response())
}

#[derive(Template)]
#[template(path = "fragments/retried_all.html")]
struct RetriedAll {
    retried: usize,
    left: i64,
}

/// A retry of the session's practice's dead work, by the session's user.
fn retry<'a>(
    state: &'a AppState,
    session: &'a PracticeSession,
    actor: &'a Actor,
) -> jobs::Retry<'a> {
    jobs::Retry {
        db: &state.db,
        trail: &state.audit,
        signal: &state.jobs,
        practice_id: &session.practice_id,
        actor,
    }
}
