//! The HCW@Home section of the settings surface (admins): server address, service account,
//! SSO secret, and routing. Secrets are write-only: saved, never shown back.

use askama::Template;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use super::{ID, looks_like_email, parse_base_url};
use crate::{
    error::AppError,
    partners::connection::{Connection, Panel, Refusal, SectionView, Tested, keep_blank},
    tenancy::PracticeId,
    upstream::address::AddressRefused,
    visits::{AppState, PartnerError, PartnerId},
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
    panel: Panel,
}

fn plain_secret(value: &str) -> bool {
    value.len() <= 512 && !value.chars().any(char::is_control)
}

impl Connection for HcwConnection {
    const PARTNER: PartnerId = ID;
    type Settings = StoredSettings;
    type Secrets = StoredSecrets;
    type Form = HcwSettingsForm;
    type Partner = super::HcwAtHome;

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

    fn from_form(input: &HcwSettingsForm, stored: Option<&Self>) -> Result<Self, Refusal> {
        let base_url =
            parse_base_url(&input.base_url).map_err(|why| Refusal::at("base_url", why))?;
        let email = input.service_email.trim();
        if !looks_like_email(email) {
            return Err(Refusal::at(
                "service_email",
                "Enter the service account's email (an HCW@Home user with the scheduler role).",
            ));
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
            return Err(Refusal::at(
                "service_password",
                "Enter the service account's password.",
            ));
        }
        if sso_secret.chars().count() < MIN_SSO_SECRET_LEN || !plain_secret(&sso_secret) {
            return Err(Refusal::at(
                "sso_secret",
                format!(
                    "The SSO secret must be at least {MIN_SSO_SECRET_LEN} characters: the SHARED_EXTERNAL_AUTH_SECRET of your HCW@Home server."
                ),
            ));
        }
        let routing = match input.routing.as_str() {
            "doctor_email" => Routing::DoctorEmail,
            "queue" => {
                let queue = input.queue.trim();
                if queue.is_empty() || queue.len() > 200 || queue.chars().any(char::is_control) {
                    return Err(Refusal::at(
                        "queue",
                        "Enter the HCW@Home queue's name or id.",
                    ));
                }
                Routing::Queue {
                    queue: queue.to_string(),
                }
            }
            _ => {
                return Err(Refusal::at(
                    "routing",
                    "Choose how HCW@Home routes invitations: to the clinician or to a queue.",
                ));
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
    async fn check(&self, app: &AppState) -> Result<(), Refusal> {
        app.upstream
            .guarded()
            .check(&self.base_url)
            .await
            .map_err(|refused| {
                // One wording whether the name is unknown or names a private machine: the
                // difference would let whoever types names map the network we run in.
                let why = match refused {
                    AddressRefused::NotHttps => refused.to_string(),
                    _ => "it is not a public address Chartbridge can reach".to_string(),
                };
                Refusal::at("base_url", format!("Chartbridge cannot use this HCW@Home address: {why}. Enter your HCW@Home server's public https address."))
            })
    }

    /// The service account signs in (the token serves the calls that follow). A refused sign-in is named as
    /// such; an HCW@Home that cannot be reached reads the same whatever the cause.
    async fn test(
        &self,
        partner: &super::HcwAtHome,
        _: &AppState,
        practice_id: &PracticeId,
    ) -> Tested {
        match partner.client.check_login(practice_id, self).await {
            Ok(()) => Tested::Worked,
            Err(super::client::HcwError::BadCredentials(_)) => {
                Tested::Failed("HCW@Home refused the service account's email or password".into())
            }
            Err(e) => Tested::of(Err(e)),
        }
    }

    fn render_section(view: SectionView<'_, Self>) -> Result<String, AppError> {
        let mut section = HcwSettingsSection {
            configured: view.configured(),
            base_url: String::new(),
            service_email: String::new(),
            routing: "doctor_email",
            queue: String::new(),
            min_sso: MIN_SSO_SECRET_LEN,
            panel: view.panel(),
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

/// The practice's HCW@Home server, or words for the clinician that it is not set up.
pub(super) async fn require_connection(
    app: &AppState,
    practice_id: &PracticeId,
) -> Result<HcwConnection, PartnerError> {
    crate::partners::connection::load::<HcwConnection>(app, practice_id)
        .await?
        .ok_or_else(|| {
            PartnerError::NotPossible(
                "HCW@Home is not set up for this practice yet. Ask a practice admin to enter the HCW@Home server in Chartbridge settings.".into(),
            )
        })
}
