//! The shared outbound layer against real loopback servers: no redirect is followed, errors
//! name the party and keep the body's messages apart from their (logged) text.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{Router, http::StatusCode, response::IntoResponse, routing::any};
use chartbridge::upstream::{Upstream, UpstreamError, endpoint, guarded::HostLookup};

/// Serves `app` on a loopback port; answers its base URL.
async fn serve(app: Router) -> url::Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_redirect_is_never_followed_with_our_credentials() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let elsewhere = serve(Router::new().fallback(any(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { "took it" }
    })))
    .await;
    let target = elsewhere.join("steal").unwrap().to_string();
    let partner = serve(Router::new().fallback(any(move || {
        let target = target.clone();
        async move {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, target)],
            )
                .into_response()
        }
    })))
    .await;

    // The operator's client and the guarded one (loopback allowed here, as in the sandbox).
    let upstream = Upstream::with_policy(
        std::time::Duration::from_secs(2),
        "127.0.0.0/8".parse().unwrap(),
        HostLookup::default(),
    )
    .unwrap();
    let build = |client: &reqwest::Client| {
        client
            .post(endpoint(&partner, &["api", "v1", "login-local"]))
            .header("x-access-token", "secret-token")
            .body("{\"password\":\"secret\"}")
    };
    let errors = [
        upstream
            .send("HCW@Home", build(upstream.http()))
            .await
            .unwrap_err(),
        upstream
            .guarded()
            .send("HCW@Home", build(upstream.guarded().http()))
            .await
            .unwrap_err(),
    ];
    for error in errors {
        assert!(
            matches!(error, UpstreamError::Status { status, .. } if status == StatusCode::TEMPORARY_REDIRECT),
            "{error}"
        );
        assert!(!error.is_retryable());
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing reached the other host"
    );
}

#[tokio::test]
async fn errors_name_the_party_and_keep_the_messages_and_the_cause() {
    let partner = serve(Router::new().fallback(any(|| async {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!([{"message": "gender is required"}])),
        )
    })))
    .await;
    let upstream = Upstream::new(std::time::Duration::from_secs(2)).unwrap();
    let error = upstream
        .send("HCW@Home", upstream.http().get(partner.clone()))
        .await
        .unwrap_err();
    // The partner's words are kept for the person, not in the error's (logged) text.
    assert_eq!(error.to_string(), "HCW@Home answered HTTP 400");
    assert_eq!(error.reason().as_deref(), Some("gender is required"));
    assert!(error.is_refusal() && !error.is_retryable());

    // Nothing listens on the port of a server that has gone: unreachable, with its cause.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    let error = upstream
        .send("Haidy", upstream.http().get(gone))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "could not reach Haidy");
    assert!(
        std::error::Error::source(&error).is_some(),
        "the cause is kept"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn an_answer_that_does_not_read_is_reported_without_its_contents_or_url() {
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Expected {
        count: u64,
    }
    let partner = serve(Router::new().fallback(any(|| async {
        axum::Json(serde_json::json!({"count": "Ava Thompson"}))
    })))
    .await;
    let upstream = Upstream::new(std::time::Duration::from_secs(2)).unwrap();
    let url = endpoint(&partner, &["api", "provider", "patients", "pat-secret-123"]);
    let response = upstream
        .send("Hint", upstream.http().get(url))
        .await
        .unwrap();
    let error = chartbridge::upstream::json::<Expected>("Hint", response)
        .await
        .unwrap_err();
    let told = chartbridge::error::error_chain(&error);
    assert!(told.contains("not the shape expected at line 1"), "{told}");
    assert!(
        !told.contains("Ava") && !told.contains("pat-secret"),
        "{told}"
    );
}
