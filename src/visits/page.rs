//! The visit's own page, the `clinical_interaction` surface: Hint reopens one of our partner
//! interactions and we show the visit and its full result. Found by the handshake's
//! interaction id, else by `?visit_id=` (the link we wrote), always within the session's
//! practice. Partner actions on a visit (finish, cancel, more files) answer with it.

use askama::Template;
use axum::{
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::{Visit, VisitId, VisitState};
use crate::{
    audit::{Action, Entry},
    db::{Moment, now_ms},
    error::AppError,
    hint::{Frame, PracticeSession, frame::FormTargets},
    ids::ExternalId,
    jobs,
    tenancy::PracticeId,
    visits::AppState,
    visits::poll::PollPartner,
};

/// What stands for the name of a patient Hint destroyed.
pub const ERASED: &str = "(patient removed from Hint)";

#[derive(Template)]
#[template(path = "surfaces/clinical_interaction.html")]
struct ClinicalInteraction {
    frame: Frame,
    visit: Visit,
    partner_name: String,
    state_label: &'static str,
    /// The partner's part: its controls while open, its result once in.
    partner_html: String,
    started: Moment,
    completed: Option<Moment>,
    cancellable: bool,
    /// What an action on this page could not do, for the clinician.
    notice: Option<String>,
    /// The page looks again every few seconds: while the visit is open, and until Hint's
    /// chart says what the visit says.
    refreshing: bool,
}

#[derive(Deserialize)]
pub struct InteractionQuery {
    #[serde(default)]
    visit_id: Option<ExternalId>,
}

pub async fn page(
    State(state): State<AppState>,
    session: PracticeSession,
    Query(query): Query<InteractionQuery>,
) -> Result<Response, AppError> {
    let mut visit = None;
    if let Some(interaction_id) = session.interaction_id.as_deref() {
        visit = super::find_by_interaction(&state, &session.practice_id, interaction_id).await?;
    }
    if visit.is_none() {
        if let Some(visit_id) = query.visit_id {
            visit = super::get(&state, &session.practice_id, &visit_id.into()).await?;
        }
    }
    let visit = visit.ok_or(AppError::NotFound)?;
    // Hint opened this interaction for a patient: it must be the visit's patient.
    if session
        .patient_id
        .as_deref()
        .is_some_and(|p| p != visit.patient_id)
    {
        return Err(AppError::NotFound);
    }
    watched(&state, &session.practice_id, &visit).await?;
    let viewed = Entry::new(Action::ResultViewed)
        .patient(&visit.patient_id)
        .visit(visit.id.as_str());
    state
        .audit
        .record(&session.practice_id, &session.actor(), viewed)
        .await?;
    respond(&state, &session, StatusCode::OK, visit, None).await
}

/// Someone is looking at an open visit (the page refreshes every few seconds while it is
/// open): a partner whose side moves on its own (HCW@Home's call) is asked sooner than its
/// usual poll, so the page is never more than that far behind.
async fn watched(
    state: &AppState,
    practice_id: &PracticeId,
    visit: &Visit,
) -> Result<(), AppError> {
    if visit.state() != VisitState::InProgress {
        return Ok(());
    }
    let Some(every) = state.partners.of(visit)?.poll_while_watched() else {
        return Ok(());
    };
    let poll = PollPartner::of(&visit.id);
    if jobs::hasten(
        &state.db,
        practice_id,
        &poll,
        now_ms() + every.as_millis() as i64,
    )
    .await?
    {
        state.jobs.wake();
    }
    Ok(())
}

/// Sends the browser to the visit's page (after a launch from a form in the frame).
pub fn redirect(visit_id: &VisitId, session: &PracticeSession) -> Redirect {
    Redirect::to(&location(visit_id, session))
}

/// Like [`redirect`], for a form htmx posted: htmx navigates on `HX-Redirect`.
pub fn redirect_htmx(
    visit_id: &VisitId,
    session: &PracticeSession,
    headers: &HeaderMap,
) -> Response {
    if headers.contains_key("hx-request") {
        let mut response = StatusCode::OK.into_response();
        if let Ok(value) = HeaderValue::from_str(&location(visit_id, session)) {
            response.headers_mut().insert("hx-redirect", value);
        }
        response
    } else {
        redirect(visit_id, session).into_response()
    }
}

/// The visit page's address (a GET: the key may ride in it).
fn location(visit_id: &VisitId, session: &PracticeSession) -> String {
    let mut to = url::form_urlencoded::Serializer::new(String::new());
    to.append_pair("visit_id", visit_id.as_str())
        .append_pair("session_key", &session.key);
    format!("/hint/clinical_interaction?{}", to.finish())
}

/// Answers an action on a visit (finish, cancel, more files) with the visit's page as it now
/// stands; with `notice`, the action could not be done and the answer is a 422 saying why.
pub async fn answer(
    state: &AppState,
    session: &PracticeSession,
    visit_id: &VisitId,
    notice: Option<String>,
) -> Result<Response, AppError> {
    let visit = super::get_latest(state, &session.practice_id, visit_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let status = if notice.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    respond(state, session, status, visit, notice).await
}

/// The page as an answer, carrying the origins its forms may be sent on to.
async fn respond(
    state: &AppState,
    session: &PracticeSession,
    status: StatusCode,
    visit: Visit,
    notice: Option<String>,
) -> Result<Response, AppError> {
    let targets = state
        .partners
        .of(&visit)?
        .visit_form_targets(state, &session.practice_id)
        .await?;
    let mut response = (status, Html(render(state, session, visit, notice)?)).into_response();
    response.extensions_mut().insert(FormTargets(targets));
    Ok(response)
}

/// The page for `visit`, with `notice` when an action on it could not be done. Partner actions
/// (finish, cancel) answer with it, so the clinician sees the outcome in place.
fn render(
    state: &AppState,
    session: &PracticeSession,
    visit: Visit,
    notice: Option<String>,
) -> Result<String, AppError> {
    let frame = Frame::new(session, "clinical_interaction");
    let partner = state.partners.of(&visit)?;
    let mut visit = visit;
    let partner_html = if visit.is_erased() {
        visit.patient_name = ERASED.to_string();
        String::new()
    } else {
        partner.render_visit(&visit, &frame)?
    };
    let page = ClinicalInteraction {
        refreshing: visit.state().is_open() || !visit.in_hint_as_here() || !visit.note_in_chart(),
        cancellable: visit.state().is_open() && frame.is_clinician && partner.cancellable(),
        partner_name: partner.name().to_string(),
        frame,
        state_label: visit.state().label(),
        started: Moment(visit.created_at),
        completed: visit.completed_at.map(Moment),
        partner_html,
        visit,
        notice,
    };
    Ok(page.render()?)
}
