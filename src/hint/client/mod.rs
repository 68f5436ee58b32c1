//! Typed client for Hint's Provider API and the Instant On code exchange.
//!
//! Calls go through the shared [`Upstream`] layer (timeouts, no redirects, one error type). At
//! most `max_concurrency_per_practice` calls per practice are in flight, they are paced to
//! `requests_per_second`, and a 429 ("Enhance your calm", no `Retry-After`) is retried in place
//! with doubling back-off and jitter before the call gives up with the 429 (the job queue then
//! retries later). A call that may be repeated safely (`Repeat::Safe`: reads, and patches to
//! the same fields) is also retried in place after a 5xx, a timeout or no connection, a few
//! times with jitter; a create is not (its answer may be lost after Hint applied it: the write
//! back looks for it before it creates again).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, de::DeserializeOwned};
use url::Url;

mod pacing;
mod types;

pub use types::{
    DocumentInteraction, DocumentInteractionFields, DocumentInteractionPatch, GrantPractice,
    HintAuth, InstallGrant, InteractionStatus, PartnerInteraction, PartnerInteractionFields,
    Patient, Phone,
};

use self::{
    pacing::{PracticeLimit, Repeat},
    types::{ConnectAnswer, OAuthAnswer},
};
use crate::{
    config::HintSettings,
    hint::budget::SharedBudget,
    metrics::Metrics,
    upstream::{self, Upstream, UpstreamError, endpoint},
};

/// How errors name Hint.
const HINT: &str = "Hint";
/// The limiter key of Instant On code exchanges (practice ids start `pra-`).
const INSTANT_ON: &str = "instant-on";
/// The limiter key of the partner-wide calls (`/api/partner/*` with the partner key).
const PARTNER: &str = "partner";

/// What a Hint call fails with.
pub type HintError = UpstreamError;

#[derive(Clone)]
pub struct HintClient {
    upstream: Upstream,
    base: Url,
    settings: HintSettings,
    practice_limits: Arc<Mutex<HashMap<String, Arc<PracticeLimit>>>>,
    metrics: Metrics,
    /// The budget every instance on the database shares; `None`: this instance is alone.
    shared: Option<SharedBudget>,
}

