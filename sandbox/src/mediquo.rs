//! Sandbox MediQuo: the sending side of MediQuo's webhooks. An integration is a webhook URL,
//! the shared `x-webhook-signature` value and the patients it knows (codes = Hint patient ids).
//! Its page sends a finished consultation or a SOAP report for any of them at a click, in
//! exactly the documented shape; tests call the same senders directly. Like MediQuo, it does
//! not retry: it records what the receiver answered.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use askama::Template;
use axum::{
    Form, Router,
    extract::{Path, State},
    http::StatusCode,
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
pub struct Integration {
    pub id: String,
    pub name: String,
    pub webhook_url: String,
    pub signature: String,
    /// (code, name) of the patients MediQuo knows for this integrator.
    pub patients: Vec<(String, String)>,
}

/// The signature value of every integration `connect` makes.
pub const SIGNATURE: &str = "mediquo-sandbox-signature-2026";

impl crate::FakePartner for SandboxMediquo {
    fn id(&self) -> &'static str {
        "mediquo"
    }

    fn name(&self) -> &'static str {
        "MediQuo"
    }

    fn base_url(&self) -> &Url {
        &self.base_url
    }

    /// An integration posting to the practice's webhook, knowing its patients; the signature
    /// value is what the admin enters.
    fn connect(&self, practice: &crate::Practice<'_>) -> Vec<(&'static str, String)> {
        let hook = practice.webhook_url("mediquo").to_string();
        self.add_integration(practice.name, &hook, SIGNATURE, practice.patients.to_vec());
        vec![("signature", SIGNATURE.into())]
    }

    fn console(&self) -> Option<(&'static str, Url)> {
        Some((
            "Sandbox MediQuo: finish a consultation for any patient",
            self.base_url.clone(),
        ))
    }
}

/// One webhook sent: the event type and what the receiver answered (None: unreachable).
#[derive(Clone, Debug)]
pub struct Delivery {
    pub integration_id: String,
    pub event: String,
    pub status: Option<u16>,
}

#[derive(Default)]
pub struct MediquoWorld {
    pub integrations: Vec<Integration>,
    pub deliveries: Vec<Delivery>,
}

#[derive(Clone)]
pub struct SandboxMediquo {
    world: Arc<Mutex<MediquoWorld>>,
    base_url: Url,
    http: reqwest::Client,
}

impl SandboxMediquo {
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
            .route("/", get(console))
            .route("/integrations/{id}/send", post(send_from_console))
            .with_state(sandbox.clone());
        serve(listener, app);
        Ok(sandbox)
    }

    pub fn base_url(&self) -> &Url {
        &self.base_url
    }

    pub fn world(&self) -> MutexGuard<'_, MediquoWorld> {
        self.world.lock().expect("sandbox mediquo lock")
    }

    /// Registers an integrator's webhook; answers its id.
    pub fn add_integration(
        &self,
        name: &str,
        webhook_url: &str,
        signature: &str,
        patients: Vec<(String, String)>,
    ) -> String {
        let id = format!("int-{}", &random_token()[..8]);
        self.world().integrations.push(Integration {
            id: id.clone(),
            name: name.into(),
            webhook_url: webhook_url.into(),
            signature: signature.into(),
            patients,
        });
        id
    }

    /// The integration posting to `practice_id`'s webhook, if any.
    pub fn integration_of(&self, practice_id: &str) -> Option<String> {
        let suffix = format!("/{practice_id}");
        self.world()
            .integrations
            .iter()
            .find(|i| i.webhook_url.ends_with(&suffix))
            .map(|i| i.id.clone())
    }

    fn integration(&self, id: &str) -> Option<Integration> {
        self.world()
            .integrations
            .iter()
            .find(|i| i.id == id)
            .cloned()
    }

    /// Sends `patient_consultation_finished` for `patient_code`; answers the receiver's status.
    pub async fn send_consultation_finished(
        &self,
        integration_id: &str,
        patient_code: &str,
    ) -> Option<u16> {
        let body = json!({
            "type": "patient_consultation_finished",
            "occurred_on": OffsetDateTime::now_utc().unix_timestamp(),
            "payload": consultation_finished(patient_code),
        });
        self.send(integration_id, &body).await
    }

    /// Sends `patient_report_sent` for `patient_code`.
    pub async fn send_report(&self, integration_id: &str, patient_code: &str) -> Option<u16> {
        let body = json!({
            "type": "patient_report_sent",
            "occurred_on": OffsetDateTime::now_utc().unix_timestamp(),
            "payload": {"type": "soap", "content": soap("Follow-up report"), "patient": {"code": patient_code}},
        });
        self.send(integration_id, &body).await
    }

    /// Posts `body` to the integration's webhook with its signature value, as MediQuo does.
    pub async fn send(&self, integration_id: &str, body: &Value) -> Option<u16> {
        let integration = self.integration(integration_id)?;
        let status = self
            .http
            .post(&integration.webhook_url)
            .header("content-type", "application/json")
            .header("x-webhook-signature", &integration.signature)
            .body(body.to_string())
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16());
        self.world().deliveries.push(Delivery {
            integration_id: integration_id.into(),
            event: body["type"].as_str().unwrap_or_default().into(),
            status,
        });
        status
    }
}

