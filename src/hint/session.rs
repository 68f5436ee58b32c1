//! Framed sessions: created by a verified handshake, found by the key Hint appends to the
//! iframe URL, carried afterwards in the `x-hint-session-key` header (htmx), the `session_key`
//! query parameter (links: GET only) or a hidden `session_key` field (forms posted without
//! htmx; [`key_from_form`] lifts it into the header). A POST never has the key in its URL.
//! No cookies are used.
//!
//! Sessions are `tower_sessions` sessions driven from that key instead of a cookie, kept by
//! `HintSessionStore` in `hint_sessions`: only the SHA-256 of the key (128 random bits) is
//! stored, next to typed practice and user columns. A session ends after `idle_timeout`
//! without use or `absolute_timeout` after the handshake, whichever comes first.
//!
//! Handshakes come in bursts (a practice opening Hint in the morning): a new session is
//! group-committed with the others arriving at the same time (one transaction: the sessions,
//! the practice row when its name is new to this instance, the per-user cap), and its key is
//! answered only once that is committed.

use std::{
    borrow::Cow,
    collections::HashMap,
    str::FromStr,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use axum::{extract::FromRequestParts, http::request::Parts};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use time::OffsetDateTime;
use tower_sessions_core::{
    Expiry, Session, SessionStore,
    session::{Id, Record},
    session_store,
};

use super::{HintState, session_cap::SessionCap};
use crate::{
    audit::Actor,
    config::SessionSettings,
    crypto::sha256_hex,
    db::{Db, WriterConnection, now_ms, placeholders},
    error::AppError,
    group_commit::GroupCommit,
    ids::ExternalId,
    tenancy::PracticeId,
};

/// Header htmx requests carry the session key in (as Hint's own template does).
pub const SESSION_HEADER: &str = "x-hint-session-key";
/// Query parameter Hint appends to the iframe URL, and links and forms carry.
pub const SESSION_PARAM: &str = "session_key";
/// A session's `last_seen_at` is refreshed at most this often (ms), to keep reads read-only.
const TOUCH_EVERY_MS: i64 = 30_000;

/// A role Chartbridge declares in its Hint app config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Practice settings and partner connections.
    Admin,
    /// Starts and finishes visits.
    Clinician,
    /// Reads visits and results.
    Staff,
}

impl Role {
    pub fn parse(name: &str) -> Option<Role> {
        match name.trim().to_ascii_lowercase().as_str() {
            "admin" => Some(Role::Admin),
            "clinician" => Some(Role::Clinician),
            "staff" => Some(Role::Staff),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Clinician => "clinician",
            Role::Staff => "staff",
        }
    }
}

/// Who is using the frame, as the handshake said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessContext {
    Standard,
    /// Hint staff: admin rights, a banner, nothing persisted about the user.
    PlatformSupport,
}

/// What a new session is bound to.
pub struct NewSession<'a> {
    pub practice_id: &'a PracticeId,
    pub user_id: &'a str,
    pub user_email: Option<&'a str>,
    pub user_name: Option<&'a str>,
    pub roles: &'a [Role],
    pub access_context: AccessContext,
    pub patient_id: Option<&'a str>,
    pub interaction_id: Option<&'a str>,
    pub access_token_sealed: Option<String>,
    /// The practice's name as the handshake gave it.
    pub practice_name: &'a str,
}

/// The key a session's data lives under in the `tower_sessions` record.
const DATA_KEY: &str = "hint";

/// A session's data as the store keeps it (one typed column each in `hint_sessions`).
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
struct SessionData {
    practice_id: String,
    user_id: String,
    user_email: Option<String>,
    user_name: Option<String>,
    roles: String,
    access_context: String,
    patient_id: Option<String>,
    interaction_id: Option<String>,
    access_token_sealed: Option<String>,
    created_at: i64,
    expires_at: i64,
    /// Filled on load.
    #[serde(default)]
    last_seen_at: i64,
    /// Filled on load from `practices`.
    #[serde(default)]
    practice_name: Option<String>,
}

/// Keeps `tower_sessions` records in `hint_sessions`, by the hash of their id.
#[derive(Debug, Clone)]
pub struct HintSessionStore {
    db: Db,
    idle_timeout_ms: i64,
    /// Writes new sessions, group-committed.
    openings: GroupCommit<Opening>,
    /// Ends users' sessions beyond the cap, shortly after their new ones are committed.
    cap: SessionCap,
    /// Practices' names as this instance last wrote or saw them: a handshake writes the
    /// practice row only when its name is new here.
    practice_names: Arc<Mutex<HashMap<String, (String, Instant)>>>,
}

