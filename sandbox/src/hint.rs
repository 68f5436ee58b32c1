//! Sandbox Hint: a practice with patients and users, the handshake initiator and iframe page,
//! the Provider API (patients, partner interactions), and the Instant On token exchange.
//!
//! Strict like Hint: Bearer practice tokens only (the partner key gets 428), bare-array lists
//! with `limit` ≤ 100 and `offset`, `X-Count`/`X-Total-Count`, exact-match filters, required
//! `status`, unknown fields refused, signed interactions final, 429 "Enhance your calm" when a
//! key calls faster than its rate. Faults (500s, hangs) can be switched on for tests.

use std::{
    collections::{HashMap, VecDeque},
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
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use url::Url;

use crate::{bind, hint_error, serve};
use crate::{random_token, sign_hmac_sha256};

/// How the sandbox is set up (what real Hint would know about our app).
#[derive(Clone, Debug)]
pub struct SandboxHintConfig {
    pub webhook_secret: String,
    pub partner_api_key: String,
    pub product_id: String,
    /// Provider API calls allowed per key per second before 429.
    pub rate_limit_per_second: usize,
}

#[derive(Clone, Debug)]
pub struct Practice {
    pub id: String,
    pub name: String,
    /// Our products this practice has installed (partner_product_id must be one of them).
    pub products: Vec<String>,
    pub integration_id: String,
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub practice_id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub partner_roles: Vec<String>,
    pub access_context: String,
}

#[derive(Clone, Debug)]
pub struct Patient {
    pub practice_id: String,
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub dob: String,
    pub sex: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// When it last changed (Hint's `updated_at`, filtered by `updated_at[gt]`).
    pub updated_at: OffsetDateTime,
}

impl Patient {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "middle_name": null,
            "name": format!("{} {}", self.first_name, self.last_name),
            "dob": self.dob,
            "sex": self.sex,
            "email": self.email,
            "phones": self.phone.iter().map(|n| json!({"number": n, "type": "mobile"})).collect::<Vec<_>>(),
            "provider_web_link": format!("https://app.hint.com/patients/{}", self.id),
            "created_at": "2026-01-05T10:00:00Z",
            "updated_at": self.updated_at.format(&Rfc3339).unwrap_or_default(),
        })
    }
}

/// A partner interaction as the sandbox holds it.
#[derive(Clone, Debug)]
pub struct Interaction {
    pub id: String,
    pub practice_id: String,
    pub patient_id: String,
    pub status: String,
    pub title: Option<String>,
    pub integration_record_id: Option<String>,
    pub integration_web_link: Option<String>,
    pub integration_error_message: Option<String>,
    pub partner_product_id: Option<String>,
    pub event_timestamp: String,
    /// How many PATCHes changed it.
    pub updates: u32,
}

impl Interaction {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "type": "partner",
            "status": self.status,
            "title": self.title,
            "patient_id": self.patient_id,
            "event_timestamp": self.event_timestamp,
            "integration_record_id": self.integration_record_id,
            "integration_web_link": self.integration_web_link,
            "integration_error_message": self.integration_error_message,
            "partner_product_id": self.partner_product_id,
        })
    }
}

/// Faults the tests switch on. They apply to the partner-interaction endpoints (the write-back
/// path); patient reads stay healthy so a visit can start.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer this many Provider API calls with 500 (counts down).
    pub fail_next: u32,
    /// Provider API calls wait this long before answering (past the client's timeout).
    pub hang_for: Option<Duration>,
    /// Patient reads (not interactions) answer only after this long.
    pub patients_hang_for: Option<Duration>,
    /// Provider API writes are applied, then the answer waits this long.
    pub hang_after_write_for: Option<Duration>,
    /// When set, the faults hit only this practice's calls.
    pub only_practice: Option<String>,
    /// Patient reads (not interactions) answer 503.
    pub patients_down: bool,
    /// Interaction calls answer 500 at this rate (0.0–1.0), before doing anything.
    pub fail_ratio: f64,
    /// Interaction writes are applied, then answered 502 at this rate: the answer is lost.
    pub lose_answer_ratio: f64,
}

/// What happens to a write's answer once the write is applied.
#[derive(Default)]
struct AfterWrite {
    hang: Option<Duration>,
    lose: bool,
}

impl AfterWrite {
    /// `answer`, late or lost as the faults say.
    async fn answer(self, answer: Response) -> Response {
        if let Some(hang) = self.hang {
            tokio::time::sleep(hang).await;
        }
        if self.lose {
            hint_error(StatusCode::BAD_GATEWAY, "Bad gateway")
        } else {
            answer
        }
    }
}

