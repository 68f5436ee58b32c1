//! A practice's Hint budget shared by every instance on one database: at most `slots` calls in
//! flight at once and at most `per_second` calls in any one-second window, counted in the
//! database that all instances share (PostgreSQL where Hint hosts us).
//!
//! Why the database and not Redis or the like: it is the one store every deployment already
//! has (Hint's hosting gives PostgreSQL, nothing else), it is where the instances already agree
//! on everything else, and a Hint call (tens of milliseconds, 20 a second at most per practice)
//! can afford two short transactions. Each transaction first writes the practice's row in
//! `hint_budgets`, so calls of one practice are counted one at a time on both databases (a row
//! lock on PostgreSQL, the write lock on SQLite), while other practices go on.
//!
//! Times are each instance's clock (kept in step by NTP where Hint hosts us): a skew of a few
//! milliseconds moves a window by as much, well inside the margin our budget keeps under Hint's.
//!
//! Each instance keeps its own pacer and in-flight cap in front of this (`client.rs`), which
//! spares the database the calls that could not go anyway.

use std::time::Duration;

use crate::db::{Db, new_id, now_ms};

/// Hint counts its budget per second of arrivals; ours is counted when a call is let go, and
/// the call reaches Hint a moment later, by a jitter that differs call to call (a busy
/// instance, the network). The window is a tenth of a second longer than Hint's, so calls
/// that leave a second apart here still arrive a second apart there.
const WINDOW_MS: i64 = 1_100;
/// Between two looks at a full budget.
const RECHECK: Duration = Duration::from_millis(25);

#[derive(Clone, Debug)]
pub struct SharedBudget {
    db: Db,
    /// How long a slot is held before another instance may take it (a crashed holder).
    hold: Duration,
}

/// A slot taken in the shared budget; give it back with [`SharedBudget::release`].
#[must_use]
pub struct Slot {
    practice_id: String,
    holder: String,
}

impl SharedBudget {
    /// `hold` bounds how long a crashed instance's slot stays taken: longer than a call may last.
    pub fn new(db: Db, hold: Duration) -> Self {
        Self { db, hold }
    }

    /// Takes one of the practice's `slots` when one is free; `None` when `wait` passed first.
    pub async fn take_slot(
        &self,
        budget: &str,
        slots: usize,
        wait: Duration,
    ) -> Result<Option<Slot>, sqlx::Error> {
        let give_up = tokio::time::Instant::now() + wait;
        let holder = new_id("slot");
        loop {
            let mut tx = self.lock(budget).await?;
            let now = now_ms();
            sqlx::query("DELETE FROM hint_budget_slots WHERE practice_id = $1 AND held_until < $2")
                .bind(budget)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let taken: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM hint_budget_slots WHERE practice_id = $1")
                    .bind(budget)
                    .fetch_one(&mut *tx)
                    .await?;
            if (taken as usize) < slots {
                sqlx::query(
                    "INSERT INTO hint_budget_slots (practice_id, holder, held_until) VALUES ($1, $2, $3)",
                )
                .bind(budget)
                .bind(&holder)
                .bind(now + self.hold.as_millis() as i64)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(Some(Slot {
                    practice_id: budget.to_string(),
                    holder,
                }));
            }
            tx.commit().await?;
            if tokio::time::Instant::now() + RECHECK > give_up {
                return Ok(None);
            }
            tokio::time::sleep(RECHECK).await;
        }
    }

    /// Gives a slot back.
    pub async fn release(&self, slot: Slot) {
        let released =
            sqlx::query("DELETE FROM hint_budget_slots WHERE practice_id = $1 AND holder = $2")
                .bind(&slot.practice_id)
                .bind(&slot.holder)
                .execute(self.db.writer())
                .await;
        if let Err(e) = released {
            // It frees itself when its hold runs out.
            tracing::warn!(error = %e, "giving back a Hint slot failed");
        }
    }

    /// Waits until a call may leave without any one-second window holding more than
    /// `per_second` calls of the practice, over every instance; counts the call.
    pub async fn pace(&self, budget: &str, per_second: usize) -> Result<(), sqlx::Error> {
        loop {
            let mut tx = self.lock(budget).await?;
            let now = now_ms();
            sqlx::query("DELETE FROM hint_budget_calls WHERE practice_id = $1 AND sent_at <= $2")
                .bind(budget)
                .bind(now - WINDOW_MS)
                .execute(&mut *tx)
                .await?;
            let sent: Vec<i64> = sqlx::query_scalar(
                "SELECT sent_at FROM hint_budget_calls WHERE practice_id = $1 ORDER BY sent_at",
            )
            .bind(budget)
            .fetch_all(&mut *tx)
            .await?;
            if sent.len() < per_second.max(1) {
                sqlx::query("INSERT INTO hint_budget_calls (practice_id, sent_at) VALUES ($1, $2)")
                    .bind(budget)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                return Ok(());
            }
            tx.commit().await?;
            // The oldest call in the window leaves it then.
            let wait = (sent[0] + WINDOW_MS - now).clamp(1, WINDOW_MS);
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }

    /// A transaction holding the practice's budget row: the practice's counting is one at a
    /// time across instances from here to the commit.
    async fn lock(&self, budget: &str) -> Result<crate::db::Tx, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "INSERT INTO hint_budgets (practice_id, touched_at) VALUES ($1, $2) \
             ON CONFLICT (practice_id) DO UPDATE SET touched_at = excluded.touched_at",
        )
        .bind(budget)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        Ok(tx)
    }
}
