//! What Hint's API sends and takes: patients, partner interactions, Instant On grants.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::tenancy::PracticeId;

/// Credentials for Provider API calls: a practice token (Instant On) or a handshake's
/// short-lived access token, always with the practice they belong to.
pub struct HintAuth<'a> {
    pub practice_id: &'a PracticeId,
    pub token: &'a SecretString,
}

/// A patient as the Provider API returns it (only `id` is certain).
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct Patient {
    pub id: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub middle_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub dob: Option<String>,
    #[serde(default)]
    pub sex: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phones: Vec<Phone>,
    /// When Hint last changed it (RFC 3339).
    #[serde(default)]
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Phone {
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

impl Patient {
    /// "First Last", falling back to `name`, then the id.
    pub fn display_name(&self) -> String {
        let parts: Vec<&str> = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .collect();
        if !parts.is_empty() {
            parts.join(" ")
        } else if let Some(name) = self.name.as_deref().filter(|n| !n.trim().is_empty()) {
            name.to_string()
        } else {
            self.id.clone()
        }
    }
}

/// The status of a partner interaction in Hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InteractionStatus {
    Draft,
    Signed,
    Addended,
    Deleted,
    Failed,
}

impl InteractionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InteractionStatus::Draft => "draft",
            InteractionStatus::Signed => "signed",
            InteractionStatus::Addended => "addended",
            InteractionStatus::Deleted => "deleted",
            InteractionStatus::Failed => "failed",
        }
    }
}

/// What we ask Hint to hold for one visit (create and patch use the same fields).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PartnerInteractionFields {
    pub status: InteractionStatus,
    pub title: String,
    pub integration_record_id: String,
    pub integration_web_link: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration_error_message: Option<String>,
    pub partner_product_id: String,
}

/// A partner interaction as Hint returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct PartnerInteraction {
    pub id: String,
    pub status: InteractionStatus,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub integration_record_id: Option<String>,
    #[serde(default)]
    pub integration_error_message: Option<String>,
}

/// What we write into the chart for one visit: its content as Markdown, and the files Hint
/// downloads while it handles the request (`attachments`: URLs that must answer 200 then).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DocumentInteractionFields {
    pub status: InteractionStatus,
    pub title: String,
    pub body: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
    /// When the visit happened (RFC 3339).
    pub event_timestamp: String,
    pub integration_record_id: String,
    pub integration_web_link: String,
}

/// What a correction changes of a document interaction.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DocumentInteractionPatch {
    pub status: InteractionStatus,
    pub title: String,
    pub body: String,
    /// Files to add to the document (Hint downloads each during the request).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
}

/// A document interaction as Hint returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct DocumentInteraction {
    pub id: String,
    pub status: InteractionStatus,
    #[serde(default)]
    pub integration_record_id: Option<String>,
}

/// What an Instant On code exchange gives: the practice, its token, and whether Hint made the
/// integration active.
#[derive(Debug)]
pub struct InstallGrant {
    pub integration_id: Option<String>,
    pub token: SecretString,
    pub practice: GrantPractice,
    pub active: bool,
}

#[derive(Debug, Deserialize)]
pub struct GrantPractice {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /api/partner/installations/connect`'s answer (Hint's newer stacks).
#[derive(Deserialize)]
pub(super) struct ConnectAnswer {
    #[serde(default)]
    pub(super) id: Option<String>,
    /// `active` or `pending`; absent on stacks that activate on connect.
    #[serde(default)]
    pub(super) status: Option<String>,
    pub(super) practice: GrantPractice,
    pub(super) api_keys: Vec<ApiKey>,
}

#[derive(Deserialize)]
pub(super) struct ApiKey {
    pub(super) token: String,
}

/// `POST /api/oauth/tokens`'s answer (older stacks).
#[derive(Deserialize)]
pub(super) struct OAuthAnswer {
    #[serde(default)]
    pub(super) id: Option<String>,
    pub(super) access_token: String,
    pub(super) practice: GrantPractice,
}

/// An interaction of ours as Hint lists it: the record id we gave it, and its status.
pub(super) trait Recorded {
    fn record_id(&self) -> Option<&str>;
    fn status(&self) -> InteractionStatus;
}

impl Recorded for PartnerInteraction {
    fn record_id(&self) -> Option<&str> {
        self.integration_record_id.as_deref()
    }

    fn status(&self) -> InteractionStatus {
        self.status
    }
}

impl Recorded for DocumentInteraction {
    fn record_id(&self) -> Option<&str> {
        self.integration_record_id.as_deref()
    }

    fn status(&self) -> InteractionStatus {
        self.status
    }
}