#[derive(Default)]
pub struct World {
    pub app_url: Option<Url>,
    pub practices: Vec<Practice>,
    pub users: Vec<User>,
    pub patients: Vec<Patient>,
    pub interactions: Vec<Interaction>,
    practice_tokens: HashMap<String, String>,
    access_tokens: HashMap<String, (String, Instant)>,
    oauth_codes: HashMap<String, String>,
    pub faults: Faults,
    calls: HashMap<String, VecDeque<Instant>>,
    /// Provider API calls served, as "METHOD path".
    pub requests: Vec<String>,
    /// Provider API calls allowed per key per second before 429.
    pub rate_limit_per_second: usize,
    /// How many calls were answered 429.
    pub rate_limited: usize,
    /// Instant On code exchanges asked for (valid or not), at either endpoint.
    pub code_exchanges: usize,
    /// Of those, the ones asked of `installations/connect`.
    pub connect_calls: usize,
    /// The `updated_at[gt]` of each patient list asked with one (incremental syncs).
    pub patients_asked_since: Vec<String>,
    /// The app config the partner set (`PATCH /api/partner/products/{id}/app`).
    pub app_config: Option<Value>,
    /// The partner's registered webhook URLs.
    pub webhook_endpoints: Vec<String>,
    /// An older stack: `installations/connect` does not exist (404), only `oauth/tokens`.
    pub legacy_install_only: bool,
    /// Practices whose integration was installed without activation, or deactivated: their
    /// practice tokens are refused (403) until `activate`.
    pub inactive_integrations: std::collections::HashSet<String>,
    /// A note the demo shows on the home page (e.g. the sandbox partners' credentials).
    pub demo_note: String,
    /// (label, URL) of the demo's partner sandboxes, shown on the home page.
    pub demo_links: Vec<(String, String)>,
    next_id: u64,
}

impl World {
    /// Uses up an Instant On code: the practice it was minted for and a new practice token,
    /// the integration active or pending (its token refused until activated).
    fn redeem(&mut self, code: &str, activate: bool) -> Option<(Practice, String)> {
        let practice_id = self.oauth_codes.remove(code)?;
        let practice = self
            .practices
            .iter()
            .find(|p| p.id == practice_id)
            .cloned()
            .expect("code's practice exists");
        let token = random_token();
        self.practice_tokens
            .insert(token.clone(), practice_id.clone());
        if activate {
            self.inactive_integrations.remove(&practice_id);
        } else {
            self.inactive_integrations.insert(practice_id);
        }
        Some((practice, token))
    }

    fn next(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:06}{}", self.next_id, &random_token()[..6])
    }
}

#[derive(Clone)]
pub struct SandboxHint {
    world: Arc<Mutex<World>>,
    config: Arc<SandboxHintConfig>,
    base_url: Url,
    http: reqwest::Client,
}

impl SandboxHint {
    /// Starts serving on 127.0.0.1:`port` (0 for any).
    pub async fn start(config: SandboxHintConfig, port: u16) -> anyhow::Result<Self> {
        let (listener, base_url) = bind(port).await?;
        let world = World {
            rate_limit_per_second: config.rate_limit_per_second,
            ..World::default()
        };
        let sandbox = Self {
            world: Arc::new(Mutex::new(world)),
            config: Arc::new(config),
            base_url,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        };
        let app = router(sandbox.clone());
        serve(listener, app);
        Ok(sandbox)
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// The world, locked (for tests and the demo).
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().expect("sandbox world lock")
    }

    /// Where Chartbridge runs (handshakes and installs go there).
    pub fn set_app_url(&self, url: Url) {
        self.world().app_url = Some(url);
    }

    pub fn set_faults(&self, faults: Faults) {
        self.world().faults = faults;
    }

