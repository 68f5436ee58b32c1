//! Where sessions live: `tower_sessions` records kept in `hint_sessions` by the hash of their
//! key; new sessions group-committed in bursts; expired ones swept.

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{FromRow, Row};
use time::OffsetDateTime;
use tower_sessions_core::{
    SessionStore,
    session::{Id, Record},
    session_store,
};

use super::cap::SessionCap;
use super::{DATA_KEY, SessionData};
use crate::hint::HintState;
use crate::{
    config::SessionSettings,
    crypto::sha256_hex,
    db::{Backend, Db, WriterConnection, now_ms, placeholders},
    error::AppError,
    group_commit::GroupCommit,
};

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
    /// The signed handshake body's hash (`handshake_signatures`).
    handshake_hash: String,
    /// Set by the writer when that body was accepted before: no session is written.
    replayed: Arc<AtomicBool>,
}

/// Most sessions opened in one transaction, and how many may wait.
const MAX_OPENINGS: usize = 128;
const OPENINGS_QUEUE: usize = 4096;
/// Most practice names remembered (beyond that the memory starts again), and for how long (a
/// rename written by another instance is then written here too).
const MAX_PRACTICE_NAMES: usize = 100_000;
const PRACTICE_NAME_FOR: Duration = Duration::from_secs(600);
/// How long a batch of new sessions is held while the database is away (a restart), well
/// within a request's 30 s, and the pause between two tries.
const HOLD_FOR: Duration = Duration::from_secs(10);
const HOLD_PAUSE: Duration = Duration::from_millis(100);

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
                    let held = Instant::now();
                    let mut again = false;
                    loop {
                        let written = match db.reuse(if again { None } else { slot.take() }).await {
                            Ok(mut connection) => {
                                let mut written =
                                    write_openings(&mut connection, db.backend(), &batch).await;
                                if written.is_ok() && again {
                                    written = opened_before(&mut connection, &batch).await;
                                }
                                // Kept unless the batch failed (a connection in doubt is closed).
                                if written.is_ok() && connection.is_own() {
                                    *slot = Some(connection);
                                }
                                written
                            }
                            Err(e) => Err(e),
                        };
                        match written {
                            // The database went away (a restart): the batch is held and written
                            // again on a new connection (a dead one the pool hands out fails
                            // and is dropped), within a request's time; not once the pool is
                            // closed (the instance is stopping).
                            Err(e)
                                if crate::db::is_unavailable(&e)
                                    && !matches!(e, sqlx::Error::PoolClosed)
                                    && held.elapsed() < HOLD_FOR =>
                            {
                                if !again {
                                    tracing::warn!(error = %e, "writing new sessions: the database is away; holding the batch");
                                }
                                again = true;
                                tokio::time::sleep(HOLD_PAUSE).await;
                            }
                            written => return written,
                        }
                    }
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
    pub(super) async fn open(
        &self,
        id: &Id,
        data: SessionData,
        practice_name: &str,
        handshake_hash: String,
    ) -> Result<(), AppError> {
        let known = self
            .practice_names
            .lock()
            .expect("practice names")
            .get(&data.practice_id)
            .is_some_and(|(name, at)| name == practice_name && at.elapsed() < PRACTICE_NAME_FOR);
        let user = (data.practice_id.clone(), data.user_id.clone());
        let replayed = Arc::new(AtomicBool::new(false));
        let opening = Opening {
            key_hash: key_hash(id),
            data,
            practice_name: (!known).then(|| practice_name.to_string()),
            handshake_hash,
            replayed: replayed.clone(),
        };
        self.openings
            .submit(opening)
            .await
            .map_err(|e| AppError::from(anyhow::Error::new(e)))?;
        if replayed.load(Ordering::Acquire) {
            return Err(AppError::Unauthorized("handshake already used".into()));
        }
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

    /// Records that the session `id` was used; `false` when it has ended (never re-created).
    pub async fn touch(&self, id: &Id) -> Result<bool, sqlx::Error> {
        let updated = sqlx::query("UPDATE hint_sessions SET last_seen_at = $1 WHERE key_hash = $2")
            .bind(now_ms())
            .bind(key_hash(id))
            .execute(self.db.writer())
            .await?
            .rows_affected();
        Ok(updated > 0)
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

/// How a backend error whose database was away begins (see [`super::store_error`]).
pub(super) const AWAY: &str = "database away: ";

fn backend(e: sqlx::Error) -> session_store::Error {
    if crate::db::is_unavailable(&e) {
        return session_store::Error::Backend(format!("{AWAY}hint_sessions: {e}"));
    }
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

    /// Saving an existing session records that it was used (its data never changes). A session
    /// that has ended (the per-user cap, the sweeper) is not brought back: an error.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self.touch(&record.id).await.map_err(backend)? {
            true => Ok(()),
            false => Err(session_store::Error::Backend(
                "hint_sessions: the session has ended".into(),
            )),
        }
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

/// One transaction for a burst of new sessions: the practice rows whose name is new (written
/// only when it really changed, in id order so that instances writing at once never
/// deadlock), then the sessions; one statement alone when no practice row needs writing.
async fn write_openings(
    connection: &mut sqlx::AnyConnection,
    backend: Backend,
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
    if practices.is_empty() && backend == Backend::Postgres {
        // The usual batch: one statement, which commits itself (no BEGIN and COMMIT).
        return open_unless_replayed(connection, batch).await;
    }
    let mut tx = sqlx::Connection::begin(connection).await?;
    // Each handshake body once: those new here are remembered and get their session; the
    // others (accepted before, or twice in this batch) are replays.
    let mut fresh = remember_handshakes(&mut tx, batch, now).await?;
    let sessions: Vec<(String, &SessionData)> = batch
        .iter()
        .filter(|o| {
            let first = fresh.remove(o.handshake_hash.as_str());
            o.replayed.store(!first, Ordering::Release);
            first
        })
        .map(|o| (o.key_hash.clone(), &o.data))
        .collect();
    if !practices.is_empty() {
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
    }
    if !sessions.is_empty() {
        insert_sessions(&mut *tx, &sessions).await?;
    }
    tx.commit().await
}

/// On PostgreSQL, in one statement: remembers the batch's handshake bodies and inserts the
/// sessions of those that were new (the first of a body twice in the batch); marks the others
/// replayed.
async fn open_unless_replayed(
    connection: &mut sqlx::AnyConnection,
    batch: &[Opening],
) -> Result<(), sqlx::Error> {
    const COLUMNS: &str = "key_hash, practice_id, user_id, user_email, user_name, roles, \
        access_context, patient_id, interaction_id, access_token_sealed, created_at, last_seen_at, expires_at";
    let rows = (0..batch.len())
        .map(|r| {
            let p = |c: usize| format!("${}", r * 14 + c);
            let texts = (1..=11).map(p).collect::<Vec<_>>().join(", ");
            format!(
                "({r}, {texts}, {}::bigint, {}::bigint, {}::bigint)",
                p(12),
                p(13),
                p(14)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "WITH batch (n, body_hash, {COLUMNS}) AS (VALUES {rows}), \
         fresh AS (INSERT INTO handshake_signatures (body_hash, practice_id, seen_at) \
           SELECT body_hash, practice_id, created_at FROM batch \
           ON CONFLICT (body_hash) DO NOTHING RETURNING body_hash) \
         INSERT INTO hint_sessions ({COLUMNS}) \
         SELECT DISTINCT ON (body_hash) {COLUMNS} FROM batch JOIN fresh USING (body_hash) \
         ORDER BY body_hash, n \
         RETURNING key_hash"
    );
    let mut query = sqlx::query(&sql);
    for o in batch {
        query = bind_session(query.bind(&o.handshake_hash), &o.key_hash, &o.data);
    }
    let opened = query
        .fetch_all(connection)
        .await?
        .iter()
        .map(|row| row.try_get::<String, _>("key_hash"))
        .collect::<Result<HashSet<String>, _>>()?;
    for o in batch {
        o.replayed
            .store(!opened.contains(&o.key_hash), Ordering::Release);
    }
    Ok(())
}

/// After a batch written again: a session the first try committed (its answer lost with the
/// connection) finds its body already remembered, so it is marked replayed; it was opened, by
/// that try, under the key this caller holds.
async fn opened_before(
    connection: &mut sqlx::AnyConnection,
    batch: &[Opening],
) -> Result<(), sqlx::Error> {
    let replayed: Vec<&Opening> = batch
        .iter()
        .filter(|o| o.replayed.load(Ordering::Acquire))
        .collect();
    if replayed.is_empty() {
        return Ok(());
    }
    let list = placeholders(replayed.len(), 1, |p| p);
    let sql = format!("SELECT key_hash FROM hint_sessions WHERE key_hash IN ({list})");
    let mut query = sqlx::query_scalar::<_, String>(&sql);
    for o in &replayed {
        query = query.bind(&o.key_hash);
    }
    let opened: HashSet<String> = query.fetch_all(connection).await?.into_iter().collect();
    for o in replayed {
        if opened.contains(&o.key_hash) {
            o.replayed.store(false, Ordering::Release);
        }
    }
    Ok(())
}

/// Records the batch's handshake bodies; answers the hashes that were new.
async fn remember_handshakes(
    tx: &mut sqlx::AnyConnection,
    batch: &[Opening],
    now: i64,
) -> Result<HashSet<String>, sqlx::Error> {
    let at = batch.len() * 2 + 1;
    let rows = placeholders(batch.len(), 2, |p| format!("{p}, ${at}"));
    let sql = format!(
        "INSERT INTO handshake_signatures (body_hash, practice_id, seen_at) VALUES {rows} \
         ON CONFLICT (body_hash) DO NOTHING RETURNING body_hash"
    );
    let mut query = sqlx::query_scalar::<_, String>(&sql);
    for opening in batch {
        query = query
            .bind(&opening.handshake_hash)
            .bind(&opening.data.practice_id);
    }
    let fresh = query.bind(now).fetch_all(&mut *tx).await?;
    Ok(fresh.into_iter().collect())
}

/// Inserts sessions (key hash, data) with one statement.
async fn insert_sessions(
    executor: impl sqlx::Executor<'_, Database = sqlx::Any>,
    sessions: &[(String, &SessionData)],
) -> Result<(), sqlx::Error> {
    let sql = insert_sessions_sql(sessions.len());
    let mut query = sqlx::query(&sql);
    for (key_hash, data) in sessions {
        query = bind_session(query, key_hash, data);
    }
    query.execute(executor).await?;
    Ok(())
}

/// Binds a session's thirteen columns, in the order of the inserts above.
fn bind_session<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    key_hash: &'q str,
    data: &'q SessionData,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
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
        .bind(data.expires_at)
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

/// Deletes sessions past either timeout, and handshake bodies past the window in which they
/// could be replayed (a stale one is refused by its time).
pub async fn sweep_expired(state: &HintState) -> Result<u64, sqlx::Error> {
    let now = now_ms();
    let window = 2 * state.settings.sessions.handshake_max_age.as_millis() as i64;
    loop {
        // In small batches: the table takes every handshake, and this runs beside them.
        let done = sqlx::query(
            "DELETE FROM handshake_signatures WHERE body_hash IN \
             (SELECT body_hash FROM handshake_signatures WHERE seen_at < $1 LIMIT 5000)",
        )
        .bind(now - window)
        .execute(state.db.writer())
        .await?;
        if done.rows_affected() < 5000 {
            break;
        }
    }
    let idle_cutoff = now - state.settings.sessions.idle_timeout.as_millis() as i64;
    // Also in batches: after a pause of the sweep (every instance stopped for a while) a day of
    // sessions may be due at once.
    let mut swept = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM hint_sessions WHERE key_hash IN (SELECT key_hash FROM hint_sessions \
             WHERE expires_at <= $1 OR last_seen_at <= $2 LIMIT 5000)",
        )
        .bind(now)
        .bind(idle_cutoff)
        .execute(state.db.writer())
        .await?
        .rows_affected();
        swept += done;
        if done < 5000 {
            return Ok(swept);
        }
    }
}
