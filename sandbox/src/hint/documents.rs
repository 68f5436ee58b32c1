//! The Provider API's document interactions: a visit's content in the chart, as Markdown with
//! attachments. Strict as Hint is: unknown fields refused, `status` required, and every
//! attachment downloaded while the request is handled (each must answer 200 within 10 s, or the
//! request fails and nothing is kept).

use std::{collections::HashMap, time::Duration};

use axum::{
    Json,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use url::Url;

use super::patients::find_patient;
use super::provider::{page_response, paging, provider_gate, refuse_unknown_params};
use super::{Document, SandboxHint};
use crate::hint_error;

const STATUSES: [&str; 5] = ["draft", "signed", "addended", "deleted", "failed"];
const DOCUMENT_FIELDS: [&str; 8] = [
    "status",
    "title",
    "body",
    "attachments",
    "event_timestamp",
    "integration_record_id",
    "integration_web_link",
    "integration_error_message",
];
/// How long Hint waits for one attachment.
const ATTACHMENT_WAIT: Duration = Duration::from_secs(10);
/// Largest attachment Hint keeps.
const MAX_ATTACHMENT: usize = 25 * 1024 * 1024;

/// Validates a create body strictly; answers its fields.
fn document_body(body: &Value) -> Result<Map<String, Value>, Response> {
    let bad = |m: &str| hint_error(StatusCode::BAD_REQUEST, m);
    let unprocessable = |m: &str| hint_error(StatusCode::UNPROCESSABLE_ENTITY, m);
    let obj = body
        .as_object()
        .ok_or_else(|| bad("Body must be a JSON object"))?;
    if let Some(k) = obj.keys().find(|k| !DOCUMENT_FIELDS.contains(&k.as_str())) {
        return Err(bad(&format!("Unknown attribute {k}")));
    }
    match obj.get("status") {
        Some(Value::String(s)) if STATUSES.contains(&s.as_str()) => {}
        Some(_) => {
            return Err(unprocessable(
                "status must be one of draft, signed, addended, deleted, failed",
            ));
        }
        None => return Err(bad("status is required")),
    }
    for field in [
        "title",
        "body",
        "event_timestamp",
        "integration_record_id",
        "integration_web_link",
        "integration_error_message",
    ] {
        if obj
            .get(field)
            .is_some_and(|v| !v.is_string() && !v.is_null())
        {
            return Err(bad(&format!("{field} must be a string")));
        }
    }
    if let Some(at) = obj.get("event_timestamp").and_then(Value::as_str) {
        if OffsetDateTime::parse(at, &Rfc3339).is_err() {
            return Err(unprocessable("event_timestamp must be an RFC 3339 time"));
        }
    }
    if let Some(link) = obj.get("integration_web_link").and_then(Value::as_str) {
        if !Url::parse(link).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
            return Err(unprocessable(
                "integration_web_link must be an absolute http(s) URL",
            ));
        }
    }
    attachment_urls(obj)?;
    Ok(obj.clone())
}

/// The `attachments` of a body: absolute http(s) URLs, or none.
fn attachment_urls(obj: &Map<String, Value>) -> Result<Vec<String>, Response> {
    match obj.get("attachments") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(urls)) => urls
            .iter()
            .map(|url| {
                url.as_str()
                    .filter(|u| Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https")))
                    .map(String::from)
                    .ok_or_else(|| {
                        hint_error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "attachments must be absolute http(s) URLs",
                        )
                    })
            })
            .collect(),
        Some(_) => Err(hint_error(
            StatusCode::BAD_REQUEST,
            "attachments must be an array of URLs",
        )),
    }
}

/// Downloads every attachment of a body while the request is handled: one that does not
/// answer fails the request (422), and nothing is kept.
async fn download_all(
    sandbox: &SandboxHint,
    obj: &Map<String, Value>,
) -> Result<Vec<(String, Vec<u8>)>, Response> {
    let unreachable = sandbox.world().faults.attachments_unreachable;
    let mut attachments = Vec::new();
    for url in attachment_urls(obj)? {
        let bytes = if unreachable {
            Err(format!("attachment {url} could not be downloaded"))
        } else {
            download(&url).await
        };
        let bytes = bytes.map_err(|why| hint_error(StatusCode::UNPROCESSABLE_ENTITY, &why))?;
        attachments.push((url, bytes));
    }
    Ok(attachments)
}

fn text(obj: &Map<String, Value>, field: &str) -> Option<String> {
    obj.get(field).and_then(Value::as_str).map(String::from)
}