    /// Every handshake's access token runs out now (they are short-lived in Hint; practice
    /// tokens from Instant On are not).
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for (_, expires) in self.world().access_tokens.values_mut() {
            *expires = now;
        }
    }

    /// Adds a practice with an admin and a clinician; answers the practice id.
    pub fn add_practice(&self, name: &str) -> String {
        let mut world = self.world();
        let id = world.next("pra");
        let integration_id = world.next("int");
        world.practices.push(Practice {
            id: id.clone(),
            name: name.to_string(),
            products: vec![self.config.product_id.clone()],
            integration_id,
        });
        let slug: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase();
        for (role, first, last) in [
            ("admin", "Alex", "Admin"),
            ("clinician", "Casey", "Clinician"),
        ] {
            let user_id = world.next("user");
            world.users.push(User {
                id: user_id,
                practice_id: id.clone(),
                email: format!("{}.{role}@{slug}.example", first.to_lowercase()),
                first_name: first.into(),
                last_name: last.into(),
                partner_roles: vec![role.into()],
                access_context: "standard".into(),
            });
        }
        id
    }

    /// Adds a user with the given roles and access context; answers the user id.
    pub fn add_user(
        &self,
        practice_id: &str,
        first_name: &str,
        roles: &[&str],
        access_context: &str,
    ) -> String {
        let mut world = self.world();
        let id = world.next("user");
        world.users.push(User {
            id: id.clone(),
            practice_id: practice_id.into(),
            email: format!("{}@sandbox.example", first_name.to_lowercase()),
            first_name: first_name.into(),
            last_name: "Tester".into(),
            partner_roles: roles.iter().map(|r| r.to_string()).collect(),
            access_context: access_context.into(),
        });
        id
    }

    /// The user of `practice_id` holding `role`.
    pub fn user_with_role(&self, practice_id: &str, role: &str) -> Option<String> {
        self.world()
            .users
            .iter()
            .find(|u| u.practice_id == practice_id && u.partner_roles.iter().any(|r| r == role))
            .map(|u| u.id.clone())
    }

    /// Adds a patient; answers the id.
    pub fn add_patient(
        &self,
        practice_id: &str,
        first: &str,
        last: &str,
        dob: &str,
        sex: &str,
    ) -> String {
        let mut world = self.world();
        let id = world.next("pat");
        world.patients.push(Patient {
            practice_id: practice_id.into(),
            id: id.clone(),
            first_name: first.into(),
            last_name: last.into(),
            dob: dob.into(),
            sex: sex.into(),
            email: Some(format!(
                "{}.{}@patients.example",
                first.to_lowercase(),
                last.to_lowercase()
            )),
            phone: Some("+15555550100".into()),
            updated_at: OffsetDateTime::now_utc(),
        });
        id
    }

    /// Adds `count` patients with made-up names (a large practice for search); answers the
    /// first one's id. Names repeat in combinations, ids never.
    pub fn add_many_patients(&self, practice_id: &str, count: usize) -> Option<String> {
        const FIRST: [&str; 24] = [
            "Ava", "Liam", "Noah", "Emma", "Olivia", "Elijah", "Sofía", "Mateo", "Zoë", "Lucas",
            "Amira", "Kenji", "Chloé", "Omar", "Ingrid", "Tomás", "Leila", "Hugo", "Nadia",
            "Felix", "Yara", "Jonas", "Maëlle", "Dmitri",
        ];
        const LAST: [&str; 20] = [
            "Thompson",
            "Carter",
            "Martínez",
            "Okafor",
            "Nguyen",
            "Schmidt",
            "Rossi",
            "Kowalski",
            "Haddad",
            "Tanaka",
            "Fischer",
            "Dubois",
            "Larsen",
            "Moreau",
            "Petrov",
            "Silva",
            "Andersson",
            "Novak",
            "Brennan",
            "Yilmaz",
        ];
        let mut world = self.world();
        let now = OffsetDateTime::now_utc();
        let mut first_id = None;
        for n in 0..count {
            let id = world.next("pat");
            first_id.get_or_insert_with(|| id.clone());
            let (first, last) = (FIRST[n % FIRST.len()], LAST[(n / FIRST.len()) % LAST.len()]);
            world.patients.push(Patient {
                practice_id: practice_id.into(),
                id,
                first_name: first.into(),
                // A number makes every name its own, as in a real practice's list.
                last_name: format!("{last}-{n}"),
                dob: format!("19{:02}-{:02}-{:02}", 40 + n % 60, 1 + n % 12, 1 + n % 28),
                sex: if n % 2 == 0 { "female" } else { "male" }.into(),
                email: None,
                phone: None,
                updated_at: now,
            });
        }
        first_id
    }

    /// Renames a patient in Hint (its `updated_at` moves on); answers whether it exists.
    pub fn rename_patient(&self, patient_id: &str, first: &str, last: &str) -> bool {
        let mut world = self.world();
        let Some(patient) = world.patients.iter_mut().find(|p| p.id == patient_id) else {
            return false;
        };
        patient.first_name = first.into();
        patient.last_name = last.into();
        patient.updated_at = OffsetDateTime::now_utc();
        true
    }

    /// Removes a patient from Hint (it leaves the list); answers whether it existed.
    pub fn remove_patient(&self, patient_id: &str) -> bool {
        let mut world = self.world();
        let before = world.patients.len();
        world.patients.retain(|p| p.id != patient_id);
        world.patients.len() < before
    }

    /// A patient as Hint's API and webhooks show it.
    pub fn patient_json(&self, patient_id: &str) -> Option<Value> {
        let world = self.world();
        world
            .patients
            .iter()
            .find(|p| p.id == patient_id)
            .map(Patient::to_json)
    }

    /// Adds twenty demo patients to a practice.
    pub fn seed_patients(&self, practice_id: &str) {
        const NAMES: [(&str, &str, &str, &str); 20] = [
            ("Ava", "Thompson", "1984-03-12", "female"),
            ("Liam", "Carter", "1979-11-02", "male"),
            ("Sofia", "Martinez", "1992-06-25", "female"),
            ("Noah", "Bennett", "1967-01-30", "male"),
            ("Mia", "Nguyen", "2001-09-14", "female"),
            ("Ethan", "Okafor", "1988-04-08", "male"),
            ("Isabella", "Rossi", "1975-12-19", "female"),
            ("Lucas", "Schmidt", "1990-07-03", "male"),
            ("Amara", "Haddad", "1983-02-27", "female"),
            ("Mateo", "Silva", "1996-10-11", "male"),
            ("Chloé", "Dubois", "1971-05-16", "female"),
            ("Kenji", "Tanaka", "1986-08-21", "male"),
            ("Zara", "Ahmed", "1999-03-05", "female"),
            ("Oliver", "Novak", "1958-11-28", "male"),
            ("Priya", "Raman", "1993-01-09", "female"),
            ("Jonas", "Berg", "1980-06-17", "male"),
            ("Leila", "Karimi", "1977-09-30", "female"),
            ("Samuel", "Adeyemi", "2004-02-14", "male"),
            ("Riley", "Morgan", "1989-12-01", "unknown"),
            ("Elena", "Popescu", "1962-04-22", "female"),
        ];
        for (first, last, dob, sex) in NAMES {
            self.add_patient(practice_id, first, last, dob, sex);
        }
    }

    /// Interactions held for a practice's patient (tests assert on these).
    pub fn interactions_for(&self, patient_id: &str) -> Vec<Interaction> {
        self.world()
            .interactions
            .iter()
            .filter(|i| i.patient_id == patient_id)
            .cloned()
            .collect()
    }

    /// Mints a one-use Instant On code for a practice.
    pub fn new_install_code(&self, practice_id: &str) -> String {
        let code = random_token();
        self.world()
            .oauth_codes
            .insert(code.clone(), practice_id.to_string());
        code
    }

    /// Runs Instant On for a practice: mints a code and posts it to the app.
    pub async fn install(&self, practice_id: &str) -> anyhow::Result<reqwest::StatusCode> {
        let code = self.new_install_code(practice_id);
        let app_url = self
            .world()
            .app_url
            .clone()
            .ok_or_else(|| anyhow::anyhow!("app URL not set"))?;
        let url = app_url.join(&format!("/hint/connect/{code}"))?;
        Ok(self.http.post(url).send().await?.status())
    }

    /// Signs and posts an event to the app's `/webhooks/hint` as Hint does; answers the status.
    pub async fn send_event(
        &self,
        kind: &str,
        practice_id: &str,
        object: Value,
    ) -> anyhow::Result<reqwest::StatusCode> {
        let (id, app_url) = {
            let mut world = self.world();
            let app_url = world
                .app_url
                .clone()
                .ok_or_else(|| anyhow::anyhow!("app URL not set"))?;
            (world.next("evt"), app_url)
        };
        let body = json!({
            "id": id, "type": kind, "practice_id": practice_id,
            "created_at": OffsetDateTime::now_utc().format(&Rfc3339)?, "object": object,
        })
        .to_string();
        let signature = sign_hmac_sha256(self.config.webhook_secret.as_bytes(), body.as_bytes());
        Ok(self
            .http
            .post(app_url.join("/webhooks/hint")?)
            .header("content-type", "application/json")
            .header("x-hint-signature", signature)
            .body(body)
            .send()
            .await?
            .status())
    }

    /// Hint activates the practice's integration (its token works again) and tells the app.
    pub async fn activate(&self, practice_id: &str) -> anyhow::Result<reqwest::StatusCode> {
        self.world().inactive_integrations.remove(practice_id);
        self.send_event("integration.activated", practice_id, json!({}))
            .await
    }

    /// Hint deactivates the practice's integration (its token is refused) and tells the app.
    pub async fn deactivate(&self, practice_id: &str) -> anyhow::Result<reqwest::StatusCode> {
        self.world()
            .inactive_integrations
            .insert(practice_id.to_string());
        self.send_event("integration.deactivated", practice_id, json!({}))
            .await
    }

    /// Signs and posts a handshake for `user_id` as Hint does; answers the session key.
    pub async fn handshake(
        &self,
        user_id: &str,
        patient_id: Option<&str>,
        interaction_id: Option<&str>,
    ) -> anyhow::Result<String> {
        let (body, app_url) = self.handshake_body(user_id, patient_id, interaction_id)?;
        let url = app_url.join("/hint/handshake")?;
        let signature = sign_hmac_sha256(self.config.webhook_secret.as_bytes(), body.as_bytes());
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-hint-signature", signature)
            .body(body)
            .send()
            .await?;
        if !response.status().is_success() {
            anyhow::bail!(
                "the app refused the handshake with HTTP {}",
                response.status()
            );
        }
        let answer: Value = response.json().await?;
        answer
            .get("session_key")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| anyhow::anyhow!("the app answered no session_key"))
    }

    fn handshake_body(
        &self,
        user_id: &str,
        patient_id: Option<&str>,
        interaction_id: Option<&str>,
    ) -> anyhow::Result<(String, Url)> {
        let mut world = self.world();
        let app_url = world
            .app_url
            .clone()
            .ok_or_else(|| anyhow::anyhow!("app URL not set"))?;
        let user = world
            .users
            .iter()
            .find(|u| u.id == user_id)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no such user"))?;
        let practice = world
            .practices
            .iter()
            .find(|p| p.id == user.practice_id)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no practice"))?;
        let access_token = random_token();
        world.access_tokens.insert(
            access_token.clone(),
            (
                practice.id.clone(),
                Instant::now() + Duration::from_secs(3600),
            ),
        );
        let mut body = json!({
            "timestamp": OffsetDateTime::now_utc().format(&Rfc3339)?,
            "user": {
                "id": user.id, "email": user.email, "first_name": user.first_name, "last_name": user.last_name,
                "name": format!("{} {}", user.first_name, user.last_name), "partner_roles": user.partner_roles,
                "phones": [],
            },
            "practice": {"id": practice.id, "name": practice.name},
            "integration": {"id": practice.integration_id},
            "access_token": access_token,
            "access_context": user.access_context,
        });
        if let Some(patient_id) = patient_id {
            body["patient"] = json!({"id": patient_id});
        }
        if let Some(interaction_id) = interaction_id {
            body["interaction"] = json!({"id": interaction_id});
        }
        Ok((body.to_string(), app_url))
    }
}

