//! Partners' deliveries in bursts: answered once stored, as receipts under load, filed after.
//!
//! Storing a delivery for good ("filing": a visit completed or created, its write-back job
//! queued, its pending poll dropped, its trail entry chained) costs several writes. Each
//! delivery is handed to one writer task, which takes everything waiting (a batch) and answers
//! each caller only once what it stored is committed, so a 200 to a partner always means the
//! delivery is stored.
//!
//! A small batch is filed at once, in one transaction. A burst (a batch of
//! `ResultSettings::receipts_from` or more, and everything after it until no delivery has come
//! for `file_when_quiet`) is stored as receipts instead: one narrow row each, one autocommitted
//! statement per batch, up to [`RECEIPTS_IN_FLIGHT`] batches at once (the second only once
//! [`SECOND_BATCH_FROM`] wait). A filing task of its own files the receipts in larger batches
//! once the burst pauses, a few at least every `file_at_least_every` while it lasts, and all it
//! can while `max_waiting` wait (the writer then files at once again: the burst waits on the
//! database instead of growing the backlog).
//! A receipt is taken under a row lock and deleted once its filing has committed
//! ([`take_receipts`]): any instance files any practice's, so an instance that died leaves none
//! behind, and one that knows of none looks every `look_for_left`.
//!
//! What is stored, and how, is a [`Burst`]: visit results (`completion.rs`) and visits that
//! arrive finished (`recording.rs`). What was measured to choose the constants below:
//! docs/performance.md.

