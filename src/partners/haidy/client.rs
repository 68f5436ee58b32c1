//! Haidy's API (`Authorization: Bearer <practice token>`): patient contexts, file uploads,
//! approved consultations and their reports.

use reqwest::{StatusCode, multipart};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum HaidyError {
    #[error("Haidy did not answer in time")]
    Timeout,
    #[error("could not reach Haidy")]
    Transport(#[source] reqwest::Error),
    #[error("Haidy refused the API token (HTTP {0})")]
    Unauthorized(u16),
    #[error("Haidy does not know it (HTTP 404)")]
    NotFound,
    #[error("Haidy refused the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("Haidy failed (HTTP {0})")]
    Server(u16),
    #[error("unexpected answer from Haidy")]
    Decode(#[source] reqwest::Error),
}

impl HaidyError {
    fn from_reqwest(e: reqwest::Error) -> Self {
        if e.is_timeout() {
            HaidyError::Timeout
        } else if e.is_decode() {
            HaidyError::Decode(e)
        } else {
            HaidyError::Transport(e)
        }
    }

    /// Words a clinician can act on.
    pub fn for_clinician(&self) -> String {
        match self {
            HaidyError::Timeout | HaidyError::Transport(_) => {
                "Haidy could not be reached. Try again in a moment.".into()
            }
            HaidyError::Unauthorized(_) => {
                "Haidy refused this practice's API token. Ask a practice admin to check it in Chartbridge settings.".into()
            }
            HaidyError::NotFound => "Haidy no longer knows this patient's record.".into(),
            HaidyError::Rejected { message, .. } => format!("Haidy refused: {message}"),
            HaidyError::Server(status) => {
                format!("Haidy failed (HTTP {status}). Try again in a moment.")
            }
            HaidyError::Decode(_) => "Haidy answered something Chartbridge does not understand.".into(),
        }
    }
}

/// `POST /v2/patient-contexts/`.
#[derive(Debug, Serialize)]
pub struct NewContext<'a> {
    pub external_id: &'a str,
    pub patient_group: &'a str,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gender: Option<&'static str>,
}

/// The outcome of creating a context.
pub enum Created {
    Context(String),
    /// Haidy already has this `external_id` in the group (a 400).
    Duplicate(String),
}

/// One file to upload.
pub struct Upload {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct UploadedFile {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FailedFile {
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default, alias = "reason", alias = "detail")]
    pub error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct UploadAnswer {
    #[serde(default)]
    pub uploaded_files: Vec<UploadedFile>,
    #[serde(default)]
    pub failed_files: Vec<FailedFile>,
}

/// An approved consultation, as much as we rely on.
#[derive(Debug, Clone, Deserialize)]
pub struct ConsultationSummary {
    pub id: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub patient_context_id: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub approved_at: Option<String>,
}

/// A report: JSON when Haidy gives it, else its text.
pub enum Report {
    Json(Value),
    Text(String),
}

#[derive(Clone, Debug)]
pub struct HaidyClient {
    http: reqwest::Client,
    api_url: Url,
}

fn message_of(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let text = parsed
        .as_ref()
        .and_then(|v| {
            ["detail", "message", "error"]
                .iter()
                .find_map(|k| v.get(k))
                .map(|d| {
                    d.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| d.to_string())
                })
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    text.chars().take(300).collect()
}

impl HaidyClient {
    pub fn new(http: reqwest::Client, api_url: Url) -> Self {
        Self { http, api_url }
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.api_url.clone();
        url.set_path(&format!(
            "{}{path}",
            self.api_url.path().trim_end_matches('/')
        ));
        url
    }

    async fn check(response: reqwest::Response) -> Result<reqwest::Response, HaidyError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                HaidyError::Unauthorized(status.as_u16())
            }
            StatusCode::NOT_FOUND => HaidyError::NotFound,
            s if s.is_client_error() => HaidyError::Rejected {
                status: s.as_u16(),
                message: message_of(&body),
            },
            s => HaidyError::Server(s.as_u16()),
        })
    }

    pub async fn create_context(
        &self,
        token: &SecretString,
        context: &NewContext<'_>,
    ) -> Result<Created, HaidyError> {
        let response = self
            .http
            .post(self.url("/v2/patient-contexts/"))
            .bearer_auth(token.expose_secret())
            .json(context)
            .send()
            .await
            .map_err(HaidyError::from_reqwest)?;
        match Self::check(response).await {
            Ok(response) => {
                let body: Value = response.json().await.map_err(HaidyError::from_reqwest)?;
                let id = body.get("id").and_then(Value::as_str).unwrap_or_default();
                if id.is_empty() {
                    return Err(HaidyError::Rejected {
                        status: 200,
                        message: "the new patient context has no id".into(),
                    });
                }
                Ok(Created::Context(id.to_string()))
            }
            Err(HaidyError::Rejected {
                status: 400,
                message,
            }) => Ok(Created::Duplicate(message)),
            Err(e) => Err(e),
        }
    }

    pub async fn upload(
        &self,
        token: &SecretString,
        context_id: &str,
        files: Vec<Upload>,
    ) -> Result<UploadAnswer, HaidyError> {
        let mut form = multipart::Form::new();
        for file in files {
            let part = multipart::Part::bytes(file.bytes)
                .file_name(file.filename)
                .mime_str(&file.content_type)
                .map_err(HaidyError::from_reqwest)?;
            form = form.part("files", part);
        }
        let path = format!("/v2/patient-files/upload/{}", encode(context_id));
        let response = self
            .http
            .post(self.url(&path))
            .bearer_auth(token.expose_secret())
            .multipart(form)
            .send()
            .await
            .map_err(HaidyError::from_reqwest)?;
        Self::check(response)
            .await?
            .json()
            .await
            .map_err(HaidyError::from_reqwest)
    }

    /// Approved consultations of a patient context (Haidy's listing may hold others: the
    /// filter is applied here too).
    pub async fn approved_consultations(
        &self,
        token: &SecretString,
        context_id: &str,
    ) -> Result<Vec<ConsultationSummary>, HaidyError> {
        let response = self
            .http
            .get(self.url("/v2/consultations"))
            .query(&[("status", "approved"), ("patient_context_id", context_id)])
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(HaidyError::from_reqwest)?;
        let body: Value = Self::check(response)
            .await?
            .json()
            .await
            .map_err(HaidyError::from_reqwest)?;
        let list = match body {
            Value::Array(items) => items,
            Value::Object(mut obj) => ["results", "items", "consultations", "data"]
                .iter()
                .find_map(|k| obj.remove(*k).and_then(|v| v.as_array().cloned()))
                .unwrap_or_default(),
            _ => vec![],
        };
        Ok(list
            .into_iter()
            .filter_map(|v| serde_json::from_value::<ConsultationSummary>(v).ok())
            .filter(|c| c.status.as_deref().is_none_or(|s| s == "approved"))
            .filter(|c| c.patient_context_id.as_deref() == Some(context_id))
            .collect())
    }

    /// The report as JSON, else as text.
    pub async fn report(
        &self,
        token: &SecretString,
        consultation_id: &str,
    ) -> Result<Report, HaidyError> {
        let base = format!("/v2/consultation/{}/report", encode(consultation_id));
        let response = self
            .http
            .get(self.url(&format!("{base}/JSON")))
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(HaidyError::from_reqwest)?;
        match Self::check(response).await {
            Ok(response) => {
                let text = response.text().await.map_err(HaidyError::from_reqwest)?;
                match serde_json::from_str(&text) {
                    Ok(json) => return Ok(Report::Json(json)),
                    Err(_) => return Ok(Report::Text(text)),
                }
            }
            Err(HaidyError::Rejected { .. } | HaidyError::NotFound) => {}
            Err(e) => return Err(e),
        }
        let response = self
            .http
            .get(self.url(&format!("{base}/TXT")))
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(HaidyError::from_reqwest)?;
        Ok(Report::Text(
            Self::check(response)
                .await?
                .text()
                .await
                .map_err(HaidyError::from_reqwest)?,
        ))
    }

    pub async fn mark_downloaded(
        &self,
        token: &SecretString,
        consultation_id: &str,
    ) -> Result<(), HaidyError> {
        let path = format!(
            "/v2/consultation/{}/mark-as-downloaded",
            encode(consultation_id)
        );
        let response = self
            .http
            .post(self.url(&path))
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(HaidyError::from_reqwest)?;
        Self::check(response).await?;
        Ok(())
    }
}

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}
