//! HCW@Home's API as the practice's service account (role `scheduler`).
//!
//! The service account's JWT lives 15 minutes: it is cached per practice (and base URL and
//! account), renewed with the refresh token once older than `token_lifetime`, and a 401 on a
//! call logs in again and repeats the call once. The token goes out as both `x-access-token`
//! and `Authorization: Bearer` (HCW versions differ).
//!
//! HCW answers errors in several shapes (a bare list of `{message}`, `{success:false, error:
//! "…"|[{message}]}`, `{error:true, message}`, `{message}`): all become a list of messages.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use url::Url;

use super::HcwConnection;

#[derive(Debug, thiserror::Error)]
pub enum HcwError {
    #[error("HCW@Home did not answer in time")]
    Timeout,
    #[error("could not reach HCW@Home")]
    Transport(#[source] reqwest::Error),
    #[error("HCW@Home refused the service account's email or password")]
    BadCredentials,
    #[error("HCW@Home refused the request (HTTP 401)")]
    Unauthorized,
    #[error("HCW@Home does not allow this (HTTP 403): {0}")]
    Forbidden(String),
    #[error("HCW@Home does not know it (HTTP 404)")]
    NotFound,
    #[error("HCW@Home refused the request: {}", .0.join("; "))]
    Rejected(Vec<String>),
    #[error("HCW@Home failed (HTTP {0})")]
    Server(u16),
    #[error("unexpected answer from HCW@Home")]
    Decode(#[source] reqwest::Error),
}

impl HcwError {
    fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            HcwError::Timeout
        } else if e.is_decode() {
            HcwError::Decode(e)
        } else {
            HcwError::Transport(e)
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            HcwError::Timeout | HcwError::Transport(_) | HcwError::Server(_)
        )
    }

    /// Words a clinician can act on.
    pub fn for_clinician(&self) -> String {
        match self {
            HcwError::Timeout | HcwError::Transport(_) => {
                "HCW@Home could not be reached. Check that it is running and that the base URL in Chartbridge settings is right, then try again.".into()
            }
            HcwError::BadCredentials | HcwError::Unauthorized => {
                "HCW@Home refused Chartbridge's service account. Ask a practice admin to check its email and password in Chartbridge settings.".into()
            }
            HcwError::Forbidden(message) => format!(
                "HCW@Home does not allow Chartbridge's service account to do this ({message}). It needs the scheduler role."
            ),
            HcwError::NotFound => "HCW@Home no longer knows this invitation.".into(),
            HcwError::Rejected(messages) => {
                format!("HCW@Home refused: {}.", messages.join("; ").trim_end_matches('.'))
            }
            HcwError::Server(status) => {
                format!("HCW@Home failed (HTTP {status}). Try again in a moment.")
            }
            HcwError::Decode(_) => {
                "HCW@Home answered something Chartbridge does not understand. Check the base URL in settings.".into()
            }
        }
    }
}

