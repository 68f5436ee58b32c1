//! Haidy's API (`Authorization: Bearer <practice token>`): patient contexts, file uploads,
//! approved consultations and their reports.

use reqwest::{Method, StatusCode, multipart};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::upstream::{self, Upstream, UpstreamError, endpoint};

/// How errors name Haidy.
const HAIDY: &str = "Haidy";

/// What a Haidy call fails with.
pub type HaidyError = UpstreamError;

/// Words a clinician can act on.
pub fn for_clinician(e: &HaidyError) -> String {
    match e.status() {
        Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => "Haidy refused this practice's API token. Ask a practice admin to check it in Chartbridge settings.".into(),
        Some(StatusCode::NOT_FOUND) => "Haidy no longer knows this patient's record.".into(),
        Some(s) if s.is_client_error() => format!(
            "Haidy refused: {}.",
            e.reason().unwrap_or_else(|| "no reason given".into())
        ),
        Some(s) => format!("Haidy failed (HTTP {}). Try again in a moment.", s.as_u16()),
        None if e.is_unanswered() => "Haidy could not be reached. Try again in a moment.".into(),
        None => "Haidy answered something Chartbridge does not understand.".into(),
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
    pub content_type: &'static str,
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
    /// Whether its report was marked downloaded since it was last approved.
    #[serde(default)]
    pub downloaded: bool,
}

/// A report: JSON when Haidy gives it, else its text.
pub enum Report {
    Json(Value),
    Text(String),
}

#[derive(Clone, Debug)]
pub struct HaidyClient {
    upstream: Upstream,
    api_url: Url,
}

impl HaidyClient {
    pub fn new(upstream: Upstream, api_url: Url) -> Self {
        Self { upstream, api_url }
    }

    fn call(
        &self,
        method: Method,
        segments: &[&str],
        token: &SecretString,
    ) -> reqwest::RequestBuilder {
        self.upstream
            .http()
            .request(method, endpoint(&self.api_url, segments))
            .bearer_auth(token.expose_secret())
    }

    /// Creates the patient's context; a 400 is Haidy's answer to an `external_id` it already
    /// has in the group (it publishes no lookup), reported as `Created::Duplicate`.
    pub async fn create_context(
        &self,
        token: &SecretString,
        context: &NewContext<'_>,
    ) -> Result<Created, HaidyError> {
        // A trailing slash, as Haidy's route has one.
        let request = self
            .call(Method::POST, &["v2", "patient-contexts", ""], token)
            .json(context);
        match self.upstream.send(HAIDY, request).await {
            Ok(response) => {
                let body: Value = upstream::json(HAIDY, response).await?;
                match body
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|id| !id.is_empty())
                {
                    Some(id) => Ok(Created::Context(id.to_string())),
                    None => Err(HaidyError::Status {
                        party: HAIDY,
                        status: StatusCode::OK,
                        messages: vec!["the new patient context has no id".into()],
                    }),
                }
            }
            Err(e) if e.is_status(StatusCode::BAD_REQUEST) => {
                Ok(Created::Duplicate(e.reason().unwrap_or_default()))
            }
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
                .mime_str(file.content_type)
                .expect("content types come from our own sniffing and are valid");
            form = form.part("files", part);
        }
        let request = self
            .call(
                Method::POST,
                &["v2", "patient-files", "upload", context_id],
                token,
            )
            .multipart(form);
        let response = self.upstream.send(HAIDY, request).await?;
        upstream::json(HAIDY, response).await
    }

    /// Approved consultations of a patient context (Haidy's listing may hold others: the
    /// filter is applied here too).
    pub async fn approved_consultations(
        &self,
        token: &SecretString,
        context_id: &str,
    ) -> Result<Vec<ConsultationSummary>, HaidyError> {
        let request = self
            .call(Method::GET, &["v2", "consultations"], token)
            .query(&[("status", "approved"), ("patient_context_id", context_id)]);
        let response = self.upstream.send(HAIDY, request).await?;
        let body: Value = upstream::json(HAIDY, response).await?;
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

    /// A connection test: the approved consultations of a patient context that does not
    /// exist (Haidy checks the token; the list is empty and names no patient).
    pub async fn check_token(&self, token: &SecretString) -> Result<(), HaidyError> {
        let request = self
            .call(Method::GET, &["v2", "consultations"], token)
            .query(&[
                ("status", "approved"),
                ("patient_context_id", "chartbridge-connection-test"),
            ]);
        self.upstream.send(HAIDY, request).await?;
        Ok(())
    }

    /// The report as JSON, else as text.
    pub async fn report(
        &self,
        token: &SecretString,
        consultation_id: &str,
    ) -> Result<Report, HaidyError> {
        let report = |format| ["v2", "consultation", consultation_id, "report", format];
        let request = self.call(Method::GET, &report("JSON"), token);
        match self.upstream.send(HAIDY, request).await {
            Ok(response) => {
                let text = upstream::text(HAIDY, response).await?;
                return Ok(match serde_json::from_str(&text) {
                    Ok(json) => Report::Json(json),
                    Err(_) => Report::Text(text),
                });
            }
            // No JSON rendering of this report: ask for the text one.
            Err(e) if e.is_refusal() => {}
            Err(e) => return Err(e),
        }
        let request = self.call(Method::GET, &report("TXT"), token);
        let response = self.upstream.send(HAIDY, request).await?;
        Ok(Report::Text(upstream::text(HAIDY, response).await?))
    }

    /// The report as the PDF Haidy renders, up to `max` bytes.
    pub async fn report_pdf(
        &self,
        token: &SecretString,
        consultation_id: &str,
        max: usize,
    ) -> Result<Vec<u8>, HaidyError> {
        let path = ["v2", "consultation", consultation_id, "report", "PDF"];
        let request = self.call(Method::GET, &path, token);
        let response = self.upstream.send(HAIDY, request).await?;
        upstream::bytes(HAIDY, response, max).await
    }

    pub async fn mark_downloaded(
        &self,
        token: &SecretString,
        consultation_id: &str,
    ) -> Result<(), HaidyError> {
        let path = ["v2", "consultation", consultation_id, "mark-as-downloaded"];
        let request = self.call(Method::POST, &path, token);
        self.upstream.send(HAIDY, request).await?;
        Ok(())
    }
}
