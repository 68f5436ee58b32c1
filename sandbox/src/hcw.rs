//! Sandbox HCW@Home: one self-hosted server with the parts of the API Chartbridge uses, held to
//! the real backend's rules (api/controllers/InviteController.js, AuthController.externalAuth):
//! - `login-local` for accounts; tokens expire (`token_lifetime`, 15 min like HCW's), are
//!   renewed with `refresh-token`, and are read from `x-access-token` or `Authorization`;
//! - invites are validated like the real controller and refused in its error shapes (a bare
//!   list of `{message}`, `{success:false,error}`, `{error:true,message}`); schedulers need a
//!   `doctorEmail` (of a doctor) or an existing `queue`; only their creator sees an invite;
//! - the SSO callback verifies HS256 with the shared secret, requires `timestamp` (seconds, at
//!   most five minutes old) and `email`, creates the doctor, and drops a non-relative
//!   `returnUrl`;
//! - a patient page (`/inv/?invite=`) to join and a doctor page (`/app?tk=`) to accept and end
//!   the call, for the demo; tests drive the same steps through methods.

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
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use crate::{bind, serve};
use crate::{now_ms, random_token};

const SSO_MAX_AGE_SECS: i64 = 5 * 60;

/// The server's `SHARED_EXTERNAL_AUTH_SECRET` when started by `Partners::start`.
pub const SSO_SECRET: &str = "hcw-sandbox-shared-sso-secret";
/// The password of the service accounts `connect` makes.
pub const SERVICE_PASSWORD: &str = "hcw-sandbox-scheduler-password";

/// The practice's scheduler account: its id made a domain label (an id's `_` is not allowed
/// after the `@`: the settings form's email field refused such an address, and the browser
/// never sent the form).
pub fn service_account(practice_id: &str) -> String {
    format!(
        "scheduler@{}.example",
        practice_id.to_lowercase().replace('_', "-")
    )
}

impl crate::FakePartner for SandboxHcw {
    fn id(&self) -> &'static str {
        "hcw"
    }

    fn name(&self) -> &'static str {
        "HCW@Home"
    }

    fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// A scheduler service account for the practice and its users as doctors; invitations
    /// are routed to the clinician who starts the visit.
    fn connect(&self, practice: &crate::Practice<'_>) -> Vec<(&'static str, String)> {
        let account = service_account(practice.id);
        self.add_account(&account, SERVICE_PASSWORD, "scheduler");
        practice.user_emails.iter().for_each(|d| self.add_doctor(d));
        let sso_secret = self.world().sso_secret.clone();
        vec![
            ("base_url", self.base_url.to_string()),
            ("service_email", account),
            ("service_password", SERVICE_PASSWORD.into()),
            ("sso_secret", sso_secret),
            ("routing", "doctor_email".into()),
            ("queue", String::new()),
        ]
    }
}

#[derive(Clone, Debug)]
pub struct Account {
    pub email: String,
    pub password: String,
    /// `scheduler`, `doctor`, `admin`, or anything else (refused with 403).
    pub role: String,
}

#[derive(Clone, Debug)]
pub struct Invite {
    pub id: String,
    pub token: String,
    pub invited_by: String,
    pub body: Value,
    pub doctor_email: Option<String>,
    pub queue: Option<String>,
    pub status: String,
}

#[derive(Clone, Debug, Default)]
pub struct Consultation {
    pub id: String,
    pub status: String,
    pub accepted_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub doctor_comment: String,
}

