//! An HCW@Home visit's page once the invite exists: the patient link, the doctor's sign-in
//! (SSO), and finishing the visit from our frame (the consultation closed and stored).

use askama::Template;
use axum::{
    extract::{Path, State},
    response::{IntoResponse, Redirect, Response},
};

use super::{
    HcwAtHome, HcwLaunch, HcwResult, ID,
    client::{Consultation, HcwError},
    connection::require_connection,
    poll::store,
    sso,
};
use crate::{
    audit::{Action, Entry},
    db::{Moment, now_ms},
    error::AppError,
    hint::{Frame, PracticeSession, Role},
    ids::ExternalId,
    visits::AppState,
    visits::{
        self, PartnerError, PartnerState, Visit, VisitId,
        chart_note::{ChartNote, Markdown},
        page,
    },
};

/// Where HCW sends the doctor after signing in (a relative path, as HCW requires).
const DOCTOR_RETURN_PATH: &str = "/dashboard";

#[derive(Template)]
#[template(path = "partners/hcw_visit.html")]
struct VisitView {
    frame: Frame,
    visit_id: String,
    open: bool,
    patient_url: String,
    sent: bool,
    asked_to_send: bool,
    routing: String,
    scheduled_for: String,
    /// Where the call stood at the last look: words for the clinician.
    call: Option<&'static str>,
    consultation: Option<ConsultationView>,
}

struct ConsultationView {
    accepted: Option<Moment>,
    closed: Option<Moment>,
    minutes: Option<i64>,
    doctor_comment: String,
    doctor_rating: String,
    patient_comment: String,
    patient_rating: String,
}

impl From<&Consultation> for ConsultationView {
    fn from(c: &Consultation) -> Self {
        let at = |ms: Option<i64>| ms.filter(|m| *m > 0).map(Moment);
        let text = |s: &Option<String>| s.clone().unwrap_or_default();
        Self {
            accepted: at(c.accepted_at),
            closed: at(c.closed_at),
            minutes: match (c.accepted_at, c.closed_at) {
                (Some(a), Some(b)) if a > 0 && b > a => Some((b - a + 30_000) / 60_000),
                _ => None,
            },
            doctor_comment: text(&c.doctor_comment),
            doctor_rating: text(&c.doctor_rating),
            patient_comment: text(&c.patient_comment),
            patient_rating: text(&c.patient_rating),
        }
    }
}

pub fn render(visit: &Visit, frame: &Frame) -> Result<String, AppError> {
    let launch: HcwLaunch = visit.launch_data()?;
    let result: Option<HcwResult> = visit.result_data()?;
    let invite = launch.invite.as_ref();
    let view = VisitView {
        frame: frame.clone(),
        visit_id: visit.id.to_string(),
        open: visit.state().is_open() && visit.partner_ref.is_some(),
        patient_url: invite
            .and_then(|i| i.patient_url.clone())
            .unwrap_or_default(),
        sent: invite.is_some_and(|i| i.sent),
        asked_to_send: invite.is_some_and(|i| i.asked_to_send),
        routing: launch.routing.clone().unwrap_or_default(),
        scheduled_for: launch.scheduled_for.clone().unwrap_or_default(),
        call: match launch.consultation_status.as_deref() {
            Some("pending") => Some("The patient is in the waiting room."),
            Some("active") => Some("The call is in progress."),
            Some("closed") => {
                Some("The consultation is closed in HCW@Home; it is being collected.")
            }
            _ => None,
        },
        consultation: result
            .as_ref()
            .map(|r| ConsultationView::from(&r.consultation)),
    };
    Ok(view.render()?)
}

/// The open HCW visit of this session's practice, with its invite id.
async fn open_visit(
    app: &AppState,
    session: &PracticeSession,
    visit_id: &VisitId,
) -> Result<(Visit, String), PartnerError> {
    let visit = visits::get_latest(app, &session.practice_id, visit_id)
        .await?
        .filter(|v| v.is_of(ID))
        .ok_or(AppError::NotFound)?;
    let invite_id = visit
        .partner_ref
        .clone()
        .filter(|_| visit.state().is_open())
        .ok_or_else(|| {
            PartnerError::NotPossible(format!(
                "This visit is {}: there is no open HCW@Home invitation.",
                visit.state().label().to_lowercase()
            ))
        })?;
    Ok((visit, invite_id))
}