use std::{
    collections::HashSet,
    fmt,
    future::Future,
    hash::Hash,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{AnyConnection, any::AnyRow};
use tokio::{
    sync::{Notify, mpsc, oneshot},
    task::JoinSet,
};

use crate::{
    config::ResultSettings,
    db::{Backend, Db, WriterConnection, placeholders},
    ids::ExternalId,
    tenancy::PracticeId,
};

/// Most deliveries taken into one batch, and how many may wait for the writer.
const MAX_BATCH: usize = 64;
const QUEUE: usize = 4096;
/// Batches of receipts being written at once on PostgreSQL (SQLite writes one at a time:
/// a second batch would only wait for the first's commit, and split the next)…
const RECEIPTS_IN_FLIGHT: usize = 2;
/// …the second only once this many deliveries wait: fewer wait for the batch in flight to
/// commit and join the next, so batches are larger and each commit serves more deliveries.
const SECOND_BATCH_FROM: usize = 16;
/// Receipts filed in one transaction once the burst has paused, and while it lasts.
const FILE_BATCH: usize = 256;
const FILE_BATCH_IN_BURST: usize = 64;
/// How long filing pauses after it failed (the database is down, or closing).
const FILING_PAUSE_AFTER_ERROR: Duration = Duration::from_secs(1);

/// What a writer stores: each method is one transaction (or one autocommitted statement) and
/// answers one outcome per item, in order.
pub trait Burst: Send + Sync + 'static {
    /// One delivery, as its caller hands it in (sealed already: the writer only writes).
    type Item: Send + 'static;
    /// What its caller hears once it is stored.
    type Outcome: Send + 'static;
    /// Deliveries with the same key are never in one batch (one row each).
    type Key: Eq + Hash + Send;
    /// What it stores, for errors.
    const WHAT: &'static str;

    fn key(item: &Self::Item) -> Self::Key;

    /// The database it stores to.
    fn db(&self) -> &Db;

    /// Whether storing a receipt gave this outcome (a receipt now waits to be filed).
    fn left_receipt(outcome: &Self::Outcome) -> bool;

    /// Stores a burst's batch as receipts, in one statement on `connection` (the writer's own
    /// on PostgreSQL: see `Db::writer_connection`).
    fn store_receipts(
        &self,
        connection: &mut AnyConnection,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Outcome>, sqlx::Error>> + Send;

    /// Files a batch at once.
    fn file_now(
        &self,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Outcome>, sqlx::Error>> + Send;

    /// Files up to `limit` waiting receipts (any instance's); answers how many it took.
    fn file_receipts(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<usize, sqlx::Error>> + Send;
}

/// Takes up to `limit` receipts for a filing transaction on `tx`: `select` (columns and the
/// table) with its limit and, on PostgreSQL, a row lock passing over those another instance is
/// filing. A taken receipt is deleted only once its filing has committed
/// ([`delete_receipts`]): a repeat delivery racing the filing then still finds the receipt (a
/// duplicate), where deleting it in the filing transaction let the repeat in, unseen by a
/// statement that began before the filing committed. A receipt filed twice (its instance died
/// in between) finds its visit filed and changes nothing.
pub(super) async fn take_receipts(
    tx: &mut AnyConnection,
    db: &Db,
    select: &str,
    limit: usize,
) -> Result<Vec<AnyRow>, sqlx::Error> {
    let lock = match db.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    sqlx::query(&format!("{select} LIMIT $1{lock}"))
        .bind(limit as i64)
        // Planned on each use: the receipts come and go in thousands.
        .persistent(false)
        .fetch_all(tx)
        .await
}

/// Deletes filed receipts of `table`, each named by its `columns`' values.
pub(super) async fn delete_receipts<const N: usize>(
    db: &Db,
    table: &str,
    columns: [&str; N],
    keys: &[[&str; N]],
) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "DELETE FROM {table} WHERE ({}) IN (VALUES {})",
        columns.join(", "),
        placeholders(keys.len(), N, |p| p),
    );
    let mut query = sqlx::query(&sql);
    for key in keys {
        for value in key {
            query = query.bind(*value);
        }
    }
    query.execute(db.writer()).await?;
    Ok(())
}

/// The practice of a receipt read back to be filed: stored by the delivery that proved it.
pub(super) fn receipt_practice(stored: String) -> Result<PracticeId, sqlx::Error> {
    let id = ExternalId::try_from(stored).map_err(|e| sqlx::Error::Decode(e.into()))?;
    Ok(PracticeId::verified(id))
}

/// A delivery could not be stored (the database's error, never the delivery).
#[derive(Debug)]
pub struct BurstError {
    what: &'static str,
    failure: Failure,
}

#[derive(Debug)]
enum Failure {
    /// The batch's statement or transaction failed: the database's error, shared by the batch.
    Database(Arc<sqlx::Error>),
    /// The writer is gone (the app is stopping).
    Writer(&'static str),
}

impl fmt::Display for BurstError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            Failure::Database(e) => write!(f, "storing {}: {e}", self.what),
            Failure::Writer(reason) => write!(f, "storing {}: {reason}", self.what),
        }
    }
}

impl std::error::Error for BurstError {
    /// The database's error itself, so that a database away is told apart (`error.rs`).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            Failure::Database(e) => Some(e.as_ref()),
            Failure::Writer(_) => None,
        }
    }
}

struct Request<B: Burst> {
    item: B::Item,
    reply: oneshot::Sender<Result<B::Outcome, Arc<sqlx::Error>>>,
}

/// Handle to a writer task and its filing task.
pub struct BurstWriter<B: Burst> {
    sender: mpsc::Sender<Request<B>>,
}

impl<B: Burst> Clone for BurstWriter<B> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
        }
    }
}

impl<B: Burst> fmt::Debug for BurstWriter<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BurstWriter")
            .field("what", &B::WHAT)
            .finish_non_exhaustive()
    }
}

/// What the writer tells the filing task.
#[derive(Default)]
struct Shared {
    /// A burst is on: no quiet moment since it began.
    in_burst: AtomicBool,
    /// Receipts this instance stored and has not seen filed (about: for back-pressure).
    unfiled: AtomicUsize,
    /// Every handle is gone.
    closed: AtomicBool,
    /// Receipts were stored, a burst paused, or the writer closed.
    wake: Notify,
}