/// A session to open, with its practice's row when that needs writing.
#[derive(Debug)]
struct Opening {
    key_hash: String,
    data: SessionData,
    practice_name: Option<String>,
}

/// Most sessions opened in one transaction, and how many may wait.
const MAX_OPENINGS: usize = 128;
const OPENINGS_QUEUE: usize = 4096;
/// Most practice names remembered (beyond that the memory starts again), and for how long (a
/// rename written by another instance is then written here too).
const MAX_PRACTICE_NAMES: usize = 100_000;
const PRACTICE_NAME_FOR: Duration = Duration::from_secs(600);

impl HintSessionStore {
    /// Starts the writer of new sessions (it needs the Tokio runtime).
    pub fn new(db: Db, settings: &SessionSettings) -> Self {
        let writer_db = db.clone();
        // The writer's own connection between batches on PostgreSQL (`Db::writer_connection`):
        // batches are written one after another, so the lock is never waited for.
        let kept = Arc::new(tokio::sync::Mutex::new(None::<WriterConnection>));
        let openings = GroupCommit::spawn(
            "new sessions",
            MAX_OPENINGS,
            OPENINGS_QUEUE,
            move |batch: Vec<Opening>| {
                let (db, kept) = (writer_db.clone(), kept.clone());
                async move {
                    let mut slot = kept.lock().await;
                    let mut connection = db.reuse(slot.take()).await.map_err(|e| e.to_string())?;
                    let written = write_openings(&mut connection, &batch).await;
                    // Kept unless the batch failed (a connection in doubt is closed).
                    if written.is_ok() && connection.is_own() {
                        *slot = Some(connection);
                    }
                    written.map_err(|e| e.to_string())
                }
            },
        );
        let cap = SessionCap::spawn(db.clone(), settings.max_per_user);
        Self {
            db,
            idle_timeout_ms: settings.idle_timeout.as_millis() as i64,
            openings,
            cap,
            practice_names: Arc::default(),
        }
    }

    /// Opens a session under `id` (committed when this returns), writing its practice's row
    /// when `practice_name` is new to this instance.
    async fn open(&self, id: &Id, data: SessionData, practice_name: &str) -> Result<(), AppError> {
        let known = self
            .practice_names
            .lock()
            .expect("practice names")
            .get(&data.practice_id)
            .is_some_and(|(name, at)| name == practice_name && at.elapsed() < PRACTICE_NAME_FOR);
        let user = (data.practice_id.clone(), data.user_id.clone());
        let opening = Opening {
            key_hash: key_hash(id),
            data,
            practice_name: (!known).then(|| practice_name.to_string()),
        };
        self.openings
            .submit(opening)
            .await
            .map_err(|e| AppError::Internal(anyhow::Error::new(e)))?;
        if !known {
            let mut names = self.practice_names.lock().expect("practice names");
            if names.len() >= MAX_PRACTICE_NAMES {
                names.clear();
            }
            names.insert(user.0.clone(), (practice_name.to_string(), Instant::now()));
        }
        self.cap.opened(user);
        Ok(())
    }

    fn data(record: &Record) -> session_store::Result<SessionData> {
        let value = record
            .data
            .get(DATA_KEY)
            .cloned()
            .ok_or_else(|| session_store::Error::Encode("a session without data".into()))?;
        serde_json::from_value(value).map_err(|e| session_store::Error::Encode(e.to_string()))
    }

    async fn insert(&self, record: &Record, data: &SessionData) -> Result<(), sqlx::Error> {
        let mut data = data.clone();
        data.last_seen_at = now_ms();
        insert_sessions(self.db.writer(), &[(key_hash(&record.id), &data)]).await
    }
}

fn key_hash(id: &Id) -> String {
    sha256_hex(id.to_string().as_bytes())
}

fn backend(e: sqlx::Error) -> session_store::Error {
    // The store's errors end up in logs: the database error, never session data.
    session_store::Error::Backend(format!("hint_sessions: {e}"))
}

