//! Typed client for Hint's Provider API and the Instant On code exchange.
//!
//! Calls go through the shared [`Upstream`] layer (timeouts, no redirects, one error type). At
//! most `max_concurrency_per_practice` calls per practice are in flight, they are paced to
//! `requests_per_second`, and a 429 ("Enhance your calm", no `Retry-After`) is retried in place
//! with doubling back-off and jitter before the call gives up with the 429 (the job queue then
//! retries later). A call that may be repeated safely ([`Repeat::Safe`]: reads, and patches to
//! the same fields) is also retried in place after a 5xx, a timeout or no connection, a few
//! times with jitter; a create is not (its answer may be lost after Hint applied it: the write
//! back looks for it before it creates again).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::{sync::Semaphore, time::Instant};
use url::Url;

use crate::{
    backoff::jittered,
    config::HintSettings,
    hint::budget::SharedBudget,
    metrics::{self, Metrics},
    tenancy::PracticeId,
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

    /// Whether the patient is what a clinician typed: every word of `query` starts a word of
    /// the name (any order, case and accents aside: "thompson ava", "sofia" for "Sofía"), or is
    /// the date of birth (`1984-03-12`, `12/03/1984`, `1984`), or the query is the id.
    pub fn matches(&self, query: &str) -> bool {
        if self.id.eq_ignore_ascii_case(query.trim()) {
            return true;
        }
        let mut names = fold(&self.display_name());
        if let Some(name) = self.name.as_deref() {
            names.push(' ');
            names.push_str(&fold(name));
        }
        let name_words: Vec<&str> = names.split_whitespace().collect();
        let dob = self.dob.as_deref().unwrap_or_default();
        let words: Vec<String> = fold(query).split_whitespace().map(String::from).collect();
        !words.is_empty()
            && words.iter().all(|word| {
                name_words.iter().any(|n| n.starts_with(word.as_str()))
                    || (!dob.is_empty() && dob_matches(dob, word))
            })
    }
}

/// Lower case, accents off, punctuation to spaces: how names are compared in search.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        let plain = match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' | 'ā' | 'ą' => "a",
            'æ' => "ae",
            'ç' | 'ć' | 'č' => "c",
            'ď' | 'đ' => "d",
            'é' | 'è' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => "e",
            'í' | 'ì' | 'î' | 'ï' | 'ī' | 'ı' => "i",
            'ł' => "l",
            'ñ' | 'ń' | 'ň' => "n",
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' | 'ø' | 'ō' | 'ő' => "o",
            'œ' => "oe",
            'ř' => "r",
            'ß' => "ss",
            'ś' | 'š' | 'ş' => "s",
            'ť' | 'ţ' => "t",
            'ú' | 'ù' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => "u",
            'ý' | 'ÿ' => "y",
            'ź' | 'ż' | 'ž' => "z",
            c if c.is_alphanumeric() || c == '-' || c == '/' => {
                out.push(c);
                continue;
            }
            _ => " ",
        };
        out.push_str(plain);
    }
    out
}

