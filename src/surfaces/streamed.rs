//! Answers written while they are read: a task sends chunks through a small channel (a slow
//! download holds the writer back instead of filling memory) and the body yields them as they
//! come. A writer that fails ends the body with an error: the connection is cut, so the client
//! sees an incomplete transfer, never a short file that looks whole.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use axum::body::{Body, Bytes};
use http_body::Frame;
use tokio::sync::mpsc;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Chunks waiting to be sent at most.
const WAITING: usize = 8;

/// The writer's end.
pub struct Sender(mpsc::Sender<Result<Bytes, BoxError>>);

/// The download was closed (the client went away): the writer stops.
#[derive(Debug, thiserror::Error)]
#[error("the download was closed")]
pub struct Closed;

impl Sender {
    /// Sends one chunk, waiting while the client is slower than the writer.
    pub async fn send(&self, bytes: impl Into<Bytes>) -> Result<(), Closed> {
        self.0.send(Ok(bytes.into())).await.map_err(|_| Closed)
    }

    /// Ends the answer as failed (the client sees the transfer cut off).
    pub async fn fail(self, error: BoxError) {
        let _ = self.0.send(Err(error)).await;
    }
}

/// A writer's end and the body it fills.
pub fn channel() -> (Sender, Body) {
    let (tx, rx) = mpsc::channel(WAITING);
    (Sender(tx), Body::new(Chunks(rx)))
}

struct Chunks(mpsc::Receiver<Result<Bytes, BoxError>>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| c.map(Frame::data)))
    }
}
