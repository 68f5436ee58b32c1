//! Sandbox Haidy (44ai): an organisation's API (bearer token, patient groups), the integration
//! deep-link page, and consultation reports. Strict like the real one:
//! - a second context with the same `external_id` in a group is refused (400);
//! - uploads take multipart parts named `files` only, refuse files over `max_file_bytes`
//!   and kinds Haidy does not read (in `failed_files`), and only for the token's contexts;
//! - the deep link needs `email`, a known `integration` and a `unique_id` Haidy knows;
//!   a `password` in it is recorded (Chartbridge must never put one there).
//!
//! A doctor "approves" a consultation on the deep-link page (or `approve` in tests); reports
//! come as JSON or TXT and can be marked downloaded.

use std::sync::{Arc, Mutex, MutexGuard};

use askama::Template;
use axum::{
    Form, Json, Router,
    extract::{DefaultBodyLimit, Multipart, Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use url::Url;

use crate::random_token;
use crate::{bind, serve};

#[derive(Clone, Debug)]
pub struct Organisation {
    pub token: String,
    pub patient_groups: Vec<String>,
    pub integration_id: String,
}

#[derive(Clone, Debug)]
pub struct Context {
    pub id: String,
    pub token: String,
    pub external_id: String,
    pub patient_group: String,
    pub body: Value,
    /// (filename, content type, size).
    pub files: Vec<(String, String, usize)>,
}

#[derive(Clone, Debug)]
pub struct Consultation {
    pub id: String,
    pub context_id: String,
    pub approved_at: String,
    pub summary: String,
    pub downloaded: bool,
    /// How many times the doctor approved it again after changing it (0: approved once).
    pub revision: u32,
}

/// One opening of the deep link.
#[derive(Clone, Debug)]
pub struct DeepLinkVisit {
    pub status: u16,
    pub email: Option<String>,
    pub unique_id: Option<String>,
    pub metadata: Option<Value>,
    pub had_password: bool,
}

#[derive(Clone, Debug, Default)]
pub struct HaidyFaults {
    /// Every API call answers 503.
    pub down: bool,
}

pub struct HaidyWorld {
    pub organisations: Vec<Organisation>,
    pub contexts: Vec<Context>,
    pub consultations: Vec<Consultation>,
    pub deep_links: Vec<DeepLinkVisit>,
    pub max_file_bytes: usize,
    pub faults: HaidyFaults,
    /// Report requests answered, as "FORMAT id".
    pub report_requests: Vec<String>,
}

#[derive(Clone)]
pub struct SandboxHaidy {
    world: Arc<Mutex<HaidyWorld>>,
    base_url: Url,
}

const ACCEPTED: [&str; 4] = [
    "text/",
    "application/pdf",
    "image/",
    "application/fhir+json",
];

impl crate::FakePartner for SandboxHaidy {
    fn id(&self) -> &'static str {
        "haidy"
    }

    fn name(&self) -> &'static str {
        "Haidy"
    }

    fn base_url(&self) -> &Url {
        &self.base_url
    }

    fn app_flags(&self) -> Vec<String> {
        vec![
            "--haidy-api-url".into(),
            self.base_url.to_string(),
            "--haidy-app-url".into(),
            self.app_url().to_string(),
        ]
    }

    /// An organisation with a patient group and an integration for the practice.
    fn connect(&self, practice: &crate::Practice<'_>) -> Vec<(&'static str, String)> {
        let token = format!("haidy-token-{}", practice.id);
        let group = format!("grp-{}", practice.id);
        let integration = format!("integ-{}", practice.id);
        self.add_organisation(&token, &group, &integration);
        vec![
            ("api_token", token),
            ("patient_group", group),
            ("integration_id", integration),
        ]
    }
}