impl<B: Burst> BurstWriter<B> {
    /// Starts the writer and its filing task (both end when every handle is dropped).
    pub fn spawn(burst: B, settings: ResultSettings) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let burst = Arc::new(burst);
        let shared = Arc::new(Shared::default());
        tokio::spawn(file(burst.clone(), settings.clone(), shared.clone()));
        tokio::spawn(write(burst, settings, shared, receiver));
        Self { sender }
    }

    /// Hands `item` to the writer and waits until it is stored.
    pub async fn submit(&self, item: B::Item) -> Result<B::Outcome, BurstError> {
        let failed = |reason: &'static str| BurstError {
            what: B::WHAT,
            failure: Failure::Writer(reason),
        };
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Request { item, reply })
            .await
            .map_err(|_| failed("the writer has stopped"))?;
        answer
            .await
            .map_err(|_| failed("the writer dropped it"))?
            .map_err(|e| BurstError {
                what: B::WHAT,
                failure: Failure::Database(e),
            })
    }
}

/// The writer: batches, and decides for each whether it is a burst's.
async fn write<B: Burst>(
    burst: Arc<B>,
    settings: ResultSettings,
    shared: Arc<Shared>,
    mut receiver: mpsc::Receiver<Request<B>>,
) {
    let mut waiting: Vec<Request<B>> = Vec::new();
    let mut in_flight: JoinSet<Option<WriterConnection>> = JoinSet::new();
    // The writer's own connections between batches of receipts.
    let mut spare: Vec<WriterConnection> = Vec::new();
    let most_in_flight = match burst.db().backend() {
        Backend::Postgres => RECEIPTS_IN_FLIGHT,
        Backend::Sqlite => 1,
    };
    loop {
        if waiting.is_empty() {
            let next = if shared.in_burst.load(Ordering::Relaxed) {
                match tokio::time::timeout(settings.file_when_quiet, receiver.recv()).await {
                    Ok(next) => next,
                    Err(_) => {
                        // A quiet moment: the burst has passed, its receipts may be filed.
                        shared.in_burst.store(false, Ordering::Relaxed);
                        shared.wake.notify_one();
                        continue;
                    }
                }
            } else {
                receiver.recv().await
            };
            match next {
                Some(request) => waiting.push(request),
                None => break,
            }
        }
        while waiting.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(request) => waiting.push(request),
                Err(_) => break,
            }
        }
        if shared.in_burst.load(Ordering::Relaxed) {
            // The batch is formed once it may be written: what arrives while a batch is being
            // written joins it (fewer commits, each flushed).
            while !in_flight.is_empty()
                && (in_flight.len() >= most_in_flight || waiting.len() < SECOND_BATCH_FROM)
            {
                tokio::select! {
                    done = in_flight.join_next() => settle(done, &mut spare),
                    next = receiver.recv(), if waiting.len() < MAX_BATCH => match next {
                        Some(request) => waiting.push(request),
                        None => break,
                    },
                }
            }
        }
        // One row per key in a batch; a second delivery for it waits for the next.
        let mut seen = HashSet::new();
        let (batch, later): (Vec<Request<B>>, Vec<Request<B>>) = waiting
            .drain(..)
            .partition(|r| seen.insert(B::key(&r.item)));
        waiting = later;
        if batch.len() + waiting.len() + receiver.len() >= settings.receipts_from {
            shared.in_burst.store(true, Ordering::Relaxed);
        }
        let as_receipts = shared.in_burst.load(Ordering::Relaxed)
            && shared.unfiled.load(Ordering::Relaxed) < settings.max_waiting;
        if as_receipts {
            // Written by a task of its own: the writer goes on taking deliveries meanwhile (a
            // second delivery for the same key, in a later batch, finds the first's row).
            if in_flight.len() >= most_in_flight {
                settle(in_flight.join_next().await, &mut spare);
            }
            let (burst, shared) = (burst.clone(), shared.clone());
            let kept = spare.pop();
            in_flight.spawn(async move {
                let (items, replies) = split(batch);
                let connection = burst.db().reuse(kept).await;
                let (outcome, keep) = match connection {
                    Ok(mut connection) => {
                        let outcome = burst.store_receipts(&mut connection, &items).await;
                        // Kept for the next batch unless the statement failed (a connection
                        // in doubt is closed).
                        let keep = (outcome.is_ok() && connection.is_own()).then_some(connection);
                        (outcome, keep)
                    }
                    Err(e) => (Err(e), None),
                };
                if let Ok(outcomes) = &outcome {
                    let stored = outcomes.iter().filter(|o| B::left_receipt(o)).count();
                    if stored > 0 {
                        shared.unfiled.fetch_add(stored, Ordering::Relaxed);
                        shared.wake.notify_one();
                    }
                }
                answer::<B>(replies, outcome);
                keep
            });
        } else {
            // Filed at once: after the receipts in flight (a later delivery never overtakes
            // an earlier one's receipt).
            while let Some(done) = in_flight.join_next().await {
                settle(Some(done), &mut spare);
            }
            let (items, replies) = split(batch);
            let outcome = burst.file_now(&items).await;
            answer::<B>(replies, outcome);
        }
    }
    // Every handle is gone: the receipts being written finish, and filing stops (another
    // instance, or this one's next start, files what is left).
    while in_flight.join_next().await.is_some() {}
    shared.closed.store(true, Ordering::Relaxed);
    shared.wake.notify_one();
}