#[async_trait::async_trait]
impl SessionStore for HintSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data = Self::data(record)?;
        // 128 random bits collide essentially never; if they do, draw again.
        for _ in 0..3 {
            match self.insert(record, &data).await {
                Ok(()) => return Ok(()),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                    record.id = Id::default()
                }
                Err(e) => return Err(backend(e)),
            }
        }
        Err(session_store::Error::Backend(
            "could not draw a free session id".into(),
        ))
    }

    /// Saving an existing session records that it was used (its data never changes).
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let updated = sqlx::query("UPDATE hint_sessions SET last_seen_at = $1 WHERE key_hash = $2")
            .bind(now_ms())
            .bind(key_hash(&record.id))
            .execute(self.db.writer())
            .await
            .map_err(backend)?
            .rows_affected();
        if updated == 0 {
            self.insert(record, &Self::data(record)?)
                .await
                .map_err(backend)?;
        }
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let now = now_ms();
        let row = sqlx::query(
            "SELECT s.practice_id, p.name AS practice_name, s.user_id, s.user_email, s.user_name, s.roles, \
             s.access_context, s.patient_id, s.interaction_id, s.access_token_sealed, s.created_at, \
             s.last_seen_at, s.expires_at \
             FROM hint_sessions s LEFT JOIN practices p ON p.id = s.practice_id \
             WHERE s.key_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3",
        )
        .bind(key_hash(id))
        .bind(now)
        .bind(now - self.idle_timeout_ms)
        .fetch_optional(self.db.reader())
        .await
        .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let data =
            SessionData::from_row(&row).map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let last_seen = data.last_seen_at;
        let expiry = (last_seen + self.idle_timeout_ms).min(data.expires_at);
        let mut record = Record {
            id: *id,
            data: Default::default(),
            expiry_date: OffsetDateTime::from_unix_timestamp_nanos(expiry as i128 * 1_000_000)
                .map_err(|e| session_store::Error::Decode(e.to_string()))?,
        };
        let value =
            serde_json::to_value(&data).map_err(|e| session_store::Error::Encode(e.to_string()))?;
        record.data.insert(DATA_KEY.to_string(), value);
        Ok(Some(record))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM hint_sessions WHERE key_hash = $1")
            .bind(key_hash(id))
            .execute(self.db.writer())
            .await
            .map_err(backend)?;
        Ok(())
    }
}

fn idle_expiry(state: &HintState) -> Option<Expiry> {
    let idle = time::Duration::try_from(state.settings.sessions.idle_timeout)
        .unwrap_or(time::Duration::minutes(15));
    Some(Expiry::OnInactivity(idle))
}

fn store_error(e: tower_sessions_core::session::Error) -> AppError {
    AppError::Internal(anyhow::Error::new(e).context("session store"))
}

/// Opens a session for a verified handshake; answers its key (shown once, to Hint). A
/// `platform_support` session keeps nothing personal of the Hint staff member (Hint: no
/// persistent user): their id only. A user's oldest sessions beyond `max_per_user` end.
pub async fn open(state: &HintState, new: NewSession<'_>) -> Result<String, AppError> {
    let now = now_ms();
    let personal = new.access_context == AccessContext::Standard;
    let data = SessionData {
        practice_id: new.practice_id.as_str().to_string(),
        user_id: new.user_id.to_string(),
        user_email: new.user_email.filter(|_| personal).map(String::from),
        user_name: new.user_name.filter(|_| personal).map(String::from),
        roles: new
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        access_context: match new.access_context {
            AccessContext::Standard => "standard",
            AccessContext::PlatformSupport => "platform_support",
        }
        .to_string(),
        patient_id: new.patient_id.map(String::from),
        interaction_id: new.interaction_id.map(String::from),
        access_token_sealed: new.access_token_sealed,
        created_at: now,
        expires_at: now + state.settings.sessions.absolute_timeout.as_millis() as i64,
        last_seen_at: now,
        practice_name: None,
    };
    // 128 random bits, as tower-sessions draws them.
    let id = Id::default();
    state.sessions.open(&id, data, new.practice_name).await?;
    Ok(id.to_string())
}

