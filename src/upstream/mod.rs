//! The one way out: every call to Hint and to a partner goes through [`Upstream`].
//!
//! Clients with a timeout on every request, a shorter one to connect, and no automatic
//! redirects (a partner that answers 3xx gets an "unexpected answer", never a second request
//! carrying our credentials somewhere else). Addresses the operator configured (Hint, Tiep,
//! Haidy) are called with [`Upstream::http`]; addresses a practice admin typed (HCW@Home's)
//! only through [`Upstream::guarded`], which refuses private and local addresses
//! ([`address`]). [`Upstream::send`] checks the status; every failure is an [`UpstreamError`]
//! that names the party and keeps its cause, and [`endpoint`] joins path segments onto a base
//! URL the same way for every client.

pub mod address;
pub mod guarded;

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use self::{
    address::{AddressPolicy, AddressRefused},
    guarded::{Guarded, HostLookup},
};

/// Most messages kept from one error body, and their length.
const MAX_MESSAGES: usize = 10;
const MAX_MESSAGE_CHARS: usize = 300;
/// Most characters of a party's words shown to a person.
pub const MAX_REASON_CHARS: usize = 160;

/// The shared clients for outbound calls.
#[derive(Clone, Debug)]
pub struct Upstream {
    http: reqwest::Client,
    guarded: Guarded,
}

/// `timeout` bounds each whole request; connecting gets at most five seconds of it.
fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("chartbridge/", env!("CARGO_PKG_VERSION")))
}

impl Upstream {
    /// Admin-entered addresses must be public ones.
    pub fn new(timeout: Duration) -> reqwest::Result<Self> {
        Self::with_policy(timeout, AddressPolicy::default(), HostLookup::default())
    }

    /// Admin-entered addresses must be public or allowed by `policy`, looked up with `lookup`.
    pub fn with_policy(
        timeout: Duration,
        policy: AddressPolicy,
        lookup: HostLookup,
    ) -> reqwest::Result<Self> {
        Ok(Self {
            http: client_builder(timeout).build()?,
            guarded: Guarded::new(timeout, policy, lookup)?,
        })
    }

    /// The client for addresses the operator configured (send with [`Upstream::send`]).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The way to addresses a practice admin typed.
    pub fn guarded(&self) -> &Guarded {
        &self.guarded
    }

    /// Sends `request` to `party`; a non-2xx answer is an error carrying the status and the
    /// messages of its body.
    pub async fn send(
        &self,
        party: &'static str,
        request: RequestBuilder,
    ) -> Result<Response, UpstreamError> {
        let response = request
            .send()
            .await
            .map_err(|e| UpstreamError::from_reqwest(party, e))?;
        check(party, response).await
    }
}

/// Fails a non-2xx answer with its status and messages.
pub async fn check(party: &'static str, response: Response) -> Result<Response, UpstreamError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    Err(UpstreamError::Status {
        party,
        status,
        messages: messages(&body),
    })
}

/// Reads a JSON answer.
pub async fn json<T: DeserializeOwned>(
    party: &'static str,
    response: Response,
) -> Result<T, UpstreamError> {
    response
        .json()
        .await
        .map_err(|e| UpstreamError::from_reqwest(party, e))
}

/// Reads a file the party sends, refusing one over `max` bytes (before reading, when its
/// length is announced, else as soon as it grows past it).
pub async fn bytes(
    party: &'static str,
    mut response: Response,
    max: usize,
) -> Result<Vec<u8>, UpstreamError> {
    let too_large = || UpstreamError::Unexpected {
        party,
        detail: format!("a file over {max} bytes"),
    };
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| UpstreamError::from_reqwest(party, e))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a text answer.
pub async fn text(party: &'static str, response: Response) -> Result<String, UpstreamError> {
    response
        .text()
        .await
        .map_err(|e| UpstreamError::from_reqwest(party, e))
}

/// `base` with `segments` appended to its path, each percent-encoded (`/` inside a segment
/// included), the base's own path kept: `https://h/api/` + `["v1", "x"]` is `https://h/api/v1/x`.
pub fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .expect("http(s) base URLs have a path")
        .pop_if_empty()
        .extend(segments);
    url
}

