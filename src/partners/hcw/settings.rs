//! The HCW@Home section of the settings surface (admins): server address, service account,
//! SSO secret, and routing. Secrets are write-only: saved, never shown back.

use askama::Template;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{ID, looks_like_email, parse_base_url};
use crate::{
    error::AppError,
    partners::connection::{Connection, SectionView, keep_blank},
    visits::{AppState, PartnerId},
};

/// Shortest SSO secret accepted (it signs doctor sign-ins).
pub const MIN_SSO_SECRET_LEN: usize = 16;

/// Where HCW routes a new invite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Routing {
    /// To the launching clinician: their Hint email as `doctorEmail`.
    DoctorEmail,
    /// To an HCW queue, by name or id.
    Queue { queue: String },
}

/// A practice's HCW@Home server, as the admin set it up.
pub struct HcwConnection {
    pub base_url: Url,
    pub service_email: String,
    pub service_password: SecretString,
    /// `SHARED_EXTERNAL_AUTH_SECRET`: signs the doctors' SSO tokens. Server-side only.
    pub sso_secret: SecretString,
    pub routing: Routing,
}

#[derive(Serialize, Deserialize)]
pub struct StoredSettings {
    base_url: Url,
    service_email: String,
    routing: Routing,
}

#[derive(Serialize, Deserialize)]
pub struct StoredSecrets {
    service_password: String,
    sso_secret: String,
}

/// What an admin enters; blank secrets keep the stored ones.
#[derive(Deserialize)]
pub struct HcwSettingsForm {
    #[serde(default)]
    base_url: String,
    #[serde(default)]
    service_email: String,
    #[serde(default)]
    service_password: String,
    #[serde(default)]
    sso_secret: String,
    #[serde(default)]
    routing: String,
    #[serde(default)]
    queue: String,
}

#[derive(Template)]
#[template(path = "partners/hcw_settings.html")]
struct HcwSettingsSection {
    configured: bool,
    base_url: String,
    service_email: String,
    routing: &'static str,
    queue: String,
    min_sso: usize,
    saved: bool,
    error: Option<String>,
}

fn plain_secret(value: &str) -> bool {
    value.len() <= 512 && !value.chars().any(char::is_control)
}

impl Connection for HcwConnection {
    const PARTNER: PartnerId = ID;
    type Settings = StoredSettings;
    type Secrets = StoredSecrets;
    type Form = HcwSettingsForm;

    fn from_stored(settings: StoredSettings, secrets: StoredSecrets) -> Self {
        Self {
            base_url: settings.base_url,
            service_email: settings.service_email,
            service_password: SecretString::from(secrets.service_password),
            sso_secret: SecretString::from(secrets.sso_secret),
            routing: settings.routing,
        }
    }

    fn to_stored(&self) -> (StoredSettings, StoredSecrets) {
        (
            StoredSettings {
                base_url: self.base_url.clone(),
                service_email: self.service_email.clone(),
                routing: self.routing.clone(),
            },
            StoredSecrets {
                service_password: self.service_password.expose_secret().to_string(),
                sso_secret: self.sso_secret.expose_secret().to_string(),
            },
        )
    }

    fn from_form(input: &HcwSettingsForm, stored: Option<&Self>) -> Result<Self, String> {
        let base_url = parse_base_url(&input.base_url)?;
        let email = input.service_email.trim();
        if !looks_like_email(email) {
            return Err(
                "Enter the service account's email (an HCW@Home user with the scheduler role)."
                    .into(),
            );
        }
        let password = keep_blank(
            &input.service_password,
            stored.map(|c| c.service_password.expose_secret()),
        );
        let sso_secret = keep_blank(
            input.sso_secret.trim(),
            stored.map(|c| c.sso_secret.expose_secret()),
        );
        if password.is_empty() || !plain_secret(&password) {
            return Err("Enter the service account's password.".into());
        }
        if sso_secret.chars().count() < MIN_SSO_SECRET_LEN || !plain_secret(&sso_secret) {
            return Err(format!(
                "The SSO secret must be at least {MIN_SSO_SECRET_LEN} characters: the SHARED_EXTERNAL_AUTH_SECRET of your HCW@Home server."
            ));
        }
        let routing = match input.routing.as_str() {
            "doctor_email" => Routing::DoctorEmail,
            "queue" => {
                let queue = input.queue.trim();
                if queue.is_empty() || queue.len() > 200 || queue.chars().any(char::is_control) {
                    return Err("Enter the HCW@Home queue's name or id.".into());
                }
                Routing::Queue {
                    queue: queue.to_string(),
                }
            }
            _ => {
                return Err(
                    "Choose how HCW@Home routes invitations: to the clinician or to a queue."
                        .into(),
                );
            }
        };
        Ok(Self {
            base_url,
            service_email: email.to_string(),
            service_password: SecretString::from(password),
            sso_secret: SecretString::from(sso_secret),
            routing,
        })
    }

    /// The server's address must be one Chartbridge may call (public, or allowed by the
    /// operator): looked up now, and again on every call.
    async fn check(&self, app: &AppState) -> Result<(), String> {
        app.upstream
            .guarded()
            .check(&self.base_url)
            .await
            .map_err(|refused| {
                format!("Chartbridge cannot use this HCW@Home address: {refused}. Enter your HCW@Home server's public https address.")
            })
    }

    fn render_section(view: SectionView<'_, Self>) -> Result<String, AppError> {
        let mut section = HcwSettingsSection {
            configured: view.configured(),
            base_url: String::new(),
            service_email: String::new(),
            routing: "doctor_email",
            queue: String::new(),
            min_sso: MIN_SSO_SECRET_LEN,
            saved: view.saved(),
            error: view.error(),
        };
        if let Some(c) = view.stored {
            section.base_url = c.base_url.to_string();
            section.service_email = c.service_email.clone();
            if let Routing::Queue { queue } = &c.routing {
                section.routing = "queue";
                section.queue = queue.clone();
            }
        }
        if let Some(form) = view.entered {
            section.base_url = form.base_url.clone();
            section.service_email = form.service_email.clone();
            section.routing = if form.routing == "queue" {
                "queue"
            } else {
                "doctor_email"
            };
            section.queue = form.queue.clone();
        }
        Ok(section.render()?)
    }
}