/// A date of birth (`YYYY-MM-DD`) and a typed word: the whole date, or `DD/MM/YYYY`,
/// `MM/DD/YYYY`, or the year.
pub(crate) fn dob_matches(dob: &str, word: &str) -> bool {
    if word == dob || (word.len() == 4 && dob.starts_with(word)) {
        return true;
    }
    let parts: Vec<&str> = word.split('/').collect();
    if let [a, b, year] = parts[..] {
        let pad = |s: &str| format!("{s:0>2}");
        return [
            format!("{year}-{}-{}", pad(b), pad(a)),
            format!("{year}-{}-{}", pad(a), pad(b)),
        ]
        .iter()
        .any(|d| d == dob);
    }
    false
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
struct ConnectAnswer {
    #[serde(default)]
    id: Option<String>,
    /// `active` or `pending`; absent on stacks that activate on connect.
    #[serde(default)]
    status: Option<String>,
    practice: GrantPractice,
    api_keys: Vec<ApiKey>,
}

#[derive(Deserialize)]
struct ApiKey {
    token: String,
}

/// `POST /api/oauth/tokens`'s answer (older stacks).
#[derive(Deserialize)]
struct OAuthAnswer {
    #[serde(default)]
    id: Option<String>,
    access_token: String,
    practice: GrantPractice,
}

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

    fn limit_for(&self, practice_id: &str) -> Arc<PracticeLimit> {
        let mut limits = self.practice_limits.lock().expect("limits lock");
        limits
            .entry(practice_id.to_string())
            .or_insert_with(|| {
                Arc::new(PracticeLimit {
                    in_flight: Semaphore::new(self.settings.max_concurrency_per_practice),
                    pace: Mutex::default(),
                })
            })
            .clone()
    }

    /// Sends a request built by `build`, holding a practice permit (here and, with several
    /// instances, in the shared budget), retrying 429s, and retrying failures when `repeat`
    /// says sending it twice does no harm.
    async fn send(
        &self,
        practice_id: &str,
        repeat: Repeat,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<reqwest::Response, HintError> {
        let settings = &self.settings;
        let busy = || UpstreamError::Busy { party: HINT };
        let waited = tokio::time::Instant::now();
        let limit = self.limit_for(practice_id);
        let _permit = tokio::time::timeout(settings.slot_wait, limit.in_flight.acquire())
            .await
            .map_err(|_| busy())?
            .expect("semaphore is never closed");
        let Some(shared) = &self.shared else {
            return self
                .attempts(practice_id, repeat, &limit, None, build)
                .await;
        };
        let wait = settings.slot_wait.saturating_sub(waited.elapsed());
        let slot = shared
            .take_slot(practice_id, settings.max_concurrency_per_practice, wait)
            .await
            .map_err(|e| budget_unavailable(&e))?
            .ok_or_else(busy)?;
        let answered = self
            .attempts(practice_id, repeat, &limit, Some(shared), build)
            .await;
        shared.release(slot).await;
        answered
    }

    /// Tries a call until it is answered, or until its retries are spent.
    async fn attempts(
        &self,
        practice_id: &str,
        repeat: Repeat,
        limit: &PracticeLimit,
        shared: Option<&SharedBudget>,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<reqwest::Response, HintError> {
        let settings = &self.settings;
        let (mut limited, mut limited_wait) = (0, settings.rate_limit_backoff);
        let (mut failed, mut failed_wait) = (0, settings.failure_backoff);
        loop {
            limit.paced(settings.requests_per_second).await;
            if let Some(shared) = shared {
                let per_second = settings.requests_per_second.max(1.0).floor() as usize;
                shared
                    .pace(practice_id, per_second)
                    .await
                    .map_err(|e| budget_unavailable(&e))?;
            }
            let sent = self.upstream.send(HINT, build()).await;
            self.metrics
                .count_hint_call(practice_id, metrics::hint_outcome(&sent));
            let wait = match sent {
                Err(e)
                    if e.is_status(StatusCode::TOO_MANY_REQUESTS)
                        && limited < settings.rate_limit_retries =>
                {
                    limited += 1;
                    &mut limited_wait
                }
                Err(e)
                    if repeat == Repeat::Safe
                        && is_failure(&e)
                        && failed < settings.failure_retries =>
                {
                    failed += 1;
                    tracing::debug!(error = %e, attempt = failed, "retrying a Hint call in place");
                    &mut failed_wait
                }
                answered => return answered,
            };
            tokio::time::sleep(jittered(*wait)).await;
            *wait = wait.saturating_mul(2);
        }
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
        body: Option<&PartnerInteractionFields>,
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
        self.call(auth, Method::GET, &path, None).await
    }

    pub async fn create_partner_interaction(
        &self,
        auth: &HintAuth<'_>,
        patient_id: &str,
        fields: &PartnerInteractionFields,
    ) -> Result<PartnerInteraction, HintError> {
        let path = interactions(patient_id);
        self.call(auth, Method::POST, &path, Some(fields)).await
    }

    pub async fn get_partner_interaction(
        &self,
        auth: &HintAuth<'_>,
        patient_id: &str,
        id: &str,
    ) -> Result<PartnerInteraction, HintError> {
        let path = interaction(patient_id, id);
        self.call(auth, Method::GET, &path, None).await
    }

    pub async fn patch_partner_interaction(
        &self,
        auth: &HintAuth<'_>,
        patient_id: &str,
        id: &str,
        fields: &PartnerInteractionFields,
    ) -> Result<PartnerInteraction, HintError> {
        let path = interaction(patient_id, id);
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
        let path = interactions(patient_id);
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
        let found: Vec<PartnerInteraction> = Self::json(response).await?;
        // Prefer one that is not deleted, in case a practice deleted an earlier copy.
        Ok(found
            .into_iter()
            .filter(|i| i.integration_record_id.as_deref() == Some(integration_record_id))
            .min_by_key(|i| i.status == InteractionStatus::Deleted))
    }
}

/// Whether a call may be sent again after a failure whose outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Sending it twice is the same as once: reads, and patches to the same fields.
    Safe,
    /// A second one may do the work twice (a create, a code exchange): only a 429, which Hint
    /// answers before doing anything, is retried.
    Once,
}

/// The shared budget could not be read (the database is down): the call waits like a busy one.
fn budget_unavailable(e: &sqlx::Error) -> HintError {
    tracing::warn!(error = %e, "the shared Hint budget is unavailable");
    UpstreamError::Busy { party: HINT }
}

/// Hint failed or did not answer: worth trying again in a moment (a 429 has its own back-off).
fn is_failure(e: &HintError) -> bool {
    e.is_retryable()
        && !e.is_status(StatusCode::TOO_MANY_REQUESTS)
        && !matches!(e, UpstreamError::Busy { .. })
}

/// What a practice may have of Hint at once: calls in flight, and calls per second.
struct PracticeLimit {
    in_flight: Semaphore,
    pace: Mutex<Pace>,
}

/// The calls sent in the last second: a call goes out only while fewer than the budget were
/// sent in the second before it, so no one-second window ever holds more than the budget (a
/// token bucket let a full bucket out after a pause and as many again within the second).
#[derive(Default)]
struct Pace {
    sent: VecDeque<Instant>,
}

/// The window Hint counts its per-second budget over.
const PACE_WINDOW: Duration = Duration::from_secs(1);

impl PracticeLimit {
    /// Waits until a call may go out at `rate` per second (at least one).
    async fn paced(&self, rate: f64) {
        let budget = rate.max(1.0).floor() as usize;
        loop {
            let wait = {
                let mut pace = self.pace.lock().expect("pace lock");
                let now = Instant::now();
                while pace
                    .sent
                    .front()
                    .is_some_and(|at| now.duration_since(*at) >= PACE_WINDOW)
                {
                    pace.sent.pop_front();
                }
                if pace.sent.len() < budget {
                    pace.sent.push_back(now);
                    return;
                }
                PACE_WINDOW - now.duration_since(pace.sent[0])
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// `/api/provider/patients/{patient}/interactions/partner`.
fn interactions(patient_id: &str) -> [&str; 6] {
    [
        "api",
        "provider",
        "patients",
        patient_id,
        "interactions",
        "partner",
    ]
}

/// `/api/provider/patients/{patient}/interactions/partner/{id}`.
fn interaction<'a>(patient_id: &'a str, id: &'a str) -> [&'a str; 7] {
    [
        "api",
        "provider",
        "patients",
        patient_id,
        "interactions",
        "partner",
        id,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn no_second_ever_holds_more_calls_than_the_budget() {
        let limit = Arc::new(PracticeLimit {
            in_flight: Semaphore::new(100),
            pace: Mutex::default(),
        });
        let start = Instant::now();
        let mut sent = Vec::new();
        // A burst of 60 calls, a pause, then another burst: the old bucket let 2× through.
        for burst in 0..2 {
            let calls: Vec<_> = (0..30)
                .map(|_| {
                    let limit = limit.clone();
                    tokio::spawn(async move {
                        limit.paced(18.0).await;
                        Instant::now()
                    })
                })
                .collect();
            for call in calls {
                sent.push(call.await.unwrap());
            }
            if burst == 0 {
                tokio::time::sleep(Duration::from_millis(2500)).await;
            }
        }
        assert_eq!(sent.len(), 60);
        for from in &sent {
            let in_window = sent
                .iter()
                .filter(|at| **at >= *from && at.duration_since(*from) < PACE_WINDOW)
                .count();
            assert!(
                in_window <= 18,
                "{in_window} calls in the second from {:?}",
                from.duration_since(start)
            );
        }
    }

    fn patient(first: &str, last: &str, dob: &str) -> Patient {
        Patient {
            id: "pat-1".into(),
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            dob: Some(dob.into()),
            ..Patient::default()
        }
    }

    #[test]
    fn search_takes_words_in_any_order_without_accents_and_dates_of_birth() {
        let ava = patient("Ava", "Thompson", "1984-03-12");
        let sofia = patient("Sofía", "Martínez", "1992-06-25");
        for query in [
            "thompson ava",
            "Ava",
            "thom",
            "AVA THOMPSON",
            "1984-03-12",
            "12/03/1984",
            "03/12/1984",
            "1984",
            "ava 1984",
            "pat-1",
        ] {
            assert!(ava.matches(query), "{query}");
        }
        for query in ["sofia", "sofía", "martinez sof", "MARTÍNEZ"] {
            assert!(sofia.matches(query), "{query}");
        }
        for query in ["ava smith", "hompson", "1985", "", "  "] {
            assert!(!ava.matches(query), "{query}");
        }
    }
}