fn router(sandbox: SandboxHint) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/patients/{id}", get(chart))
        .route("/embed/{surface}", get(embed))
        .route("/hint-sdk.js", get(sdk_js))
        .route("/install", post(install_button))
        .route("/api/oauth/tokens", post(oauth_tokens))
        .route(
            "/api/partner/installations/connect",
            post(connect_installation),
        )
        .route(
            "/api/partner/products/{product_id}/app",
            axum::routing::patch(configure_app),
        )
        .route(
            "/api/partner/webhook_endpoints",
            get(list_webhook_endpoints).post(add_webhook_endpoint),
        )
        .route("/api/provider/patients", get(list_patients))
        .route("/api/provider/patients/{id}", get(get_patient))
        .route(
            "/api/provider/patients/{id}/interactions/partner",
            get(list_interactions).post(create_interaction),
        )
        .route(
            "/api/provider/patients/{id}/interactions/partner/{interaction_id}",
            get(get_interaction).patch(patch_interaction),
        )
        .with_state(sandbox)
}

// ---------------------------------------------------------------- Provider API

/// Authenticates a Provider API call and applies rate limit and faults. Answers the practice.
async fn provider_gate(
    sandbox: &SandboxHint,
    headers: &HeaderMap,
    what: String,
    write: bool,
) -> Result<(String, AfterWrite), Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| hint_error(StatusCode::UNAUTHORIZED, "Missing bearer token"))?
        .to_string();
    if token == sandbox.config.partner_api_key {
        return Err(hint_error(
            StatusCode::PRECONDITION_REQUIRED,
            "The partner API key cannot call the Provider API; use the practice's access token",
        ));
    }
    let (practice_id, hang, after_write) = {
        let mut world = sandbox.world();
        let practice_id = match world.practice_tokens.get(&token) {
            Some(p) if world.inactive_integrations.contains(p) => {
                return Err(hint_error(
                    StatusCode::FORBIDDEN,
                    "The integration is not active for this practice",
                ));
            }
            Some(p) => p.clone(),
            None => match world.access_tokens.get(&token) {
                Some((p, expires)) if *expires > Instant::now() => p.clone(),
                _ => {
                    return Err(hint_error(
                        StatusCode::UNAUTHORIZED,
                        "Invalid or expired access token",
                    ));
                }
            },
        };
        let limit = world.rate_limit_per_second;
        let now = Instant::now();
        let calls = world.calls.entry(token).or_default();
        while calls
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1))
        {
            calls.pop_front();
        }
        if calls.len() >= limit {
            world.rate_limited += 1;
            return Err(hint_error(
                StatusCode::TOO_MANY_REQUESTS,
                "Enhance your calm",
            ));
        }
        calls.push_back(now);
        if world.faults.patients_down && !what.contains("/interactions") {
            return Err(hint_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable",
            ));
        }
        let what_is_interaction = what.contains("/interactions");
        let faulty = what.contains("/interactions/")
            && world
                .faults
                .only_practice
                .as_ref()
                .is_none_or(|p| *p == practice_id);
        world.requests.push(what);
        if !faulty {
            let hang = world
                .faults
                .patients_hang_for
                .filter(|_| !what_is_interaction);
            (practice_id, hang, AfterWrite::default())
        } else {
            let by_chance = |ratio: f64| ratio > 0.0 && rand::random::<f64>() < ratio;
            if world.faults.fail_next > 0 || by_chance(world.faults.fail_ratio) {
                world.faults.fail_next = world.faults.fail_next.saturating_sub(1);
                return Err(hint_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error",
                ));
            }
            let after = if write {
                AfterWrite {
                    hang: world.faults.hang_after_write_for,
                    lose: by_chance(world.faults.lose_answer_ratio),
                }
            } else {
                AfterWrite::default()
            };
            (practice_id, world.faults.hang_for, after)
        }
    };
    if let Some(hang) = hang {
        tokio::time::sleep(hang).await;
    }
    Ok((practice_id, after_write))
}