impl SandboxHaidy {
    pub async fn start(port: u16) -> anyhow::Result<Self> {
        let (listener, base_url) = bind(port).await?;
        let sandbox = Self {
            world: Arc::new(Mutex::new(HaidyWorld {
                organisations: vec![],
                contexts: vec![],
                consultations: vec![],
                deep_links: vec![],
                max_file_bytes: 20 * 1024 * 1024,
                faults: HaidyFaults::default(),
                report_requests: vec![],
            })),
            base_url,
        };
        let app = Router::new()
            .route("/v2/patient-contexts/", post(create_context))
            .route(
                "/v2/patient-files/upload/{context_id}",
                post(upload).layer(DefaultBodyLimit::max(128 * 1024 * 1024)),
            )
            .route("/v2/consultations", get(list_consultations))
            .route("/v2/consultation/{id}/report/{format}", get(report))
            .route(
                "/v2/consultation/{id}/mark-as-downloaded",
                post(mark_downloaded),
            )
            .route("/integration", get(deep_link_page))
            .route("/integration/approve", post(approve_from_page))
            .with_state(sandbox.clone());
        serve(listener, app);
        Ok(sandbox)
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The deep-link base to configure as `HAIDY_APP_URL`.
    pub fn app_url(&self) -> Url {
        self.base_url.join("integration").expect("static path")
    }

    pub fn world(&self) -> MutexGuard<'_, HaidyWorld> {
        self.world.lock().expect("sandbox haidy lock")
    }

    pub fn add_organisation(&self, token: &str, patient_group: &str, integration_id: &str) {
        self.world().organisations.push(Organisation {
            token: token.into(),
            patient_groups: vec![patient_group.into()],
            integration_id: integration_id.into(),
        });
    }

    pub fn set_faults(&self, faults: HaidyFaults) {
        self.world().faults = faults;
    }

    pub fn context_for(&self, external_id: &str) -> Option<Context> {
        self.world()
            .contexts
            .iter()
            .find(|c| c.external_id == external_id)
            .cloned()
    }

    /// A doctor approves a consultation for the context; answers its id.
    pub fn approve(&self, context_id: &str, summary: &str) -> Option<String> {
        let mut world = self.world();
        if !world.contexts.iter().any(|c| c.id == context_id) {
            return None;
        }
        let id = format!("cons_{}", &random_token()[..10]);
        world.consultations.push(Consultation {
            id: id.clone(),
            context_id: context_id.into(),
            approved_at: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            summary: summary.into(),
            downloaded: false,
            revision: 0,
        });
        Some(id)
    }

    /// The doctor reopens an approved consultation, changes its summary and approves it again:
    /// a new approval time, its report to be collected again.
    pub fn reapprove(&self, consultation_id: &str, summary: &str) -> bool {
        let mut world = self.world();
        let Some(c) = world
            .consultations
            .iter_mut()
            .find(|c| c.id == consultation_id)
        else {
            return false;
        };
        // Approval times are whole seconds apart at least, as Haidy's are.
        let now = OffsetDateTime::now_utc();
        let before = OffsetDateTime::parse(&c.approved_at, &Rfc3339).unwrap_or(now);
        let at = now.max(before + time::Duration::seconds(1));
        c.approved_at = at.format(&Rfc3339).unwrap_or_default();
        c.summary = summary.into();
        c.downloaded = false;
        c.revision += 1;
        true
    }
}

fn detail(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"detail": message}))).into_response()
}

fn organisation(world: &HaidyWorld, headers: &HeaderMap) -> Result<Organisation, Response> {
    if world.faults.down {
        return Err(detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    world
        .organisations
        .iter()
        .find(|o| !token.is_empty() && o.token == token)
        .cloned()
        .ok_or_else(|| detail(StatusCode::UNAUTHORIZED, "Invalid or missing API token"))
}

async fn create_context(
    State(sandbox): State<SandboxHaidy>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let mut world = sandbox.world();
    let org = match organisation(&world, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let Some(Json(body)) = body.filter(|Json(b)| b.is_object()) else {
        return detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Body must be a JSON object",
        );
    };
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (Some(external_id), Some(group)) = (text("external_id"), text("patient_group")) else {
        return detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "external_id and patient_group are required",
        );
    };
    if !org.patient_groups.iter().any(|g| g == group) {
        return detail(StatusCode::BAD_REQUEST, "Invalid patient group");
    }
    if let Some(birth_date) = text("birth_date") {
        if time::Date::parse(
            birth_date,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .is_err()
        {
            return detail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "birth_date must be YYYY-MM-DD",
            );
        }
    }
    if body
        .get("gender")
        .is_some_and(|g| !["male", "female", "other"].contains(&g.as_str().unwrap_or("?")))
    {
        return detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "gender must be male, female or other",
        );
    }
    if world
        .contexts
        .iter()
        .any(|c| c.patient_group == group && c.external_id == external_id)
    {
        return detail(
            StatusCode::BAD_REQUEST,
            "A patient context with this external_id already exists in this patient group",
        );
    }
    let context = Context {
        id: format!("ctx_{}", &random_token()[..12]),
        token: org.token,
        external_id: external_id.into(),
        patient_group: group.into(),
        body: body.clone(),
        files: vec![],
    };
    let mut answer = body.clone();
    answer["id"] = json!(context.id);
    answer["created_at"] = json!(
        OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default()
    );
    world.contexts.push(context);
    (StatusCode::CREATED, Json(answer)).into_response()
}

