//! Sandbox Tiep: launch tokens (`X-API-Key` + body checked), the app page (refuses a launch
//! without patient context), saving a report (signed webhook to the facility's hook URL), and
//! the sessions endpoint for polling. Tokens expire after ten minutes, as Tiep's do.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use askama::Template;
use axum::{
    Form, Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use base64::{Engine as _, engine::general_purpose};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use crate::{bind, serve};
use crate::{random_token, sign_hmac_sha256};

const TOKEN_LIFETIME: Duration = Duration::from_secs(600);

/// The hook secret of every facility `connect` makes (Tiep's rule: at least 16 characters).
pub const HOOK_SECRET: &str = "tiep-sandbox-hook-secret-2026";

impl crate::FakePartner for SandboxTiep {
    fn id(&self) -> &'static str {
        "tiep"
    }

    fn name(&self) -> &'static str {
        "Tiep"
    }

    fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The API and the app page are both served here.
    fn app_flags(&self) -> Vec<String> {
        let url = self.base_url.to_string();
        vec![
            "--tiep-api-url".into(),
            url.clone(),
            "--tiep-app-url".into(),
            url,
        ]
    }

    /// A facility whose saved reports go to the practice's webhook; its key and hook secret
    /// are what the admin enters (the form is left to Chartbridge's default).
    fn connect(&self, practice: &crate::Practice<'_>) -> Vec<(&'static str, String)> {
        let api_key = format!("tiep-key-{}", practice.id);
        let hook = practice.webhook_url("tiep").to_string();
        self.add_facility(&api_key, HOOK_SECRET, Some(hook), PayloadType::Simple);
        vec![("api_key", api_key), ("hook_secret", HOOK_SECRET.into())]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadType {
    Simple,
    Hl7V2,
}

#[derive(Clone, Debug)]
pub struct Facility {
    pub id: String,
    pub api_key: String,
    pub hook_url: Option<String>,
    pub hook_secret: String,
    pub payload_type: PayloadType,
}

#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub facility_id: String,
    pub doctor: Value,
    pub form: Value,
    pub status: String,
    pub context: Option<Value>,
    pub answers: Option<Value>,
    /// Authorises the save from the page that was opened with a valid token.
    page_secret: Option<String>,
}

/// Faults tests switch on.
#[derive(Clone, Debug, Default)]
pub struct TiepFaults {
    /// The API answers 503.
    pub api_down: bool,
    /// Saving does not send the webhook (the poll backstop must find the report).
    pub drop_webhooks: bool,
    /// A launch token is issued only after this long (a slow Tiep, or one that never answers
    /// before the caller gives up).
    pub token_delay: Option<Duration>,
}

#[derive(Default)]
pub struct TiepWorld {
    pub facilities: Vec<Facility>,
    tokens: HashMap<String, (String, Instant)>,
    pub sessions: HashMap<String, Session>,
    pub faults: TiepFaults,
    /// Status codes the hook URL answered (None: unreachable).
    pub deliveries: Vec<Option<u16>>,
    /// Tokens handed out with `create_session: false` (no session opened).
    pub tokens_without_session: usize,
}

#[derive(Clone)]
pub struct SandboxTiep {
    world: Arc<Mutex<TiepWorld>>,
    base_url: Url,
    http: reqwest::Client,
}

impl SandboxTiep {
    pub async fn start(port: u16) -> anyhow::Result<Self> {
        let (listener, base_url) = bind(port).await?;
        let sandbox = Self {
            world: Arc::default(),
            base_url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?,
        };
        let app = Router::new()
            .route("/", get(app_page))
            .route("/v1/auth/generate-token", post(generate_token))
            .route("/v1/sessions/{id}", get(get_session))
            .route("/sessions/{id}/save", post(save_report))
            .with_state(sandbox.clone());
        serve(listener, app);
        Ok(sandbox)
    }