/// One transaction for a burst of new sessions: the practice rows whose name is new (written
/// only when it really changed, in id order so that instances writing at once never
/// deadlock), then the sessions; one statement alone when no practice row needs writing.
async fn write_openings(
    connection: &mut sqlx::AnyConnection,
    batch: &[Opening],
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    let mut practices: Vec<(&str, &str)> = Vec::new();
    for opening in batch {
        if let Some(name) = opening.practice_name.as_deref() {
            let id = opening.data.practice_id.as_str();
            match practices.iter_mut().find(|(p, _)| *p == id) {
                Some(entry) => entry.1 = name,
                None => practices.push((id, name)),
            }
        }
    }
    practices.sort_unstable();
    let sessions: Vec<(String, &SessionData)> = batch
        .iter()
        .map(|o| (o.key_hash.clone(), &o.data))
        .collect();
    if practices.is_empty() {
        // One statement commits itself: no BEGIN and COMMIT to wait for.
        return insert_sessions(connection, &sessions).await;
    }
    let mut tx = sqlx::Connection::begin(connection).await?;
    let at = practices.len() * 2 + 1;
    let rows = placeholders(practices.len(), 2, |p| format!("{p}, ${at}, ${at}"));
    let sql = format!(
        "INSERT INTO practices (id, name, created_at, updated_at) VALUES {rows} \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at \
         WHERE practices.name <> excluded.name"
    );
    let mut query = sqlx::query(&sql);
    for (id, name) in &practices {
        query = query.bind(*id).bind(*name);
    }
    query.bind(now).execute(&mut *tx).await?;
    insert_sessions(&mut *tx, &sessions).await?;
    tx.commit().await
}

/// Inserts sessions (key hash, data) with one statement.
async fn insert_sessions(
    executor: impl sqlx::Executor<'_, Database = sqlx::Any>,
    sessions: &[(String, &SessionData)],
) -> Result<(), sqlx::Error> {
    let sql = insert_sessions_sql(sessions.len());
    let mut query = sqlx::query(&sql);
    for (key_hash, data) in sessions {
        query = query
            .bind(key_hash)
            .bind(&data.practice_id)
            .bind(&data.user_id)
            .bind(&data.user_email)
            .bind(&data.user_name)
            .bind(&data.roles)
            .bind(&data.access_context)
            .bind(&data.patient_id)
            .bind(&data.interaction_id)
            .bind(&data.access_token_sealed)
            .bind(data.created_at)
            .bind(data.last_seen_at)
            .bind(data.expires_at);
    }
    query.execute(executor).await?;
    Ok(())
}

/// The insert of `rows` sessions, written once per batch size (the writer sends one per batch).
fn insert_sessions_sql(rows: usize) -> Cow<'static, str> {
    static TEXTS: [OnceLock<String>; MAX_OPENINGS] = [const { OnceLock::new() }; MAX_OPENINGS];
    let write = || {
        format!(
            "INSERT INTO hint_sessions (key_hash, practice_id, user_id, user_email, user_name, roles, \
             access_context, patient_id, interaction_id, access_token_sealed, created_at, last_seen_at, expires_at) \
             VALUES {}",
            placeholders(rows, 13, |p| p)
        )
    };
    match TEXTS.get(rows.wrapping_sub(1)) {
        Some(text) => Cow::Borrowed(text.get_or_init(write)),
        None => Cow::Owned(write()),
    }
}

