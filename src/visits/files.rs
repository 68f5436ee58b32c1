//! Files a partner gives with a visit's result, and how Hint copies them into the chart.
//!
//! A file is stored sealed with its row's identity, like the visit's other patient data. Hint
//! takes a document's attachments as URLs it downloads while it handles the request, so each
//! file is offered through a link of its own: `GET /files/{link}.{signature}`, valid for a few
//! minutes and a few downloads, for one file of one practice, with no session. Anything else
//! (expired, used up, unknown, a byte changed) is the same 404.

use axum::{
    Router,
    extract::{Path, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{AppState, VisitId};
use crate::{
    crypto::row_aad,
    db::{new_id, now_ms},
    error::AppError,
    tenancy::PracticeId,
};

/// How long a link lets Hint download its file.
pub const LINK_LIFETIME_MS: i64 = 10 * 60 * 1000;
/// How many downloads one link allows (Hint may try again within its request).
pub const LINK_DOWNLOADS: i64 = 3;
/// Largest file kept with a visit.
pub const MAX_FILE: usize = 25 * 1024 * 1024;

/// A file kept with a visit, as the write-back offers it.
#[derive(Debug, Clone)]
pub struct VisitFile {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    /// Attached to the visit's document in Hint.
    pub in_chart: bool,
}

fn aad(practice_id: &str, file_id: &str) -> String {
    row_aad("visit_files", "bytes_sealed", practice_id, file_id)
}

/// Keeps `bytes` with the visit under a name of the partner's choosing (`key`: the same key
/// twice keeps the first, so a retried poll stores a file once).
pub async fn keep(
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
    key: &str,
    name: &str,
    content_type: &str,
    bytes: &[u8],
) -> Result<(), sqlx::Error> {
    let id = format!("file_{}_{key}", visit_id.as_str());
    sqlx::query(
        "INSERT INTO visit_files (id, practice_id, visit_id, name, content_type, size, bytes_sealed, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&id)
    .bind(practice_id)
    .bind(visit_id)
    .bind(name)
    .bind(content_type)
    .bind(bytes.len() as i64)
    .bind(state.secrets.seal(bytes, &aad(practice_id.as_str(), &id)))
    .bind(now_ms())
    .execute(state.db.writer())
    .await?;
    Ok(())
}

/// The files kept with a visit of this practice, oldest first.
pub async fn of_visit(
    state: &AppState,
    practice_id: &PracticeId,
    visit_id: &VisitId,
) -> Result<Vec<VisitFile>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, name, content_type, size, in_chart FROM visit_files \
         WHERE practice_id = $1 AND visit_id = $2 ORDER BY created_at, id",
    )
    .bind(practice_id)
    .bind(visit_id)
    .fetch_all(state.db.reader())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(VisitFile {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                content_type: row.try_get("content_type")?,
                size: row.try_get("size")?,
                in_chart: row.try_get::<i32, _>("in_chart")? != 0,
            })
        })
        .collect()
}

/// Which of these visits of the practice have files kept (one query for a page of visits).
pub async fn visits_with_files(
    state: &AppState,
    practice_id: &PracticeId,
    visit_ids: &[&str],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    if visit_ids.is_empty() {
        return Ok(Default::default());
    }
    let list = (2..visit_ids.len() + 2)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT DISTINCT visit_id FROM visit_files WHERE practice_id = $1 AND visit_id IN ({list})"
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql).bind(practice_id);
    for id in visit_ids {
        query = query.bind(*id);
    }
    Ok(query
        .fetch_all(state.db.reader())
        .await?
        .into_iter()
        .collect())
}

/// Notes that these files of the visit are attached to its document in Hint.
pub async fn mark_in_chart(
    state: &AppState,
    practice_id: &PracticeId,
    files: &[VisitFile],
) -> Result<(), sqlx::Error> {
    for file in files.iter().filter(|f| !f.in_chart) {
        sqlx::query("UPDATE visit_files SET in_chart = 1 WHERE practice_id = $1 AND id = $2")
            .bind(practice_id)
            .bind(&file.id)
            .execute(state.db.writer())
            .await?;
    }
    Ok(())
}