    /// Serves both the API and the app page.
    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    pub fn world(&self) -> MutexGuard<'_, TiepWorld> {
        self.world.lock().expect("sandbox tiep lock")
    }

    /// Registers a facility; answers its id.
    pub fn add_facility(
        &self,
        api_key: &str,
        hook_secret: &str,
        hook_url: Option<String>,
        payload_type: PayloadType,
    ) -> String {
        let mut world = self.world();
        let id = format!("fac-{}", &random_token()[..8]);
        world.facilities.push(Facility {
            id: id.clone(),
            api_key: api_key.into(),
            hook_url,
            hook_secret: hook_secret.into(),
            payload_type,
        });
        id
    }

    pub fn set_faults(&self, faults: TiepFaults) {
        self.world().faults = faults;
    }

    /// Signs `body` for `facility_id` as Tiep does and posts it to its hook URL.
    async fn deliver(&self, facility: &Facility, body: String) -> Option<u16> {
        let url = facility.hook_url.clone()?;
        let signature = sign_hmac_sha256(facility.hook_secret.as_bytes(), body.as_bytes());
        let status = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-signature-256", signature)
            .body(body)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16());
        self.world().deliveries.push(status);
        status
    }
}

fn detail(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"detail": message}))).into_response()
}

fn facility_for(world: &TiepWorld, headers: &HeaderMap) -> Result<Facility, Response> {
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if key.is_empty() {
        return Err(detail(StatusCode::UNAUTHORIZED, "Missing X-API-Key"));
    }
    world
        .facilities
        .iter()
        .find(|f| f.api_key == key)
        .cloned()
        .ok_or_else(|| detail(StatusCode::UNAUTHORIZED, "Invalid API key"))
}

/// Tiep's own check of the form: a JSON Schema object with typed properties.
fn check_form(form: &Value) -> Result<(), String> {
    let obj = form.as_object().ok_or("form must be an object")?;
    if obj.get("type") != Some(&json!("object")) {
        return Err("form.type must be \"object\"".into());
    }
    let props = obj
        .get("properties")
        .and_then(Value::as_object)
        .ok_or("form.properties must be an object")?;
    if props.is_empty() {
        return Err("form.properties must not be empty".into());
    }
    for (key, prop) in props {
        let kind = prop.get("type").and_then(Value::as_str).unwrap_or_default();
        if !["string", "integer", "number", "boolean"].contains(&kind) {
            return Err(format!("form.properties.{key}.type is not supported"));
        }
    }
    Ok(())
}

async fn generate_token(
    State(sandbox): State<SandboxTiep>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let delay = sandbox.world().faults.token_delay;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut world = sandbox.world();
    if world.faults.api_down {
        return detail(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable");
    }
    let facility = match facility_for(&world, &headers) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(Json(body)) = body else {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, "Body must be JSON");
    };
    let doctor = body.get("doctor").cloned().unwrap_or(Value::Null);
    let nonempty = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_some_and(|s| !s.trim().is_empty())
    };
    if !nonempty(doctor.get("id")) || !nonempty(doctor.get("name")) {
        return detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "doctor.id and doctor.name are required",
        );
    }
    if let Some(specialties) = doctor.get("specialties") {
        if !specialties
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
        {
            return detail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "doctor.specialties must be a list of strings",
            );
        }
    }
    let create_session = match body.get("create_session") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return detail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "create_session must be true or false",
            );
        }
    };
    if !create_session {
        // A token with no session (what a connection test asks for): nothing is opened.
        world.tokens_without_session += 1;
        return Json(json!({"token": random_token()})).into_response();
    }
    let form = body.get("form").cloned().unwrap_or(Value::Null);
    if let Err(e) = check_form(&form) {
        return detail(StatusCode::UNPROCESSABLE_ENTITY, &e);
    }
    let token = random_token();
    let session_id = uuid_like();
    world.tokens.insert(
        token.clone(),
        (session_id.clone(), Instant::now() + TOKEN_LIFETIME),
    );
    world.sessions.insert(
        session_id.clone(),
        Session {
            id: session_id.clone(),
            facility_id: facility.id,
            doctor,
            form,
            status: "in_progress".into(),
            context: None,
            answers: None,
            page_secret: None,
        },
    );
    Json(json!({"token": token, "session_id": session_id})).into_response()
}

fn uuid_like() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

