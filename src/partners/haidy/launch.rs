//! Starting a Haidy visit from our frame: the clinician confirms their Haidy email and picks
//! files; we create (or reuse) the patient's context, upload what passed our checks, and open
//! the visit page with each file's outcome and the deep link into Haidy.

use askama::Template;
use axum::{
    extract::{Multipart, Path, Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::{
    HaidyConnection, HaidyLaunch, UploadOutcome,
    client::{Created, NewContext, Upload},
    files::{self, FormInput, human_size},
    remember_user_email, store_context, stored_context, user_email,
};
use crate::{
    db::now_ms,
    error::AppError,
    hint::{PracticeSession, Role, client::Patient},
    ids::{ExternalId, clean_text},
    partners::Partner,
    state::AppState,
    surfaces::{Frame, clinical_interaction},
    visits::{self, routes::fetch_patient},
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
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct LaunchQuery {
    patient_id: ExternalId,
}

async fn page(
    state: &AppState,
    session: &PracticeSession,
    patient: &Patient,
    email: Option<String>,
    error: Option<String>,
) -> Result<LaunchPage, AppError> {
    let configured = HaidyConnection::load(state, &session.practice_id)
        .await?
        .is_some();
    Ok(LaunchPage {
        frame: Frame::new(session, "clinical_chart"),
        patient_id: patient.id.clone(),
        patient_name: patient.display_name(),
        email: match email {
            Some(e) => e,
            None => user_email(state, session).await?.unwrap_or_default(),
        },
        max_size: human_size(state.settings.haidy.max_file_bytes),
        max_files: state.settings.haidy.max_files,
        blocker: (!configured).then(|| {
            "Haidy is not set up for this practice yet. Ask a practice admin to enter the Haidy API token in Chartbridge settings.".to_string()
        }),
        error,
    })
}

/// `GET /hint/partners/haidy/launch?patient_id=` (clinicians).
pub async fn form(
    State(state): State<AppState>,
    session: PracticeSession,
    Query(query): Query<LaunchQuery>,
) -> Result<Html<String>, AppError> {
    session.require(Role::Clinician)?;
    let patient = fetch_patient(&state, &session, &query.patient_id).await?;
    Ok(Html(
        page(&state, &session, &patient, None, None)
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
fn deep_link(
    state: &AppState,
    connection: &HaidyConnection,
    email: &str,
    patient: &Patient,
) -> Url {
    let metadata = json!({
        "patient_id": patient.id,
        "patient_first_name": patient.first_name.clone().unwrap_or_default(),
        "patient_last_name": patient.last_name.clone().unwrap_or_default(),
        "patient_birth_date": patient.dob.clone().unwrap_or_default(),
    });
    let mut url = state.settings.haidy.app_url.clone();
    url.query_pairs_mut()
        .append_pair("email", email)
        .append_pair("integration", &connection.integration_id)
        .append_pair("unique_id", &patient.id)
        .append_pair("metadata", &metadata.to_string());
    url
}

/// The patient's context: the stored one, else a new one. `Ok(None)` when Haidy already has
/// this patient but we hold no id for it (uploads are then impossible; the deep link works).
/// The outer error is ours (the database); the inner one is Haidy's refusal, in words for the
/// clinician.
async fn ensure_context(
    state: &AppState,
    connection: &HaidyConnection,
    practice_id: &str,
    patient: &Patient,
) -> Result<Result<Option<String>, String>, sqlx::Error> {
    if let Some(id) = stored_context(state, practice_id, &patient.id).await? {
        return Ok(Ok(Some(id)));
    }
    let name = clean_text(&patient.display_name(), 200);
    let created = state
        .haidy
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
        .await;
    let created = match created {
        Ok(created) => created,
        Err(e) => return Ok(Err(super::client::for_clinician(&e))),
    };
    Ok(match created {
        Created::Context(id) => {
            store_context(state, practice_id, &patient.id, &id).await?;
            Ok(Some(id))
        }
        // A launch at the same moment may have just stored it.
        Created::Duplicate(message) => match stored_context(state, practice_id, &patient.id).await?
        {
            Some(id) => Ok(Some(id)),
            None if message.to_lowercase().contains("exist") => Ok(None),
            None => Err(format!("Haidy refused the patient record: {message}")),
        },
    })
}

/// Uploads `input`'s files; answers one outcome per file, refused ones included.
async fn upload(
    state: &AppState,
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
    match state
        .haidy
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
            let reason = super::client::for_clinician(&e);
            outcomes.extend(
                sizes
                    .into_iter()
                    .map(|(f, _)| UploadOutcome::refused(f, reason.clone())),
            );
        }
    }
    outcomes
}

fn visit_page(visit_id: &str, session: &PracticeSession) -> Response {
    let mut to = url::form_urlencoded::Serializer::new(String::new());
    to.append_pair("visit_id", visit_id)
        .append_pair("session_key", &session.key);
    Redirect::to(&format!("/hint/clinical_interaction?{}", to.finish())).into_response()
}

/// `POST /hint/partners/haidy/launch` (clinicians; multipart).
pub async fn submit(
    State(state): State<AppState>,
    session: PracticeSession,
    multipart: Multipart,
) -> Result<Response, AppError> {
    session.require(Role::Clinician)?;
    let input = files::read(multipart, &state.settings.haidy).await?;
    let patient_id = ExternalId::parse(input.field("patient_id").unwrap_or_default())?;
    let patient = fetch_patient(&state, &session, &patient_id).await?;
    let email = input
        .field("haidy_email")
        .unwrap_or_default()
        .trim()
        .to_string();
    let Some(connection) = HaidyConnection::load(&state, &session.practice_id).await? else {
        let page = page(&state, &session, &patient, Some(email), None).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response());
    };
    if !valid_email(&email) {
        let why = "Enter the email you sign in to Haidy with.".to_string();
        let page = page(&state, &session, &patient, Some(email), Some(why)).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Html(page.render()?)).into_response());
    }
    remember_user_email(&state, &session, &email).await?;

    let visit_id = visits::start_for_patient(
        &state,
        &session,
        &patient,
        Partner::Haidy,
        &HaidyLaunch {
            haidy_email: email.clone(),
            ..HaidyLaunch::default()
        },
    )
    .await?;
    let context_id = match ensure_context(&state, &connection, &session.practice_id, &patient)
        .await?
    {
        Ok(id) => id,
        Err(reason) => {
            tracing::warn!(practice_id = %session.practice_id, %visit_id, "haidy refused the patient context");
            visits::fail(&state, &session.practice_id, &visit_id, &reason).await?;
            return Ok(visit_page(&visit_id, &session));
        }
    };
    let uploads = upload(&state, &connection, context_id.as_deref(), input).await;
    let poll_at = now_ms() + state.settings.haidy.poll_every.as_millis() as i64;
    let deep_link = deep_link(&state, &connection, &email, &patient).to_string();
    let launched = visits::mark_launched(
        &state,
        &session.practice_id,
        &visit_id,
        None,
        &HaidyLaunch {
            haidy_email: email,
            context_id,
            deep_link: Some(deep_link),
            uploads,
        },
        Some(poll_at),
    )
    .await?;
    if !launched {
        return Err(AppError::Conflict(
            "The visit ended before Haidy answered (it took too long, or it was cancelled). Start it again.".into(),
        ));
    }
    Ok(visit_page(&visit_id, &session))
}

/// `POST /hint/partners/haidy/visits/{visit_id}/files` (clinicians, htmx multipart): more
/// files for an open visit. Answers the visit's page with each file's outcome.
pub async fn add_files(
    State(state): State<AppState>,
    session: PracticeSession,
    Path(visit_id): Path<ExternalId>,
    multipart: Multipart,
) -> Result<(StatusCode, Html<String>), AppError> {
    session.require(Role::Clinician)?;
    let visit = visits::get_latest(&state, &session.practice_id, &visit_id)
        .await?
        .filter(|v| v.partner() == Some(Partner::Haidy))
        .ok_or(AppError::NotFound)?;
    let input = files::read(multipart, &state.settings.haidy).await?;
    let mut launch: HaidyLaunch = visit.launch_data()?;
    let notice = if !visit.state().is_open() {
        Some(format!(
            "This visit is {}: no more files can be added.",
            visit.state().label().to_lowercase()
        ))
    } else if input.picked.is_empty() && input.refused.is_empty() {
        Some("Pick at least one file.".to_string())
    } else {
        let connection = HaidyConnection::load(&state, &session.practice_id)
            .await?
            .ok_or_else(|| {
                AppError::Unprocessable("Haidy is no longer set up for this practice.".into())
            })?;
        let outcomes = upload(&state, &connection, launch.context_id.as_deref(), input).await;
        let failed = outcomes.iter().filter(|o| !o.ok).count();
        launch.uploads.extend(outcomes);
        visits::update_launch(&state, &session.practice_id, &visit.id, &launch).await?;
        (failed > 0).then(|| format!("{failed} file(s) were not sent; see below."))
    };
    clinical_interaction::answer(&state, &session, &visit_id, notice).await
}
