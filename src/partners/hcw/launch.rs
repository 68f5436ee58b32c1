//! Launching an HCW@Home video visit from our frame.
//!
//! `GET /hint/partners/hcw/launch?patient_id=` shows what HCW will receive and asks only what
//! Hint cannot answer: the gender when Hint's `sex` is neither male nor female (never guessed),
//! the patient's language, an optional time. What HCW would refuse (no email and no phone, no
//! clinician email to route to) is said here, before anything is sent. `POST` creates the
//! visit, then the invite, and opens the visit page with the patient link.

use askama::Template;
use axum::{
    Form,
    extract::{Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset, format_description::well_known::Rfc3339};

use super::{
    HcwAtHome, HcwConnection, HcwLaunch, ID, InviteSummary, Routing, client::NewInvite,
    connection::require_connection,
};
use crate::{
    audit::{Action, Entry},
    error::AppError,
    hint::{self, Frame, Patient, PracticeSession, Role},
    ids::{ExternalId, clean_text},
    partners::connection::{self, Refusal},
    tenancy::PracticeId,
    visits::{
        AppState, PartnerError, PartnerState, Visit,
        launch::{self, LaunchError, Launched},
        page,
    },
};

/// Languages offered for the patient's HCW pages (two-letter codes, as HCW wants).
const LANGUAGES: [(&str, &str); 5] = [
    ("en", "English"),
    ("fr", "French"),
    ("de", "German"),
    ("it", "Italian"),
    ("es", "Spanish"),
];

#[derive(Template)]
#[template(path = "partners/hcw_launch.html")]
struct LaunchPage {
    frame: Frame,
    patient_id: String,
    patient_name: String,
    /// Hint's sex when it is male or female; else the clinician chooses.
    known_gender: Option<&'static str>,
    hint_sex: String,
    email: Option<String>,
    phone: Option<String>,
    routing_label: String,
    languages: &'static [(&'static str, &'static str)],
    input: LaunchForm,
    /// Why HCW cannot be called at all (shown instead of the button).
    blocker: Option<String>,
    /// What went wrong with the last submission.
    error: Option<Refusal>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LaunchForm {
    #[serde(default)]
    pub patient_id: String,
    #[serde(default)]
    pub gender: String,
    #[serde(default)]
    pub language: String,
    /// `YYYY-MM-DDTHH:MM` from a datetime-local input, in the browser's time.
    #[serde(default)]
    pub scheduled_for: String,
    /// The browser's `getTimezoneOffset()` (minutes behind UTC), set by app.js.
    #[serde(default)]
    pub tz_offset: String,
    /// Checkbox: HCW sends the link to the patient.
    #[serde(default)]
    pub send_invite: Option<String>,
}

#[derive(Deserialize)]
pub struct LaunchQuery {
    patient_id: ExternalId,
}

fn known_gender(sex: Option<&str>) -> Option<&'static str> {
    match sex.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("male" | "m") => Some("male"),
        Some("female" | "f") => Some("female"),
        _ => None,
    }
}

/// The patient's mobile number, else any number.
fn phone_of(patient: &Patient) -> Option<String> {
    let numbers: Vec<_> = patient
        .phones
        .iter()
        .filter_map(|p| Some((p.kind.as_deref(), p.number.as_deref()?.trim())))
        .filter(|(_, n)| !n.is_empty())
        .collect();
    numbers
        .iter()
        .find(|(kind, _)| kind.is_some_and(|k| k.eq_ignore_ascii_case("mobile")))
        .or(numbers.first())
        .map(|(_, n)| n.to_string())
}

fn email_of(patient: &Patient) -> Option<String> {
    patient
        .email
        .as_deref()
        .map(str::trim)
        .filter(|e| e.contains('@'))
        .map(String::from)
}

fn routing_label(routing: &Routing, session: &PracticeSession) -> String {
    match routing {
        Routing::DoctorEmail => format!(
            "to you ({})",
            session.user_email.as_deref().unwrap_or("no email in Hint")
        ),
        Routing::Queue { queue } => format!("to the HCW@Home queue “{queue}”"),
    }
}

