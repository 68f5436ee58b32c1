//! Typed client for Tiep's API: launch tokens and sessions. One facility API key per call.

use base64::{Engine as _, engine::general_purpose::URL_SAFE};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::upstream::{self, Upstream, UpstreamError, endpoint};

/// How errors name Tiep.
const TIEP: &str = "Tiep";

/// What a Tiep call fails with.
pub type TiepError = UpstreamError;

/// Words a clinician can act on.
pub fn for_clinician(e: &TiepError) -> String {
    match e.status() {
        Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => "Tiep refused this practice's facility API key. Ask a practice admin to check the Tiep settings in Chartbridge.".into(),
        Some(StatusCode::NOT_FOUND) => "Tiep answered in a way Chartbridge did not expect. Please try again; if it keeps happening, contact support.".into(),
        Some(s) if s.is_client_error() => {
            let reason = e.reason().unwrap_or_else(|| "no reason given".into());
            format!("Tiep refused the launch: {reason}. Ask a practice admin to check the Tiep form in Chartbridge settings.")
        }
        _ if e.is_retryable() => "Tiep is not reachable right now. Please try again in a few minutes.".into(),
        _ => "Tiep answered in a way Chartbridge did not expect. Please try again; if it keeps happening, contact support.".into(),
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
    upstream: Upstream,
    api_url: Url,
    app_url: Url,
}

impl TiepClient {
    pub fn new(upstream: Upstream, api_url: Url, app_url: Url) -> Self {
        Self {
            upstream,
            api_url,
            app_url,
        }
    }

    /// `POST /v1/auth/generate-token` with `body`.
    async fn request_token(
        &self,
        api_key: &SecretString,
        body: &Value,
    ) -> Result<reqwest::Response, TiepError> {
        let request = self
            .upstream
            .http()
            .post(endpoint(&self.api_url, &["v1", "auth", "generate-token"]))
            .header("X-API-Key", api_key.expose_secret())
            .json(body);
        self.upstream.send(TIEP, request).await
    }

    /// A launch token with `create_session: true`.
    pub async fn generate_token(
        &self,
        api_key: &SecretString,
        doctor: &Doctor<'_>,
        form: &Value,
    ) -> Result<LaunchToken, TiepError> {
        let body = serde_json::json!({"doctor": doctor, "create_session": true, "form": form});
        let response = self.request_token(api_key, &body).await?;
        upstream::json(TIEP, response).await
    }

    /// A connection test: a token request that opens no session (`create_session: false`)
    /// for a doctor that names the test. Tiep checks the key first; nothing is created.
    pub async fn check_key(&self, api_key: &SecretString) -> Result<(), TiepError> {
        let body = serde_json::json!({
            "doctor": {"id": "chartbridge-connection-test", "name": "Chartbridge connection test"},
            "create_session": false,
        });
        self.request_token(api_key, &body).await?;
        Ok(())
    }

    /// `GET /v1/sessions/{id}`.
    pub async fn get_session(
        &self,
        api_key: &SecretString,
        session_id: &str,
    ) -> Result<TiepSession, TiepError> {
        let request = self
            .upstream
            .http()
            .get(endpoint(&self.api_url, &["v1", "sessions", session_id]))
            .header("X-API-Key", api_key.expose_secret());
        let response = self.upstream.send(TIEP, request).await?;
        upstream::json(TIEP, response).await
    }

    /// `{app}/?token=…&session_id=…&context=<URL-safe Base64 JSON>`; a path in `TIEP_APP_URL`
    /// (a regional or versioned app) is kept.
    pub fn launch_url(&self, token: &LaunchToken, context: &Value) -> Url {
        let mut url = self.app_url.clone();
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        url.set_query(None);
        url.set_fragment(None);
        url.query_pairs_mut()
            .append_pair("token", &token.token)
            .append_pair("session_id", &token.session_id)
            .append_pair("context", &URL_SAFE.encode(context.to_string()));
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(app_url: &str) -> TiepClient {
        let upstream = Upstream::new(std::time::Duration::from_secs(1)).unwrap();
        TiepClient::new(
            upstream,
            Url::parse("https://api.tiep.example").unwrap(),
            Url::parse(app_url).unwrap(),
        )
    }

    #[test]
    fn the_launch_url_keeps_the_app_url_s_path() {
        let token = LaunchToken {
            token: "t".into(),
            session_id: "s".into(),
        };
        for (app, start) in [
            (
                "https://app.tiep.example",
                "https://app.tiep.example/?token=t&session_id=s&context=",
            ),
            (
                "https://app.tiep.example/eu",
                "https://app.tiep.example/eu/?token=t&session_id=s&context=",
            ),
            (
                "https://app.tiep.example/eu/",
                "https://app.tiep.example/eu/?token=t&session_id=s&context=",
            ),
        ] {
            let url = client(app)
                .launch_url(&token, &serde_json::json!({}))
                .to_string();
            assert!(url.starts_with(start), "{app}: {url}");
        }
    }
}
