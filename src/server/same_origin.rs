//! Requests that change something in the frame must come from our own pages: a POST (or any
//! unsafe method) to `/hint/…` carries `Sec-Fetch-Site: same-origin`, or, from a browser that
//! does not send that, an `Origin` equal to ours. A form on another site that posts a stolen or
//! guessed session key is refused before the key is even looked at. Hint's own doors (the
//! handshake and Instant On) are signed or exchanged server to server and are not framed;
//! webhooks are not under `/hint/`.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderMap, Method},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::error::AppError;

/// Our origin, as browsers write it in `Origin` (`http://127.0.0.1:8081`).
#[derive(Debug, Clone)]
pub struct OwnOrigin(pub Arc<str>);

/// Whether the request may change something, judged by where it says it comes from.
fn from_our_pages(headers: &HeaderMap, own: &str) -> bool {
    match headers.get("sec-fetch-site") {
        Some(site) => site.as_bytes() == b"same-origin",
        None => headers
            .get("origin")
            .is_some_and(|origin| origin.as_bytes() == own.as_bytes()),
    }
}

/// Paths that need it: the frame's, but not Hint's signed or server-to-server doors.
fn guarded(path: &str) -> bool {
    path.starts_with("/hint/")
        && path != "/hint/handshake"
        && path != "/hint/connect"
        && !path.starts_with("/hint/connect/")
}

/// The middleware.
pub async fn check(State(own): State<OwnOrigin>, request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if safe || !guarded(request.uri().path()) || from_our_pages(request.headers(), &own.0) {
        return next.run(request).await;
    }
    AppError::Forbidden(
        "This request did not come from a Chartbridge page. Reopen Chartbridge from Hint and try again."
            .into(),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn only_our_own_pages_may_post() {
        let own = "https://chartbridge.example";
        assert!(from_our_pages(
            &headers(&[("sec-fetch-site", "same-origin")]),
            own
        ));
        assert!(from_our_pages(
            &headers(&[("origin", "https://chartbridge.example")]),
            own
        ));
        for refused in [
            headers(&[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://chartbridge.example"),
            ]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[("sec-fetch-site", "none")]),
            headers(&[("origin", "https://evil.example")]),
            headers(&[("origin", "null")]),
            headers(&[]),
        ] {
            assert!(!from_our_pages(&refused, own), "{refused:?}");
        }
    }

    #[test]
    fn hints_own_doors_and_webhooks_are_not_framed() {
        assert!(guarded("/hint/visits"));
        assert!(guarded("/hint/settings/tiep"));
        assert!(guarded("/hint/partners/haidy/launch"));
        assert!(!guarded("/hint/handshake"));
        assert!(!guarded("/hint/connect/abc"));
        assert!(!guarded("/webhooks/tiep/pra-1"));
    }
}