fn page(
    session: &PracticeSession,
    connection: Option<&HcwConnection>,
    patient: &Patient,
    input: LaunchForm,
    error: Option<Refusal>,
) -> LaunchPage {
    let email = email_of(patient);
    let phone = phone_of(patient);
    let blocker = match connection {
        None => Some("HCW@Home is not set up for this practice yet. Ask a practice admin to enter the HCW@Home server in Chartbridge settings.".to_string()),
        Some(_) if email.is_none() && phone.is_none() => Some(
            "This patient has no email and no phone number in Hint, so HCW@Home cannot invite them. Add one to the patient in Hint, then start again.".to_string(),
        ),
        Some(c) if c.routing == Routing::DoctorEmail && session.user_email.is_none() => Some(
            "HCW@Home routes this practice's invitations to the clinician's email, and your Hint user has none. Ask a practice admin.".to_string(),
        ),
        Some(_) => None,
    };
    LaunchPage {
        frame: Frame::new(session, "clinical_chart"),
        patient_id: patient.id.clone(),
        patient_name: patient.display_name(),
        known_gender: known_gender(patient.sex.as_deref()),
        hint_sex: patient.sex.clone().unwrap_or_default(),
        email,
        phone,
        routing_label: connection
            .map(|c| routing_label(&c.routing, session))
            .unwrap_or_default(),
        languages: &LANGUAGES,
        input,
        blocker,
        error,
    }
}

/// `GET /hint/partners/hcw/launch?patient_id=` (clinicians).
pub async fn form(
    State(hcw): State<PartnerState<HcwAtHome>>,
    session: PracticeSession,
    Query(query): Query<LaunchQuery>,
) -> Result<Html<String>, AppError> {
    session.require(Role::Clinician)?;
    let patient = hint::patient_for(&hcw, &session, &query.patient_id).await?;
    // The form shows the patient's email and phone from Hint.
    let viewed = Entry::new(Action::ContactDetailsViewed)
        .patient(&patient.id)
        .detail("HCW@Home launch form");
    hcw.audit
        .record_view(&session.practice_id, &session.actor(), &session.key, viewed)
        .await?;
    let input = LaunchForm {
        language: "en".into(),
        send_invite: Some("on".into()),
        ..LaunchForm::default()
    };
    let connection = connection::load::<HcwConnection>(&hcw, &session.practice_id).await?;
    Ok(Html(
        page(&session, connection.as_ref(), &patient, input, None).render()?,
    ))
}

/// The scheduled time as UTC RFC 3339, if one was given; it must be in the future.
fn scheduled_utc(input: &LaunchForm) -> Result<Option<String>, String> {
    let raw = input.scheduled_for.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let local = PrimitiveDateTime::parse(raw, &format)
        .map_err(|_| "Enter the time as a date and a time of day.".to_string())?;
    // getTimezoneOffset() is minutes *behind* UTC: UTC = local + offset.
    let behind: i32 = input.tz_offset.trim().parse().unwrap_or(0);
    if !(-16 * 60..=16 * 60).contains(&behind) {
        return Err("The browser's time zone is not plausible.".into());
    }
    let offset = UtcOffset::from_whole_seconds(-behind * 60).map_err(|e| e.to_string())?;
    let at = local.assume_offset(offset).to_offset(UtcOffset::UTC);
    if at <= OffsetDateTime::now_utc() {
        return Err("The time is in the past: HCW@Home only accepts a future time.".into());
    }
    at.format(&Rfc3339).map(Some).map_err(|e| e.to_string())
}

