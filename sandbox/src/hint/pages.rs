//! The sandbox's pages: practice home, chart, embedded surfaces, install button, and the JS SDK.

use askama::Template;
use axum::{
    Form,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::{Document, Interaction, Patient, Practice, SandboxHint, User, World};

#[derive(Deserialize, Default)]
pub(super) struct AsUser {
    #[serde(rename = "as")]
    who: Option<String>,
    patient: Option<String>,
    interaction: Option<String>,
}

/// The practice shown (the first) and the user acting (by role, default clinician).
fn acting(world: &World, who: Option<&str>) -> Option<(Practice, User)> {
    let practice = world.practices.first()?.clone();
    let role = who.unwrap_or("clinician");
    let user = world
        .users
        .iter()
        .find(|u| u.practice_id == practice.id && u.partner_roles.iter().any(|r| r == role))?
        .clone();
    Some((practice, user))
}

#[derive(Template)]
#[template(path = "hint_home.html")]
struct HomePage {
    practice_name: String,
    who: String,
    installed: bool,
    patients: Vec<Patient>,
    tiep_note: String,
    links: Vec<(String, String)>,
}

pub(super) async fn home(State(sandbox): State<SandboxHint>, Query(q): Query<AsUser>) -> Response {
    let world = sandbox.world();
    let Some((practice, user)) = acting(&world, q.who.as_deref()) else {
        return (StatusCode::NOT_FOUND, "The sandbox has no practice yet").into_response();
    };
    let page = HomePage {
        practice_name: practice.name.clone(),
        who: user.partner_roles.first().cloned().unwrap_or_default(),
        installed: world.practice_tokens.values().any(|p| *p == practice.id),
        patients: world
            .patients
            .iter()
            .filter(|p| p.practice_id == practice.id)
            .cloned()
            .collect(),
        tiep_note: world.demo_note.clone(),
        links: world.demo_links.clone(),
    };
    drop(world);
    Html(page.render().unwrap_or_else(|e| e.to_string())).into_response()
}

#[derive(Template)]
#[template(path = "hint_frame.html")]
struct FramePage {
    title: String,
    who: String,
    patient: Option<Patient>,
    interactions: Vec<Interaction>,
    /// The patient's documents, their Markdown rendered as the chart shows it.
    documents: Vec<DocumentView>,
    frame_src: Option<String>,
    error: Option<String>,
    /// What the page's SDK host tells the frame (`HintSDK.init`): the user, the interaction,
    /// and the practice's patients for the current-patient switcher.
    user: User,
    interaction_id: Option<String>,
    patients: Vec<Patient>,
}

/// A document interaction on the chart page.
struct DocumentView {
    id: String,
    title: String,
    status: String,
    when: String,
    /// The body rendered from Markdown (raw HTML in it shown as text).
    html: String,
    /// Each attachment's name and size as Hint keeps it.
    files: Vec<(String, usize)>,
}

impl DocumentView {
    fn of(document: &Document) -> Self {
        Self {
            id: document.id.clone(),
            title: document.title.clone().unwrap_or_default(),
            status: document.status.clone(),
            when: document.event_timestamp.clone(),
            html: super::render_markdown(&document.body),
            files: document
                .attachments
                .iter()
                .map(|(url, bytes)| {
                    let name = url.rsplit('/').next().unwrap_or(url).split('?').next();
                    (name.unwrap_or_default().to_string(), bytes.len())
                })
                .collect(),
        }
    }
}

/// Hint's JS SDK as the sandbox serves it (`$HINT_API_URL/hint-sdk.js`); see hint_sdk.js.
pub(super) async fn sdk_js() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/javascript; charset=utf-8",
        )],
        include_str!("../hint_sdk.js"),
    )
        .into_response()
}

pub(super) async fn chart(
    State(sandbox): State<SandboxHint>,
    Path(id): Path<String>,
    Query(q): Query<AsUser>,
) -> Response {
    open_frame(&sandbox, "clinical_chart", q.who.as_deref(), Some(id), None).await
}