async fn upload(
    State(sandbox): State<SandboxHaidy>,
    headers: HeaderMap,
    Path(context_id): Path<String>,
    mut multipart: Multipart,
) -> Response {
    let (max, owned) = {
        let world = sandbox.world();
        let org = match organisation(&world, &headers) {
            Ok(o) => o,
            Err(r) => return r,
        };
        let owned = world
            .contexts
            .iter()
            .any(|c| c.id == context_id && c.token == org.token);
        (world.max_file_bytes, owned)
    };
    if !owned {
        return detail(StatusCode::NOT_FOUND, "Patient context not found");
    }
    let (mut uploaded, mut failed, mut stored) = (vec![], vec![], vec![]);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return detail(
                    StatusCode::BAD_REQUEST,
                    &format!("Malformed multipart body: {e}"),
                );
            }
        };
        if field.name() != Some("files") {
            return detail(
                StatusCode::BAD_REQUEST,
                "Files must be sent in parts named \"files\"",
            );
        }
        let filename = field.file_name().unwrap_or("file").to_string();
        let content_type = field
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_string();
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return detail(
                    StatusCode::BAD_REQUEST,
                    &format!("Malformed multipart body: {e}"),
                );
            }
        };
        if bytes.len() > max {
            failed.push(json!({"filename": filename, "error": "File too large"}));
        } else if !ACCEPTED.iter().any(|a| content_type.starts_with(a)) {
            failed.push(json!({"filename": filename, "error": format!("Unsupported file type {content_type}")}));
        } else {
            uploaded.push(json!({"id": format!("file_{}", &random_token()[..8]), "filename": filename, "size": bytes.len(), "content_type": content_type}));
            stored.push((filename, content_type, bytes.len()));
        }
    }
    if uploaded.is_empty() && failed.is_empty() {
        return detail(StatusCode::BAD_REQUEST, "No files were sent");
    }
    let mut world = sandbox.world();
    if let Some(c) = world.contexts.iter_mut().find(|c| c.id == context_id) {
        c.files.extend(stored);
    }
    Json(json!({"uploaded_files": uploaded, "failed_files": failed, "total_uploaded": uploaded.len(), "total_failed": failed.len()}))
        .into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    patient_context_id: Option<String>,
}

async fn list_consultations(
    State(sandbox): State<SandboxHaidy>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let world = sandbox.world();
    let org = match organisation(&world, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let results: Vec<Value> = world
        .consultations
        .iter()
        .filter(|c| world.contexts.iter().any(|x| x.id == c.context_id && x.token == org.token))
        .filter(|c| q.patient_context_id.as_ref().is_none_or(|id| *id == c.context_id))
        .map(|c| {
            let external_id = world.contexts.iter().find(|x| x.id == c.context_id).map(|x| x.external_id.clone());
            json!({"id": c.id, "status": "approved", "patient_context_id": c.context_id, "external_id": external_id,
                   "approved_at": c.approved_at, "downloaded": c.downloaded})
        })
        .collect();
    Json(json!({"count": results.len(), "results": results})).into_response()
}

fn owned_consultation(world: &HaidyWorld, org: &Organisation, id: &str) -> Option<Consultation> {
    world
        .consultations
        .iter()
        .find(|c| {
            c.id == id
                && world
                    .contexts
                    .iter()
                    .any(|x| x.id == c.context_id && x.token == org.token)
        })
        .cloned()
}

async fn report(
    State(sandbox): State<SandboxHaidy>,
    headers: HeaderMap,
    Path((id, format)): Path<(String, String)>,
) -> Response {
    let mut world = sandbox.world();
    let org = match organisation(&world, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    if !["PDF", "DOCX", "TXT", "JSON"].contains(&format.as_str()) {
        return detail(
            StatusCode::BAD_REQUEST,
            "format must be one of PDF, DOCX, TXT, JSON",
        );
    }
    let Some(c) = owned_consultation(&world, &org, &id) else {
        return detail(StatusCode::NOT_FOUND, "Consultation not found");
    };
    world.report_requests.push(format!("{format} {id}"));
    match format.as_str() {
        "JSON" => Json(json!({"consultation_id": c.id, "sections": [
            {"title": "Summary", "content": c.summary},
            {"title": "Documents reviewed", "content": "Lab report; discharge letter"},
            {"title": "Recommendation", "content": "Discuss results at the next visit."}
        ]}))
        .into_response(),
        "TXT" => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("Summary\n{}\n", c.summary),
        )
            .into_response(),
        _ => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            match c.revision {
                0 => b"%PDF-1.4 sandbox".to_vec(),
                n => format!("%PDF-1.4 sandbox revision {n}").into_bytes(),
            },
        )
            .into_response(),
    }
}

