//! Request ids: a caller's own `x-request-id` is kept (Hint's support can quote it) only when
//! it looks like an id; anything else is dropped and replaced by ours, so no text a client
//! chose reaches a log line or an answer.

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

/// Drops a caller's `x-request-id` that is not [`well_formed`] (and every one after the first).
pub fn drop_unless_well_formed<B>(mut request: Request<B>) -> Request<B> {
    let headers = request.headers_mut();
    let mut ids = headers.get_all(HEADER).iter();
    let keep = match (ids.next(), ids.next()) {
        (Some(id), None) => well_formed(id.as_bytes()),
        _ => false,
    };
    if !keep {
        headers.remove(HEADER);
    }
    request
}

/// The request's id, once set.
pub fn of<B>(request: &Request<B>) -> Option<&str> {
    request.headers().get(HEADER)?.to_str().ok()
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
    fn a_bad_id_is_dropped_and_a_good_one_kept() {
        let request = |ids: &[&str]| {
            let mut builder = Request::builder();
            for id in ids {
                builder = builder.header(HEADER, *id);
            }
            drop_unless_well_formed(builder.body(()).unwrap())
        };
        assert_eq!(of(&request(&["hint-123"])), Some("hint-123"));
        assert_eq!(of(&request(&["not an id"])), None);
        assert_eq!(of(&request(&["a", "b"])), None);
        assert_eq!(of(&request(&[])), None);
    }
}