fn soap(topic: &str) -> Value {
    json!({
        "subjective": format!("{topic}: sore throat and mild fever for three days, no cough."),
        "objective": "Temperature 38.1 °C, pharynx red with tonsillar exudate, no lymphadenopathy.",
        "assessment": "Acute streptococcal pharyngitis likely (Centor 3).",
        "plan": "Amoxicillin 500 mg three times daily for 10 days; fluids; review if no better in 72 h.",
    })
}

fn local_time(t: OffsetDateTime) -> String {
    let text = t.format(&Rfc3339).unwrap_or_default();
    text.chars().take(19).collect()
}

/// A finished consultation in the documented shape.
fn consultation_finished(patient_code: &str) -> Value {
    let now = OffsetDateTime::now_utc();
    let id = |prefix: &str| format!("{prefix}-{}", &random_token()[..10]);
    json!({
        "consultation": {
            "id": id("cons"),
            "type": "appointment",
            "start_date": local_time(now - time::Duration::minutes(20)),
            "end_date": local_time(now),
            "speciality": {"id": 1, "name": "Medicina General"},
        },
        "reports": [{"id": id("report"), "type": "soap", "content": soap("Video consultation")}],
        "patient": {
            "code": patient_code,
            "allergies": [{"id": id("allergy"), "name": "Penicillin", "description": "Rash in 2019"}],
            "diseases": [{"id": id("disease"), "name": "Asthma", "description": "Mild, intermittent"}],
            "medications": [{"id": id("medication"), "name": "Salbutamol", "description": "Inhaler 100 µg", "posology": "2 puffs as needed"}],
        },
        "professional": {"id": id("pro"), "name": "Dra. Laura Martín", "avatar": "https://image.url/"},
        "prescriptions": [{"id": id("rx"), "active_substances": ["amoxicillin"]}],
    })
}

#[derive(Template)]
#[template(path = "mediquo_console.html")]
struct Console {
    integrations: Vec<Integration>,
    deliveries: Vec<Delivery>,
    message: Option<String>,
}

fn render_console(sandbox: &SandboxMediquo, message: Option<String>) -> Response {
    let world = sandbox.world();
    let page = Console {
        integrations: world.integrations.clone(),
        deliveries: world.deliveries.iter().rev().take(10).cloned().collect(),
        message,
    };
    drop(world);
    Html(page.render().unwrap_or_else(|e| e.to_string())).into_response()
}

async fn console(State(sandbox): State<SandboxMediquo>) -> Response {
    render_console(&sandbox, None)
}

#[derive(Deserialize)]
struct SendForm {
    patient_code: String,
    event: String,
}

async fn send_from_console(
    State(sandbox): State<SandboxMediquo>,
    Path(id): Path<String>,
    Form(form): Form<SendForm>,
) -> Response {
    if sandbox.integration(&id).is_none() {
        return (StatusCode::NOT_FOUND, "Unknown integration").into_response();
    }
    let status = match form.event.as_str() {
        "patient_consultation_finished" => {
            sandbox
                .send_consultation_finished(&id, &form.patient_code)
                .await
        }
        "patient_report_sent" => sandbox.send_report(&id, &form.patient_code).await,
        _ => return (StatusCode::BAD_REQUEST, "Unknown event").into_response(),
    };
    let message = match status {
        Some(s) => format!("Sent {}: the integrator answered HTTP {s}.", form.event),
        None => format!("Sent {}: the integrator could not be reached.", form.event),
    };
    render_console(&sandbox, Some(message))
}