/// `limit` (1..=100, default 25) and `offset` (default 0), refusing anything else malformed.
fn paging(query: &HashMap<String, String>) -> Result<(usize, usize), Response> {
    let limit = match query.get("limit") {
        None => 25,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err(hint_error(
                    StatusCode::BAD_REQUEST,
                    "limit must be an integer from 1 to 100",
                ));
            }
        },
    };
    let offset = match query.get("offset") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| {
            hint_error(
                StatusCode::BAD_REQUEST,
                "offset must be a non-negative integer",
            )
        })?,
    };
    Ok((limit, offset))
}

fn refuse_unknown_params(
    query: &HashMap<String, String>,
    allowed: &[&str],
) -> Result<(), Response> {
    match query.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(hint_error(
            StatusCode::BAD_REQUEST,
            &format!("Unknown parameter {k}"),
        )),
        None => Ok(()),
    }
}

fn page_response(all: Vec<Value>, limit: usize, offset: usize) -> Response {
    let total = all.len();
    let page: Vec<Value> = all.into_iter().skip(offset).take(limit).collect();
    counted_page(page, total)
}

/// One page of a list with Hint's count headers.
fn counted_page(page: Vec<Value>, total: usize) -> Response {
    let count = page.len();
    (
        [
            ("x-count", count.to_string()),
            ("x-total-count", total.to_string()),
        ],
        Json(Value::Array(page)),
    )
        .into_response()
}

async fn list_patients(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Response> {
    let (practice_id, _) = provider_gate(
        &sandbox,
        &headers,
        "GET /api/provider/patients".into(),
        false,
    )
    .await?;
    refuse_unknown_params(
        &query,
        &[
            "limit",
            "offset",
            "first_name",
            "last_name",
            "email",
            "dob",
            "updated_at[gt]",
        ],
    )?;
    let (limit, offset) = paging(&query)?;
    let updated_after = match query.get("updated_at[gt]") {
        None => None,
        Some(v) => Some(OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
            hint_error(
                StatusCode::BAD_REQUEST,
                "updated_at[gt] must be an RFC 3339 time",
            )
        })?),
    };
    let mut world = sandbox.world();
    if let Some(since) = query.get("updated_at[gt]") {
        world.patients_asked_since.push(since.clone());
    }
    let matching: Vec<&Patient> = world
        .patients
        .iter()
        .filter(|p| p.practice_id == practice_id)
        .filter(|p| query.get("first_name").is_none_or(|v| *v == p.first_name))
        .filter(|p| query.get("last_name").is_none_or(|v| *v == p.last_name))
        .filter(|p| query.get("dob").is_none_or(|v| *v == p.dob))
        .filter(|p| {
            query
                .get("email")
                .is_none_or(|v| Some(v) == p.email.as_ref())
        })
        .filter(|p| updated_after.is_none_or(|after| p.updated_at > after))
        .collect();
    let total = matching.len();
    let page: Vec<Value> = matching
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(Patient::to_json)
        .collect();
    Ok(counted_page(page, total))
}

