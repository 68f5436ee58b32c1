//! Tiep, the AI scribe. Launch by token + URL; the report comes back by a signed webhook to
//! `POST /webhooks/tiep/{practice_id}`, with polling of the session as a backstop.

pub mod client;
pub mod connection;
pub mod launch;
pub mod page;
pub mod poll;
pub mod webhook;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use axum::{Router, routing::post};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::{Pace, connection as connections, secs};
use crate::{
    config::{ConfigError, parse_url},
    error::AppError,
    hint::{Frame, Patient, PracticeSession},
    jobs::{JobError, JobOutcome},
    tenancy::PracticeId,
    upstream::Upstream,
    visits::AppState,
    visits::{LaunchStyle, PartnerId, PartnerState, PartnerTool, Visit, chart_note::ChartNote},
};

pub use self::connection::TiepConnection;
pub use client::TiepClient;

/// Tiep's id in rows and URLs.
pub const ID: PartnerId = PartnerId::new("tiep");

/// Tiep's endpoints, from the environment.
#[derive(clap::Args, Debug, Clone)]
pub struct TiepArgs {
    /// Tiep API base URL.
    #[arg(long, env = "TIEP_API_URL", default_value = "https://api.tiep.ai")]
    pub tiep_api_url: String,
    /// Tiep app base URL (where the clinician is sent).
    #[arg(long, env = "TIEP_APP_URL", default_value = "https://app.tiep.ai")]
    pub tiep_app_url: String,
}

#[derive(Debug, Clone)]
pub struct TiepSettings {
    pub api_url: Url,
    pub app_url: Url,
    /// How long after launch a visit without a webhook is first polled.
    pub poll_after: Duration,
    /// Interval between later polls.
    pub poll_every: Duration,
    /// After this long without a saved report the visit fails.
    pub give_up_after: Duration,
}

impl TiepSettings {
    pub fn from_args(args: TiepArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            api_url: parse_url(&args.tiep_api_url, "TIEP_API_URL")?,
            app_url: parse_url(&args.tiep_app_url, "TIEP_APP_URL")?,
            poll_after: Duration::from_secs(120),
            poll_every: Duration::from_secs(60),
            give_up_after: Duration::from_secs(24 * 3600),
        })
    }

    /// Polls at `pace` (the webhook is the usual way in; the poll is its backstop).
    pub fn paced(&mut self, pace: Pace) {
        match pace {
            Pace::Live => {}
            Pace::Demo => (self.poll_after, self.poll_every) = (secs(30), secs(15)),
            Pace::WhenAsked => (self.poll_after, self.poll_every) = (secs(3600), secs(3600)),
        }
    }
}

/// Tiep as a [`PartnerTool`]: one-click launch, webhook result, poll as backstop.
pub struct Tiep {
    settings: TiepSettings,
    client: TiepClient,
}

impl Tiep {
    pub fn new(settings: TiepSettings, upstream: Upstream) -> Self {
        let client = TiepClient::new(upstream, settings.api_url.clone(), settings.app_url.clone());
        Self { settings, client }
    }
}

#[async_trait]
impl PartnerTool for Tiep {
    fn id(&self) -> PartnerId {
        ID
    }

    fn name(&self) -> &'static str {
        "Tiep scribe"
    }

    fn launch_style(&self) -> LaunchStyle {
        LaunchStyle::Direct {
            label: "Start Tiep scribe",
        }
    }

    fn launch_origin(&self) -> Option<String> {
        Some(self.settings.app_url.origin().ascii_serialization())
    }

    fn routes(self: Arc<Self>, app: AppState) -> Router<AppState> {
        Router::new()
            .route("/webhooks/tiep/{practice_id}", post(webhook::receive))
            .with_state(PartnerState::new(app.clone(), self.clone()))
            .merge(connections::routes::<TiepConnection>(self, app))
    }

    async fn settings_section(
        &self,
        app: &AppState,
        session: &PracticeSession,
    ) -> Result<String, AppError> {
        connections::section::<TiepConnection>(app, session).await
    }

    async fn launch(
        &self,
        app: &AppState,
        session: &PracticeSession,
        patient: &Patient,
    ) -> Result<Url, AppError> {
        launch::launch(self, app, session, patient).await
    }

    async fn poll(
        &self,
        app: &AppState,
        practice_id: &PracticeId,
        visit: &Visit,
    ) -> Result<JobOutcome, JobError> {
        poll::poll(self, app, practice_id, visit).await
    }

    fn render_visit(&self, visit: &Visit, _frame: &Frame) -> Result<String, AppError> {
        page::render(visit)
    }

    fn chart_note(&self, visit: &Visit) -> Result<Option<ChartNote>, AppError> {
        page::chart_note(visit)
    }
}

