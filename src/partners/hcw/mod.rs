//! HCW@Home, video visits on the practice's own HCW@Home server.
//!
//! Launch: a form in our frame (gender when Hint's `sex` is neither male nor female, language,
//! optional time) → the service account creates the patient invite → the visit page shows the
//! patient link. The doctor signs in to HCW with a server-minted SSO JWT (`sso`). Result: the
//! invite's consultation, polled, or closed when the clinician clicks "Finish visit".
//! Cancelling revokes the invite.

pub mod client;
pub mod launch;
pub mod settings;
pub mod sso;
pub mod visit;

use async_trait::async_trait;
use axum::{
    Router,
    routing::{get, post},
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{LaunchStyle, Partner, PartnerTool, connection};
use crate::{
    error::AppError,
    hint::PracticeSession,
    jobs::{JobError, JobOutcome},
    state::AppState,
    surfaces::Frame,
    visits::Visit,
};

pub use client::HcwClient;

/// HCW@Home as a [`PartnerTool`].
pub struct HcwAtHome;

#[async_trait]
impl PartnerTool for HcwAtHome {
    fn id(&self) -> &'static str {
        "hcw"
    }

    fn name(&self) -> &'static str {
        "HCW@Home video visit"
    }

    fn launch_style(&self) -> LaunchStyle {
        LaunchStyle::Form {
            label: "Start HCW@Home video visit",
            path: "/hint/partners/hcw/launch",
        }
    }

    fn routes(&self) -> Router<AppState> {
        Router::new()
            .route("/hint/settings/hcw", post(settings::save))
            .route(
                "/hint/partners/hcw/launch",
                get(launch::form).post(launch::submit),
            )
            .route(
                "/hint/partners/hcw/visits/{visit_id}/sign-in",
                post(visit::sign_in),
            )
            .route(
                "/hint/partners/hcw/visits/{visit_id}/finish",
                post(visit::finish),
            )
    }

    async fn settings_section(
        &self,
        state: &AppState,
        session: &PracticeSession,
    ) -> Result<String, AppError> {
        settings::section(state, session, None, None).await
    }

    async fn poll(&self, state: &AppState, visit: &Visit) -> Result<JobOutcome, JobError> {
        visit::poll(state, visit).await
    }

    async fn cancel(&self, state: &AppState, visit: &Visit) -> Result<(), AppError> {
        visit::revoke(state, visit).await
    }

    fn render_visit(&self, visit: &Visit, frame: &Frame) -> Result<String, AppError> {
        visit::render(visit, frame)
    }
}

/// What an HCW@Home visit keeps of its launch, and of the call as last seen.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HcwLaunch {
    /// The patient's language (two letters).
    pub language: String,
    /// The agreed time, UTC RFC 3339, when the visit is scheduled.
    #[serde(default)]
    pub scheduled_for: Option<String>,
    /// Where HCW routed the invite, in words.
    #[serde(default)]
    pub routing: Option<String>,
    /// The invite, once HCW created it.
    #[serde(default)]
    pub invite: Option<InviteSummary>,
    /// The consultation's status at the last poll (`pending`, `active`, `closed`).
    #[serde(default)]
    pub consultation_status: Option<String>,
}

/// The invite as the visit page needs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteSummary {
    pub id: String,
    #[serde(default)]
    pub patient_url: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// HCW says it sent the link to the patient.
    #[serde(default)]
    pub sent: bool,
    /// The clinician asked HCW to send it.
    #[serde(default)]
    pub asked_to_send: bool,
}

/// An HCW@Home visit's result: the closed consultation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HcwResult {
    pub consultation: client::Consultation,
}

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
struct StoredSettings {
    base_url: Url,
    service_email: String,
    routing: Routing,
}

#[derive(Serialize, Deserialize)]
struct StoredSecrets {
    service_password: String,
    sso_secret: String,
}

/// What an admin enters; blank secrets keep the stored ones.
pub struct HcwSettingsInput<'a> {
    pub base_url: &'a str,
    pub service_email: &'a str,
    pub service_password: &'a str,
    pub sso_secret: &'a str,
    pub routing: &'a str,
    pub queue: &'a str,
}

/// Shortest SSO secret accepted (it signs doctor sign-ins).
pub const MIN_SSO_SECRET_LEN: usize = 16;