impl std::fmt::Debug for HintClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HintClient")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl HintClient {
    pub fn new(
        upstream: Upstream,
        settings: HintSettings,
        metrics: Metrics,
        shared: Option<SharedBudget>,
    ) -> Self {
        Self {
            upstream,
            base: settings.api_url.clone(),
            settings,
            practice_limits: Arc::default(),
            metrics,
            shared,
        }
    }

    fn url(&self, segments: &[&str]) -> Url {
        endpoint(&self.base, segments)
    }

    fn provider(&self, method: Method, segments: &[&str], auth: &HintAuth<'_>) -> RequestBuilder {
        self.upstream
            .http()
            .request(method, self.url(segments))
            .bearer_auth(auth.token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
    }

    async fn json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, HintError> {
        upstream::json(HINT, response).await
    }

    /// Exchanges an Instant On code for the practice's token, activating the integration or
    /// leaving it pending (`activate`). Asks `installations/connect` first and, where the stack
    /// is older and has none (404 or 405), `oauth/tokens`. Exchanges are paced apart from every
    /// other call (their own limiter), and callers are held to a budget per address before they
    /// get here (`server::rate_limit`). A code is used once, so no failure is retried in place.
    pub async fn exchange_code(
        &self,
        code: &str,
        activate: bool,
    ) -> Result<InstallGrant, HintError> {
        let connect = self
            .send(INSTANT_ON, Repeat::Once, || {
                self.upstream
                    .http()
                    .post(self.url(&["api", "partner", "installations", "connect"]))
                    .bearer_auth(self.settings.api_key.expose_secret())
                    .json(&serde_json::json!({"code": code, "activate": activate}))
            })
            .await;
        match connect {
            Ok(response) => {
                let answer: ConnectAnswer = Self::json(response).await?;
                let token = answer
                    .api_keys
                    .into_iter()
                    .next()
                    .map(|key| key.token)
                    .ok_or_else(|| UpstreamError::Unexpected {
                        party: HINT,
                        detail: "the install answer holds no API key".into(),
                    })?;
                Ok(InstallGrant {
                    integration_id: answer.id,
                    token: SecretString::from(token),
                    practice: answer.practice,
                    active: answer.status.as_deref().map_or(activate, |s| s == "active"),
                })
            }
            Err(e)
                if e.is_status(StatusCode::NOT_FOUND)
                    || e.is_status(StatusCode::METHOD_NOT_ALLOWED) =>
            {
                let body = serde_json::json!({
                    "grant_type": "authorization_code", "code": code, "activate": activate
                });
                let response = self
                    .send(INSTANT_ON, Repeat::Once, || {
                        self.upstream
                            .http()
                            .post(self.url(&["api", "oauth", "tokens"]))
                            .bearer_auth(self.settings.api_key.expose_secret())
                            .json(&body)
                    })
                    .await?;
                let answer: OAuthAnswer = Self::json(response).await?;
                Ok(InstallGrant {
                    integration_id: answer.id,
                    token: SecretString::from(answer.access_token),
                    practice: answer.practice,
                    active: activate,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// A partner-wide call (`/api/partner/…`, with the partner key).
    fn partner_call(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        self.upstream
            .http()
            .request(method, self.url(segments))
            .bearer_auth(self.settings.api_key.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
    }

    /// Sets the app's config in Hint (`PATCH /api/partner/products/{id}/app`): its custom
    /// roles and the roles new users get.
    pub async fn configure_app(
        &self,
        product_id: &str,
        config: &serde_json::Value,
    ) -> Result<(), HintError> {
        let path = ["api", "partner", "products", product_id, "app"];
        self.send(PARTNER, Repeat::Safe, || {
            self.partner_call(Method::PATCH, &path).json(config)
        })
        .await?;
        Ok(())
    }

    /// The webhook URLs registered for the partner.
    pub async fn webhook_endpoints(&self) -> Result<Vec<String>, HintError> {
        #[derive(Deserialize)]
        struct Endpoint {
            webhook_url: String,
        }
        let path = ["api", "partner", "webhook_endpoints"];
        let response = self
            .send(PARTNER, Repeat::Safe, || {
                self.partner_call(Method::GET, &path)
            })
            .await?;
        let endpoints: Vec<Endpoint> = Self::json(response).await?;
        Ok(endpoints.into_iter().map(|e| e.webhook_url).collect())
    }

    /// Registers a webhook URL (`POST /api/partner/webhook_endpoints`).
    pub async fn add_webhook_endpoint(&self, webhook_url: &str) -> Result<(), HintError> {
        let path = ["api", "partner", "webhook_endpoints"];
        let body = serde_json::json!({ "webhook_url": webhook_url });
        self.send(PARTNER, Repeat::Once, || {
            self.partner_call(Method::POST, &path).json(&body)
        })
        .await?;
        Ok(())
    }

    /// One page of patients (changed after `updated_after`, RFC 3339, when given), with the
    /// total Hint reports.
    pub async fn list_patients(
        &self,
        auth: &HintAuth<'_>,
        limit: usize,
        offset: usize,
        updated_after: Option<&str>,
    ) -> Result<(Vec<Patient>, Option<usize>), HintError> {
        let mut query = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
        if let Some(after) = updated_after {
            query.push(("updated_at[gt]", after.to_string()));
        }
        let response = self
            .send(auth.practice_id.as_str(), Repeat::Safe, || {
                self.provider(Method::GET, &["api", "provider", "patients"], auth)
                    .query(&query)
            })
            .await?;
        let total = response
            .headers()
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Ok((Self::json(response).await?, total))
    }

    /// A Provider API call with the practice's credentials, answered as JSON.
    async fn call<T: DeserializeOwned>(
        &self,
        auth: &HintAuth<'_>,
        method: Method,
        path: &[&str],
        body: Option<&(impl serde::Serialize + Sync)>,
    ) -> Result<T, HintError> {
        let repeat = if method == Method::POST {
            Repeat::Once
        } else {
            Repeat::Safe
        };
        let response = self
            .send(auth.practice_id.as_str(), repeat, || {
                let request = self.provider(method.clone(), path, auth);
                match body {
                    Some(body) => request.json(body),
                    None => request,
                }
            })
            .await?;
        Self::json(response).await
    }

    pub async fn get_patient(&self, auth: &HintAuth<'_>, id: &str) -> Result<Patient, HintError> {
        let path = ["api", "provider", "patients", id];
        self.call(auth, Method::GET, &path, None::<&()>).await
    }

    pub async fn create_partner_interaction(
        &self,
        auth: &HintAuth<'_>,
        patient_id: &str,
        fields: &PartnerInteractionFields,
    ) -> Result<PartnerInteraction, HintError> {
        let path = interactions(patient_id, PARTNER_KIND);
        self.call(auth, Method::POST, &path, Some(fields)).await
    }

    pub async fn get_partner_interaction(
        &self,
        auth: &HintAuth<'_>,
        patient_id: &str,
        id: &str,
    ) -> Result<PartnerInteraction, HintError> {
        let path = interaction(patient_id, PARTNER_KIND, id);
        self.call(auth, Method::GET, &path, None::<&()>).await
    }

    pub async fn patch_partner_interaction(
        &self,
        auth: &HintAuth<'_>,
        patient_id: &str,
        id: &str,
        fields: &PartnerInteractionFields,
    ) -> Result<PartnerInteraction, HintError> {
        let path = interaction(patient_id, PARTNER_KIND, id);
        self.call(auth, Method::PATCH, &path, Some(fields)).await
    }

    /// Our interaction for `integration_record_id`, if one was created already (so a retried
    /// create after a lost answer does not make a second one).
    pub async fn find_partner_interaction(
        &self,
        auth: &HintAuth<'_>,
        patient_id: &str,
        integration_record_id: &str,
    ) -> Result<Option<PartnerInteraction>, HintError> {
        self.find_by_record(auth, patient_id, PARTNER_KIND, integration_record_id)
            .await
    }

    /// Ours of `kind` for `integration_record_id`, preferring one that is not deleted (in case
    /// a practice deleted an earlier copy).
    async fn find_by_record<T: DeserializeOwned + types::Recorded>(
        &self,
        auth: &HintAuth<'_>,
        patient_id: &str,
        kind: &str,
        integration_record_id: &str,
    ) -> Result<Option<T>, HintError> {
        let path = interactions(patient_id, kind);
        let query = [
            ("integration_record_id", integration_record_id),
            ("limit", "100"),
            ("offset", "0"),
        ];
        let response = self
            .send(auth.practice_id.as_str(), Repeat::Safe, || {
                self.provider(Method::GET, &path, auth).query(&query)
            })
            .await?;
        let found: Vec<T> = Self::json(response).await?;
        Ok(found
            .into_iter()
            .filter(|i| i.record_id() == Some(integration_record_id))
            .min_by_key(|i| i.status() == InteractionStatus::Deleted))
    }

    /// Writes a visit's content into the chart as a document interaction. Hint downloads its
    /// attachments while it handles the request. Never repeated in place: look for it first
    /// ([`Self::find_document_interaction`]).
    pub async fn create_document_interaction(
        &self,
        auth: &HintAuth<'_>,
        patient_id: &str,
        fields: &DocumentInteractionFields,
    ) -> Result<DocumentInteraction, HintError> {
        let path = interactions(patient_id, DOCUMENT_KIND);
        self.call(auth, Method::POST, &path, Some(fields)).await
    }

    /// Rewrites a document interaction (a correction: the same fields every time).
    pub async fn patch_document_interaction(
        &self,
        auth: &HintAuth<'_>,
        patient_id: &str,
        id: &str,
        fields: &DocumentInteractionPatch,
    ) -> Result<DocumentInteraction, HintError> {
        let path = interaction(patient_id, DOCUMENT_KIND, id);
        self.call(auth, Method::PATCH, &path, Some(fields)).await
    }

    /// Our document for `integration_record_id`, if one was created already (so a retried
    /// create after a lost answer does not make a second one).
    pub async fn find_document_interaction(
        &self,
        auth: &HintAuth<'_>,
        patient_id: &str,
        integration_record_id: &str,
    ) -> Result<Option<DocumentInteraction>, HintError> {
        self.find_by_record(auth, patient_id, DOCUMENT_KIND, integration_record_id)
            .await
    }
}

/// The interaction kinds we write: the partner interaction (the way back into our page) and
/// the document interaction (the visit's content in the chart).
const PARTNER_KIND: &str = "partner";
const DOCUMENT_KIND: &str = "document";

/// `/api/provider/patients/{patient}/interactions/{kind}`.
fn interactions<'a>(patient_id: &'a str, kind: &'a str) -> [&'a str; 6] {
    [
        "api",
        "provider",
        "patients",
        patient_id,
        "interactions",
        kind,
    ]
}

/// `/api/provider/patients/{patient}/interactions/{kind}/{id}`.
fn interaction<'a>(patient_id: &'a str, kind: &'a str, id: &'a str) -> [&'a str; 7] {
    [
        "api",
        "provider",
        "patients",
        patient_id,
        "interactions",
        kind,
        id,
    ]
}
