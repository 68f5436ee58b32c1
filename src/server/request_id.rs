//! Request ids: every request gets ours (`x-request-id`, answered back, logged, and written in
//! the audit trail, so no caller can stamp its requests with another's id). A caller's own id
//! is logged beside it (Hint's support can quote it) only when it looks like an id; anything
//! else a caller sent is dropped, so no text a client chose reaches a log line.

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

const HEADER: &str = "x-request-id";
/// Longest id kept from a caller.
const MAX_LEN: usize = 64;

/// Whether a caller's id is kept: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn well_formed(id: &[u8]) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A caller's own request id, when it looked like one.
#[derive(Debug, Clone)]
pub struct CallerRequestId(pub String);

/// Takes a caller's `x-request-id` off the request (ours replaces it); one [`well_formed`] id
/// is kept aside as [`CallerRequestId`].
pub fn set_callers_aside<B>(mut request: Request<B>) -> Request<B> {
    let headers = request.headers_mut();
    let mut ids = headers.get_all(HEADER).iter();
    let callers = match (ids.next(), ids.next()) {
        (Some(id), None) if well_formed(id.as_bytes()) => id.to_str().ok().map(String::from),
        _ => None,
    };
    headers.remove(HEADER);
    if let Some(id) = callers {
        request.extensions_mut().insert(CallerRequestId(id));
    }
    request
}

/// The request's id, once set.
pub fn of<B>(request: &Request<B>) -> Option<&str> {
    request.headers().get(HEADER)?.to_str().ok()
}

/// The caller's own id, if it sent one that looked like an id.
pub fn callers<B>(request: &Request<B>) -> Option<&str> {
    request
        .extensions()
        .get::<CallerRequestId>()
        .map(|c| c.0.as_str())
}

/// Makes our ids: 16 random hex digits.
#[derive(Clone, Copy)]
pub struct Random;

impl MakeRequestId for Random {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let id: [u8; 8] = rand::random();
        HeaderValue::from_str(&hex::encode(id))
            .ok()
            .map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_id_shaped_values_are_kept() {
        for ok in ["a1b2c3", "req_01HZX-9.abc", &"a".repeat(64)] {
            assert!(well_formed(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            &"a".repeat(65),
            "a b",
            "x\"}{\"level\":\"ERROR",
            "<script>",
            "é",
            "a\tb",
        ] {
            assert!(!well_formed(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn a_callers_id_is_set_aside_when_it_is_one() {
        let request = |ids: &[&str]| {
            let mut builder = Request::builder();
            for id in ids {
                builder = builder.header(HEADER, *id);
            }
            set_callers_aside(builder.body(()).unwrap())
        };
        let kept = request(&["hint-123"]);
        assert_eq!((of(&kept), callers(&kept)), (None, Some("hint-123")));
        for dropped in [&["not an id"][..], &["a", "b"][..], &[][..]] {
            let r = request(dropped);
            assert_eq!((of(&r), callers(&r)), (None, None), "{dropped:?}");
        }
    }
}
