//! Starting a Haidy visit from our frame: the clinician confirms their Haidy email and picks
//! files; we create (or reuse) the patient's context, upload what passed our checks, and open
//! the visit page with each file's outcome and the deep link into Haidy.

use askama::Template;
use axum::{
    extract::{Multipart, Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::{
    Haidy, HaidyConnection, HaidyLaunch, ID, UploadOutcome,
    client::{Created, NewContext, Upload, for_clinician},
    files::{self, FormInput, human_size},
    remember_user_email, store_context, stored_context, user_email,
};
use crate::{
    audit::{Action, Entry},
    error::AppError,
    hint::{self, Frame, Patient, PracticeSession, Role},
    ids::{ExternalId, clean_text},
    partners::connection::{self, Refusal},
    visits::{
        self, PartnerError, PartnerState, VisitId,
        launch::{self, LaunchError, Launched},
        page,
    },
};

#[derive(Template)]
#[template(path = "partners/haidy_launch.html")]
struct LaunchPage {
    frame: Frame,
    patient_id: String,
    patient_name: String,
    email: String,
    max_size: String,
    max_files: usize,
    blocker: Option<String>,
    error: Option<Refusal>,
}

#[derive(Deserialize)]
pub struct LaunchQuery {
    patient_id: ExternalId,
}

async fn page(
    haidy: &PartnerState<Haidy>,
    session: &PracticeSession,
    patient: &Patient,
    email: Option<String>,
    error: Option<Refusal>,
) -> Result<LaunchPage, AppError> {
    let configured = connection::load::<HaidyConnection>(haidy, &session.practice_id)
        .await?
        .is_some();
    let limits = &haidy.partner.settings;
    Ok(LaunchPage {
        frame: Frame::new(session, "clinical_chart"),
        patient_id: patient.id.clone(),
        patient_name: patient.display_name(),
        email: match email {
            Some(e) => e,
            None => user_email(haidy, session).await?.unwrap_or_default(),
        },
        max_size: human_size(limits.max_file_bytes),
        max_files: limits.max_files,
        blocker: (!configured).then(|| {
            "Haidy is not set up for this practice yet. Ask a practice admin to enter the Haidy API token in Chartbridge settings.".to_string()
        }),
        error,
    })
}

/// `GET /hint/partners/haidy/launch?patient_id=` (clinicians).
pub async fn form(
    State(haidy): State<PartnerState<Haidy>>,
    session: PracticeSession,
    Query(query): Query<LaunchQuery>,
) -> Result<Html<String>, AppError> {
    session.require(Role::Clinician)?;
    let patient = hint::patient_for(&haidy, &session, &query.patient_id).await?;
    // The form shows the patient's name and sends their details to Haidy.
    let viewed = Entry::new(Action::ContactDetailsViewed)
        .patient(&patient.id)
        .detail("Haidy launch form");
    haidy
        .audit
        .record_view(&session.practice_id, &session.actor(), &session.key, viewed)
        .await?;
    Ok(Html(
        page(&haidy, &session, &patient, None, None)
            .await?
            .render()?,
    ))
}

fn valid_email(s: &str) -> bool {
    s.split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.'))
        && s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Haidy's `gender`: male, female or other; left out when Hint records nothing usable.
fn haidy_gender(sex: Option<&str>) -> Option<&'static str> {
    match sex.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("male" | "m") => Some("male"),
        Some("female" | "f") => Some("female"),
        Some("other" | "nonbinary" | "non-binary" | "intersex") => Some("other"),
        _ => None,
    }
}

/// The integration deep link for `patient` as the user `email` (never with a password).
fn deep_link(haidy: &Haidy, connection: &HaidyConnection, email: &str, patient: &Patient) -> Url {
    let metadata = json!({
        "patient_id": patient.id,
        "patient_first_name": patient.first_name.clone().unwrap_or_default(),
        "patient_last_name": patient.last_name.clone().unwrap_or_default(),
        "patient_birth_date": patient.dob.clone().unwrap_or_default(),
    });
    let mut url = haidy.settings.app_url.clone();
    url.query_pairs_mut()
        .append_pair("email", email)
        .append_pair("integration", &connection.integration_id)
        .append_pair("unique_id", &patient.id)
        .append_pair("metadata", &metadata.to_string());
    url
}

/// The patient's context: the stored one, else a new one. `Ok(None)` when Haidy already has
/// this patient but we hold no id for it (uploads are then impossible; the deep link works).
async fn ensure_context(
    haidy: &PartnerState<Haidy>,
    connection: &HaidyConnection,
    practice_id: &crate::tenancy::PracticeId,
    patient: &Patient,
) -> Result<Option<String>, PartnerError> {
    if let Some(id) = stored_context(haidy, practice_id, &patient.id).await? {
        return Ok(Some(id));
    }
    let name = clean_text(&patient.display_name(), 200);
    let created = haidy
        .partner
        .client
        .create_context(
            &connection.api_token,
            &NewContext {
                external_id: &patient.id,
                patient_group: &connection.patient_group,
                name: &name,
                birth_date: patient.dob.as_deref().filter(|d| d.len() == 10),
                gender: haidy_gender(patient.sex.as_deref()),
            },
        )
        .await
        .map_err(|e| PartnerError::upstream(for_clinician(&e), e))?;
    match created {
        Created::Context(id) => {
            store_context(haidy, practice_id, &patient.id, &id).await?;
            Ok(Some(id))
        }
        // A launch at the same moment may have just stored it.
        Created::Duplicate(message) => match stored_context(haidy, practice_id, &patient.id).await?
        {
            Some(id) => Ok(Some(id)),
            None if message.to_lowercase().contains("exist") => Ok(None),
            None => Err(PartnerError::NotPossible(format!(
                "Haidy refused the patient record: {message}"
            ))),
        },
    }
}

/// Uploads `input`'s files; answers one outcome per file, refused ones included.
async fn upload(
    haidy: &Haidy,
    connection: &HaidyConnection,
    context_id: Option<&str>,
    input: FormInput,
) -> Vec<UploadOutcome> {
    let mut outcomes: Vec<UploadOutcome> = input
        .refused
        .iter()
        .map(|r| UploadOutcome::refused(r.filename.clone(), r.reason.clone()))
        .collect();
    if input.picked.is_empty() {
        return outcomes;
    }
    let Some(context_id) = context_id else {
        outcomes.extend(input.picked.iter().map(|p| UploadOutcome::refused(p.filename.clone(),
            "Not sent: Haidy already knows this patient, but not through Chartbridge; add files in Haidy directly.".into())));
        return outcomes;
    };
    let sizes: Vec<(String, usize)> = input
        .picked
        .iter()
        .map(|p| (p.filename.clone(), p.bytes.len()))
        .collect();
    let uploads = input
        .picked
        .into_iter()
        .map(|p| Upload {
            filename: p.filename,
            content_type: p.content_type,
            bytes: p.bytes,
        })
        .collect();
    match haidy
        .client
        .upload(&connection.api_token, context_id, uploads)
        .await
    {
        Ok(answer) => {
            for (filename, size) in sizes {
                if answer
                    .uploaded_files
                    .iter()
                    .any(|u| u.filename.as_deref() == Some(&filename))
                {
                    outcomes.push(UploadOutcome::sent(filename, human_size(size)));
                } else {
                    let reason = answer
                        .failed_files
                        .iter()
                        .find(|f| f.filename.as_deref() == Some(&filename))
                        .and_then(|f| f.error.clone())
                        .unwrap_or_else(|| "Haidy did not accept it.".into());
                    outcomes.push(UploadOutcome::refused(
                        filename,
                        format!("Haidy refused it: {reason}"),
                    ));
                }
            }
        }
        Err(e) => {
            let reason = for_clinician(&e);
            outcomes.extend(
                sizes
                    .into_iter()
                    .map(|(f, _)| UploadOutcome::refused(f, reason.clone())),
            );
        }
    }
    outcomes
}

/// `POST /hint/partners/haidy/launch` (clinicians; multipart, posted by htmx so that the
/// session key rides in a header, never in the URL).
pub async fn submit(
    State(haidy): State<PartnerState<Haidy>>,
    session: PracticeSession,
    headers: HeaderMap,
    multipart: Multipart,
) -> Result<Response, AppError> {
    session.require(Role::Clinician)?;
    let input = files::read(multipart, &haidy.partner.settings).await?;
    let patient_id = ExternalId::parse(input.field("patient_id").unwrap_or_default())?;
    let patient = hint::patient_for(&haidy, &session, &patient_id).await?;
    let email = input
        .field("haidy_email")
        .unwrap_or_default()
        .trim()
        .to_string();
    let practice_id = &session.practice_id;
    let Some(connection) = connection::load::<HaidyConnection>(&haidy, practice_id).await? else {
        let page = page(&haidy, &session, &patient, Some(email), None).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response());
    };
    if !valid_email(&email) {
        let why = Refusal::at("haidy_email", "Enter the email you sign in to Haidy with.");
        let page = page(&haidy, &session, &patient, Some(email), Some(why)).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response());
    }
    remember_user_email(&haidy, &session, &email).await?;

    let initial = HaidyLaunch {
        haidy_email: email.clone(),
        ..HaidyLaunch::default()
    };
    let launched = launch::launch(&haidy, &session, &patient, ID, &initial, async |_| {
        let context_id = ensure_context(&haidy, &connection, practice_id, &patient).await?;
        let uploads = upload(&haidy.partner, &connection, context_id.as_deref(), input).await;
        let deep_link = deep_link(&haidy.partner, &connection, &email, &patient).to_string();
        let launched = Launched {
            partner_ref: None,
            data: HaidyLaunch {
                haidy_email: email.clone(),
                context_id,
                deep_link: Some(deep_link),
                uploads,
            },
            poll_after: Some(haidy.partner.settings.poll_every),
        };
        Ok((launched, ()))
    })
    .await;
    match launched {
        // The visit page says why, when Haidy would not take the patient (the visit failed so).
        Ok((visit_id, ())) | Err(LaunchError::Partner { visit_id, .. }) => {
            Ok(page::redirect_htmx(&visit_id, &session, &headers))
        }
        Err(other) => Err(other.into()),
    }
}