pub(super) async fn embed(
    State(sandbox): State<SandboxHint>,
    Path(surface): Path<String>,
    Query(q): Query<AsUser>,
) -> Response {
    if ![
        "core_page",
        "clinical_chart",
        "clinical_interaction",
        "settings",
    ]
    .contains(&surface.as_str())
    {
        return (StatusCode::NOT_FOUND, "No such surface").into_response();
    }
    let surface: &'static str = match surface.as_str() {
        "core_page" => "core_page",
        "clinical_chart" => "clinical_chart",
        "clinical_interaction" => "clinical_interaction",
        _ => "settings",
    };
    open_frame(
        &sandbox,
        surface,
        q.who.as_deref(),
        q.patient,
        q.interaction,
    )
    .await
}

/// Does what Hint does when a user opens the app: handshake, then frame the surface.
async fn open_frame(
    sandbox: &SandboxHint,
    surface: &'static str,
    who: Option<&str>,
    patient_id: Option<String>,
    interaction_id: Option<String>,
) -> Response {
    let (user, patient, interactions, documents, app_url, patients) = {
        let world = sandbox.world();
        let Some((practice, user)) = acting(&world, who) else {
            return (StatusCode::NOT_FOUND, "No such user in the sandbox").into_response();
        };
        let patient = patient_id.as_deref().and_then(|id| {
            world
                .patients
                .iter()
                .find(|p| p.id == id && p.practice_id == practice.id)
                .cloned()
        });
        let interactions = patient
            .as_ref()
            .map(|p| {
                world
                    .interactions
                    .iter()
                    .filter(|i| i.patient_id == p.id)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let documents = patient
            .as_ref()
            .map(|p| {
                world
                    .documents
                    .iter()
                    .filter(|d| d.patient_id == p.id)
                    .map(DocumentView::of)
                    .collect()
            })
            .unwrap_or_default();
        let patients = world
            .patients
            .iter()
            .filter(|p| p.practice_id == practice.id)
            .cloned()
            .collect();
        (
            user,
            patient,
            interactions,
            documents,
            world.app_url.clone(),
            patients,
        )
    };
    let who = user.partner_roles.first().cloned().unwrap_or_default();
    let title = match (&patient, surface) {
        (Some(p), _) => format!("{} {}", p.first_name, p.last_name),
        (None, "settings") => "Chartbridge settings".into(),
        _ => "Chartbridge".into(),
    };
    let mut page = FramePage {
        title,
        who,
        patient: patient.clone(),
        interactions,
        documents,
        frame_src: None,
        error: None,
        user: user.clone(),
        interaction_id: interaction_id.clone(),
        patients,
    };
    match (
        app_url,
        sandbox
            .handshake(
                &user.id,
                patient.as_ref().map(|p| p.id.as_str()),
                interaction_id.as_deref(),
            )
            .await,
    ) {
        (Some(app_url), Ok(key)) => {
            let mut src = app_url
                .join(&format!("/hint/{surface}"))
                .expect("static path");
            src.query_pairs_mut().append_pair("session_key", &key);
            page.frame_src = Some(src.to_string());
        }
        (_, Err(e)) => page.error = Some(format!("Handshake failed: {e}")),
        (None, _) => page.error = Some("Chartbridge is not running".into()),
    }
    Html(page.render().unwrap_or_else(|e| e.to_string())).into_response()
}

#[derive(Deserialize)]
pub(super) struct InstallForm {
    #[serde(rename = "as")]
    who: Option<String>,
}

pub(super) async fn install_button(
    State(sandbox): State<SandboxHint>,
    Form(form): Form<InstallForm>,
) -> Response {
    let practice_id = sandbox.world().practices.first().map(|p| p.id.clone());
    let Some(practice_id) = practice_id else {
        return (StatusCode::NOT_FOUND, "No practice").into_response();
    };
    match sandbox.install(&practice_id).await {
        Ok(status) if status.is_success() => {
            Redirect::to(&format!("/?as={}", form.who.unwrap_or_default())).into_response()
        }
        Ok(status) => (
            StatusCode::BAD_GATEWAY,
            format!("Chartbridge refused the install: HTTP {status}"),
        )
            .into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, format!("Install failed: {e}")).into_response(),
    }
}