/// What a Tiep visit keeps of its launch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TiepLaunch {
    /// The form Tiep fills, as it was at the launch (the report is shown in its order).
    pub form: Value,
    /// Tiep's session, once the launch token was issued.
    #[serde(default)]
    pub tiep_session_id: Option<String>,
}

/// A Tiep report as the visit keeps it: the form's answers (SIMPLE) or a FHIR bundle (HL7_V2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TiepResult {
    Simple {
        answers: serde_json::Map<String, Value>,
    },
    Fhir {
        bundle: Value,
    },
}

/// The form a practice starts with.
pub fn default_form() -> Value {
    serde_json::json!({
        "title": "Visit note",
        "type": "object",
        "properties": {
            "reason": {"title": "Reason for visit", "type": "string", "description": "Why the patient came today"},
            "pain-level": {"title": "Pain level", "type": "integer", "description": "Pain level from 0 to 10", "minimum": 0, "maximum": 10},
            "assessment": {"title": "Assessment", "type": "string"},
            "plan": {"title": "Plan", "type": "string"}
        }
    })
}

const FIELD_TYPES: [&str; 4] = ["string", "integer", "number", "boolean"];

/// Checks a form is a JSON Schema object Tiep can fill: `type: object` and named, typed
/// `properties` (string, integer, number, boolean), with sane bounds.
pub fn validate_form(form: &Value) -> Result<(), String> {
    let obj = form.as_object().ok_or("The form must be a JSON object.")?;
    if obj.get("type").and_then(Value::as_str) != Some("object") {
        return Err(r#"The form's "type" must be "object"."#.into());
    }
    if let Some(title) = obj.get("title") {
        if !title.is_string() {
            return Err(r#"The form's "title" must be text."#.into());
        }
    }
    let properties = obj
        .get("properties")
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty())
        .ok_or(r#"The form needs a non-empty "properties" object."#)?;
    if properties.len() > 50 {
        return Err("The form may have at most 50 fields.".into());
    }
    for (key, field) in properties {
        if key.trim().is_empty() || key.len() > 64 {
            return Err("Every field needs a name of 1 to 64 characters.".into());
        }
        let field = field
            .as_object()
            .ok_or_else(|| format!(r#"Field "{key}" must be an object."#))?;
        let kind = field
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !FIELD_TYPES.contains(&kind) {
            return Err(format!(
                r#"Field "{key}" has type {kind:?}; use one of string, integer, number, boolean."#
            ));
        }
        for text in ["title", "description"] {
            if field.get(text).is_some_and(|t| !t.is_string()) {
                return Err(format!(r#"Field "{key}": "{text}" must be text."#));
            }
        }
        let bound = |name: &str| -> Result<Option<f64>, String> {
            match field.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| format!(r#"Field "{key}": "{name}" must be a number."#)),
            }
        };
        let (min, max) = (bound("minimum")?, bound("maximum")?);
        if (min.is_some() || max.is_some()) && !matches!(kind, "integer" | "number") {
            return Err(format!(
                r#"Field "{key}": minimum and maximum apply only to numbers."#
            ));
        }
        if let (Some(min), Some(max)) = (min, max) {
            if min > max {
                return Err(format!(r#"Field "{key}": minimum is above maximum."#));
            }
        }
        if let Some(options) = field.get("enum") {
            let ok = options
                .as_array()
                .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string));
            if !ok || kind != "string" {
                return Err(format!(
                    r#"Field "{key}": "enum" must be a non-empty list of texts on a string field."#
                ));
            }
        }
    }
    if form.to_string().len() > 32 * 1024 {
        return Err("The form is larger than 32 KiB.".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_form_is_valid() {
        assert_eq!(validate_form(&default_form()), Ok(()));
    }

    #[test]
    fn refuses_forms_tiep_cannot_fill() {
        let cases = [
            serde_json::json!([]),
            serde_json::json!({"type": "array", "properties": {"a": {"type": "string"}}}),
            serde_json::json!({"type": "object", "properties": {}}),
            serde_json::json!({"type": "object", "properties": {"a": {"type": "date"}}}),
            serde_json::json!({"type": "object", "properties": {"a": {"type": "integer", "minimum": 5, "maximum": 1}}}),
            serde_json::json!({"type": "object", "properties": {"a": {"type": "string", "minimum": 1}}}),
            serde_json::json!({"type": "object", "properties": {"a": "string"}}),
        ];
        for form in cases {
            assert!(validate_form(&form).is_err(), "{form} should be refused");
        }
    }
}