impl HcwConnection {
    pub async fn load(state: &AppState, practice_id: &str) -> Result<Option<Self>, AppError> {
        let found: Option<(StoredSettings, StoredSecrets)> =
            connection::load(state, practice_id, Partner::HcwAtHome).await?;
        Ok(found.map(|(settings, secrets)| HcwConnection {
            base_url: settings.base_url,
            service_email: settings.service_email,
            service_password: SecretString::from(secrets.service_password),
            sso_secret: SecretString::from(secrets.sso_secret),
            routing: settings.routing,
        }))
    }

    /// Loads it, or says (to the clinician) that it is missing.
    pub async fn require(state: &AppState, practice_id: &str) -> Result<Self, AppError> {
        Self::load(state, practice_id).await?.ok_or_else(|| {
            AppError::Unprocessable(
                "HCW@Home is not set up for this practice yet. Ask a practice admin to enter the HCW@Home server in Chartbridge settings.".into(),
            )
        })
    }

    /// Validates and stores; the error message is for the admin.
    pub async fn save(
        state: &AppState,
        practice_id: &str,
        input: HcwSettingsInput<'_>,
        updated_by: &str,
    ) -> Result<(), AppError> {
        let invalid = |m: &str| Err(AppError::Unprocessable(m.to_string()));
        let base_url = match parse_base_url(input.base_url) {
            Ok(url) => url,
            Err(message) => return Err(AppError::Unprocessable(message)),
        };
        let email = input.service_email.trim();
        if !looks_like_email(email) {
            return invalid(
                "Enter the service account's email (an HCW@Home user with the scheduler role).",
            );
        }
        let existing: Option<(StoredSettings, StoredSecrets)> =
            connection::load(state, practice_id, Partner::HcwAtHome).await?;
        let keep = |entered: &str, stored: Option<&String>| match (entered, stored) {
            ("", Some(s)) => s.clone(),
            (e, _) => e.to_string(),
        };
        let password = keep(
            input.service_password,
            existing.as_ref().map(|(_, s)| &s.service_password),
        );
        let sso_secret = keep(
            input.sso_secret.trim(),
            existing.as_ref().map(|(_, s)| &s.sso_secret),
        );
        if password.is_empty() || password.len() > 512 || password.chars().any(char::is_control) {
            return invalid("Enter the service account's password.");
        }
        if sso_secret.chars().count() < MIN_SSO_SECRET_LEN
            || sso_secret.len() > 512
            || sso_secret.chars().any(char::is_control)
        {
            return Err(AppError::Unprocessable(format!(
                "The SSO secret must be at least {MIN_SSO_SECRET_LEN} characters: the SHARED_EXTERNAL_AUTH_SECRET of your HCW@Home server."
            )));
        }
        let routing = match input.routing {
            "doctor_email" => Routing::DoctorEmail,
            "queue" => {
                let queue = input.queue.trim();
                if queue.is_empty() || queue.len() > 200 || queue.chars().any(char::is_control) {
                    return invalid("Enter the HCW@Home queue's name or id.");
                }
                Routing::Queue {
                    queue: queue.to_string(),
                }
            }
            _ => {
                return invalid(
                    "Choose how HCW@Home routes invitations: to the clinician or to a queue.",
                );
            }
        };
        connection::save(
            state,
            practice_id,
            Partner::HcwAtHome,
            &StoredSettings {
                base_url,
                service_email: email.to_string(),
                routing,
            },
            &StoredSecrets {
                service_password: password,
                sso_secret,
            },
            updated_by,
        )
        .await
    }
}

/// An https URL, or http on a loopback host (the sandbox); no query or fragment.
pub fn parse_base_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|_| {
        "Enter the HCW@Home server's address, like https://hcw.example.org.".to_string()
    })?;
    let loopback = matches!(
        url.host(),
        Some(url::Host::Ipv4(ip)) if ip.is_loopback()
    ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || url.host_str() == Some("localhost");
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err("The HCW@Home address must start with https://.".into()),
    }
    if url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err("Enter only the HCW@Home server's address, without ? or #.".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("Do not put credentials in the address; use the fields below.".into());
    }
    Ok(url)
}

fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_must_be_https_except_loopback() {
        assert!(parse_base_url("https://hcw.example.org").is_ok());
        assert!(parse_base_url("http://127.0.0.1:8084/").is_ok());
        assert!(parse_base_url("http://localhost:1337").is_ok());
        for bad in [
            "http://hcw.example.org",
            "ftp://hcw.example.org",
            "hcw.example.org",
            "https://hcw.example.org/?x=1",
            "https://user:pw@hcw.example.org",
            "",
        ] {
            assert!(parse_base_url(bad).is_err(), "{bad} should be refused");
        }
    }
}