/// `POST /hint/partners/hcw/visits/{visit_id}/sign-in` (clinicians; a form with
/// `target="_blank"`): mints the SSO token now and sends the new tab to HCW.
pub async fn sign_in(
    State(hcw): State<PartnerState<HcwAtHome>>,
    session: PracticeSession,
    Path(visit_id): Path<ExternalId>,
) -> Result<Response, AppError> {
    session.require(Role::Clinician)?;
    let visit = visits::get(&hcw, &session.practice_id, &visit_id.into())
        .await?
        .filter(|v| v.is_of(ID))
        .ok_or(AppError::NotFound)?;
    let email = session.user_email.as_deref().ok_or_else(|| {
        AppError::Unprocessable(
            "Your Hint user has no email, and HCW@Home signs doctors in by email.".into(),
        )
    })?;
    let connection = require_connection(&hcw, &session.practice_id).await?;
    let now = now_ms() / 1000;
    let token = sso::mint(
        &connection.sso_secret,
        &sso::SsoClaims::new(email, &session.user_name, now),
    );
    let signed_in = Entry::new(Action::Partner(super::SSO_SIGN_IN))
        .patient(&visit.patient_id)
        .visit(visit.id.as_str());
    hcw.audit
        .record(&session.practice_id, &session.actor(), signed_in)
        .await?;
    tracing::info!(practice_id = %session.practice_id, visit_id = %visit.id, "hcw doctor sign-in minted");
    let url = sso::callback_url(&connection.base_url, &token, DOCTOR_RETURN_PATH);
    Ok(Redirect::to(url.as_str()).into_response())
}

/// `POST /hint/partners/hcw/visits/{visit_id}/finish` (clinicians, htmx): closes the
/// consultation in HCW, stores it and signs the interaction. Answers the visit's page.
pub async fn finish(
    State(hcw): State<PartnerState<HcwAtHome>>,
    session: PracticeSession,
    Path(visit_id): Path<ExternalId>,
) -> Result<Response, AppError> {
    session.require(Role::Clinician)?;
    let visit_id = VisitId::from(visit_id);
    let notice = match close(&hcw, &session, &visit_id).await {
        Ok(()) => None,
        Err(PartnerError::Internal(e)) => return Err(e),
        Err(refused) => Some(refused.message()),
    };
    page::answer(&hcw, &session, &visit_id, notice).await
}

async fn close(
    hcw: &PartnerState<HcwAtHome>,
    session: &PracticeSession,
    visit_id: &VisitId,
) -> Result<(), PartnerError> {
    let practice_id = &session.practice_id;
    let (visit, invite_id) = open_visit(hcw, session, visit_id).await?;
    let connection = require_connection(hcw, practice_id).await?;
    let closed = hcw
        .partner
        .client
        .close_consultation(practice_id, &connection, &invite_id)
        .await
        .map_err(HcwError::into_partner_error)?;
    let Some(consultation) = closed else {
        return Err(PartnerError::NotPossible(
            "There is no consultation to close yet: the patient has not joined, or no doctor has accepted the call. Cancel the visit if it will not take place.".into(),
        ));
    };
    store(hcw, practice_id, &visit, &consultation, &session.actor()).await?;
    Ok(())
}

/// The video visit in the chart: when it was planned, started and ended, who took part, how
/// long it lasted, and what the doctor and the patient said of it.
pub fn chart_note(visit: &Visit) -> Result<Option<ChartNote>, AppError> {
    let Some(result) = visit.result_data::<HcwResult>()? else {
        return Ok(None);
    };
    let launch: HcwLaunch = visit.launch_data()?;
    let c = ConsultationView::from(&result.consultation);
    let when = |at: Option<Moment>| at.map(|m| m.to_string()).unwrap_or_default();
    let mut body = Markdown::new();
    body.field(
        "Scheduled",
        launch.scheduled_for.as_deref().unwrap_or("At once"),
    )
    .field("Started", &when(c.accepted))
    .field("Ended", &when(c.closed))
    .field(
        "Duration",
        &c.minutes.map(|m| format!("{m} min")).unwrap_or_default(),
    )
    .field(
        "Took part",
        &format!(
            "{} (doctor), {} (patient)",
            visit.user_name, visit.patient_name
        ),
    );
    if let Some(routing) = launch.routing.as_deref().filter(|r| !r.is_empty()) {
        body.field("Routed to", routing);
    }
    body.field(
        "Ended as",
        match result.consultation.status.as_deref() {
            Some("closed") => "Closed in HCW@Home",
            Some(other) => other,
            None => "—",
        },
    );
    if !c.doctor_comment.is_empty() || !c.doctor_rating.is_empty() {
        body.field("Doctor's comment", &c.doctor_comment)
            .field("Doctor's rating", &c.doctor_rating);
    }
    if !c.patient_comment.is_empty() || !c.patient_rating.is_empty() {
        body.field("Patient's comment", &c.patient_comment)
            .field("Patient's rating", &c.patient_rating);
    }
    Ok(Some(ChartNote {
        title: "HCW@Home video visit".to_string(),
        body: body.finish(),
    }))
}