async fn get_session(
    State(sandbox): State<SandboxTiep>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let world = sandbox.world();
    if world.faults.api_down {
        return detail(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable");
    }
    let facility = match facility_for(&world, &headers) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(session) = world
        .sessions
        .get(&id)
        .filter(|s| s.facility_id == facility.id)
    else {
        return detail(StatusCode::NOT_FOUND, "Session not found");
    };
    let payload = session
        .answers
        .as_ref()
        .map(|answers| json!({"context": session.context, "payload": answers}));
    Json(json!({"id": session.id, "status": session.status, "payload": payload})).into_response()
}

#[derive(Deserialize)]
struct LaunchQuery {
    token: Option<String>,
    session_id: Option<String>,
    context: Option<String>,
}

/// A field of the form as the page shows it.
struct Field {
    key: String,
    title: String,
    kind: String,
    min: Option<f64>,
    max: Option<f64>,
    description: String,
}

#[derive(Template)]
#[template(path = "tiep_app.html")]
struct AppPage {
    session_id: String,
    page_secret: String,
    patient_name: String,
    doctor_name: String,
    form_title: String,
    fields: Vec<Field>,
    errors: Vec<String>,
}

impl AppPage {
    /// The form page of an opened session, with `errors` from a refused save.
    fn new(session: &Session, context: &Value, errors: Vec<String>) -> Self {
        let text = |v: Option<&Value>, default: &str| {
            v.and_then(Value::as_str).unwrap_or(default).to_string()
        };
        Self {
            session_id: session.id.clone(),
            page_secret: session.page_secret.clone().unwrap_or_default(),
            patient_name: text(context.pointer("/patient/name/0/text"), "Unnamed patient"),
            doctor_name: text(session.doctor.get("name"), ""),
            form_title: text(session.form.get("title"), "Consultation"),
            fields: fields_of(&session.form),
            errors,
        }
    }
}

#[derive(Template)]
#[template(path = "tiep_message.html")]
struct MessagePage {
    title: String,
    message: String,
}

fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let page = MessagePage {
        title: title.into(),
        message: text.into(),
    };
    (status, Html(page.render().unwrap_or_default())).into_response()
}

/// Decodes URL-safe Base64 JSON (padded or not) and checks it names a patient.
fn decode_context(raw: &str) -> Result<Value, String> {
    let bytes = general_purpose::URL_SAFE
        .decode(raw)
        .or_else(|_| general_purpose::URL_SAFE_NO_PAD.decode(raw))
        .map_err(|_| "context is not URL-safe Base64")?;
    let context: Value = serde_json::from_slice(&bytes).map_err(|_| "context is not JSON")?;
    let patient = context.get("patient").ok_or("context has no patient")?;
    if patient.get("resourceType") != Some(&json!("Patient")) {
        return Err("context.patient.resourceType must be \"Patient\"".into());
    }
    if patient
        .pointer("/identifier/0/value")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("context.patient.identifier[0].value is required".into());
    }
    Ok(context)
}

