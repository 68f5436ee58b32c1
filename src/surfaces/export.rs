//! The practice's data for its admin, as one archive: `GET /hint/export.tar`. Every visit as
//! JSON (its result and launch data as the partner gave them) and as the Markdown the chart
//! holds, the files kept with visits, the partner deliveries kept unmatched, and the audit
//! trail as CSV. Written page by page into the answer while it is sent (a tar stream), so the
//! memory it takes does not grow with the practice. The export itself is in the trail.

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    audit::{CSV_HEADER, csv_line},
    streamed::{self, BoxError},
};
use crate::{
    audit::{self, Action, Entry, Filter},
    db::now_ms,
    error::AppError,
    hint::{PracticeSession, Role},
    tenancy::PracticeId,
    visits::{AppState, StoredVisit, VISIT_COLUMNS, Visit, files},
};

/// Rows read at once.
const PAGE: i64 = 200;

/// `GET /hint/export.tar` (admins): the practice's whole archive, streamed.
pub async fn archive(
    State(state): State<AppState>,
    session: PracticeSession,
) -> Result<Response, AppError> {
    session.require(Role::Admin)?;
    state
        .audit
        .record(
            &session.practice_id,
            &session.actor(),
            Entry::new(Action::PracticeExported).detail("the practice's archive"),
        )
        .await?;
    let (out, body) = streamed::channel();
    let practice_id = session.practice_id.clone();
    tokio::spawn(async move {
        let mut tar = Tar { out };
        match write(&state, &practice_id, &mut tar).await {
            Ok(()) => tar.finish().await,
            Err(e) => {
                // The transfer is cut off (and the archive lacks its closing blocks).
                tracing::warn!(%practice_id, error = %crate::error::error_chain(e.as_ref()), "the practice's export stopped");
                tar.out.fail(e).await;
            }
        }
    });
    let filename = format!(
        "chartbridge-{}.tar",
        session.practice_id.as_str().to_lowercase()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response())
}

async fn write(state: &AppState, practice_id: &PracticeId, out: &mut Tar) -> Result<(), BoxError> {
    out.file(
        "README.txt",
        b"visits/ : each visit as JSON and as the Markdown written to the Hint chart\n\
          files/  : files partners gave with a visit's result\n\
          unmatched/ : partner deliveries that matched no visit\n\
          audit.csv : the practice's PHI audit trail, newest first\n",
    )
    .await?;
    // Visits, oldest first, a page at a time (keyset on created_at, id).
    let mut after: (i64, String) = (i64::MIN, String::new());
    loop {
        let rows: Vec<StoredVisit> = sqlx::query_as(&format!(
            "SELECT {VISIT_COLUMNS} FROM visits WHERE practice_id = $1 \
             AND (created_at > $2 OR (created_at = $2 AND id > $3)) ORDER BY created_at, id LIMIT $4"
        ))
        .bind(practice_id)
        .bind(after.0)
        .bind(&after.1)
        .bind(PAGE)
        .fetch_all(state.db.reader())
        .await?;
        let Some(last) = rows.last().map(StoredVisit::key) else {
            break;
        };
        after = last;
        // The page's files are looked up once, not per visit (most visits have none).
        let keys: Vec<(i64, String)> = rows.iter().map(StoredVisit::key).collect();
        let ids: Vec<&str> = keys.iter().map(|(_, id)| id.as_str()).collect();
        let with_files = files::visits_with_files(state, practice_id, &ids).await?;
        for stored in rows {
            let visit = stored.open(&state.secrets, practice_id.as_str())?;
            let has_files = with_files.contains(visit.id.as_str());
            write_visit(state, practice_id, &visit, has_files, out).await?;
        }
    }
    // Deliveries kept unmatched.
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM unmatched_deliveries WHERE practice_id = $1 ORDER BY received_at, id",
    )
    .bind(practice_id)
    .fetch_all(state.db.reader())
    .await?;
    for id in ids {
        if let Some(body) = crate::partners::unmatched::open_body(state, practice_id, &id).await? {
            out.file(&format!("unmatched/{id}.json"), &body).await?;
        }
    }
    // The trail, newest first, a page at a time. A tar entry states its size first: a first
    // pass counts the bytes, the second sends them (entries written meanwhile are left to the
    // next export: both passes stop at the newest entry of the first).
    let newest: Option<i64> =
        sqlx::query_scalar("SELECT MAX(seq) FROM audit_events WHERE practice_id = $1")
            .bind(practice_id)
            .fetch_one(state.db.reader())
            .await?;
    let mut size = CSV_HEADER.len() as u64;
    trail_pages(state, practice_id, newest, |lines| {
        size += lines.len() as u64;
        async { Ok(()) }
    })
    .await?;
    out.begin("audit.csv", size).await?;
    out.send(CSV_HEADER.as_bytes().to_vec()).await?;
    let mut sent = CSV_HEADER.len() as u64;
    trail_pages(state, practice_id, newest, |lines| {
        sent += lines.len() as u64;
        out.send(lines.into_bytes())
    })
    .await?;
    if sent != size {
        return Err("the audit trail changed while it was exported".into());
    }
    out.pad(size).await
}

