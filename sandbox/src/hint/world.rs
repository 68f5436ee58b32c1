//! The sandbox's world: practices, users, patients, interactions, tokens, faults and counters.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant},
};

use axum::{http::StatusCode, response::Response};
use serde_json::{Value, json};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use url::Url;

use crate::{hint_error, random_token};

#[derive(Clone, Debug)]
pub struct Practice {
    pub id: String,
    pub name: String,
    /// Our products this practice has installed (partner_product_id must be one of them).
    pub products: Vec<String>,
    pub integration_id: String,
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub practice_id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub partner_roles: Vec<String>,
    pub access_context: String,
}

#[derive(Clone, Debug)]
pub struct Patient {
    pub practice_id: String,
    pub id: String,
    pub first_name: String,
    pub last_name: String,
    pub dob: String,
    pub sex: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// When it last changed (Hint's `updated_at`, filtered by `updated_at[gt]`).
    pub updated_at: OffsetDateTime,
}

impl Patient {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "middle_name": null,
            "name": format!("{} {}", self.first_name, self.last_name),
            "dob": self.dob,
            "sex": self.sex,
            "email": self.email,
            "phones": self.phone.iter().map(|n| json!({"number": n, "type": "mobile"})).collect::<Vec<_>>(),
            "provider_web_link": format!("https://app.hint.com/patients/{}", self.id),
            "created_at": "2026-01-05T10:00:00Z",
            "updated_at": self.updated_at.format(&Rfc3339).unwrap_or_default(),
        })
    }
}

/// A partner interaction as the sandbox holds it.
#[derive(Clone, Debug)]
pub struct Interaction {
    pub id: String,
    pub practice_id: String,
    pub patient_id: String,
    pub status: String,
    pub title: Option<String>,
    pub integration_record_id: Option<String>,
    pub integration_web_link: Option<String>,
    pub integration_error_message: Option<String>,
    pub partner_product_id: Option<String>,
    pub event_timestamp: String,
    /// How many PATCHes changed it.
    pub updates: u32,
}

impl Interaction {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "type": "partner",
            "status": self.status,
            "title": self.title,
            "patient_id": self.patient_id,
            "event_timestamp": self.event_timestamp,
            "integration_record_id": self.integration_record_id,
            "integration_web_link": self.integration_web_link,
            "integration_error_message": self.integration_error_message,
            "partner_product_id": self.partner_product_id,
        })
    }
}

/// A document interaction (a visit's content in the chart) as the sandbox holds it.
#[derive(Clone, Debug)]
pub struct Document {
    pub id: String,
    pub practice_id: String,
    pub patient_id: String,
    pub status: String,
    pub title: Option<String>,
    /// Markdown, as the partner wrote it.
    pub body: String,
    /// The attachments' URLs as given, and the bytes Hint downloaded from each.
    pub attachments: Vec<(String, Vec<u8>)>,
    pub event_timestamp: String,
    pub integration_record_id: Option<String>,
    pub integration_web_link: Option<String>,
}

impl Document {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "type": "document",
            "status": self.status,
            "title": self.title,
            "body": self.body,
            "patient_id": self.patient_id,
            "event_timestamp": self.event_timestamp,
            "integration_record_id": self.integration_record_id,
            "integration_web_link": self.integration_web_link,
        })
    }
}

