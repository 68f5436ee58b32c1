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

/// Most bytes read of a JSON or text answer: a party answering more (a self-hosted server
/// gone wrong, or one set up to harm) is refused before its body fills the memory every
/// practice shares. Far above any answer the contracts describe (a page of patients).
pub const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// Most bytes of an error answer read for its messages (the rest is not read).
const MAX_ERROR_BODY: usize = 16 * 1024;

/// Fails a non-2xx answer with its status and messages.
pub async fn check(party: &'static str, response: Response) -> Result<Response, UpstreamError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = first_bytes(response, MAX_ERROR_BODY).await;
    Err(UpstreamError::Status {
        party,
        status,
        messages: messages(&String::from_utf8_lossy(&body)),
    })
}

/// Up to `max` bytes of a body, what could be read of it (an error body: its start is enough).
async fn first_bytes(mut response: Response, max: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = max - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            _ => break,
        }
    }
    body
}

/// Reads a JSON answer of at most [`MAX_ANSWER`] bytes.
pub async fn json<T: DeserializeOwned>(
    party: &'static str,
    response: Response,
) -> Result<T, UpstreamError> {
    let body = bytes(party, response, MAX_ANSWER).await?;
    serde_json::from_slice(&body).map_err(|e| UpstreamError::Unexpected {
        party,
        detail: where_json_stopped(&e),
    })
}

/// Reads a body the party sends, refusing one over `max` bytes (before reading, when its
/// length is announced, else as soon as it grows past it).
pub async fn bytes(
    party: &'static str,
    mut response: Response,
    max: usize,
) -> Result<Vec<u8>, UpstreamError> {
    let too_large = || UpstreamError::Unexpected {
        party,
        detail: format!("an answer over {max} bytes"),
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

/// Reads a text answer of at most [`MAX_ANSWER`] bytes (UTF-8; anything else replaced).
pub async fn text(party: &'static str, response: Response) -> Result<String, UpstreamError> {
    let body = bytes(party, response, MAX_ANSWER).await?;
    Ok(String::from_utf8(body)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
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
            return where_json_stopped(json);
        }
        cause = e.source();
    }
    "the body could not be read".into()
}

/// Where a JSON answer stopped reading, never what it said (it can name a patient).
fn where_json_stopped(json: &serde_json::Error) -> String {
    let kind = match json.classify() {
        serde_json::error::Category::Io => "cut short",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "not the shape expected",
        serde_json::error::Category::Eof => "cut short",
    };
    format!("{kind} at line {}, column {}", json.line(), json.column())
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

    /// A party on loopback answering `head` then `body_bytes` of `x` (or until we hang up);
    /// answers the address and, at the end, how many body bytes it got to write
    /// ([`written`]).
    fn answering(
        head: &'static str,
        body_bytes: usize,
    ) -> (String, std::thread::JoinHandle<usize>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}/", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request);
            socket.write_all(head.as_bytes()).unwrap();
            let chunk = vec![b'x'; 64 * 1024];
            let mut written = 0;
            while written < body_bytes {
                if socket.write_all(&chunk).is_err() {
                    break;
                }
                written += chunk.len();
            }
            written
        });
        (address, server)
    }

    const GIB: usize = 1024 * 1024 * 1024;

    /// Waits for the party to stop writing, off the runtime (which closes our side).
    async fn written(server: std::thread::JoinHandle<usize>) -> usize {
        tokio::task::spawn_blocking(move || server.join().unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_announced_oversized_answer_is_refused_before_it_is_read() {
        let (url, server) = answering(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n",
            GIB,
        );
        let response = reqwest::get(url).await.unwrap();
        let refused = json::<Value>("HCW@Home", response).await.unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("unexpected answer from HCW@Home"),
            "{refused}"
        );
        assert!(
            format!("{refused:?}").contains("an answer over"),
            "{refused:?}"
        );
        assert!(written(server).await < 64 * 1024 * 1024, "not read whole");
    }

    #[tokio::test]
    async fn an_endless_answer_is_cut_off_at_the_cap_whatever_its_kind() {
        for kind in ["json", "text"] {
            let (url, server) = answering(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n40000000\r\n",
                GIB,
            );
            // Chunked framing: one chunk of a GiB, never finished.
            let response = reqwest::get(url).await.unwrap();
            let refused = match kind {
                "json" => json::<Value>("HCW@Home", response).await.map(|_| ()),
                _ => text("HCW@Home", response).await.map(|_| ()),
            };
            assert!(refused.is_err(), "{kind}");
            assert!(
                written(server).await < 64 * 1024 * 1024,
                "{kind}: not read whole"
            );
        }
    }

    #[tokio::test]
    async fn an_error_answer_is_read_only_as_far_as_its_messages() {
        let (url, server) = answering(
            "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 1073741824\r\n\r\n",
            GIB,
        );
        let response = reqwest::get(url).await.unwrap();
        let failed = check("HCW@Home", response).await.unwrap_err();
        assert_eq!(failed.status(), Some(StatusCode::BAD_GATEWAY));
        assert!(failed.messages()[0].len() <= MAX_MESSAGE_CHARS);
        assert!(written(server).await < 64 * 1024 * 1024, "not read whole");
    }
}