fn find_patient(world: &World, practice_id: &str, patient_id: &str) -> Result<Patient, Response> {
    world
        .patients
        .iter()
        .find(|p| p.id == patient_id && p.practice_id == practice_id)
        .cloned()
        .ok_or_else(|| hint_error(StatusCode::NOT_FOUND, "Patient not found"))
}

async fn get_patient(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let (practice_id, _) = provider_gate(
        &sandbox,
        &headers,
        "GET /api/provider/patients/{id}".into(),
        false,
    )
    .await?;
    let patient = find_patient(&sandbox.world(), &practice_id, &id)?;
    Ok(Json(patient.to_json()).into_response())
}

const STATUSES: [&str; 5] = ["draft", "signed", "addended", "deleted", "failed"];
const INTERACTION_FIELDS: [&str; 7] = [
    "status",
    "title",
    "integration_record_id",
    "integration_web_link",
    "integration_error_message",
    "partner_product_id",
    "type",
];

/// Validates a create or patch body strictly; answers the fields as strings.
fn interaction_body(
    body: &Value,
    practice: &Practice,
    creating: bool,
) -> Result<Map<String, Value>, Response> {
    let bad = |m: &str| hint_error(StatusCode::BAD_REQUEST, m);
    let obj = body
        .as_object()
        .ok_or_else(|| bad("Body must be a JSON object"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !INTERACTION_FIELDS.contains(&k.as_str()))
    {
        return Err(bad(&format!("Unknown attribute {k}")));
    }
    match obj.get("status") {
        Some(Value::String(s)) if STATUSES.contains(&s.as_str()) => {}
        Some(_) => {
            return Err(hint_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "status must be one of draft, signed, addended, deleted, failed",
            ));
        }
        None if creating => return Err(bad("status is required")),
        None => {}
    }
    if let Some(t) = obj.get("type") {
        if t != "partner" {
            return Err(bad("type must be partner"));
        }
    }
    for field in [
        "title",
        "integration_record_id",
        "integration_error_message",
        "partner_product_id",
        "integration_web_link",
    ] {
        if obj
            .get(field)
            .is_some_and(|v| !v.is_string() && !v.is_null())
        {
            return Err(bad(&format!("{field} must be a string")));
        }
    }
    if let Some(link) = obj.get("integration_web_link").and_then(Value::as_str) {
        match Url::parse(link) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(hint_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "integration_web_link must be an absolute http(s) URL",
                ));
            }
        }
    }
    match obj.get("partner_product_id").and_then(Value::as_str) {
        Some(p) if !practice.products.iter().any(|x| x == p) => {
            return Err(bad(
                "partner_product_id is not a product this practice has installed",
            ));
        }
        None if creating && practice.products.len() > 1 => {
            return Err(bad(
                "partner_product_id is required: this practice has several of your products",
            ));
        }
        _ => {}
    }
    // Not documented by Hint: enforced so that our failed interactions always carry the reason.
    if obj.get("status").and_then(Value::as_str) == Some("failed")
        && obj
            .get("integration_error_message")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(hint_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "integration_error_message is required for failed interactions",
        ));
    }
    Ok(obj.clone())
}

fn text(obj: &Map<String, Value>, field: &str) -> Option<String> {
    obj.get(field).and_then(Value::as_str).map(String::from)
}

