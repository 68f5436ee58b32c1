//! Strict stand-ins for Hint and the partners, on their own loopback sockets. The demo runs on
//! them and the tests drive them; the product never links them. Each refuses what the real
//! service refuses (see `../shared/contracts.md`), so a client bug fails a test.
//!
//! The fakes share no code with the product: they sign and check with their own few lines of
//! HMAC below, so a mistake in the product's signatures cannot be mirrored here.

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
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::net::TcpListener;
use url::Url;

/// Binds a loopback listener (port 0 picks a free one) and answers its base URL.
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

/// `sha256=<lowercase hex>` of HMAC-SHA256(body, secret), as Hint and Tiep sign.
pub fn sign_hmac_sha256(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// An unguessable token: 32 random bytes, URL-safe base64.
pub(crate) fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

#[cfg(test)]
mod tests {
    #[test]
    fn signs_like_rfc_4231() {
        assert_eq!(
            super::sign_hmac_sha256(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