/// The practice's trail through the entry numbered `newest`, newest first, as CSV lines a page
/// at a time (nothing when there is no entry).
async fn trail_pages<F, Fut>(
    state: &AppState,
    practice_id: &PracticeId,
    newest: Option<i64>,
    mut each: F,
) -> Result<(), BoxError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), BoxError>>,
{
    if newest.is_none() {
        return Ok(());
    }
    let mut filter = Filter {
        through_seq: newest,
        ..Filter::default()
    };
    loop {
        let events = audit::search(&state.db, practice_id, &filter, 1000).await?;
        let Some(oldest) = events.last().map(audit::Before::of) else {
            return Ok(());
        };
        each(events.iter().map(csv_line).collect()).await?;
        filter.before = Some(oldest);
    }
}

async fn write_visit(
    state: &AppState,
    practice_id: &PracticeId,
    visit: &Visit,
    has_files: bool,
    out: &mut Tar,
) -> Result<(), BoxError> {
    let parsed = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let record = json!({
        "id": visit.id,
        "partner": visit.partner,
        "patient_id": visit.patient_id,
        "patient_name": visit.patient_name,
        "clinician": {"id": visit.user_id, "name": visit.user_name},
        "state": visit.state().as_str(),
        "started_at": visit.created_at,
        "completed_at": visit.completed_at,
        "launch": parsed(&visit.launch),
        "result": visit.result.as_deref().map(parsed),
        "failure": visit.error_message,
        "corrections": visit.addenda,
        "hint": {
            "partner_interaction": visit.hint_interaction_id,
            "status": visit.hint_status,
            "document": visit.hint_document_id,
        },
    });
    let id = visit.id.as_str();
    out.file(
        &format!("visits/{id}.json"),
        serde_json::to_string_pretty(&record)?.as_bytes(),
    )
    .await?;
    if !visit.is_erased()
        && let Some(note) = state.partners.of(visit)?.chart_note(visit)?
    {
        let markdown = format!("# {}\n\n{}\n", note.title, note.body);
        out.file(&format!("visits/{id}.md"), markdown.as_bytes())
            .await?;
    }
    if !has_files {
        return Ok(());
    }
    for file in files::of_visit(state, practice_id, &visit.id).await? {
        if let Some((name, bytes)) = files::read(state, practice_id, &file.id).await? {
            out.file(&format!("files/{id}/{}", safe_name(&name)), &bytes)
                .await?;
        }
    }
    Ok(())
}

/// A file name as an archive entry: no directories, no oddities.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect()
}

/// A tar (ustar) stream written into the answer.
struct Tar {
    out: streamed::Sender,
}

impl Tar {
    async fn send(&self, bytes: Vec<u8>) -> Result<(), BoxError> {
        Ok(self.out.send(bytes).await?)
    }

    /// One file: its header, its bytes, padding to the next 512-byte block.
    async fn file(&mut self, name: &str, bytes: &[u8]) -> Result<(), BoxError> {
        self.begin(name, bytes.len() as u64).await?;
        self.send(bytes.to_vec()).await?;
        self.pad(bytes.len() as u64).await
    }

    /// A file's header; its `size` bytes follow, then [`Tar::pad`].
    async fn begin(&mut self, name: &str, size: u64) -> Result<(), BoxError> {
        self.send(header(name, size)).await
    }

    /// Zeros to the block after a file of `size` bytes.
    async fn pad(&mut self, size: u64) -> Result<(), BoxError> {
        match (size % 512) as usize {
            0 => Ok(()),
            used => self.send(vec![0; 512 - used]).await,
        }
    }

    /// The two empty blocks that end an archive.
    async fn finish(self) {
        let _ = self.send(vec![0; 1024]).await;
    }
}

/// A ustar header for a regular file.
fn header(name: &str, size: u64) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    let put =
        |h: &mut [u8], at: usize, value: &[u8]| h[at..at + value.len()].copy_from_slice(value);
    let name = name.as_bytes();
    put(&mut h, 0, &name[..name.len().min(100)]);
    put(&mut h, 100, b"0000644\0");
    put(&mut h, 108, b"0000000\0");
    put(&mut h, 116, b"0000000\0");
    put(&mut h, 124, format!("{size:011o}\0").as_bytes());
    put(
        &mut h,
        136,
        format!("{:011o}\0", now_ms() / 1000).as_bytes(),
    );
    put(&mut h, 148, b"        ");
    h[156] = b'0';
    put(&mut h, 257, b"ustar\0");
    put(&mut h, 263, b"00");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    h
}
