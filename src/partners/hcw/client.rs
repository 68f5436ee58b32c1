//! HCW@Home's API as the practice's service account (role `scheduler`).
//!
//! The service account's JWT lives 15 minutes: it is cached per practice (and base URL and
//! account), renewed with the refresh token once older than `token_lifetime`, and a 401 on a
//! call logs in again and repeats the call once. The token goes out as both `x-access-token`
//! and `Authorization: Bearer` (HCW versions differ). HCW's many error shapes are read by the
//! shared layer (`upstream::messages`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::HcwConnection;
use crate::{
    tenancy::PracticeId,
    upstream::{self, Upstream, UpstreamError, endpoint, guarded::Guarded},
    visits::PartnerError,
};

/// How errors name HCW@Home.
const HCW: &str = "HCW@Home";

/// What an HCW@Home call fails with.
#[derive(Debug, thiserror::Error)]
pub enum HcwError {
    /// The login itself was refused: the service account's email or password is wrong.
    #[error("HCW@Home refused the service account's email or password")]
    BadCredentials(#[source] UpstreamError),
    /// Any other failure of a call (kept whole as the source, so what it says of HCW@Home's
    /// health can be read from the chain).
    #[error("an HCW@Home call failed")]
    Upstream(#[from] UpstreamError),
}

impl HcwError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            HcwError::BadCredentials(_) => None,
            HcwError::Upstream(e) => e.status(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }

    /// HCW refused the request itself (a 4xx other than a sign-in problem or "not found"):
    /// its messages say why.
    pub fn is_refused_request(&self) -> bool {
        self.status().is_some_and(|s| {
            s.is_client_error() && s != StatusCode::UNAUTHORIZED && s != StatusCode::NOT_FOUND
        })
    }

    /// What HCW said about a refusal, cut for a person.
    pub fn reason(&self) -> Option<String> {
        match self {
            HcwError::BadCredentials(e) | HcwError::Upstream(e) => e.reason(),
        }
    }

    /// Not sent: the stored address is not one Chartbridge may call (any more).
    pub fn is_refused_address(&self) -> bool {
        matches!(self, HcwError::Upstream(e) if e.is_refused_address())
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, HcwError::Upstream(e) if e.is_retryable())
    }

    /// As the launch and the visit page report it: HCW refusing the request itself, or HCW
    /// (or our access to it) failing.
    pub fn into_partner_error(self) -> PartnerError {
        let message = self.for_clinician();
        if self.is_refused_request() {
            PartnerError::Refused {
                message,
                source: self.into(),
            }
        } else {
            PartnerError::Unavailable {
                message,
                source: self.into(),
            }
        }
    }

    /// Words a clinician can act on. Whatever kept an answer from coming (nothing listening, a
    /// timeout, an address Chartbridge may not call, something that is not HCW answering) reads
    /// the same: the page must not tell what lives at an address.
    pub fn for_clinician(&self) -> String {
        let e = match self {
            HcwError::BadCredentials(_) => return refused_account(),
            HcwError::Upstream(e) => e,
        };
        let reason = |fallback: String| e.reason().unwrap_or(fallback);
        match e.status() {
            Some(StatusCode::UNAUTHORIZED) => refused_account(),
            Some(StatusCode::FORBIDDEN) => format!(
                "HCW@Home does not allow Chartbridge's service account to do this ({}). It needs the scheduler role.",
                reason("forbidden".into())
            ),
            Some(StatusCode::NOT_FOUND) => "HCW@Home no longer knows this invitation.".into(),
            Some(s) if s.is_client_error() => {
                format!(
                    "HCW@Home refused: {}.",
                    reason(format!("HTTP {}", s.as_u16()))
                )
            }
            Some(s) if s.is_server_error() => {
                format!(
                    "HCW@Home failed (HTTP {}). Try again in a moment.",
                    s.as_u16()
                )
            }
            _ => unreachable_words(),
        }
    }
}

/// The one wording for an HCW@Home server that gave no usable answer.
pub fn unreachable_words() -> String {
    "HCW@Home could not be reached. Check that it is running and that the base URL in Chartbridge settings is right, then try again.".into()
}

fn refused_account() -> String {
    "HCW@Home refused Chartbridge's service account. Ask a practice admin to check its email and password in Chartbridge settings.".into()
}