/// An outbound call that failed, naming the party; the cause is kept as `source`.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{party} did not answer in time")]
    Timeout {
        party: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("could not reach {party}")]
    Unreachable {
        party: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The body's messages are kept for the person who acts on them ([`UpstreamError::reason`]),
    /// never in the error's text: that is logged, and a partner's words are not ours to log.
    #[error("{party} answered HTTP {}", status.as_u16())]
    Status {
        party: &'static str,
        status: StatusCode,
        /// What the body said (`message`, `detail`, `error`, or a list of them), cut short.
        messages: Vec<String>,
    },
    /// The answer did not read as expected. The decoder's own words can quote the body (a
    /// patient's name), so only where it stopped reading is kept.
    #[error("unexpected answer from {party} ({detail})")]
    Unexpected { party: &'static str, detail: String },
    /// Not sent: too many of our calls to the party were already waiting (our own limit).
    #[error("{party} is busy: too many calls were waiting; try again in a moment")]
    Busy { party: &'static str },
    /// Not sent: the address is not one Chartbridge may call.
    #[error("{party} was not called")]
    Refused {
        party: &'static str,
        #[source]
        reason: AddressRefused,
    },
}

impl UpstreamError {
    fn from_reqwest(party: &'static str, source: reqwest::Error) -> Self {
        // Its URL names patients (Provider API paths) and whatever an admin typed: not kept.
        let source = source.without_url();
        if source.is_timeout() {
            UpstreamError::Timeout { party, source }
        } else if source.is_decode() || source.is_body() && !source.is_connect() {
            UpstreamError::Unexpected {
                party,
                detail: where_decoding_stopped(&source),
            }
        } else {
            UpstreamError::Unreachable { party, source }
        }
    }

    /// The status of a non-2xx answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            UpstreamError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The messages of a non-2xx answer's body.
    pub fn messages(&self) -> &[String] {
        match self {
            UpstreamError::Status { messages, .. } => messages,
            _ => &[],
        }
    }

    /// What the party said about a refusal, for a person: its messages joined and cut to
    /// [`MAX_REASON_CHARS`]; `None` when it said nothing.
    pub fn reason(&self) -> Option<String> {
        let joined = self.messages().join("; ");
        let joined = joined.trim().trim_end_matches('.');
        if joined.is_empty() {
            return None;
        }
        let mut reason: String = joined.chars().take(MAX_REASON_CHARS).collect();
        if joined.chars().count() > MAX_REASON_CHARS {
            reason.push('…');
        }
        Some(reason)
    }

    pub fn is_status(&self, status: StatusCode) -> bool {
        self.status() == Some(status)
    }

    /// The party refused the request itself (4xx): sending it again unchanged will not help,
    /// except after a 429.
    pub fn is_refusal(&self) -> bool {
        self.status().is_some_and(|s| s.is_client_error())
    }

    /// Trying again later may succeed: no answer, a server error, or a rate limit.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Timeout { .. }
            | UpstreamError::Unreachable { .. }
            | UpstreamError::Busy { .. } => true,
            UpstreamError::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            UpstreamError::Unexpected { .. } | UpstreamError::Refused { .. } => false,
        }
    }

    /// Not sent, because the address may not be called: asking again will not help.
    pub fn is_refused_address(&self) -> bool {
        matches!(self, UpstreamError::Refused { .. })
    }

    /// No answer at all (down, unreachable, too slow).
    pub fn is_unanswered(&self) -> bool {
        matches!(
            self,
            UpstreamError::Timeout { .. } | UpstreamError::Unreachable { .. }
        )
    }
}

/// Where a JSON answer stopped reading, without what it read there.
fn where_decoding_stopped(error: &reqwest::Error) -> String {
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        if let Some(json) = e.downcast_ref::<serde_json::Error>() {
            let kind = match json.classify() {
                serde_json::error::Category::Io => "cut short",
                serde_json::error::Category::Syntax => "not JSON",
                serde_json::error::Category::Data => "not the shape expected",
                serde_json::error::Category::Eof => "cut short",
            };
            return format!("{kind} at line {}, column {}", json.line(), json.column());
        }
        cause = e.source();
    }
    "the body could not be read".into()
}

/// Every message in an error body, in the shapes partners answer with: `{"message"}`,
/// `{"detail"}`, `{"error": "…" | [{message}]}`, a bare list of `{message}`; plain text as it is.
pub fn messages(body: &str) -> Vec<String> {
    fn collect(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) if !s.trim().is_empty() => out.push(cut(s.trim())),
            Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
            Value::Object(obj) => {
                for key in ["message", "detail", "error"] {
                    if let Some(v) = obj.get(key) {
                        collect(v, out);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    match serde_json::from_str::<Value>(body) {
        Ok(json) => collect(&json, &mut out),
        Err(_) if !body.trim().is_empty() => out.push(cut(body.trim())),
        Err(_) => {}
    }
    out.truncate(MAX_MESSAGES);
    out
}

fn cut(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_shape_becomes_messages() {
        assert_eq!(
            messages(
                r#"[{"message": "gender is required"}, {"message": "firstName is required"}]"#
            ),
            ["gender is required", "firstName is required"]
        );
        assert_eq!(
            messages(r#"{"success": false, "error": "doctorEmail or queue is required."}"#),
            ["doctorEmail or queue is required."]
        );
        assert_eq!(
            messages(r#"{"error": true, "message": "queue Night doesn't exist"}"#),
            ["queue Night doesn't exist"]
        );
        assert_eq!(
            messages(
                r#"{"success": false, "error": [{"message": "\"language\" must be a string", "path": ["language"]}]}"#
            ),
            ["\"language\" must be a string"]
        );
        assert_eq!(
            messages(r#"{"detail": "Invalid token."}"#),
            ["Invalid token."]
        );
        assert_eq!(
            messages(r#"{"status": 429, "message": "Enhance your calm"}"#),
            ["Enhance your calm"]
        );
        assert_eq!(messages("Bad Gateway\n"), ["Bad Gateway"]);
        assert!(messages("").is_empty());
        assert!(messages("null").is_empty());
        assert_eq!(messages(&"x".repeat(1000))[0].len(), MAX_MESSAGE_CHARS);
    }

    #[test]
    fn endpoints_keep_the_base_path_and_encode_segments() {
        let base = Url::parse("https://hcw.example.org/tenant/").unwrap();
        assert_eq!(
            endpoint(&base, &["api", "v1", "invite", "a/b c"]).as_str(),
            "https://hcw.example.org/tenant/api/v1/invite/a%2Fb%20c"
        );
        let bare = Url::parse("https://api.hint.com").unwrap();
        assert_eq!(
            endpoint(&bare, &["api", "provider", "patients"]).as_str(),
            "https://api.hint.com/api/provider/patients"
        );
        let with_query = Url::parse("http://127.0.0.1:9/base?x=1#f").unwrap();
        assert_eq!(
            endpoint(&with_query, &["v2", "consultations"]).as_str(),
            "http://127.0.0.1:9/base/v2/consultations"
        );
    }
}