async fn mark_downloaded(
    State(sandbox): State<SandboxHaidy>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut world = sandbox.world();
    let org = match organisation(&world, &headers) {
        Ok(o) => o,
        Err(r) => return r,
    };
    if owned_consultation(&world, &org, &id).is_none() {
        return detail(StatusCode::NOT_FOUND, "Consultation not found");
    }
    if let Some(c) = world.consultations.iter_mut().find(|c| c.id == id) {
        c.downloaded = true;
    }
    Json(json!({"success": true})).into_response()
}

#[derive(Template)]
#[template(path = "haidy_page.html")]
struct Page {
    title: String,
    message: String,
    context_id: String,
    patient: String,
    files: Vec<(String, String, usize)>,
}

#[derive(Deserialize)]
struct DeepLinkQuery {
    email: Option<String>,
    integration: Option<String>,
    unique_id: Option<String>,
    metadata: Option<String>,
    password: Option<String>,
}

async fn deep_link_page(
    State(sandbox): State<SandboxHaidy>,
    Query(q): Query<DeepLinkQuery>,
) -> Response {
    let mut world = sandbox.world();
    let metadata = q
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str::<Value>(m).ok());
    let context = world
        .organisations
        .iter()
        .find(|o| Some(&o.integration_id) == q.integration.as_ref())
        .and_then(|o| {
            world
                .contexts
                .iter()
                .find(|c| c.token == o.token && Some(&c.external_id) == q.unique_id.as_ref())
        })
        .cloned();
    let email_ok = q.email.as_deref().is_some_and(|e| e.contains('@'));
    let (status, page) = match (&context, email_ok) {
        (Some(c), true) => {
            let patient = metadata
                .as_ref()
                .map(|m| {
                    format!(
                        "{} {}",
                        m["patient_first_name"].as_str().unwrap_or(""),
                        m["patient_last_name"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_else(|| c.external_id.clone());
            (
                StatusCode::OK,
                Page {
                    title: "Haidy".into(),
                    message: format!("Signed in as {}.", q.email.clone().unwrap_or_default()),
                    context_id: c.id.clone(),
                    patient,
                    files: c.files.clone(),
                },
            )
        }
        (_, false) => (
            StatusCode::UNAUTHORIZED,
            page("Sign in", "An email is required to open Haidy."),
        ),
        (None, true) => (
            StatusCode::NOT_FOUND,
            page(
                "Unknown patient",
                "This integration has no patient with this id.",
            ),
        ),
    };
    world.deep_links.push(DeepLinkVisit {
        status: status.as_u16(),
        email: q.email.clone(),
        unique_id: q.unique_id.clone(),
        metadata,
        had_password: q.password.is_some(),
    });
    (status, Html(page.render().unwrap_or_default())).into_response()
}

fn page(title: &str, message: &str) -> Page {
    Page {
        title: title.into(),
        message: message.into(),
        context_id: String::new(),
        patient: String::new(),
        files: vec![],
    }
}

#[derive(Deserialize)]
struct ApproveForm {
    context_id: String,
    summary: String,
}

async fn approve_from_page(
    State(sandbox): State<SandboxHaidy>,
    Form(form): Form<ApproveForm>,
) -> Response {
    let summary = if form.summary.trim().is_empty() {
        "Reviewed; no concerns."
    } else {
        form.summary.trim()
    };
    match sandbox.approve(&form.context_id, summary) {
        Some(_) => Html(
            page(
                "Consultation approved",
                "The consultation report is approved; your practice system collects it.",
            )
            .render()
            .unwrap_or_default(),
        )
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Html(
                page("Unknown patient", "No such patient context.")
                    .render()
                    .unwrap_or_default(),
            ),
        )
            .into_response(),
    }
}