/// `POST /api/v1/invite`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewInvite {
    pub is_patient_invite: bool,
    pub first_name: String,
    pub last_name: String,
    pub gender: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    pub language: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doctor_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<String>,
    pub send_invite: bool,
    pub metadata: Value,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invite {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, rename = "patientURL")]
    pub patient_url: Option<String>,
    #[serde(default, rename = "doctorURL")]
    pub doctor_url: Option<String>,
    #[serde(default)]
    pub scheduled_for: Option<Value>,
}

#[derive(Deserialize)]
struct InviteAnswer {
    invite: Invite,
}

/// A consultation as HCW answers it (what we keep of it).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Consultation {
    #[serde(default, alias = "_id")]
    pub id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub accepted_at: Option<i64>,
    #[serde(default)]
    pub closed_at: Option<i64>,
    #[serde(default)]
    pub doctor_comment: Option<String>,
    #[serde(default)]
    pub doctor_rating: Option<String>,
    #[serde(default)]
    pub patient_comment: Option<String>,
    #[serde(default)]
    pub patient_rating: Option<String>,
}

impl Consultation {
    pub fn is_closed(&self) -> bool {
        self.status.as_deref() == Some("closed")
    }
}

/// (practice, base URL, account email).
type TokenKey = (PracticeId, String, String);

struct Tokens {
    token: SecretString,
    refresh: Option<SecretString>,
    obtained: Instant,
}

#[derive(Clone)]
pub struct HcwClient {
    /// A practice admin typed the server's address: every call is guarded.
    upstream: Guarded,
    token_lifetime: Duration,
    tokens: Arc<Mutex<HashMap<TokenKey, Arc<Tokens>>>>,
}

impl std::fmt::Debug for HcwClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HcwClient")
    }
}

fn key(practice_id: &PracticeId, connection: &HcwConnection) -> TokenKey {
    (
        practice_id.clone(),
        connection.base_url.to_string(),
        connection.service_email.clone(),
    )
}

impl HcwClient {
    pub fn new(upstream: &Upstream, token_lifetime: Duration) -> Self {
        Self {
            upstream: upstream.guarded().clone(),
            token_lifetime,
            tokens: Arc::default(),
        }
    }

    fn post(&self, connection: &HcwConnection, segments: &[&str]) -> RequestBuilder {
        self.upstream
            .http()
            .post(endpoint(&connection.base_url, segments))
    }

    /// `POST /api/v1/login-local` as the service account.
    async fn login(&self, connection: &HcwConnection) -> Result<Tokens, HcwError> {
        let request =
            self.post(connection, &["api", "v1", "login-local"])
                .json(&serde_json::json!({
                    "email": connection.service_email,
                    "password": connection.service_password.expose_secret(),
                }));
        let response = match self.upstream.send(HCW, request).await {
            Err(e) if e.is_refusal() => return Err(HcwError::BadCredentials(e)),
            other => other?,
        };
        let body: Value = upstream::json(HCW, response).await?;
        tokens_from(body.get("user").unwrap_or(&body)).ok_or_else(|| {
            HcwError::BadCredentials(UpstreamError::Status {
                party: HCW,
                status: StatusCode::OK,
                messages: vec!["the login answer holds no token".into()],
            })
        })
    }

    /// A connection test: the service account signs in now, whatever is cached; the token
    /// is kept for the calls that follow.
    pub async fn check_login(
        &self,
        practice_id: &PracticeId,
        connection: &HcwConnection,
    ) -> Result<(), HcwError> {
        let tokens = Arc::new(self.login(connection).await?);
        self.tokens
            .lock()
            .expect("hcw tokens")
            .insert(key(practice_id, connection), tokens);
        Ok(())
    }

    /// `POST /api/v1/refresh-token`.
    async fn refresh(
        &self,
        connection: &HcwConnection,
        refresh: &SecretString,
    ) -> Result<Tokens, HcwError> {
        let request = self
            .post(connection, &["api", "v1", "refresh-token"])
            .json(&serde_json::json!({"refreshToken": refresh.expose_secret()}));
        let response = self.upstream.send(HCW, request).await?;
        let body: Value = upstream::json(HCW, response).await?;
        let mut tokens = tokens_from(body.get("user").unwrap_or(&body)).ok_or_else(|| {
            HcwError::Upstream(UpstreamError::Status {
                party: HCW,
                status: StatusCode::UNAUTHORIZED,
                messages: vec!["the refresh answer holds no token".into()],
            })
        })?;
        if tokens.refresh.is_none() {
            tokens.refresh = Some(refresh.clone());
        }
        Ok(tokens)
    }