/// Faults the tests switch on. They apply to the partner-interaction endpoints (the write-back
/// path); patient reads stay healthy so a visit can start.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer this many Provider API calls with 500 (counts down).
    pub fail_next: u32,
    /// Provider API calls wait this long before answering (past the client's timeout).
    pub hang_for: Option<Duration>,
    /// Patient reads (not interactions) answer only after this long.
    pub patients_hang_for: Option<Duration>,
    /// Provider API writes are applied, then the answer waits this long.
    pub hang_after_write_for: Option<Duration>,
    /// When set, the faults hit only this practice's calls.
    pub only_practice: Option<String>,
    /// Patient reads (not interactions) answer 503.
    pub patients_down: bool,
    /// Interaction calls answer 500 at this rate (0.0–1.0), before doing anything.
    pub fail_ratio: f64,
    /// Interaction writes are applied, then answered 502 at this rate: the answer is lost.
    pub lose_answer_ratio: f64,
    /// Document creates are refused (422), as Hint refuses one it will not keep.
    pub refuse_documents: bool,
    /// Document attachments cannot be downloaded (our public address not reachable from
    /// Hint): each document that carries one is refused (422).
    pub attachments_unreachable: bool,
}

/// What happens to a write's answer once the write is applied.
#[derive(Default)]
pub(super) struct AfterWrite {
    pub(super) hang: Option<Duration>,
    pub(super) lose: bool,
}

impl AfterWrite {
    /// `answer`, late or lost as the faults say.
    pub(super) async fn answer(self, answer: Response) -> Response {
        if let Some(hang) = self.hang {
            tokio::time::sleep(hang).await;
        }
        if self.lose {
            hint_error(StatusCode::BAD_GATEWAY, "Bad gateway")
        } else {
            answer
        }
    }
}

#[derive(Default)]
pub struct World {
    pub app_url: Option<Url>,
    pub practices: Vec<Practice>,
    pub users: Vec<User>,
    pub patients: Vec<Patient>,
    pub interactions: Vec<Interaction>,
    pub documents: Vec<Document>,
    pub(super) practice_tokens: HashMap<String, String>,
    pub(super) access_tokens: HashMap<String, (String, Instant)>,
    pub(super) oauth_codes: HashMap<String, String>,
    pub faults: Faults,
    pub(super) calls: HashMap<String, VecDeque<Instant>>,
    /// Provider API calls served, as "METHOD path".
    pub requests: Vec<String>,
    /// Provider API calls allowed per key per second before 429.
    pub rate_limit_per_second: usize,
    /// How many calls were answered 429.
    pub rate_limited: usize,
    /// Instant On code exchanges asked for (valid or not), at either endpoint.
    pub code_exchanges: usize,
    /// Of those, the ones asked of `installations/connect`.
    pub connect_calls: usize,
    /// The `updated_at[gt]` of each patient list asked with one (incremental syncs).
    pub patients_asked_since: Vec<String>,
    /// The app config the partner set (`PATCH /api/partner/products/{id}/app`).
    pub app_config: Option<Value>,
    /// The partner's registered webhook URLs.
    pub webhook_endpoints: Vec<String>,
    /// An older stack: `installations/connect` does not exist (404), only `oauth/tokens`.
    pub legacy_install_only: bool,
    /// Practices whose integration was installed without activation, or deactivated: their
    /// practice tokens are refused (403) until `activate`.
    pub inactive_integrations: HashSet<String>,
    /// A note the demo shows on the home page (e.g. the sandbox partners' credentials).
    pub demo_note: String,
    /// (label, URL) of the demo's partner sandboxes, shown on the home page.
    pub demo_links: Vec<(String, String)>,
    pub(super) next_id: u64,
}

impl World {
    /// Uses up an Instant On code: the practice it was minted for and a new practice token,
    /// the integration active or pending (its token refused until activated).
    pub(super) fn redeem(&mut self, code: &str, activate: bool) -> Option<(Practice, String)> {
        let practice_id = self.oauth_codes.remove(code)?;
        let practice = self
            .practices
            .iter()
            .find(|p| p.id == practice_id)
            .cloned()
            .expect("code's practice exists");
        let token = random_token();
        self.practice_tokens
            .insert(token.clone(), practice_id.clone());
        if activate {
            self.inactive_integrations.remove(&practice_id);
        } else {
            self.inactive_integrations.insert(practice_id);
        }
        Some((practice, token))
    }

    pub(super) fn next(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:06}{}", self.next_id, &random_token()[..6])
    }
}
