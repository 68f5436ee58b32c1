//! The Tiep section of the settings surface (admins only): facility API key, hook secret, form,
//! and the exact webhook URL to paste into Tiep. Secrets are write-only: saved, never shown.

use askama::Template;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ID, default_form, validate_form};
use crate::{
    error::AppError,
    partners::connection::{Connection, Panel, Refusal, SectionView, Tested, keep_blank},
    tenancy::PracticeId,
    visits::{AppState, PartnerId},
};

/// Shortest hook secret Tiep accepts.
pub const MIN_HOOK_SECRET_LEN: usize = 16;

/// A practice's Tiep facility, as the admin set it up.
pub struct TiepConnection {
    pub api_key: SecretString,
    pub hook_secret: SecretString,
    /// The JSON Schema form Tiep fills (title, type "object", properties).
    pub form: Value,
}

#[derive(Serialize, Deserialize)]
pub struct StoredSettings {
    form: Value,
}

#[derive(Serialize, Deserialize)]
pub struct StoredSecrets {
    api_key: String,
    pub(super) hook_secret: String,
}

#[derive(Deserialize)]
pub struct TiepSettingsForm {
    #[serde(default)]
    api_key: String,
    #[serde(default)]
    hook_secret: String,
    #[serde(default)]
    form: String,
}

#[derive(Template)]
#[template(path = "partners/tiep_settings.html")]
struct TiepSettingsSection {
    configured: bool,
    webhook_url: String,
    form_json: String,
    panel: Panel,
}

fn plain_secret(value: &str) -> bool {
    value.len() <= 512 && !value.chars().any(char::is_control)
}

impl Connection for TiepConnection {
    const PARTNER: PartnerId = ID;
    type Settings = StoredSettings;
    type Secrets = StoredSecrets;
    type Form = TiepSettingsForm;
    type Partner = super::Tiep;

    fn from_stored(settings: StoredSettings, secrets: StoredSecrets) -> Self {
        Self {
            api_key: SecretString::from(secrets.api_key),
            hook_secret: SecretString::from(secrets.hook_secret),
            form: settings.form,
        }
    }

    fn to_stored(&self) -> (StoredSettings, StoredSecrets) {
        (
            StoredSettings {
                form: self.form.clone(),
            },
            StoredSecrets {
                api_key: self.api_key.expose_secret().to_string(),
                hook_secret: self.hook_secret.expose_secret().to_string(),
            },
        )
    }

    /// Blank secret fields keep the stored values, so an admin can change only the form.
    fn from_form(input: &TiepSettingsForm, stored: Option<&Self>) -> Result<Self, Refusal> {
        let api_key = keep_blank(
            input.api_key.trim(),
            stored.map(|c| c.api_key.expose_secret()),
        );
        let hook_secret = keep_blank(
            &input.hook_secret,
            stored.map(|c| c.hook_secret.expose_secret()),
        );
        if api_key.is_empty() || !plain_secret(&api_key) {
            return Err(Refusal::at(
                "api_key",
                "Enter the facility API key from Tiep.",
            ));
        }
        if hook_secret.chars().count() < MIN_HOOK_SECRET_LEN || !plain_secret(&hook_secret) {
            return Err(Refusal::at(
                "hook_secret",
                format!(
                    "The webhook secret must be at least {MIN_HOOK_SECRET_LEN} characters (Tiep's rule)."
                ),
            ));
        }
        // A blank form keeps the stored one (or starts with the default).
        let form: Value = match input.form.trim() {
            "" => stored.map(|c| c.form.clone()).unwrap_or_else(default_form),
            text => serde_json::from_str(text)
                .map_err(|e| Refusal::at("form", format!("The form is not valid JSON: {e}.")))?,
        };
        validate_form(&form).map_err(|why| Refusal::at("form", why))?;
        Ok(Self {
            api_key: SecretString::from(api_key),
            hook_secret: SecretString::from(hook_secret),
            form,
        })
    }

    /// A token request that opens no session: Tiep checks the facility key, nothing is
    /// created.
    async fn test(&self, partner: &super::Tiep, _: &AppState, _: &PracticeId) -> Tested {
        Tested::of(partner.client.check_key(&self.api_key).await)
    }

    fn render_section(view: SectionView<'_, Self>) -> Result<String, AppError> {
        let form_json = match (view.entered, view.stored) {
            (Some(entered), _) => entered.form.clone(),
            (None, Some(stored)) => serde_json::to_string_pretty(&stored.form).unwrap_or_default(),
            (None, None) => serde_json::to_string_pretty(&default_form()).unwrap_or_default(),
        };
        Ok(TiepSettingsSection {
            configured: view.configured(),
            webhook_url: view.webhook_url(),
            form_json,
            panel: view.panel(),
        }
        .render()?)
    }
}
