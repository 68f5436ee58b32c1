//! The per-user session cap: a user keeps at most their newest `max_per_user` sessions.
//!
//! A handshake is answered once its session is committed; the cap follows within a tenth of a
//! second, for every user who opened a session in that tenth, with one statement. Applied per
//! handshake, the cap's deletion costs the database more than the sessions' insertion
//! (docs/performance.md); a user's oldest session ending 100 ms later changes nothing a
//! clinician sees.

use std::{collections::HashSet, time::Duration};

use tokio::sync::mpsc;

use crate::db::{Db, placeholders};

/// A user, by practice id and user id.
pub type UserKey = (String, String);

/// How long users gather before the cap is applied to them.
pub const CAP_EVERY: Duration = Duration::from_millis(100);
/// Users waiting for the cap; beyond that a user is left to their next handshake.
const WAITING: usize = 16_384;
/// Most users in one statement (two parameters each, within SQLite's limit).
const USERS_PER_STATEMENT: usize = 1_000;

/// Handle to the task applying the cap (it ends when every handle is dropped).
#[derive(Debug, Clone)]
pub struct SessionCap {
    opened: mpsc::Sender<UserKey>,
}

impl SessionCap {
    /// Starts the task: every [`CAP_EVERY`], the users who opened a session keep their newest
    /// `keep`.
    pub fn spawn(db: Db, keep: usize) -> Self {
        let (opened, mut users) = mpsc::channel::<UserKey>(WAITING);
        let keep = keep.max(1) as i64;
        tokio::spawn(async move {
            let mut due = HashSet::new();
            while let Some(user) = users.recv().await {
                tokio::time::sleep(CAP_EVERY).await;
                due.insert(user);
                while let Ok(user) = users.try_recv() {
                    due.insert(user);
                }
                let mut batch: Vec<UserKey> = due.drain().collect();
                batch.sort_unstable();
                for chunk in batch.chunks(USERS_PER_STATEMENT) {
                    if let Err(e) = end_beyond_cap(&db, keep, chunk).await {
                        // Their next handshake tries again.
                        tracing::warn!(error = %e, "per-user session cap not applied");
                    }
                }
            }
        });
        Self { opened }
    }

    /// Notes that `user` opened a session (never waits: when too many are waiting, the user's
    /// cap is applied at their next handshake).
    pub fn opened(&self, user: UserKey) {
        let _ = self.opened.try_send(user);
    }
}

/// Ends the sessions of `users` beyond each one's newest `keep`, with one statement.
async fn end_beyond_cap(db: &Db, keep: i64, users: &[UserKey]) -> Result<(), sqlx::Error> {
    let pairs = placeholders(users.len(), 2, |p| p);
    let sql = format!(
        "DELETE FROM hint_sessions WHERE key_hash IN (SELECT key_hash FROM (\
           SELECT key_hash, ROW_NUMBER() OVER (PARTITION BY practice_id, user_id \
             ORDER BY created_at DESC, key_hash) AS newest \
           FROM hint_sessions WHERE (practice_id, user_id) IN (VALUES {pairs})) ranked \
         WHERE newest > ${})",
        users.len() * 2 + 1
    );
    let mut query = sqlx::query(&sql);
    for (practice_id, user_id) in users {
        query = query.bind(practice_id).bind(user_id);
    }
    let ended = query.bind(keep).execute(db.writer()).await?.rows_affected();
    if ended > 0 {
        tracing::info!(ended, "oldest sessions ended: over the per-user cap");
    }
    Ok(())
}