/// What the SSO callback decided.
#[derive(Clone, Debug)]
pub struct SsoAttempt {
    pub status: u16,
    pub email: Option<String>,
    pub return_url: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct HcwFaults {
    /// Every API call answers 503.
    pub down: bool,
}

pub struct HcwWorld {
    pub accounts: Vec<Account>,
    /// Emails of users with the doctor role.
    pub doctors: Vec<String>,
    /// (id, name).
    pub queues: Vec<(String, String)>,
    pub sso_secret: String,
    pub token_lifetime: Duration,
    tokens: HashMap<String, (String, Instant)>,
    refresh_tokens: HashMap<String, String>,
    /// Doctor sessions opened by SSO: token → email.
    doctor_sessions: HashMap<String, String>,
    pub invites: Vec<Invite>,
    /// By invite id.
    pub consultations: HashMap<String, Consultation>,
    /// Every request the server received, API or page.
    pub requests: u32,
    pub logins: u32,
    pub refreshes: u32,
    pub sso_attempts: Vec<SsoAttempt>,
    pub faults: HcwFaults,
}

#[derive(Clone)]
pub struct SandboxHcw {
    world: Arc<Mutex<HcwWorld>>,
    base_url: Url,
}

impl SandboxHcw {
    pub async fn start(port: u16, sso_secret: &str) -> anyhow::Result<Self> {
        let (listener, base_url) = bind(port).await?;
        let sandbox = Self {
            world: Arc::new(Mutex::new(HcwWorld {
                accounts: vec![],
                doctors: vec![],
                queues: vec![("q-general".into(), "General".into())],
                sso_secret: sso_secret.into(),
                token_lifetime: Duration::from_secs(15 * 60),
                tokens: HashMap::new(),
                refresh_tokens: HashMap::new(),
                doctor_sessions: HashMap::new(),
                invites: vec![],
                consultations: HashMap::new(),
                requests: 0,
                logins: 0,
                refreshes: 0,
                sso_attempts: vec![],
                faults: HcwFaults::default(),
            })),
            base_url,
        };
        let app = Router::new()
            .route("/api/v1/login-local", post(login))
            .route("/api/v1/refresh-token", post(refresh))
            .route("/api/v1/invite", post(create_invite))
            .route("/api/v1/invite/{id}", get(get_invite).delete(delete_invite))
            .route("/api/v1/invite/{id}/consultation", get(get_consultation))
            .route(
                "/api/v1/invite/{id}/consultation/close",
                post(close_consultation),
            )
            .route(
                "/api/v1/external-auth-callback",
                get(external_auth).post(external_auth),
            )
            .route("/inv/", get(patient_page).post(patient_join))
            .route("/app", get(doctor_page))
            .route("/app/consultations/{id}/{action}", post(doctor_action))
            .layer(axum::middleware::map_request_with_state(
                sandbox.clone(),
                count_request,
            ))
            .with_state(sandbox.clone());
        serve(listener, app);
        Ok(sandbox)
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// How many requests reached the server so far.
    pub fn requests(&self) -> u32 {
        self.world().requests
    }

    pub fn world(&self) -> MutexGuard<'_, HcwWorld> {
        self.world.lock().expect("sandbox hcw lock")
    }

    pub fn add_account(&self, email: &str, password: &str, role: &str) {
        self.world().accounts.push(Account {
            email: email.into(),
            password: password.into(),
            role: role.into(),
        });
        if role == "doctor" {
            self.world().doctors.push(email.into());
        }
    }

    pub fn add_doctor(&self, email: &str) {
        self.world().doctors.push(email.into());
    }

    /// Forgets every issued API token, as a restarted server would.
    pub fn revoke_tokens(&self) {
        self.world().tokens.clear();
    }

    pub fn set_faults(&self, faults: HcwFaults) {
        self.world().faults = faults;
    }

    pub fn invite(&self, id: &str) -> Option<Invite> {
        self.world().invites.iter().find(|i| i.id == id).cloned()
    }

    /// The patient opens the link and asks for the consultation.
    pub fn patient_joins(&self, invite_id: &str) -> bool {
        let mut world = self.world();
        if !world.invites.iter().any(|i| i.id == invite_id) {
            return false;
        }
        world
            .consultations
            .entry(invite_id.into())
            .or_insert_with(|| Consultation {
                id: format!("c{}", &random_token()[..12]),
                status: "pending".into(),
                ..Consultation::default()
            });
        true
    }

    /// A doctor accepts the waiting consultation.
    pub fn doctor_accepts(&self, invite_id: &str) -> bool {
        let mut world = self.world();
        match world.consultations.get_mut(invite_id) {
            Some(c) if c.status == "pending" => {
                c.status = "active".into();
                c.accepted_at = Some(now_ms());
                true
            }
            _ => false,
        }
    }

    /// The doctor ends the call in HCW with a comment (closes the consultation).
    pub fn doctor_closes(&self, invite_id: &str, comment: &str) -> bool {
        let mut world = self.world();
        match world.consultations.get_mut(invite_id) {
            Some(c) if c.status == "active" => {
                c.status = "closed".into();
                c.closed_at = Some(now_ms());
                c.doctor_comment = comment.into();
                true
            }
            _ => false,
        }
    }
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({"message": text}))).into_response()
}