    /// A token for the service account: cached, else renewed, else a new login.
    async fn token(
        &self,
        practice_id: &PracticeId,
        connection: &HcwConnection,
    ) -> Result<Arc<Tokens>, HcwError> {
        let key = key(practice_id, connection);
        let cached = self.tokens.lock().expect("hcw tokens").get(&key).cloned();
        let fresh = match cached {
            Some(t) if t.obtained.elapsed() < self.token_lifetime => return Ok(t),
            Some(t) => match &t.refresh {
                Some(refresh) => match self.refresh(connection, refresh).await {
                    Ok(renewed) => renewed,
                    Err(e) if e.is_retryable() => return Err(e),
                    Err(_) => self.login(connection).await?,
                },
                None => self.login(connection).await?,
            },
            None => self.login(connection).await?,
        };
        let fresh = Arc::new(fresh);
        self.tokens
            .lock()
            .expect("hcw tokens")
            .insert(key, fresh.clone());
        Ok(fresh)
    }

    fn forget(&self, practice_id: &PracticeId, connection: &HcwConnection) {
        self.tokens
            .lock()
            .expect("hcw tokens")
            .remove(&key(practice_id, connection));
    }

    /// Sends an authenticated call; on 401 logs in again and sends it once more.
    async fn call(
        &self,
        practice_id: &PracticeId,
        connection: &HcwConnection,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
    ) -> Result<reqwest::Response, HcwError> {
        let build = |token: &SecretString| -> RequestBuilder {
            let mut request = self
                .upstream
                .http()
                .request(method.clone(), endpoint(&connection.base_url, segments))
                .header("x-access-token", token.expose_secret())
                .bearer_auth(token.expose_secret());
            if let Some(body) = body {
                request = request.json(body);
            }
            request
        };
        let tokens = self.token(practice_id, connection).await?;
        match self.upstream.send(HCW, build(&tokens.token)).await {
            Err(e) if e.is_status(StatusCode::UNAUTHORIZED) => {}
            answered => return Ok(answered?),
        }
        self.forget(practice_id, connection);
        let tokens = Arc::new(self.login(connection).await?);
        self.tokens
            .lock()
            .expect("hcw tokens")
            .insert(key(practice_id, connection), tokens.clone());
        Ok(self.upstream.send(HCW, build(&tokens.token)).await?)
    }

    async fn json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, HcwError> {
        Ok(upstream::json(HCW, response).await?)
    }

    pub async fn create_invite(
        &self,
        practice_id: &PracticeId,
        connection: &HcwConnection,
        invite: &NewInvite,
    ) -> Result<Invite, HcwError> {
        let body = serde_json::to_value(invite).expect("an invite serialises");
        let response = self
            .call(
                practice_id,
                connection,
                Method::POST,
                &["api", "v1", "invite"],
                Some(&body),
            )
            .await?;
        Ok(Self::json::<InviteAnswer>(response).await?.invite)
    }

    pub async fn delete_invite(
        &self,
        practice_id: &PracticeId,
        connection: &HcwConnection,
        invite_id: &str,
    ) -> Result<(), HcwError> {
        let path = ["api", "v1", "invite", invite_id];
        self.call(practice_id, connection, Method::DELETE, &path, None)
            .await?;
        Ok(())
    }

    /// The invite's consultation; `None` while the patient has not asked for one.
    pub async fn consultation(
        &self,
        practice_id: &PracticeId,
        connection: &HcwConnection,
        invite_id: &str,
    ) -> Result<Option<Consultation>, HcwError> {
        let path = ["api", "v1", "invite", invite_id, "consultation"];
        match self
            .call(practice_id, connection, Method::GET, &path, None)
            .await
        {
            Ok(response) => Ok(Some(Self::json(response).await?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Closes the invite's consultation for good; `None` when none was ever accepted.
    pub async fn close_consultation(
        &self,
        practice_id: &PracticeId,
        connection: &HcwConnection,
        invite_id: &str,
    ) -> Result<Option<Consultation>, HcwError> {
        let path = ["api", "v1", "invite", invite_id, "consultation", "close"];
        match self
            .call(practice_id, connection, Method::POST, &path, None)
            .await
        {
            Ok(response) => Ok(Some(Self::json(response).await?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn tokens_from(user: &Value) -> Option<Tokens> {
    let token = user.get("token")?.as_str().filter(|t| !t.is_empty())?;
    Some(Tokens {
        token: SecretString::from(token.to_string()),
        refresh: user
            .get("refreshToken")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(|t| SecretString::from(t.to_string())),
        obtained: Instant::now(),
    })
}
