//! The MediQuo section of the settings surface (admins): the webhook URL to give MediQuo and
//! the shared signature value (write-only: saved, never shown).

use askama::Template;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::ID;
use crate::{
    error::AppError,
    partners::connection::{Connection, Panel, Refusal, SectionView},
    visits::PartnerId,
};

/// Shortest shared signature value we accept (it is the only thing authenticating MediQuo).
pub const MIN_SIGNATURE_LEN: usize = 16;

/// A practice's MediQuo integration: the value MediQuo sends in `x-webhook-signature`.
pub struct MediquoConnection {
    pub signature: SecretString,
}

/// Nothing about MediQuo is plain settings.
#[derive(Serialize, Deserialize)]
pub struct StoredSettings {}

#[derive(Serialize, Deserialize)]
pub struct StoredSecrets {
    pub(super) signature: String,
}

#[derive(Deserialize)]
pub struct MediquoSettingsForm {
    #[serde(default)]
    signature: String,
}

#[derive(Template)]
#[template(path = "partners/mediquo_settings.html")]
struct MediquoSettingsSection {
    configured: bool,
    webhook_url: String,
    panel: Panel,
}

impl Connection for MediquoConnection {
    const PARTNER: PartnerId = ID;
    type Settings = StoredSettings;
    type Secrets = StoredSecrets;
    type Form = MediquoSettingsForm;
    type Partner = super::MediQuo;

    fn from_stored(_: StoredSettings, secrets: StoredSecrets) -> Self {
        Self {
            signature: SecretString::from(secrets.signature),
        }
    }

    fn to_stored(&self) -> (StoredSettings, StoredSecrets) {
        (
            StoredSettings {},
            StoredSecrets {
                signature: self.signature.expose_secret().to_string(),
            },
        )
    }

    /// The value is always entered again (it is the whole of MediQuo's authentication).
    fn from_form(input: &MediquoSettingsForm, _: Option<&Self>) -> Result<Self, Refusal> {
        let signature = input.signature.trim();
        if signature.chars().count() < MIN_SIGNATURE_LEN
            || signature.len() > 512
            || signature.chars().any(char::is_control)
        {
            return Err(Refusal::at(
                "signature",
                format!(
                    "The signature value must be {MIN_SIGNATURE_LEN} to 512 characters, the same as agreed with MediQuo support."
                ),
            ));
        }
        Ok(Self {
            signature: SecretString::from(signature.to_string()),
        })
    }

    fn render_section(view: SectionView<'_, Self>) -> Result<String, AppError> {
        Ok(MediquoSettingsSection {
            configured: view.configured(),
            webhook_url: view.webhook_url(),
            panel: view.panel(),
        }
        .render()?)
    }
}