/// Sweeps expired sessions every minute until `stop` turns true (`Application::run_until_stopped`
/// runs it beside the server).
pub async fn sweep_periodically(state: HintState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => {
                if let Err(e) = sweep_expired(&state).await {
                    tracing::warn!(error = %e, "session sweep failed");
                }
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

/// Deletes sessions past either timeout.
pub async fn sweep_expired(state: &HintState) -> Result<u64, sqlx::Error> {
    let now = now_ms();
    let idle_cutoff = now - state.settings.sessions.idle_timeout.as_millis() as i64;
    let done =
        sqlx::query("DELETE FROM hint_sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
            .bind(now)
            .bind(idle_cutoff)
            .execute(state.db.writer())
            .await?;
    Ok(done.rows_affected())
}

/// The session of the current request. A handler that takes it cannot run without a valid,
/// unexpired session with at least one role; every query it makes takes `practice_id` from it.
#[derive(Debug, Clone)]
pub struct PracticeSession {
    /// The raw key, to carry in links, forms and htmx headers.
    pub key: String,
    /// The practice every query of this request is filtered by.
    pub practice_id: PracticeId,
    pub practice_name: String,
    pub user_id: String,
    pub user_email: Option<String>,
    pub user_name: String,
    pub roles: Vec<Role>,
    pub access_context: AccessContext,
    pub patient_id: Option<String>,
    pub interaction_id: Option<String>,
    access_token_sealed: Option<String>,
    /// This request's id (ours, or the caller's when it looked like one).
    pub request_id: Option<String>,
}

impl PracticeSession {
    /// Who is acting, for the audit trail.
    pub fn actor(&self) -> Actor {
        Actor {
            id: self.user_id.clone(),
            roles: self
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            platform_support: self.is_platform_support(),
            request_id: self.request_id.clone(),
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Fails with a 403 page unless the session holds `role`.
    pub fn require(&self, role: Role) -> Result<(), AppError> {
        if self.has(role) {
            Ok(())
        } else {
            Err(AppError::Forbidden(match role {
                Role::Admin => "Only a practice admin can change Chartbridge settings.".into(),
                Role::Clinician => "Only clinicians can start or finish visits.".into(),
                Role::Staff => "You do not have access to this page.".into(),
            }))
        }
    }

    pub fn is_platform_support(&self) -> bool {
        self.access_context == AccessContext::PlatformSupport
    }

    /// The handshake's access token, for calls made while the user waits.
    pub fn access_token(&self, state: &HintState) -> Option<SecretString> {
        let sealed = self.access_token_sealed.as_deref()?;
        state
            .secrets
            .open_str(sealed, &access_token_aad(&self.practice_id, &self.user_id))
            .ok()
    }

    /// Roles for display, e.g. "admin, clinician".
    pub fn role_names(&self) -> String {
        self.roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Associated data binding a sealed access token to its practice and user.
pub fn access_token_aad(practice_id: &PracticeId, user_id: &str) -> String {
    format!("hint_sessions.access_token|{practice_id}|{user_id}")
}

/// Largest urlencoded form whose `session_key` field is looked for.
const MAX_KEYED_FORM: usize = 64 * 1024;

/// A form posted straight from a page carries the key in a hidden `session_key` field: this
/// middleware puts it in the header the extractor reads, and hands the body on unchanged.
pub async fn key_from_form(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::{body::Body, http::header::CONTENT_TYPE, response::IntoResponse};
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if request.method() != axum::http::Method::POST
        || !is_form
        || request.headers().contains_key(SESSION_HEADER)
    {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_KEYED_FORM).await else {
        return AppError::BadRequest("The form is too large.".into()).into_response();
    };
    let key = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == SESSION_PARAM)
        .map(|(_, v)| v.into_owned());
    if let Some(value) = key.and_then(|k| axum::http::HeaderValue::from_str(&k).ok()) {
        parts.headers.insert(SESSION_HEADER, value);
    }
    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn key_from_parts(parts: &Parts) -> Option<String> {
    if let Some(value) = parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        let value = value.trim();
        if !value.is_empty() {
            return Some(value.to_string());
        }
    }
    // In the URL only for reading: a key in a POST's URL would be in every log and history.
    if !matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        return None;
    }
    let query = parts.uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == SESSION_PARAM)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

impl<S> FromRequestParts<S> for PracticeSession
where
    S: AsRef<HintState> + Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let state = state.as_ref();
        let key =
            key_from_parts(parts).ok_or_else(|| AppError::Unauthorized("no session key".into()))?;
        let id = Id::from_str(&key)
            .map_err(|_| AppError::Unauthorized("malformed session key".into()))?;
        let session = Session::new(Some(id), state.sessions.clone(), idle_expiry(state));
        let data: SessionData = session
            .get(DATA_KEY)
            .await
            .map_err(store_error)?
            .ok_or_else(|| AppError::Unauthorized("unknown or expired session".into()))?;
        if now_ms() - data.last_seen_at > TOUCH_EVERY_MS {
            session.save().await.map_err(store_error)?;
        }
        let roles: Vec<Role> = data
            .roles
            .split_whitespace()
            .filter_map(Role::parse)
            .collect();
        if roles.is_empty() {
            return Err(AppError::NoRole);
        }
        // Our own row, written for a signed handshake: the practice it names is verified.
        let practice_id = ExternalId::try_from(data.practice_id.clone())
            .map(PracticeId::verified)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("a stored session's practice: {e}")))?;
        Ok(PracticeSession {
            key,
            practice_name: data
                .practice_name
                .unwrap_or_else(|| data.practice_id.clone()),
            practice_id,
            user_name: data
                .user_name
                .or_else(|| data.user_email.clone())
                .unwrap_or_else(|| data.user_id.clone()),
            user_id: data.user_id,
            user_email: data.user_email,
            roles,
            access_context: if data.access_context == "platform_support" {
                AccessContext::PlatformSupport
            } else {
                AccessContext::Standard
            },
            patient_id: data.patient_id,
            interaction_id: data.interaction_id,
            access_token_sealed: data.access_token_sealed,
            request_id: parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(String::from),
        })
    }
}
