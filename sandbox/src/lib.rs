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

use anyhow::Context as _;
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

pub use haidy::SandboxHaidy;
pub use hcw::SandboxHcw;
pub use mediquo::SandboxMediquo;
pub use tiep::SandboxTiep;

/// What a fake partner is told of the practice it is connected to.
pub struct Practice<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// Chartbridge's public base URL: the practice's webhooks are under it.
    pub app_url: &'a Url,
    /// The practice's users' emails (doctors, for a partner that signs doctors in).
    pub user_emails: &'a [String],
    /// The practice's patients: (Hint id, display name).
    pub patients: &'a [(String, String)],
}

impl Practice<'_> {
    /// Where the partner posts this practice's webhooks: `{app}/webhooks/{partner}/{practice}`.
    pub fn webhook_url(&self, partner: &str) -> Url {
        let mut url = self.app_url.clone();
        url.path_segments_mut()
            .expect("http(s) URLs have a path")
            .pop_if_empty()
            .extend(["webhooks", partner, self.id]);
        url
    }
}

/// A fake partner as the demo and the test harness drive it, without knowing which it is.
pub trait FakePartner: Send + Sync {
    /// The partner's id in Chartbridge (`/hint/settings/{id}`, `/webhooks/{id}/…`).
    fn id(&self) -> &'static str;
    /// Name for people.
    fn name(&self) -> &'static str;
    fn base_url(&self) -> &Url;
    /// Flags that point Chartbridge's configuration of this partner here
    /// (`--tiep-api-url …`), for a partner with endpoints of its own.
    fn app_flags(&self) -> Vec<String> {
        Vec::new()
    }
    /// Readies the fake for `practice` (its facility, account or integration) and answers the
    /// fields the practice's admin enters in Chartbridge's settings section for it.
    fn connect(&self, practice: &Practice<'_>) -> Vec<(&'static str, String)>;
    /// A page of the fake worth a link from the sandbox Hint home (the demo's).
    fn console(&self) -> Option<(&'static str, Url)> {
        None
    }
}

/// Every fake partner. Adding a partner's fake: its module, a field, a line in `start` and in
/// `all`.
#[derive(Clone)]
pub struct Partners {
    pub tiep: SandboxTiep,
    pub mediquo: SandboxMediquo,
    pub hcw: SandboxHcw,
    pub haidy: SandboxHaidy,
}

impl Partners {
    /// Starts every fake on loopback: on `first_port` and the ports after it, in `all`'s
    /// order, or on free ports when it is 0.
    pub async fn start(first_port: u16) -> anyhow::Result<Self> {
        let port = |i: u16| if first_port == 0 { 0 } else { first_port + i };
        let taken = |i: u16| {
            format!(
                "a sandbox partner could not listen on 127.0.0.1:{}",
                port(i)
            )
        };
        Ok(Self {
            tiep: SandboxTiep::start(port(0))
                .await
                .with_context(|| taken(0))?,
            mediquo: SandboxMediquo::start(port(1))
                .await
                .with_context(|| taken(1))?,
            hcw: SandboxHcw::start(port(2), hcw::SSO_SECRET)
                .await
                .with_context(|| taken(2))?,
            haidy: SandboxHaidy::start(port(3))
                .await
                .with_context(|| taken(3))?,
        })
    }

    pub fn all(&self) -> Vec<&dyn FakePartner> {
        vec![&self.tiep, &self.mediquo, &self.hcw, &self.haidy]
    }

    /// Every fake's flags for Chartbridge's partner configuration.
    pub fn app_flags(&self) -> Vec<String> {
        self.all().iter().flat_map(|p| p.app_flags()).collect()
    }
}

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
