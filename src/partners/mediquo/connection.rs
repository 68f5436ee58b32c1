//! The MediQuo section of the settings surface (admins): the webhook URL to give MediQuo, the
//! shared signature value (write-only: saved, never shown), and where MediQuo sends from.
//!
//! The value is MediQuo's only proof, so it can be changed without losing a delivery: a new
//! value saved keeps the one before it valid beside it until the admin retires it (MediQuo
//! switches in between). An optional list of addresses MediQuo sends from refuses a delivery
//! from anywhere else, even with the value.

use std::net::IpAddr;

use askama::Template;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::ID;
use crate::{
    config::AddressList,
    crypto::constant_time_eq,
    error::AppError,
    partners::connection::{Connection, Panel, Refusal, SectionView},
    visits::PartnerId,
};

/// Shortest shared signature value we accept (it is the only thing authenticating MediQuo).
pub const MIN_SIGNATURE_LEN: usize = 16;

/// A practice's MediQuo integration: the value MediQuo sends in `x-webhook-signature`.
pub struct MediquoConnection {
    pub signature: SecretString,
    /// The value before the last change, still valid until the admin retires it.
    pub previous: Option<SecretString>,
    /// Addresses and ranges MediQuo sends from (as typed); empty: anywhere.
    pub sources: String,
}

/// Nothing about MediQuo is plain settings.
#[derive(Serialize, Deserialize)]
pub struct StoredSettings {}

/// What a delivery is checked against (read on the webhook's hot path, so the source list is
/// kept here too: it is not secret, but it is needed where the value is).
#[derive(Serialize, Deserialize)]
pub struct StoredSecrets {
    pub(super) signature: String,
    #[serde(default)]
    pub(super) previous: Option<String>,
    #[serde(default)]
    pub(super) sources: String,
}

impl StoredSecrets {
    /// Whether `presented` is the value, or the one before it while it is still valid.
    pub(super) fn accepts(&self, presented: &[u8]) -> bool {
        let current = constant_time_eq(self.signature.as_bytes(), presented);
        let previous = self
            .previous
            .as_deref()
            .is_some_and(|p| constant_time_eq(p.as_bytes(), presented));
        current | previous
    }

    /// Whether a delivery from `client` may come in (no list: from anywhere).
    pub(super) fn admits(&self, client: Option<IpAddr>) -> bool {
        match self.sources.parse::<AddressList>() {
            Ok(list) if list.is_empty() => true,
            Ok(list) => client.is_some_and(|ip| list.trusts(ip.to_canonical())),
            // Checked when saved; a list that no longer parses admits nobody.
            Err(_) => false,
        }
    }
}

#[derive(Deserialize)]
pub struct MediquoSettingsForm {
    #[serde(default)]
    signature: String,
    #[serde(default)]
    sources: String,
    /// Stop accepting the value before the last change.
    #[serde(default)]
    retire_previous: Option<String>,
}

#[derive(Template)]
#[template(path = "partners/mediquo_settings.html")]
struct MediquoSettingsSection {
    configured: bool,
    webhook_url: String,
    /// A value before the last change is still accepted.
    previous_accepted: bool,
    sources: String,
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
            previous: secrets.previous.map(SecretString::from),
            sources: secrets.sources,
        }
    }

    fn to_stored(&self) -> (StoredSettings, StoredSecrets) {
        (
            StoredSettings {},
            StoredSecrets {
                signature: self.signature.expose_secret().to_string(),
                previous: self
                    .previous
                    .as_ref()
                    .map(|p| p.expose_secret().to_string()),
                sources: self.sources.clone(),
            },
        )
    }

    /// A new value keeps the one before it valid until retired; left empty, the saved value
    /// stays (the sources can be changed alone).
    fn from_form(input: &MediquoSettingsForm, stored: Option<&Self>) -> Result<Self, Refusal> {
        let sources = input.sources.trim().to_string();
        if let Err(problem) = sources.parse::<AddressList>() {
            return Err(Refusal::at(
                "sources",
                format!(
                    "The addresses MediQuo sends from must be addresses or ranges, separated by commas: {problem}."
                ),
            ));
        }
        let retire = input.retire_previous.is_some();
        let signature = input.signature.trim();
        if let (true, Some(stored)) = (signature.is_empty(), stored) {
            return Ok(Self {
                signature: stored.signature.clone(),
                previous: stored.previous.clone().filter(|_| !retire),
                sources,
            });
        }
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
        // The value that was in use stays valid beside the new one (MediQuo switches between
        // the two saves); saved again unchanged, nothing moves.
        // While a value before it is still pending, that one (the one MediQuo may still send)
        // stays: a value saved by mistake and corrected loses nothing.
        let previous = match stored {
            Some(stored) if stored.signature.expose_secret() != signature => stored
                .previous
                .clone()
                .or_else(|| Some(stored.signature.clone())),
            Some(stored) => stored.previous.clone(),
            None => None,
        };
        Ok(Self {
            signature: SecretString::from(signature.to_string()),
            previous: previous.filter(|_| !retire),
            sources,
        })
    }

    fn render_section(view: SectionView<'_, Self>) -> Result<String, AppError> {
        let sources = match (view.entered, view.stored) {
            (Some(entered), _) => entered.sources.clone(),
            (None, Some(stored)) => stored.sources.clone(),
            (None, None) => String::new(),
        };
        Ok(MediquoSettingsSection {
            configured: view.configured(),
            webhook_url: view.webhook_url(),
            previous_accepted: view.stored.is_some_and(|s| s.previous.is_some()),
            sources,
            panel: view.panel(),
        }
        .render()?)
    }
}