fn consultation_json(c: &Consultation, invite: &Invite) -> Value {
    let text = |k: &str| invite.body.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "_id": c.id, "status": c.status, "invite": invite.id,
        "firstName": text("firstName"), "lastName": text("lastName"), "gender": text("gender"),
        "acceptedAt": c.accepted_at.unwrap_or(0), "closedAt": c.closed_at.unwrap_or(0),
        "doctorComment": c.doctor_comment, "doctorRating": "", "patientRating": "", "patientComment": "",
        "createdAt": now_ms(), "updatedAt": now_ms(),
    })
}

fn tokens_for(world: &mut HcwWorld, email: &str) -> (String, String) {
    let token = format!("eyJ.sandbox.{}", random_token());
    let refresh = random_token();
    world.tokens.insert(
        token.clone(),
        (email.into(), Instant::now() + world.token_lifetime),
    );
    world.refresh_tokens.insert(refresh.clone(), email.into());
    (token, refresh)
}

async fn login(State(sandbox): State<SandboxHcw>, body: Option<Json<Value>>) -> Response {
    let mut world = sandbox.world();
    if world.faults.down {
        return message(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable");
    }
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let email = body
        .get("email")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let password = body
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(account) = world
        .accounts
        .iter()
        .find(|a| a.email == email && a.password == password)
        .cloned()
    else {
        return message(StatusCode::UNAUTHORIZED, "Invalid email or password");
    };
    world.logins += 1;
    let (token, refresh) = tokens_for(&mut world, &account.email);
    Json(json!({"message": "Login Successful", "user": {
        "email": account.email, "id": format!("u-{}", &random_token()[..8]), "role": account.role,
        "firstName": "Service", "lastName": "Account", "token": token, "refreshToken": refresh,
    }}))
    .into_response()
}

async fn refresh(State(sandbox): State<SandboxHcw>, body: Option<Json<Value>>) -> Response {
    let mut world = sandbox.world();
    if world.faults.down {
        return message(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable");
    }
    let given = body
        .and_then(|Json(b)| {
            b.get("refreshToken")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_default();
    let Some(email) = world.refresh_tokens.remove(&given) else {
        return message(StatusCode::UNAUTHORIZED, "Invalid refresh token");
    };
    world.refreshes += 1;
    let (token, refresh) = tokens_for(&mut world, &email);
    Json(json!({"token": token, "refreshToken": refresh})).into_response()
}

/// The calling account, from `x-access-token` or `Authorization: Bearer`.
fn authenticate(world: &HcwWorld, headers: &HeaderMap) -> Result<Account, Response> {
    if world.faults.down {
        return Err(message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable",
        ));
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let token = header("x-access-token")
        .or_else(|| header("authorization").and_then(|v| v.strip_prefix("Bearer ")))
        .unwrap_or_default();
    let email = match world.tokens.get(token) {
        Some((email, expires)) if *expires > Instant::now() => email,
        _ => return Err(message(StatusCode::UNAUTHORIZED, "Unauthorized")),
    };
    let account = world
        .accounts
        .iter()
        .find(|a| &a.email == email)
        .cloned()
        .ok_or_else(|| message(StatusCode::UNAUTHORIZED, "Unauthorized"))?;
    if !["scheduler", "doctor", "admin"].contains(&account.role.as_str()) {
        return Err(message(
            StatusCode::FORBIDDEN,
            "You are not allowed to do this",
        ));
    }
    Ok(account)
}

fn bad(error: Value) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"success": false, "error": error})),
    )
        .into_response()
}