/// A kept file's name and bytes, opened.
pub async fn read(
    state: &AppState,
    practice_id: &PracticeId,
    file_id: &str,
) -> Result<Option<(String, Vec<u8>)>, AppError> {
    let row = sqlx::query(
        "SELECT name, bytes_sealed FROM visit_files WHERE practice_id = $1 AND id = $2",
    )
    .bind(practice_id)
    .bind(file_id)
    .fetch_optional(state.db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let sealed: String = row.try_get("bytes_sealed")?;
    let bytes = state
        .secrets
        .open(&sealed, &aad(practice_id.as_str(), file_id))?;
    Ok(Some((row.try_get("name")?, bytes)))
}

/// The key that signs links, derived from the operator's secret key for this use alone.
fn link_key(state: &AppState) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update(b"chartbridge visit file links v1\0");
    digest.update(state.settings.keys.secret.0);
    digest.finalize().into()
}

fn signature(state: &AppState, link_id: &str, practice_id: &str, file_id: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(&link_key(state)).expect("HMAC takes any key length");
    mac.update(format!("{link_id}|{practice_id}|{file_id}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A new link to one file of this practice, on our public URL.
pub async fn link(
    state: &AppState,
    practice_id: &PracticeId,
    file: &VisitFile,
) -> Result<String, sqlx::Error> {
    let link_id = new_id("lnk");
    // The practice's links past their time go as new ones are made.
    sqlx::query("DELETE FROM file_links WHERE practice_id = $1 AND expires_at < $2")
        .bind(practice_id)
        .bind(now_ms())
        .execute(state.db.writer())
        .await?;
    sqlx::query(
        "INSERT INTO file_links (id, practice_id, file_id, expires_at, downloads_left) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&link_id)
    .bind(practice_id)
    .bind(&file.id)
    .bind(now_ms() + LINK_LIFETIME_MS)
    .bind(LINK_DOWNLOADS)
    .execute(state.db.writer())
    .await?;
    let token = format!(
        "{link_id}.{}",
        signature(state, &link_id, practice_id.as_str(), &file.id)
    );
    Ok(crate::upstream::endpoint(&state.public_url, &["files", &token]).to_string())
}

/// The routes anyone may call: a file by its link.
pub fn router() -> Router<AppState> {
    Router::new().route("/files/{token}", get(download))
}

/// `GET /files/{link}.{signature}`: the file, once per allowed download, while the link
/// lasts; 404 for anything else, whatever the reason.
async fn download(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match serve(&state, &token).await {
        Ok(Some(response)) => response,
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn serve(state: &AppState, token: &str) -> Result<Option<Response>, AppError> {
    let Some((link_id, signed)) = token.split_once('.') else {
        return Ok(None);
    };
    if link_id.len() > 64 || signed.len() != 64 {
        return Ok(None);
    }
    let row = sqlx::query("SELECT practice_id, file_id FROM file_links WHERE id = $1")
        .bind(link_id)
        .fetch_optional(state.db.reader())
        .await?;
    let Some(row) = row else { return Ok(None) };
    let (practice_id, file_id): (String, String) =
        (row.try_get("practice_id")?, row.try_get("file_id")?);
    let expected = signature(state, link_id, &practice_id, &file_id);
    if !subtle_eq(expected.as_bytes(), signed.as_bytes()) {
        return Ok(None);
    }
    // One download used, atomically, while the link lasts.
    let used = sqlx::query(
        "UPDATE file_links SET downloads_left = downloads_left - 1 \
         WHERE id = $1 AND downloads_left > 0 AND expires_at > $2",
    )
    .bind(link_id)
    .bind(now_ms())
    .execute(state.db.writer())
    .await?;
    if used.rows_affected() == 0 {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT name, content_type, bytes_sealed FROM visit_files WHERE practice_id = $1 AND id = $2",
    )
    .bind(&practice_id)
    .bind(&file_id)
    .fetch_optional(state.db.reader())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let name: String = row.try_get("name")?;
    let content_type: String = row.try_get("content_type")?;
    let sealed: String = row.try_get("bytes_sealed")?;
    let bytes = state.secrets.open(&sealed, &aad(&practice_id, &file_id))?;
    let disposition = format!(
        "attachment; filename=\"{}\"",
        name.replace(
            |c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-',
            "_"
        )
    );
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(Some(response))
}

/// Compares in time independent of where the two differ.
fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
