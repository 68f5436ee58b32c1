//! Group commit: writes that arrive together share one transaction.
//!
//! SQLite has one writer and PostgreSQL pays a commit (a WAL flush) per transaction: under
//! load, one commit per request is the ceiling. A [`GroupCommit`] hands every item to one
//! writer task, which takes everything waiting (up to its batch size), writes it with one
//! transaction and answers each caller only once that transaction is committed, so an answer
//! never runs ahead of what is stored. Used for handshake sessions and audit entries (partners'
//! deliveries have their own writer, `visits::burst`, which stores a burst as receipts and
//! decides per item).

use std::{future::Future, sync::Arc};

use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<(), Arc<sqlx::Error>>>;

/// Handle to a writer task for items of type `T`.
#[derive(Debug)]
pub struct GroupCommit<T> {
    what: &'static str,
    sender: mpsc::Sender<(T, Reply)>,
}

impl<T> Clone for GroupCommit<T> {
    fn clone(&self) -> Self {
        Self {
            what: self.what,
            sender: self.sender.clone(),
        }
    }
}

/// An item could not be written (the database error, never the item).
#[derive(Debug)]
pub struct GroupCommitError {
    what: &'static str,
    failure: Failure,
}

#[derive(Debug)]
enum Failure {
    /// The batch's transaction failed: the database's error, shared by the batch's callers.
    Database(Arc<sqlx::Error>),
    /// The writer is gone (the app is stopping).
    Writer(&'static str),
}

impl std::fmt::Display for GroupCommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.failure {
            Failure::Database(e) => write!(f, "writing {}: {e}", self.what),
            Failure::Writer(reason) => write!(f, "writing {}: {reason}", self.what),
        }
    }
}

impl std::error::Error for GroupCommitError {
    /// The database's error itself, so that a database away is told apart (`error.rs`).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            Failure::Database(e) => Some(e.as_ref()),
            Failure::Writer(_) => None,
        }
    }
}

impl<T: Send + 'static> GroupCommit<T> {
    /// Starts the writer task (it ends when every handle is dropped). `write` stores a batch
    /// in one transaction; its error goes to every caller of that batch. At most `max_batch`
    /// items are written together and `queue` wait.
    pub fn spawn<W, F>(what: &'static str, max_batch: usize, queue: usize, mut write: W) -> Self
    where
        W: FnMut(Vec<T>) -> F + Send + 'static,
        F: Future<Output = Result<(), sqlx::Error>> + Send,
    {
        let (sender, mut receiver) = mpsc::channel::<(T, Reply)>(queue);
        tokio::spawn(async move {
            let mut items = Vec::with_capacity(max_batch);
            let mut replies = Vec::with_capacity(max_batch);
            while let Some((item, reply)) = receiver.recv().await {
                items.push(item);
                replies.push(reply);
                while items.len() < max_batch {
                    match receiver.try_recv() {
                        Ok((item, reply)) => {
                            items.push(item);
                            replies.push(reply);
                        }
                        Err(_) => break,
                    }
                }
                let written = write(std::mem::take(&mut items)).await.map_err(Arc::new);
                for reply in replies.drain(..) {
                    let _ = reply.send(written.clone());
                }
            }
        });
        Self { what, sender }
    }

    /// Hands `item` to the writer and waits until its batch is committed.
    pub async fn submit(&self, item: T) -> Result<(), GroupCommitError> {
        let (reply, done) = oneshot::channel();
        let failed = |reason: &'static str| GroupCommitError {
            what: self.what,
            failure: Failure::Writer(reason),
        };
        self.sender
            .send((item, reply))
            .await
            .map_err(|_| failed("the writer has stopped"))?;
        done.await
            .map_err(|_| failed("the writer dropped the item"))?
            .map_err(|e| GroupCommitError {
                what: self.what,
                failure: Failure::Database(e),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn items_arriving_together_share_a_batch_and_every_caller_hears_the_outcome() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let seen = batches.clone();
        let writer = GroupCommit::spawn("numbers", 8, 64, move |items: Vec<u32>| {
            let seen = seen.clone();
            async move {
                let fail = items.contains(&13);
                seen.lock().unwrap().push(items);
                if fail {
                    Err(sqlx::Error::Protocol("unlucky".into()))
                } else {
                    Ok(())
                }
            }
        });
        let answers =
            futures_join((0..20u32).map(|i| writer.clone().submit_owned(i)).collect()).await;
        let batches = batches.lock().unwrap();
        assert_eq!(
            batches.iter().map(Vec::len).sum::<usize>(),
            20,
            "each item written once"
        );
        assert!(batches.iter().all(|b| b.len() <= 8));
        // The batch holding 13 failed as a whole, the others stood.
        let failed: usize = batches
            .iter()
            .filter(|b| b.contains(&13))
            .map(Vec::len)
            .sum();
        assert_eq!(answers.iter().filter(|a| a.is_err()).count(), failed);
        let error = answers.iter().find_map(|a| a.as_ref().err()).unwrap();
        assert_eq!(
            error.to_string(),
            "writing numbers: encountered unexpected or invalid data: unlucky"
        );
        let cause = std::error::Error::source(error).and_then(|e| e.downcast_ref::<sqlx::Error>());
        assert!(cause.is_some(), "the database's error is the cause");
    }

    impl<T: Send + 'static> GroupCommit<T> {
        async fn submit_owned(self, item: T) -> Result<(), GroupCommitError> {
            self.submit(item).await
        }
    }

    async fn futures_join<F: Future<Output = R> + Send + 'static, R: Send + 'static>(
        futures: Vec<F>,
    ) -> Vec<R> {
        let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
        let mut out = Vec::new();
        for handle in handles {
            out.push(handle.await.unwrap());
        }
        out
    }
}