/// Downloads one attachment as Hint does while it handles the request.
async fn download(url: &str) -> Result<Vec<u8>, String> {
    let client = reqwest::Client::builder()
        .timeout(ATTACHMENT_WAIT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let answer = client
        .get(url)
        .send()
        .await
        .map_err(|_| format!("attachment {url} could not be downloaded"))?;
    if answer.status() != StatusCode::OK {
        return Err(format!(
            "attachment {url} answered {} instead of 200",
            answer.status().as_u16()
        ));
    }
    let bytes = answer
        .bytes()
        .await
        .map_err(|_| format!("attachment {url} was cut short"))?;
    if bytes.len() > MAX_ATTACHMENT {
        return Err(format!("attachment {url} is too large"));
    }
    Ok(bytes.to_vec())
}

pub(super) async fn create_document(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    Path(patient_id): Path<String>,
    body: Option<Json<Value>>,
) -> Result<Response, Response> {
    let (practice_id, after_write) = provider_gate(
        &sandbox,
        &headers,
        "POST /api/provider/patients/{id}/interactions/document".into(),
        true,
    )
    .await?;
    let Some(Json(body)) = body else {
        return Err(hint_error(StatusCode::BAD_REQUEST, "Body must be JSON"));
    };
    let fields = document_body(&body)?;
    find_patient(&sandbox.world(), &practice_id, &patient_id)?;
    if sandbox.world().faults.refuse_documents {
        return Err(hint_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The document could not be saved",
        ));
    }
    let attachments = download_all(&sandbox, &fields).await?;
    let created = {
        let mut world = sandbox.world();
        let document = Document {
            id: world.next("inter"),
            practice_id,
            patient_id,
            status: text(&fields, "status").expect("validated"),
            title: text(&fields, "title"),
            body: text(&fields, "body").unwrap_or_default(),
            attachments,
            event_timestamp: text(&fields, "event_timestamp").unwrap_or_else(|| {
                OffsetDateTime::now_utc()
                    .format(&Rfc3339)
                    .unwrap_or_default()
            }),
            integration_record_id: text(&fields, "integration_record_id"),
            integration_web_link: text(&fields, "integration_web_link"),
        };
        world.documents.push(document.clone());
        document
    };
    Ok(after_write
        .answer((StatusCode::CREATED, Json(created.to_json())).into_response())
        .await)
}

pub(super) async fn list_documents(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    Path(patient_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Response> {
    let (practice_id, _) = provider_gate(
        &sandbox,
        &headers,
        "GET /api/provider/patients/{id}/interactions/document".into(),
        false,
    )
    .await?;
    refuse_unknown_params(
        &query,
        &["limit", "offset", "integration_record_id", "status"],
    )?;
    let (limit, offset) = paging(&query)?;
    let world = sandbox.world();
    find_patient(&world, &practice_id, &patient_id)?;
    let all = world
        .documents
        .iter()
        .filter(|d| d.practice_id == practice_id && d.patient_id == patient_id)
        .filter(|d| {
            query
                .get("integration_record_id")
                .is_none_or(|v| Some(v) == d.integration_record_id.as_ref())
        })
        .filter(|d| query.get("status").is_none_or(|v| *v == d.status))
        .map(Document::to_json)
        .collect();
    Ok(page_response(all, limit, offset))
}

/// A correction: status, title and body rewritten, attachments added (downloaded as a
/// create's); once signed, a document may only become `addended` or `deleted`.
pub(super) async fn patch_document(
    State(sandbox): State<SandboxHint>,
    headers: HeaderMap,
    Path((patient_id, document_id)): Path<(String, String)>,
    body: Option<Json<Value>>,
) -> Result<Response, Response> {
    let (practice_id, after_write) = provider_gate(
        &sandbox,
        &headers,
        "PATCH /api/provider/patients/{id}/interactions/document/{id}".into(),
        true,
    )
    .await?;
    let Some(Json(body)) = body else {
        return Err(hint_error(StatusCode::BAD_REQUEST, "Body must be JSON"));
    };
    let obj = body
        .as_object()
        .ok_or_else(|| hint_error(StatusCode::BAD_REQUEST, "Body must be a JSON object"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["status", "title", "body", "attachments"].contains(&k.as_str()))
    {
        return Err(hint_error(
            StatusCode::BAD_REQUEST,
            &format!("Attribute {k} cannot be changed"),
        ));
    }
    let status = match obj.get("status") {
        None => None,
        Some(Value::String(s)) if STATUSES.contains(&s.as_str()) => Some(s.clone()),
        Some(_) => {
            return Err(hint_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "status must be one of draft, signed, addended, deleted, failed",
            ));
        }
    };
    for field in ["title", "body"] {
        if obj.get(field).is_some_and(|v| !v.is_string()) {
            return Err(hint_error(
                StatusCode::BAD_REQUEST,
                &format!("{field} must be a string"),
            ));
        }
    }
    // Files added by the correction, downloaded as a create's are.
    let added = download_all(&sandbox, obj).await?;
    let patched = {
        let mut world = sandbox.world();
        let document = world
            .documents
            .iter_mut()
            .find(|d| {
                d.id == document_id && d.patient_id == patient_id && d.practice_id == practice_id
            })
            .ok_or_else(|| hint_error(StatusCode::NOT_FOUND, "Interaction not found"))?;
        if let Some(to) = &status {
            let settled = matches!(document.status.as_str(), "signed" | "addended");
            if settled && !matches!(to.as_str(), "addended" | "deleted") {
                return Err(hint_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "A signed document may only be addended or deleted",
                ));
            }
            document.status = to.clone();
        }
        if let Some(title) = obj.get("title").and_then(Value::as_str) {
            document.title = Some(title.to_string());
        }
        if let Some(text) = obj.get("body").and_then(Value::as_str) {
            document.body = text.to_string();
        }
        document.attachments.extend(added);
        document.clone()
    };
    Ok(after_write
        .answer(Json(patched.to_json()).into_response())
        .await)
}

/// A document's Markdown as the chart shows it: raw HTML in it is shown as text, never run.
pub fn render_markdown(markdown: &str) -> String {
    use pulldown_cmark::{Event, Parser, html};
    let events = Parser::new(markdown).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        other => other,
    });
    let mut out = String::new();
    html::push_html(&mut out, events);
    out
}
