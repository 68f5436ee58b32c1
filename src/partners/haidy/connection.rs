//! The Haidy section of the settings surface (admins): API token (write-only), patient group,
//! integration id.

use askama::Template;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::ID;
use crate::{
    error::AppError,
    partners::connection::{Connection, Panel, Refusal, SectionView, Tested, keep_blank},
    tenancy::PracticeId,
    visits::{AppState, PartnerId},
};

/// A practice's Haidy organisation, as the admin set it up.
pub struct HaidyConnection {
    pub api_token: SecretString,
    pub patient_group: String,
    pub integration_id: String,
}

#[derive(Serialize, Deserialize)]
pub struct StoredSettings {
    patient_group: String,
    integration_id: String,
}

#[derive(Serialize, Deserialize)]
pub struct StoredSecrets {
    api_token: String,
}

#[derive(Deserialize)]
pub struct HaidySettingsForm {
    #[serde(default)]
    api_token: String,
    #[serde(default)]
    patient_group: String,
    #[serde(default)]
    integration_id: String,
}

#[derive(Template)]
#[template(path = "partners/haidy_settings.html")]
struct HaidySettingsSection {
    configured: bool,
    patient_group: String,
    integration_id: String,
    panel: Panel,
}

/// One token-like value: no spaces or control characters, at most `max` bytes.
fn plain_field(value: &str, max: usize) -> Option<String> {
    let value = value.trim();
    (!value.is_empty()
        && value.len() <= max
        && !value.chars().any(|c| c.is_control() || c.is_whitespace()))
    .then(|| value.to_string())
}

impl Connection for HaidyConnection {
    const PARTNER: PartnerId = ID;
    type Settings = StoredSettings;
    type Secrets = StoredSecrets;
    type Form = HaidySettingsForm;
    type Partner = super::Haidy;

    fn from_stored(settings: StoredSettings, secrets: StoredSecrets) -> Self {
        Self {
            api_token: SecretString::from(secrets.api_token),
            patient_group: settings.patient_group,
            integration_id: settings.integration_id,
        }
    }

    fn to_stored(&self) -> (StoredSettings, StoredSecrets) {
        (
            StoredSettings {
                patient_group: self.patient_group.clone(),
                integration_id: self.integration_id.clone(),
            },
            StoredSecrets {
                api_token: self.api_token.expose_secret().to_string(),
            },
        )
    }

    /// A blank token keeps the stored one.
    fn from_form(input: &HaidySettingsForm, stored: Option<&Self>) -> Result<Self, Refusal> {
        let token = keep_blank(
            input.api_token.trim(),
            stored.map(|c| c.api_token.expose_secret()),
        );
        let token = plain_field(&token, 1024).ok_or_else(|| {
            Refusal::at(
                "api_token",
                "Enter the Haidy API token (from Haidy's organisation settings).",
            )
        })?;
        let patient_group = plain_field(&input.patient_group, 128)
            .ok_or_else(|| Refusal::at("patient_group", "Enter the Haidy patient group id."))?;
        let integration_id = plain_field(&input.integration_id, 128)
            .ok_or_else(|| Refusal::at("integration_id", "Enter the Haidy integration id."))?;
        Ok(Self {
            api_token: SecretString::from(token),
            patient_group,
            integration_id,
        })
    }

    /// Haidy's consultation list for a patient context that does not exist: the token is
    /// checked, nothing is created, no patient is named.
    async fn test(&self, partner: &super::Haidy, _: &AppState, _: &PracticeId) -> Tested {
        Tested::of(partner.client.check_token(&self.api_token).await)
    }

    fn render_section(view: SectionView<'_, Self>) -> Result<String, AppError> {
        let shown = |entered: fn(&HaidySettingsForm) -> &String, stored: fn(&Self) -> &String| {
            view.entered
                .map(|f| entered(f).clone())
                .or_else(|| view.stored.map(|c| stored(c).clone()))
                .unwrap_or_default()
        };
        Ok(HaidySettingsSection {
            configured: view.configured(),
            patient_group: shown(|f| &f.patient_group, |c| &c.patient_group),
            integration_id: shown(|f| &f.integration_id, |c| &c.integration_id),
            panel: view.panel(),
        }
        .render()?)
    }
}
