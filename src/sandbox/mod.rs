//! Strict stand-ins for Hint and the partners, on their own sockets. The demo runs on them and
//! the tests drive them. They refuse whatever the real services refuse, so a client bug fails.

pub mod demo;
#[allow(clippy::result_large_err)]
pub mod haidy;
#[allow(clippy::result_large_err)]
pub mod hcw;
// Fake handlers refuse with a ready `Response`; boxing it would only add noise.
#[allow(clippy::result_large_err)]
pub mod hint;
pub mod mediquo;
#[allow(clippy::result_large_err)]
pub mod tiep;

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use tokio::net::TcpListener;
use url::Url;

/// Binds a loopback listener and answers its base URL.
pub(crate) async fn bind(port: u16) -> anyhow::Result<(TcpListener, Url)> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, Url::parse(&format!("http://{addr}/"))?))
}

/// Serves `app` on `listener` in the background for as long as the process runs.
pub(crate) fn serve(listener: TcpListener, app: axum::Router) {
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

/// A JSON error in Hint's shape: `{"status", "message"}`.
pub(crate) fn hint_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"status": status.as_u16(), "message": message})),
    )
        .into_response()
}