/// Every message in one of HCW's error bodies.
pub fn error_messages(body: &Value) -> Vec<String> {
    fn collect(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
            Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
            Value::Object(obj) => {
                for key in ["message", "error"] {
                    if let Some(v) = obj.get(key) {
                        collect(v, out);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    collect(body, &mut out);
    out.truncate(10);
    out
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
type TokenKey = (String, String, String);

struct Tokens {
    token: SecretString,
    refresh: Option<SecretString>,
    obtained: Instant,
}

#[derive(Clone)]
pub struct HcwClient {
    http: reqwest::Client,
    token_lifetime: Duration,
    tokens: Arc<Mutex<HashMap<TokenKey, Arc<Tokens>>>>,
}

impl std::fmt::Debug for HcwClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HcwClient")
    }
}

fn key(practice_id: &str, connection: &HcwConnection) -> TokenKey {
    (
        practice_id.to_string(),
        connection.base_url.to_string(),
        connection.service_email.clone(),
    )
}

impl HcwClient {
    pub fn new(http: reqwest::Client, token_lifetime: Duration) -> Self {
        Self {
            http,
            token_lifetime,
            tokens: Arc::default(),
        }
    }

    fn url(base: &Url, path: &str) -> Url {
        let mut url = base.clone();
        let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }

    async fn check(response: reqwest::Response) -> Result<reqwest::Response, HcwError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let messages = error_messages(&body);
        Err(match status {
            StatusCode::UNAUTHORIZED => HcwError::Unauthorized,
            StatusCode::FORBIDDEN => HcwError::Forbidden(
                messages
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "forbidden".into()),
            ),
            StatusCode::NOT_FOUND => HcwError::NotFound,
            s if s.is_client_error() => HcwError::Rejected(if messages.is_empty() {
                vec![format!("HTTP {}", s.as_u16())]
            } else {
                messages
            }),
            s => HcwError::Server(s.as_u16()),
        })
    }

    /// `POST /api/v1/login-local` as the service account.
    async fn login(&self, connection: &HcwConnection) -> Result<Tokens, HcwError> {
        let response = self
            .http
            .post(Self::url(&connection.base_url, "/api/v1/login-local"))
            .json(&serde_json::json!({
                "email": connection.service_email,
                "password": connection.service_password.expose_secret(),
            }))
            .send()
            .await
            .map_err(HcwError::from_reqwest)?;
        let response = match Self::check(response).await {
            Err(HcwError::Unauthorized | HcwError::Rejected(_)) => {
                return Err(HcwError::BadCredentials);
            }
            other => other?,
        };
        let body: Value = response.json().await.map_err(HcwError::from_reqwest)?;
        tokens_from(body.get("user").unwrap_or(&body)).ok_or(HcwError::BadCredentials)
    }

    /// `POST /api/v1/refresh-token`.
    async fn refresh(
        &self,
        connection: &HcwConnection,
        refresh: &SecretString,
    ) -> Result<Tokens, HcwError> {
        let response = self
            .http
            .post(Self::url(&connection.base_url, "/api/v1/refresh-token"))
            .json(&serde_json::json!({"refreshToken": refresh.expose_secret()}))
            .send()
            .await
            .map_err(HcwError::from_reqwest)?;
        let body: Value = Self::check(response)
            .await?
            .json()
            .await
            .map_err(HcwError::from_reqwest)?;
        let mut tokens =
            tokens_from(body.get("user").unwrap_or(&body)).ok_or(HcwError::Unauthorized)?;
        if tokens.refresh.is_none() {
            tokens.refresh = Some(refresh.clone());
        }
        Ok(tokens)
    }

    /// A token for the service account: cached, else renewed, else a new login.
    async fn token(
        &self,
        practice_id: &str,
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

    fn forget(&self, practice_id: &str, connection: &HcwConnection) {
        self.tokens
            .lock()
            .expect("hcw tokens")
            .remove(&key(practice_id, connection));
    }

    /// Sends an authenticated call; on 401 logs in again and sends it once more.
    async fn call(
        &self,
        practice_id: &str,
        connection: &HcwConnection,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, HcwError> {
        let build = |token: &SecretString| -> RequestBuilder {
            let mut request = self
                .http
                .request(method.clone(), Self::url(&connection.base_url, path))
                .header("x-access-token", token.expose_secret())
                .bearer_auth(token.expose_secret());
            if let Some(body) = body {
                request = request.json(body);
            }
            request
        };
        let tokens = self.token(practice_id, connection).await?;
        let response = build(&tokens.token)
            .send()
            .await
            .map_err(HcwError::from_reqwest)?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Self::check(response).await;
        }
        self.forget(practice_id, connection);
        let tokens = Arc::new(self.login(connection).await?);
        self.tokens
            .lock()
            .expect("hcw tokens")
            .insert(key(practice_id, connection), tokens.clone());
        let response = build(&tokens.token)
            .send()
            .await
            .map_err(HcwError::from_reqwest)?;
        Self::check(response).await
    }

    async fn json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, HcwError> {
        response.json().await.map_err(HcwError::from_reqwest)
    }

    pub async fn create_invite(
        &self,
        practice_id: &str,
        connection: &HcwConnection,
        invite: &NewInvite,
    ) -> Result<Invite, HcwError> {
        let body = serde_json::to_value(invite).expect("an invite serialises");
        let response = self
            .call(
                practice_id,
                connection,
                Method::POST,
                "/api/v1/invite",
                Some(&body),
            )
            .await?;
        Ok(Self::json::<InviteAnswer>(response).await?.invite)
    }

    pub async fn delete_invite(
        &self,
        practice_id: &str,
        connection: &HcwConnection,
        invite_id: &str,
    ) -> Result<(), HcwError> {
        let path = format!("/api/v1/invite/{}", encode(invite_id));
        self.call(practice_id, connection, Method::DELETE, &path, None)
            .await?;
        Ok(())
    }

    /// The invite's consultation; `None` while the patient has not asked for one.
    pub async fn consultation(
        &self,
        practice_id: &str,
        connection: &HcwConnection,
        invite_id: &str,
    ) -> Result<Option<Consultation>, HcwError> {
        let path = format!("/api/v1/invite/{}/consultation", encode(invite_id));
        match self
            .call(practice_id, connection, Method::GET, &path, None)
            .await
        {
            Ok(response) => Ok(Some(Self::json(response).await?)),
            Err(HcwError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Closes the invite's consultation for good; `None` when none was ever accepted.
    pub async fn close_consultation(
        &self,
        practice_id: &str,
        connection: &HcwConnection,
        invite_id: &str,
    ) -> Result<Option<Consultation>, HcwError> {
        let path = format!("/api/v1/invite/{}/consultation/close", encode(invite_id));
        match self
            .call(practice_id, connection, Method::POST, &path, None)
            .await
        {
            Ok(response) => Ok(Some(Self::json(response).await?)),
            Err(HcwError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_hcw_error_shape_becomes_messages() {
        assert_eq!(
            error_messages(
                &json!([{"message": "gender is required"}, {"message": "firstName is required"}])
            ),
            ["gender is required", "firstName is required"]
        );
        assert_eq!(
            error_messages(
                &json!({"success": false, "error": "doctorEmail or queue is required."})
            ),
            ["doctorEmail or queue is required."]
        );
        assert_eq!(
            error_messages(&json!({"error": true, "message": "queue Night doesn't exist"})),
            ["queue Night doesn't exist"]
        );
        assert_eq!(
            error_messages(
                &json!({"success": false, "error": [{"message": "\"language\" must be a string", "path": ["language"]}]})
            ),
            ["\"language\" must be a string"]
        );
        assert!(error_messages(&json!(null)).is_empty());
    }
}