/// `POST /hint/partners/hcw/launch` (clinicians).
pub async fn submit(
    State(hcw): State<PartnerState<HcwAtHome>>,
    session: PracticeSession,
    Form(input): Form<LaunchForm>,
) -> Result<Response, AppError> {
    session.require(Role::Clinician)?;
    let patient_id = ExternalId::parse(&input.patient_id)?;
    let patient = hint::patient_for(&hcw, &session, &patient_id).await?;
    let connection = connection::load::<HcwConnection>(&hcw, &session.practice_id).await?;
    let refuse = |input: LaunchForm, why: Refusal| -> Result<Response, AppError> {
        let page = page(&session, connection.as_ref(), &patient, input, Some(why));
        Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response())
    };
    // What HCW would refuse is refused here, before a visit exists.
    let checked = page(
        &session,
        connection.as_ref(),
        &patient,
        LaunchForm::default(),
        None,
    );
    // (A missing connection is one of the blockers.)
    let (Some(connection), None) = (connection.as_ref(), checked.blocker.clone()) else {
        return refuse(input, checked.blocker.clone().unwrap_or_default().into());
    };
    let gender = match (checked.known_gender, input.gender.as_str()) {
        (Some(known), _) => known,
        (None, "male") => "male",
        (None, "female") => "female",
        (None, _) => {
            let why = "Choose the gender HCW@Home should show: Hint does not record the patient as male or female.";
            return refuse(input, Refusal::at("gender", why));
        }
    };
    let Some(language) = LANGUAGES
        .iter()
        .map(|(code, _)| *code)
        .find(|code| *code == input.language)
    else {
        return refuse(
            input,
            Refusal::at("language", "Choose the patient's language."),
        );
    };
    let scheduled_for = match scheduled_utc(&input) {
        Ok(at) => at,
        Err(why) => return refuse(input, Refusal::at("scheduled_for", why)),
    };
    let send_invite = input.send_invite.is_some();
    let (first_name, last_name) = names(&patient);
    let (doctor_email, queue) = match &connection.routing {
        Routing::DoctorEmail => (session.user_email.clone(), None),
        Routing::Queue { queue } => (None, Some(queue.clone())),
    };
    let initial = HcwLaunch {
        language: language.into(),
        scheduled_for: scheduled_for.clone(),
        ..HcwLaunch::default()
    };
    let launched = launch::launch(&hcw, &session, &patient, ID, &initial, async |visit_id| {
        let invite = NewInvite {
            is_patient_invite: true,
            first_name,
            last_name,
            gender: gender.into(),
            email_address: checked.email.clone(),
            phone_number: checked.phone.clone(),
            language: language.into(),
            doctor_email,
            queue,
            scheduled_for: scheduled_for.clone(),
            send_invite,
            metadata: json!({"chartbridge_visit_id": visit_id.as_str()}),
        };
        let invite = hcw
            .partner
            .client
            .create_invite(&session.practice_id, connection, &invite)
            .await
            .map_err(|e| e.into_partner_error())?;
        let launched = Launched {
            partner_ref: Some(invite.id.clone()),
            data: HcwLaunch {
                language: language.into(),
                scheduled_for,
                routing: Some(routing_label(&connection.routing, &session)),
                invite: Some(InviteSummary {
                    sent: invite.status.as_deref() == Some("SENT"),
                    asked_to_send: send_invite,
                    id: invite.id,
                    patient_url: invite.patient_url,
                    status: invite.status,
                }),
                consultation_status: None,
            },
            poll_after: Some(hcw.partner.settings.poll_every),
        };
        Ok((launched, ()))
    })
    .await;
    match launched {
        Ok((visit_id, ())) => Ok(page::redirect(&visit_id, &session).into_response()),
        // HCW refused what the clinician entered: the form again, saying why.
        Err(LaunchError::Partner {
            error: error @ PartnerError::Refused { .. },
            ..
        }) => refuse(input, error.message().into()),
        Err(other) => Err(other.into()),
    }
}

/// First and last name for HCW, which requires both.
fn names(patient: &Patient) -> (String, String) {
    let clean = |s: Option<&str>| s.map(|s| clean_text(s, 100)).filter(|s| !s.is_empty());
    match (
        clean(patient.first_name.as_deref()),
        clean(patient.last_name.as_deref()),
    ) {
        (Some(first), Some(last)) => (first, last),
        (first, last) => {
            let full = patient.display_name();
            let mut parts = full.split_whitespace();
            let f = first.or_else(|| parts.next().map(String::from));
            let l = last.or_else(|| parts.last().map(String::from));
            (
                f.unwrap_or_else(|| "Patient".into()),
                l.unwrap_or_else(|| "-".into()),
            )
        }
    }
}

/// The partner side of cancelling: revoke the invite (already gone counts as revoked).
pub async fn revoke(
    hcw: &HcwAtHome,
    app: &AppState,
    practice_id: &PracticeId,
    visit: &Visit,
) -> Result<(), PartnerError> {
    let Some(invite_id) = visit.partner_ref.as_deref() else {
        return Ok(());
    };
    let connection = require_connection(app, practice_id).await?;
    match hcw
        .client
        .delete_invite(practice_id, &connection, invite_id)
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) if e.is_refused_request() && e.status() != Some(reqwest::StatusCode::FORBIDDEN) => {
            Err(PartnerError::Refused {
                message: format!(
                    "HCW@Home cannot revoke the invitation ({}): the patient has probably already joined. Use Finish visit once the call is over.",
                    e.reason().unwrap_or_else(|| "refused".into())
                ),
                source: e.into(),
            })
        }
        Err(e) => Err(e.into_partner_error()),
    }
}