/// The invite controller's checks, in its order and shapes.
fn validate_invite(
    world: &HcwWorld,
    account: &Account,
    body: &Map<String, Value>,
) -> Result<(), Response> {
    let mut details = vec![];
    for key in [
        "firstName",
        "lastName",
        "gender",
        "emailAddress",
        "phoneNumber",
        "language",
        "doctorEmail",
        "queue",
        "scheduledFor",
    ] {
        if body
            .get(key)
            .is_some_and(|v| !v.is_string() && !v.is_null())
        {
            details.push(json!({"message": format!("\"{key}\" must be a string"), "path": [key]}));
        }
    }
    for key in ["isPatientInvite", "sendInvite"] {
        if body.get(key).is_some_and(|v| !v.is_boolean()) {
            details.push(json!({"message": format!("\"{key}\" must be a boolean"), "path": [key]}));
        }
    }
    if !details.is_empty() {
        return Err(bad(Value::Array(details)));
    }
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    if body.get("isPatientInvite") != Some(&Value::Bool(true)) {
        return Err(bad(json!(
            "You must invite at least a patient translator or a guest!"
        )));
    }
    let mut errors = vec![];
    if text("phoneNumber").is_none() && text("emailAddress").is_none() {
        errors.push(json!({"message": "emailAddress or phoneNumber are required"}));
    }
    match text("gender") {
        None => errors.push(json!({"message": "gender is required"})),
        Some(g) if !["male", "female"].contains(&g) => {
            errors.push(json!({"message": "gender must be either male or female"}))
        }
        Some(_) => {}
    }
    if text("firstName").is_none() {
        errors.push(json!({"message": "firstName is required"}));
    }
    if text("lastName").is_none() {
        errors.push(json!({"message": "lastName is required"}));
    }
    if !errors.is_empty() {
        return Err((StatusCode::BAD_REQUEST, Json(Value::Array(errors))).into_response());
    }
    if let Some(at) = text("scheduledFor") {
        match time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339) {
            Err(_) => return Err(bad(json!("ScheduledFor is not a valid date"))),
            Ok(t) if t < time::OffsetDateTime::now_utc() => {
                return Err(bad(json!("consultation past time")));
            }
            Ok(_) => {}
        }
    }
    if account.role == "scheduler" && text("doctorEmail").is_none() && text("queue").is_none() {
        return Err(bad(json!("doctorEmail or queue is required.")));
    }
    if let Some(doctor) = text("doctorEmail") {
        if !world.doctors.iter().any(|d| d == doctor) {
            return Err(bad(json!(format!("Doctor with email {doctor} not found"))));
        }
    }
    if let Some(queue) = text("queue") {
        if !world
            .queues
            .iter()
            .any(|(id, name)| id == queue || name == queue)
        {
            return Err((
                StatusCode::BAD_REQUEST,
                Json(json!({"error": true, "message": format!("queue {queue} doesn't exist")})),
            )
                .into_response());
        }
    }
    Ok(())
}

async fn create_invite(
    State(sandbox): State<SandboxHcw>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let mut world = sandbox.world();
    let account = match authenticate(&world, &headers) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Some(Json(Value::Object(body))) = body else {
        return bad(json!("The body must be a JSON object"));
    };
    if let Err(refused) = validate_invite(&world, &account, &body) {
        return refused;
    }
    let send = body
        .get("sendInvite")
        .and_then(Value::as_bool)
        .unwrap_or(account.role != "scheduler");
    let invite = Invite {
        id: format!("{:024x}", rand::random::<u128>() >> 32),
        token: random_token(),
        invited_by: account.email.clone(),
        doctor_email: body
            .get("doctorEmail")
            .and_then(Value::as_str)
            .map(String::from),
        queue: body.get("queue").and_then(Value::as_str).map(String::from),
        status: if send { "SENT" } else { "PENDING" }.into(),
        body: Value::Object(body),
    };
    world.invites.push(invite.clone());
    Json(json!({"success": true, "invite": invite_json(&sandbox, &invite)})).into_response()
}

fn invite_json(sandbox: &SandboxHcw, invite: &Invite) -> Value {
    let mut out = invite.body.clone();
    out["id"] = json!(invite.id);
    out["status"] = json!(invite.status);
    out["type"] = json!("PATIENT");
    out["patientURL"] = json!(format!("{}inv/?invite={}", sandbox.base_url, invite.token));
    out["doctorURL"] = json!(format!("{}app", sandbox.base_url));
    out
}

/// The invite, if the caller created it (HCW's isInviteOwner: others get 404).
fn owned(world: &HcwWorld, account: &Account, id: &str) -> Result<Invite, Response> {
    world
        .invites
        .iter()
        .find(|i| i.id == id && i.invited_by == account.email)
        .cloned()
        .ok_or_else(|| (StatusCode::NOT_FOUND, "Not Found").into_response())
}

async fn get_invite(
    State(sandbox): State<SandboxHcw>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let world = sandbox.world();
    let invite = match authenticate(&world, &headers).and_then(|a| owned(&world, &a, &id)) {
        Ok(i) => i,
        Err(r) => return r,
    };
    Json(invite_json(&sandbox, &invite)).into_response()
}