async fn create_interaction(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    Path(patient_id): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Response, Response> {
    let (practice_id, after_write) = provider_gate(
        &sandbox,
        &headers,
        "POST /api/provider/patients/{id}/interactions/partner".into(),
        true,
    )
    .await?;
    let Some(Json(body)) = body else {
        return Err(hint_error(StatusCode::BAD_REQUEST, "Body must be JSON"));
    };
    let created = {
        let mut world = sandbox.world();
        find_patient(&world, &practice_id, &patient_id)?;
        let practice = world
            .practices
            .iter()
            .find(|p| p.id == practice_id)
            .cloned()
            .expect("token's practice exists");
        let fields = interaction_body(&body, &practice, true)?;
        let interaction = Interaction {
            id: world.next("inter"),
            practice_id,
            patient_id,
            status: text(&fields, "status").expect("validated"),
            title: text(&fields, "title"),
            integration_record_id: text(&fields, "integration_record_id"),
            integration_web_link: text(&fields, "integration_web_link"),
            integration_error_message: text(&fields, "integration_error_message"),
            partner_product_id: text(&fields, "partner_product_id"),
            event_timestamp: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            updates: 0,
        };
        world.interactions.push(interaction.clone());
        interaction
    };
    Ok(after_write
        .answer((StatusCode::CREATED, Json(created.to_json())).into_response())
        .await)
}

async fn list_interactions(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    Path(patient_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Response> {
    let (practice_id, _) = provider_gate(
        &sandbox,
        &headers,
        "GET /api/provider/patients/{id}/interactions/partner".into(),
        false,
    )
    .await?;
    refuse_unknown_params(
        &query,
        &["limit", "offset", "integration_record_id", "status"],
    )?;
    let (limit, offset) = paging(&query)?;
    let world = sandbox.world();
    find_patient(&world, &practice_id, &patient_id)?;
    let all = world
        .interactions
        .iter()
        .filter(|i| i.practice_id == practice_id && i.patient_id == patient_id)
        .filter(|i| {
            query
                .get("integration_record_id")
                .is_none_or(|v| Some(v) == i.integration_record_id.as_ref())
        })
        .filter(|i| query.get("status").is_none_or(|v| *v == i.status))
        .map(Interaction::to_json)
        .collect();
    Ok(page_response(all, limit, offset))
}

async fn get_interaction(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    Path((patient_id, interaction_id)): Path<(String, String)>,
) -> Result<Response, Response> {
    let (practice_id, _) = provider_gate(
        &sandbox,
        &headers,
        "GET /api/provider/patients/{id}/interactions/partner/{id}".into(),
        false,
    )
    .await?;
    let world = sandbox.world();
    world
        .interactions
        .iter()
        .find(|i| {
            i.id == interaction_id && i.patient_id == patient_id && i.practice_id == practice_id
        })
        .map(|i| Json(i.to_json()).into_response())
        .ok_or_else(|| hint_error(StatusCode::NOT_FOUND, "Interaction not found"))
}

async fn patch_interaction(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    Path((patient_id, interaction_id)): Path<(String, String)>,
    body: Option<Json<Value>>,
) -> Result<Response, Response> {
    let (practice_id, after_write) = provider_gate(
        &sandbox,
        &headers,
        "PATCH /api/provider/patients/{id}/interactions/partner/{id}".into(),
        true,
    )
    .await?;
    let Some(Json(body)) = body else {
        return Err(hint_error(StatusCode::BAD_REQUEST, "Body must be JSON"));
    };
    let updated = {
        let mut world = sandbox.world();
        let practice = world
            .practices
            .iter()
            .find(|p| p.id == practice_id)
            .cloned()
            .expect("token's practice exists");
        let fields = interaction_body(&body, &practice, false)?;
        let Some(interaction) = world.interactions.iter_mut().find(|i| {
            i.id == interaction_id && i.patient_id == patient_id && i.practice_id == practice_id
        }) else {
            return Err(hint_error(StatusCode::NOT_FOUND, "Interaction not found"));
        };
        let new_status = text(&fields, "status");
        if interaction.status == "signed"
            && new_status
                .as_deref()
                .is_some_and(|s| s != "signed" && s != "addended")
        {
            return Err(hint_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "A signed interaction can only be addended",
            ));
        }
        if let Some(s) = new_status {
            interaction.status = s;
        }
        for (field, slot) in [
            ("title", &mut interaction.title),
            (
                "integration_record_id",
                &mut interaction.integration_record_id,
            ),
            (
                "integration_web_link",
                &mut interaction.integration_web_link,
            ),
            (
                "integration_error_message",
                &mut interaction.integration_error_message,
            ),
            ("partner_product_id", &mut interaction.partner_product_id),
        ] {
            if fields.contains_key(field) {
                *slot = text(&fields, field);
            }
        }
        interaction.updates += 1;
        interaction.clone()
    };
    Ok(after_write
        .answer(Json(updated.to_json()).into_response())
        .await)
}

// ---------------------------------------------------------------- Instant On

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    code: Option<String>,
    activate: Option<bool>,
}

async fn oauth_tokens(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    body: Option<Json<TokenRequest>>,
) -> Response {
    sandbox.world().code_exchanges += 1;
    if let Err(refused) = partner_key(&sandbox, &headers) {
        return refused;
    }
    let Some(Json(request)) = body else {
        return hint_error(StatusCode::BAD_REQUEST, "Body must be JSON");
    };
    if request.grant_type.as_deref() != Some("authorization_code") {
        return hint_error(
            StatusCode::BAD_REQUEST,
            "grant_type must be authorization_code",
        );
    }
    if request.activate.is_none() {
        return hint_error(StatusCode::BAD_REQUEST, "activate is required");
    }
    let activate = request.activate != Some(false);
    let redeemed = request
        .code
        .and_then(|code| sandbox.world().redeem(&code, activate));
    let Some((practice, token)) = redeemed else {
        return hint_error(StatusCode::BAD_REQUEST, "Invalid or used code");
    };
    Json(json!({
        "id": practice.integration_id,
        "access_token": token,
        "token_type": "bearer",
        "expires_in": null,
        "practice": {"id": practice.id, "name": practice.name},
    }))
    .into_response()
}

/// `POST /api/partner/installations/connect {code, activate}` (newer stacks): exactly those two
/// fields, the partner key, a one-use code. Answers the integration with the practice's token
/// in `api_keys[0].token`; `activate: false` leaves it pending (its token refused) until
/// [`SandboxHint::activate`].
async fn connect_installation(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    {
        let mut world = sandbox.world();
        if world.legacy_install_only {
            return hint_error(StatusCode::NOT_FOUND, "Not found");
        }
        world.code_exchanges += 1;
        world.connect_calls += 1;
    }
    if let Err(refused) = partner_key(&sandbox, &headers) {
        return refused;
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ConnectRequest {
        code: String,
        activate: bool,
    }
    let request: ConnectRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return hint_error(
                StatusCode::BAD_REQUEST,
                &format!("Body must be {{code, activate}}: {e}"),
            );
        }
    };
    let mut world = sandbox.world();
    let Some((practice, token)) = world.redeem(&request.code, request.activate) else {
        return hint_error(StatusCode::BAD_REQUEST, "Invalid or used code");
    };
    let key_id = world.next("key");
    Json(json!({
        "id": practice.integration_id,
        "status": if request.activate { "active" } else { "pending" },
        "practice": {"id": practice.id, "name": practice.name},
        "api_keys": [{"id": key_id, "token": token, "created_at": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()}],
    }))
    .into_response()
}