fn fields_of(form: &Value) -> Vec<Field> {
    form.get("properties")
        .and_then(Value::as_object)
        .map(|props| {
            props
                .iter()
                .map(|(key, p)| Field {
                    key: key.clone(),
                    title: p
                        .get("title")
                        .and_then(Value::as_str)
                        .unwrap_or(key)
                        .to_string(),
                    kind: p
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("string")
                        .to_string(),
                    min: p.get("minimum").and_then(Value::as_f64),
                    max: p.get("maximum").and_then(Value::as_f64),
                    description: p
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn app_page(State(sandbox): State<SandboxTiep>, Query(q): Query<LaunchQuery>) -> Response {
    let (Some(token), Some(session_id)) = (q.token, q.session_id) else {
        return message(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            "Open Tiep from your health record system.",
        );
    };
    let Some(raw_context) = q.context.filter(|c| !c.is_empty()) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Missing patient context",
            "This launch has no patient context. The doctor cannot save a consultation without it.",
        );
    };
    let context = match decode_context(&raw_context) {
        Ok(c) => c,
        Err(e) => return message(StatusCode::BAD_REQUEST, "Invalid patient context", &e),
    };
    let mut world = sandbox.world();
    match world.tokens.get(&token) {
        Some((sid, expires)) if *sid == session_id && *expires > Instant::now() => {}
        Some((sid, _)) if *sid == session_id => {
            return message(
                StatusCode::UNAUTHORIZED,
                "Link expired",
                "This launch link has expired. Start the visit again.",
            );
        }
        _ => {
            return message(
                StatusCode::UNAUTHORIZED,
                "Invalid link",
                "This launch link is not valid.",
            );
        }
    }
    // One use: a launch link cannot be replayed.
    world.tokens.remove(&token);
    let Some(session) = world.sessions.get_mut(&session_id) else {
        return message(
            StatusCode::NOT_FOUND,
            "Unknown session",
            "This session does not exist.",
        );
    };
    let secret = random_token();
    session.page_secret = Some(secret.clone());
    session.context = Some(context.clone());
    let page = AppPage::new(session, &context, vec![]);
    Html(page.render().unwrap_or_default()).into_response()
}

/// Coerces posted strings to the form's types, checking bounds.
fn coerce(
    form: &Value,
    posted: &HashMap<String, String>,
) -> Result<Map<String, Value>, Vec<String>> {
    let mut answers = Map::new();
    let mut errors = vec![];
    for field in fields_of(form) {
        let raw = posted.get(&field.key).map(|s| s.trim()).unwrap_or_default();
        let value = match field.kind.as_str() {
            "boolean" => Value::Bool(matches!(raw, "on" | "true" | "yes")),
            _ if raw.is_empty() => continue,
            "integer" => match raw.parse::<i64>() {
                Ok(n)
                    if field.min.is_none_or(|m| n as f64 >= m)
                        && field.max.is_none_or(|m| n as f64 <= m) =>
                {
                    json!(n)
                }
                _ => {
                    errors.push(format!(
                        "{} must be a whole number{}",
                        field.title,
                        bounds(&field)
                    ));
                    continue;
                }
            },
            "number" => match raw.parse::<f64>() {
                Ok(n) if field.min.is_none_or(|m| n >= m) && field.max.is_none_or(|m| n <= m) => {
                    json!(n)
                }
                _ => {
                    errors.push(format!(
                        "{} must be a number{}",
                        field.title,
                        bounds(&field)
                    ));
                    continue;
                }
            },
            _ => Value::String(raw.to_string()),
        };
        answers.insert(field.key, value);
    }
    if errors.is_empty() {
        Ok(answers)
    } else {
        Err(errors)
    }
}

fn bounds(field: &Field) -> String {
    match (field.min, field.max) {
        (Some(a), Some(b)) => format!(" from {a} to {b}"),
        (Some(a), None) => format!(" of at least {a}"),
        (None, Some(b)) => format!(" of at most {b}"),
        _ => String::new(),
    }
}

async fn save_report(
    State(sandbox): State<SandboxTiep>,
    Path(session_id): Path<String>,
    Form(posted): Form<HashMap<String, String>>,
) -> Response {
    let (facility, body) = {
        let mut world = sandbox.world();
        let Some(session) = world.sessions.get(&session_id).cloned() else {
            return message(
                StatusCode::NOT_FOUND,
                "Unknown session",
                "This session does not exist.",
            );
        };
        if session.page_secret.is_none()
            || session.page_secret.as_deref() != posted.get("page_secret").map(String::as_str)
        {
            return message(
                StatusCode::UNAUTHORIZED,
                "Not allowed",
                "Open this session from a launch link first.",
            );
        }
        let Some(context) = session.context.clone() else {
            return message(
                StatusCode::BAD_REQUEST,
                "Missing patient context",
                "The doctor cannot save a consultation without patient context.",
            );
        };
        let answers = match coerce(&session.form, &posted) {
            Ok(a) => Value::Object(a),
            Err(errors) => {
                let page = AppPage::new(&session, &context, errors);
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Html(page.render().unwrap_or_default()),
                )
                    .into_response();
            }
        };
        let facility = world
            .facilities
            .iter()
            .find(|f| f.id == session.facility_id)
            .cloned()
            .expect("session's facility exists");
        let stored = world.sessions.get_mut(&session_id).expect("exists");
        stored.status = "report_saved".into();
        stored.answers = Some(answers.clone());
        let body = match facility.payload_type {
            PayloadType::Simple => json!({"context": context, "payload": answers}),
            PayloadType::Hl7V2 => json!({"context": context, "fhir": {
                "resourceType": "Bundle", "type": "collection",
                "entry": [{"resource": {"resourceType": "Observation", "status": "final", "valueString": answers.to_string()}}]
            }}),
        };
        if world.faults.drop_webhooks {
            return message(
                StatusCode::OK,
                "Report saved",
                "The report is saved. (The webhook was not sent: the sandbox is dropping webhooks.)",
            );
        }
        (facility, body.to_string())
    };
    let delivered = sandbox.deliver(&facility, body).await;
    let note = match delivered {
        Some(s) if (200..300).contains(&s) => {
            "The report was sent to your health record system.".to_string()
        }
        Some(s) => {
            format!("Your health record system answered HTTP {s}; it can still fetch the report.")
        }
        None => "Your health record system could not be reached; it can still fetch the report."
            .to_string(),
    };
    message(StatusCode::OK, "Report saved", &note)
}
