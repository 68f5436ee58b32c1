//! Typed client for Tiep's API: launch tokens and sessions. One facility API key per call.

use base64::{Engine as _, engine::general_purpose::URL_SAFE};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum TiepError {
    #[error("Tiep did not answer in time")]
    Timeout,
    #[error("could not reach Tiep")]
    Transport(#[source] reqwest::Error),
    #[error("Tiep refused the facility API key")]
    Unauthorized,
    #[error("Tiep has no such session")]
    NotFound,
    #[error("Tiep rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("Tiep failed (HTTP {0})")]
    Server(u16),
    #[error("unexpected answer from Tiep")]
    Decode(#[source] reqwest::Error),
}

impl TiepError {
    fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            TiepError::Timeout
        } else if e.is_decode() {
            TiepError::Decode(e)
        } else {
            TiepError::Transport(e)
        }
    }

    /// Words a clinician can act on.
    pub fn for_clinician(&self) -> String {
        match self {
            TiepError::Unauthorized => "Tiep refused this practice's facility API key. Ask a practice admin to check the Tiep settings in Chartbridge.".into(),
            TiepError::Rejected { message, .. } => format!("Tiep refused the launch: {message}. Ask a practice admin to check the Tiep form in Chartbridge settings."),
            TiepError::Timeout | TiepError::Transport(_) | TiepError::Server(_) => "Tiep is not reachable right now. Please try again in a few minutes.".into(),
            TiepError::NotFound | TiepError::Decode(_) => "Tiep answered in a way Chartbridge did not expect. Please try again; if it keeps happening, contact support.".into(),
        }
    }
}

/// The doctor Tiep creates on first use.
#[derive(Debug, Serialize)]
pub struct Doctor<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub specialties: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct LaunchToken {
    pub token: String,
    pub session_id: String,
}

/// A session as `GET /v1/sessions/{id}` returns it.
#[derive(Debug, Deserialize)]
pub struct TiepSession {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub payload: Option<Value>,
}

#[derive(Clone, Debug)]
pub struct TiepClient {
    http: reqwest::Client,
    api_url: Url,
    app_url: Url,
}

impl TiepClient {
    pub fn new(http: reqwest::Client, api_url: Url, app_url: Url) -> Self {
        Self {
            http,
            api_url,
            app_url,
        }
    }

    async fn check(response: reqwest::Response) -> Result<reqwest::Response, TiepError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => TiepError::Unauthorized,
            StatusCode::NOT_FOUND => TiepError::NotFound,
            s if s.is_server_error() => TiepError::Server(s.as_u16()),
            s => {
                let body: Value = response.json().await.unwrap_or_default();
                let message = body
                    .get("detail")
                    .or_else(|| body.get("message"))
                    .or_else(|| body.get("error"))
                    .map(|m| {
                        m.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| m.to_string())
                    })
                    .unwrap_or_else(|| "no reason given".into());
                TiepError::Rejected {
                    status: s.as_u16(),
                    message: message.chars().take(300).collect(),
                }
            }
        })
    }

    /// `POST /v1/auth/generate-token` with `create_session: true`.
    pub async fn generate_token(
        &self,
        api_key: &SecretString,
        doctor: &Doctor<'_>,
        form: &Value,
    ) -> Result<LaunchToken, TiepError> {
        let url = self
            .api_url
            .join("/v1/auth/generate-token")
            .expect("static path");
        let body = serde_json::json!({"doctor": doctor, "create_session": true, "form": form});
        let response = self
            .http
            .post(url)
            .header("X-API-Key", api_key.expose_secret())
            .json(&body)
            .send()
            .await
            .map_err(TiepError::from_reqwest)?;
        Self::check(response)
            .await?
            .json()
            .await
            .map_err(TiepError::from_reqwest)
    }

    /// `GET /v1/sessions/{id}`.
    pub async fn get_session(
        &self,
        api_key: &SecretString,
        session_id: &str,
    ) -> Result<TiepSession, TiepError> {
        let mut url = self.api_url.clone();
        url.path_segments_mut()
            .expect("http(s) URL")
            .pop_if_empty()
            .extend(["v1", "sessions", session_id]);
        let response = self
            .http
            .get(url)
            .header("X-API-Key", api_key.expose_secret())
            .send()
            .await
            .map_err(TiepError::from_reqwest)?;
        Self::check(response)
            .await?
            .json()
            .await
            .map_err(TiepError::from_reqwest)
    }

    /// `{app}/?token=…&session_id=…&context=<URL-safe Base64 JSON>`.
    pub fn launch_url(&self, token: &LaunchToken, context: &Value) -> Url {
        let mut url = self.app_url.join("/").expect("static path");
        url.query_pairs_mut()
            .append_pair("token", &token.token)
            .append_pair("session_id", &token.session_id)
            .append_pair("context", &URL_SAFE.encode(context.to_string()));
        url
    }
}