// ---------------------------------------------------------------- Partner API

/// Refuses a `/api/partner/*` call without the partner key.
fn partner_key(sandbox: &SandboxHint, headers: &HeaderMap) -> Result<(), Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer == Some(sandbox.config.partner_api_key.as_str()) {
        Ok(())
    } else {
        Err(hint_error(
            StatusCode::UNAUTHORIZED,
            "The partner API needs the partner API key",
        ))
    }
}

/// `PATCH /api/partner/products/{id}/app`: `partner_roles` (a non-empty list of
/// `{name, description}` with distinct names) and the two default roles, which must be among
/// them. Only our own product.
async fn configure_app(
    State(sandbox): State<SandboxHint>,
    Path(product_id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = partner_key(&sandbox, &headers) {
        return refused;
    }
    if product_id != sandbox.config.product_id {
        return hint_error(StatusCode::NOT_FOUND, "No such product");
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Role {
        name: String,
        description: String,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AppConfig {
        partner_roles: Vec<Role>,
        default_admin_role: String,
        default_non_admin_role: String,
    }
    let config: AppConfig = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return hint_error(StatusCode::BAD_REQUEST, &format!("Invalid app config: {e}")),
    };
    let mut names: Vec<&str> = config
        .partner_roles
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    names.sort();
    names.dedup();
    if config.partner_roles.is_empty()
        || names.len() != config.partner_roles.len()
        || config
            .partner_roles
            .iter()
            .any(|r| r.name.trim().is_empty() || r.description.trim().is_empty())
    {
        return hint_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "partner_roles must be distinct named roles with descriptions",
        );
    }
    for default in [&config.default_admin_role, &config.default_non_admin_role] {
        if !names.contains(&default.as_str()) {
            return hint_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "default roles must be among partner_roles",
            );
        }
    }
    let stored: Value = serde_json::from_slice(&body).unwrap_or_default();
    sandbox.world().app_config = Some(stored.clone());
    Json(json!({"product_id": product_id, "app": stored})).into_response()
}

async fn list_webhook_endpoints(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = partner_key(&sandbox, &headers) {
        return refused;
    }
    let world = sandbox.world();
    let list: Vec<Value> = world
        .webhook_endpoints
        .iter()
        .enumerate()
        .map(|(n, url)| json!({"id": format!("whe-{n:04}"), "webhook_url": url}))
        .collect();
    Json(list).into_response()
}

/// `POST /api/partner/webhook_endpoints {webhook_url}`: an absolute http(s) URL, once.
async fn add_webhook_endpoint(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = partner_key(&sandbox, &headers) {
        return refused;
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewEndpoint {
        webhook_url: String,
    }
    let request: NewEndpoint = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return hint_error(
                StatusCode::BAD_REQUEST,
                &format!("Body must be {{webhook_url}}: {e}"),
            );
        }
    };
    if !Url::parse(&request.webhook_url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
        return hint_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "webhook_url must be an absolute URL",
        );
    }
    let mut world = sandbox.world();
    if world.webhook_endpoints.contains(&request.webhook_url) {
        return hint_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "webhook_url is already registered",
        );
    }
    world.webhook_endpoints.push(request.webhook_url.clone());
    let id = format!("whe-{:04}", world.webhook_endpoints.len() - 1);
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "webhook_url": request.webhook_url})),
    )
        .into_response()
}

// ---------------------------------------------------------------- Pages

#[derive(Deserialize, Default)]
struct AsUser {
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

async fn home(State(sandbox): State<SandboxHint>, Query(q): Query<AsUser>) -> Response {
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
    frame_src: Option<String>,
    error: Option<String>,
    /// What the page's SDK host tells the frame (`HintSDK.init`): the user, the interaction,
    /// and the practice's patients for the current-patient switcher.
    user: User,
    interaction_id: Option<String>,
    patients: Vec<Patient>,
}

/// Hint's JS SDK as the sandbox serves it (`$HINT_API_URL/hint-sdk.js`); see hint_sdk.js.
async fn sdk_js() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/javascript; charset=utf-8",
        )],
        include_str!("hint_sdk.js"),
    )
        .into_response()
}

async fn chart(
    State(sandbox): State<SandboxHint>,
    Path(id): Path<String>,
    Query(q): Query<AsUser>,
) -> Response {
    open_frame(&sandbox, "clinical_chart", q.who.as_deref(), Some(id), None).await
}

async fn embed(
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
    let (user, patient, interactions, app_url, patients) = {
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
        let patients = world
            .patients
            .iter()
            .filter(|p| p.practice_id == practice.id)
            .cloned()
            .collect();
        (user, patient, interactions, world.app_url.clone(), patients)
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
struct InstallForm {
    #[serde(rename = "as")]
    who: Option<String>,
}

async fn install_button(
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