/// `POST /hint/partners/haidy/visits/{visit_id}/files` (clinicians, htmx multipart): more
/// files for an open visit. Answers the visit's page with each file's outcome.
pub async fn add_files(
    State(haidy): State<PartnerState<Haidy>>,
    session: PracticeSession,
    Path(visit_id): Path<ExternalId>,
    multipart: Multipart,
) -> Result<Response, AppError> {
    session.require(Role::Clinician)?;
    let visit_id = VisitId::from(visit_id);
    let practice_id = &session.practice_id;
    let visit = visits::get_latest(&haidy, practice_id, &visit_id)
        .await?
        .filter(|v| v.is_of(ID))
        .ok_or(AppError::NotFound)?;
    let input = files::read(multipart, &haidy.partner.settings).await?;
    let mut launch: HaidyLaunch = visit.launch_data()?;
    let notice = if !visit.state().is_open() {
        Some(format!(
            "This visit is {}: no more files can be added.",
            visit.state().label().to_lowercase()
        ))
    } else if input.picked.is_empty() && input.refused.is_empty() {
        Some("Pick at least one file.".to_string())
    } else {
        let connection = connection::load::<HaidyConnection>(&haidy, practice_id)
            .await?
            .ok_or_else(|| {
                AppError::Unprocessable("Haidy is no longer set up for this practice.".into())
            })?;
        let outcomes = upload(
            &haidy.partner,
            &connection,
            launch.context_id.as_deref(),
            input,
        )
        .await;
        let failed = outcomes.iter().filter(|o| !o.ok).count();
        let sent = format!("{} sent", outcomes.len() - failed);
        launch.uploads.extend(outcomes);
        visits::update_launch(&haidy, practice_id, &visit.id, &launch).await?;
        let entry = Entry::new(Action::Partner(super::DOCUMENTS_SENT))
            .patient(&visit.patient_id)
            .visit(visit.id.as_str())
            .detail(&sent);
        haidy
            .audit
            .record(practice_id, &session.actor(), entry)
            .await?;
        (failed > 0).then(|| format!("{failed} file(s) were not sent; see below."))
    };
    page::answer(&haidy, &session, &visit_id, notice).await
}