/// Keeps the connection a finished batch of receipts gives back.
fn settle(
    done: Option<Result<Option<WriterConnection>, tokio::task::JoinError>>,
    spare: &mut Vec<WriterConnection>,
) {
    if let Some(Ok(Some(connection))) = done {
        spare.push(connection);
    }
}

type Replies<O> = Vec<oneshot::Sender<Result<O, Arc<sqlx::Error>>>>;

fn split<B: Burst>(batch: Vec<Request<B>>) -> (Vec<B::Item>, Replies<B::Outcome>) {
    batch.into_iter().map(|r| (r.item, r.reply)).unzip()
}

/// Answers each caller of a batch: its outcome, or why none could be stored.
fn answer<B: Burst>(replies: Replies<B::Outcome>, outcome: Result<Vec<B::Outcome>, sqlx::Error>) {
    match outcome {
        Ok(outcomes) => {
            debug_assert_eq!(outcomes.len(), replies.len());
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// The filing task: files receipts when the burst pauses, a few while it lasts, all it can
/// under back-pressure, and looks for receipts left by others when it knows of none.
async fn file<B: Burst>(burst: Arc<B>, settings: ResultSettings, shared: Arc<Shared>) {
    // Receipts may wait from before a restart, or from an instance that died: look once the
    // first quiet moment has passed.
    tokio::time::sleep(settings.file_when_quiet).await;
    let mut look = true;
    let mut last_filed = Instant::now();
    while !shared.closed.load(Ordering::Relaxed) {
        if !look {
            // None known: wait to be told of some, or look for what another instance left.
            let _ = tokio::time::timeout(settings.look_for_left, shared.wake.notified()).await;
            look = true;
            continue;
        }
        let pressed = shared.unfiled.load(Ordering::Relaxed) >= settings.max_waiting;
        let limit = if shared.in_burst.load(Ordering::Relaxed) && !pressed {
            let due = last_filed + settings.file_at_least_every;
            if Instant::now() < due {
                let wake = shared.wake.notified();
                let _ = tokio::time::timeout_at(due.into(), wake).await;
                continue;
            }
            FILE_BATCH_IN_BURST
        } else {
            FILE_BATCH
        };
        last_filed = Instant::now();
        match burst.file_receipts(limit).await {
            Ok(taken) => {
                let _ = shared
                    .unfiled
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        Some(n.saturating_sub(taken))
                    });
                // Fewer than asked for: none left that this transaction could see (any
                // stored since woke the task again).
                look = taken == limit;
            }
            Err(e) => {
                // They stay stored; filing tries again after a pause (deliveries are still
                // taken meanwhile).
                tracing::error!(what = B::WHAT, error = %crate::error::error_chain(&e), "filing receipts failed");
                tokio::time::sleep(FILING_PAUSE_AFTER_ERROR).await;
            }
        }
    }
}