async fn delete_invite(
    State(sandbox): State<SandboxHcw>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut world = sandbox.world();
    if let Err(r) = authenticate(&world, &headers).and_then(|a| owned(&world, &a, &id)) {
        return r;
    }
    if world.consultations.contains_key(&id) {
        return bad(json!("The patient has already requested a consultation"));
    }
    world.invites.retain(|i| i.id != id);
    Json(json!({"success": true})).into_response()
}

async fn get_consultation(
    State(sandbox): State<SandboxHcw>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let world = sandbox.world();
    let invite = match authenticate(&world, &headers).and_then(|a| owned(&world, &a, &id)) {
        Ok(i) => i,
        Err(r) => return r,
    };
    match world.consultations.get(&id) {
        Some(c) => Json(consultation_json(c, &invite)).into_response(),
        None => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

async fn close_consultation(
    State(sandbox): State<SandboxHcw>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let mut world = sandbox.world();
    let invite = match authenticate(&world, &headers).and_then(|a| owned(&world, &a, &id)) {
        Ok(i) => i,
        Err(r) => return r,
    };
    match world.consultations.get_mut(&id) {
        Some(c) if c.accepted_at.is_some() => {
            if c.status != "closed" {
                c.status = "closed".into();
                c.closed_at = Some(now_ms());
            }
            Json(consultation_json(c, &invite)).into_response()
        }
        _ => (StatusCode::NOT_FOUND, "Not Found").into_response(),
    }
}

#[derive(Deserialize)]
struct SsoQuery {
    token: Option<String>,
    #[serde(rename = "returnUrl")]
    return_url: Option<String>,
}

async fn external_auth(State(sandbox): State<SandboxHcw>, Query(q): Query<SsoQuery>) -> Response {
    let mut world = sandbox.world();
    let refuse = |world: &mut HcwWorld, status: StatusCode, error: &str, email: Option<String>| {
        world.sso_attempts.push(SsoAttempt {
            status: status.as_u16(),
            email,
            return_url: None,
        });
        (status, Json(json!({"error": error}))).into_response()
    };
    let Some(token) = q.token.filter(|t| !t.is_empty()) else {
        return refuse(&mut world, StatusCode::BAD_REQUEST, "Bad Request", None);
    };
    let mut validation = Validation::new(Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = match decode::<Value>(
        &token,
        &DecodingKey::from_secret(world.sso_secret.as_bytes()),
        &validation,
    ) {
        Ok(data) => data.claims,
        Err(_) => return refuse(&mut world, StatusCode::UNAUTHORIZED, "Unauthorized", None),
    };
    let email = claims
        .get("email")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        .map(String::from);
    let Some(timestamp) = claims.get("timestamp").and_then(Value::as_f64) else {
        return refuse(
            &mut world,
            StatusCode::UNAUTHORIZED,
            "Timestamp is required",
            email,
        );
    };
    if (now_ms() as f64) - timestamp * 1000.0 > (SSO_MAX_AGE_SECS * 1000) as f64 {
        return refuse(
            &mut world,
            StatusCode::UNAUTHORIZED,
            "Timestamp is older than 5 minutes",
            email,
        );
    }
    let Some(email) = email else {
        return refuse(
            &mut world,
            StatusCode::UNAUTHORIZED,
            "Email is required",
            None,
        );
    };
    if !world.doctors.contains(&email) {
        world.doctors.push(email.clone());
    }
    let return_url = q
        .return_url
        .filter(|r| r.starts_with('/') && !r.starts_with("//") && !r.contains('\\'));
    let session = random_token();
    world.doctor_sessions.insert(session.clone(), email.clone());
    world.sso_attempts.push(SsoAttempt {
        status: 302,
        email: Some(email),
        return_url: return_url.clone(),
    });
    let mut to = url::form_urlencoded::Serializer::new(String::new());
    to.append_pair("tk", &session);
    if let Some(r) = &return_url {
        to.append_pair("returnUrl", r);
    }
    Redirect::to(&format!("/app?{}", to.finish())).into_response()
}

#[derive(Template)]
#[template(path = "hcw_page.html")]
struct Page {
    title: String,
    message: String,
    /// (invite id, patient name, consultation status, can accept, can close).
    rows: Vec<(String, String, String, bool, bool)>,
    tk: String,
    join_token: String,
}

fn page(title: &str, message: &str) -> Page {
    Page {
        title: title.into(),
        message: message.into(),
        rows: vec![],
        tk: String::new(),
        join_token: String::new(),
    }
}

fn html(status: StatusCode, page: Page) -> Response {
    (status, Html(page.render().unwrap_or_default())).into_response()
}

#[derive(Deserialize)]
struct PatientQuery {
    invite: Option<String>,
}

async fn patient_page(
    State(sandbox): State<SandboxHcw>,
    Query(q): Query<PatientQuery>,
) -> Response {
    let world = sandbox.world();
    let Some(invite) = world
        .invites
        .iter()
        .find(|i| Some(&i.token) == q.invite.as_ref())
    else {
        return html(
            StatusCode::NOT_FOUND,
            page(
                "Invitation not found",
                "This invitation link is not valid or was revoked.",
            ),
        );
    };
    let mut p = page(
        "Your video consultation",
        "Join when you are ready; the doctor will be with you shortly.",
    );
    if world.consultations.contains_key(&invite.id) {
        p.message = "You are in the waiting room.".into();
    } else {
        p.join_token = invite.token.clone();
    }
    html(StatusCode::OK, p)
}

#[derive(Deserialize)]
struct JoinForm {
    invite: String,
}

async fn patient_join(State(sandbox): State<SandboxHcw>, Form(form): Form<JoinForm>) -> Response {
    let id = sandbox
        .world()
        .invites
        .iter()
        .find(|i| i.token == form.invite)
        .map(|i| i.id.clone());
    match id {
        Some(id) if sandbox.patient_joins(&id) => html(
            StatusCode::OK,
            page(
                "Waiting room",
                "You are in the waiting room. The doctor has been told.",
            ),
        ),
        _ => html(
            StatusCode::NOT_FOUND,
            page(
                "Invitation not found",
                "This invitation link is not valid or was revoked.",
            ),
        ),
    }
}

#[derive(Deserialize)]
struct DoctorQuery {
    tk: Option<String>,
}

fn doctor_of(world: &HcwWorld, tk: Option<&str>) -> Option<String> {
    world.doctor_sessions.get(tk?).cloned()
}

async fn doctor_page(State(sandbox): State<SandboxHcw>, Query(q): Query<DoctorQuery>) -> Response {
    let world = sandbox.world();
    let Some(doctor) = doctor_of(&world, q.tk.as_deref()) else {
        return html(
            StatusCode::UNAUTHORIZED,
            page("Sign in", "Sign in to HCW@Home from your practice system."),
        );
    };
    let rows = world
        .invites
        .iter()
        .filter(|i| i.doctor_email.as_deref().is_none_or(|d| d == doctor))
        .filter_map(|i| {
            let c = world.consultations.get(&i.id)?;
            let name = format!(
                "{} {}",
                i.body["firstName"].as_str().unwrap_or_default(),
                i.body["lastName"].as_str().unwrap_or_default()
            );
            Some((
                i.id.clone(),
                name,
                c.status.clone(),
                c.status == "pending",
                c.status == "active",
            ))
        })
        .collect();
    let mut p = page(
        &format!("HCW@Home · {doctor}"),
        "Patients waiting for you and your calls in progress.",
    );
    p.rows = rows;
    p.tk = q.tk.unwrap_or_default();
    html(StatusCode::OK, p)
}

#[derive(Deserialize)]
struct DoctorForm {
    tk: String,
    #[serde(default)]
    comment: String,
}

async fn doctor_action(
    State(sandbox): State<SandboxHcw>,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<DoctorForm>,
) -> Response {
    if doctor_of(&sandbox.world(), Some(&form.tk)).is_none() {
        return html(
            StatusCode::UNAUTHORIZED,
            page("Sign in", "Your HCW@Home session ended."),
        );
    }
    let done = match action.as_str() {
        "accept" => sandbox.doctor_accepts(&id),
        "close" => sandbox.doctor_closes(&id, &form.comment),
        _ => false,
    };
    if !done {
        return html(
            StatusCode::CONFLICT,
            page(
                "Not possible",
                "This consultation is not in a state for that.",
            ),
        );
    }
    Redirect::to(&format!("/app?tk={}", form.tk)).into_response()
}

async fn count_request<B>(
    State(hcw): State<SandboxHcw>,
    request: axum::http::Request<B>,
) -> axum::http::Request<B> {
    hcw.world().requests += 1;
    request
}

#[cfg(test)]
mod service_account_tests {
    #[test]
    fn a_practice_ids_underscore_becomes_a_hyphen_in_the_domain() {
        assert_eq!(
            super::service_account("pra-000001w_H4hs"),
            "scheduler@pra-000001w-h4hs.example"
        );
    }
}
