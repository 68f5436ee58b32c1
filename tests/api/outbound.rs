//! Addresses a practice admin types (HCW@Home's server) are called only when they are public
//! or allowed by the operator: refused at save and again at every call, in every spelling, a
//! name included. Names resolve from the test's table (`app.dns`); the only connections any
//! test here could open are to loopback, and those it counts.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use chartbridge::{
    partners::hcw::client::unreachable_words,
    upstream::{Upstream, address::AddressPolicy, guarded::HostLookup},
};

use crate::helpers::{HCW_SSO_SECRET, Page, TestApp, TestPractice, spawn_app_with};

/// What the security review tried, and names that resolve to such addresses.
const SPELLINGS: &[&str] = &[
    "http://127.0.0.1:8084/",
    "http://localhost:8084/",
    "http://[::1]:8084/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://127.1/",
    "https://127.0.0.1/",
    "https://localhost/",
    "https://169.254.169.254/",
    "https://10.0.0.1/",
    "https://192.168.0.1/",
    "https://0.0.0.0/",
    "https://[::ffff:127.0.0.1]/",
    "https://[fd00:ec2::254]/",
    "https://metadata.google.internal/",
    "https://loopback.example/",
    "https://mixed.example/",
    "https://nowhere.example/",
    "http://hcw.example.org/",
];

/// An app that allows no private address (as in production), its table of names filled.
async fn production_like() -> TestApp {
    let app = spawn_app_with(|c| c.app.outbound.allow = AddressPolicy::default()).await;
    app.dns.set("localhost", &["127.0.0.1", "::1"]);
    app.dns.set("loopback.example", &["127.0.0.1"]);
    app.dns.set("mixed.example", &["93.184.215.14", "10.0.0.1"]);
    app.dns
        .set("metadata.google.internal", &["169.254.169.254"]);
    app
}

fn hcw_form(base_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("base_url", base_url.to_string()),
        ("service_email", "svc@video.example".into()),
        ("service_password", "a-password-0001".into()),
        ("sso_secret", HCW_SSO_SECRET.into()),
        ("routing", "doctor_email".into()),
    ]
}

async fn save_hcw(app: &TestApp, practice: &TestPractice, base_url: &str) -> reqwest::Response {
    let form = hcw_form(base_url);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.save_settings(practice, "hcw", &form).await
}

/// Saves though the connection test fails (the admin's "Save anyway").
async fn save_hcw_anyway(
    app: &TestApp,
    practice: &TestPractice,
    base_url: &str,
) -> reqwest::Response {
    let mut form = hcw_form(base_url);
    form.push(("save_anyway", "1".into()));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.save_settings(practice, "hcw", &form).await
}

async fn launch_hcw(app: &TestApp, practice: &TestPractice) -> (reqwest::StatusCode, Page) {
    let key = app.session(&practice.clinician, None).await;
    Page::of(
        app.post_form(
            "/hint/partners/hcw/launch",
            &key,
            &[
                ("patient_id", practice.patients[0].as_str()),
                ("language", "en"),
            ],
        )
        .await,
    )
    .await
}

/// A loopback port that counts the connections made to it.
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (port, accepted)
}

/// Runs in a network namespace holding only loopback: the public name at the end passes the
/// address check, and the save's connection test then calls it.
#[tokio::test]
async fn every_private_address_is_refused_when_the_admin_saves_it() {
    if !crate::netns::isolated("outbound::every_private_address_is_refused_when_the_admin_saves_it")
    {
        return;
    }
    let app = production_like().await;
    let practice = app.new_practice("Careful Clinic").await;
    let mut https_alerts = std::collections::BTreeSet::new();
    for url in SPELLINGS {
        let (status, page) = Page::of(save_hcw(&app, &practice, url).await).await;
        assert_eq!(status, 422, "{url} is refused");
        let alert = page.text_of("#hcw-settings [role=alert]");
        assert!(
            alert.contains("Chartbridge cannot use this HCW@Home address"),
            "{url}: {alert}"
        );
        if url.starts_with("https://") {
            https_alerts.insert(alert);
        }
        assert!(
            !app.has_connection(&practice.id, "hcw").await,
            "{url} is not stored"
        );
    }
    // A name that names a private machine and one that names nothing read alike: the
    // difference would map the network Chartbridge runs in.
    assert_eq!(https_alerts.len(), 1, "{https_alerts:?}");
    // A public name passes the check; the connection test cannot reach it (nothing leaves
    // this namespace), so it is stored only when the admin says "Save anyway".
    app.dns.set("hcw.example.org", &["93.184.215.14"]);
    let (status, page) =
        Page::of(save_hcw(&app, &practice, "https://hcw.example.org/").await).await;
    assert_eq!(status, 422);
    assert!(
        page.text_of("#hcw-settings [role=alert]")
            .contains("HCW@Home could not be reached"),
        "{}",
        page.text_of("#hcw-settings [role=alert]")
    );
    assert!(!app.has_connection(&practice.id, "hcw").await);
    let (status, page) =
        Page::of(save_hcw_anyway(&app, &practice, "https://hcw.example.org/").await).await;
    assert_eq!(status, 200);
    assert!(
        page.text_of("#hcw-settings .warn")
            .starts_with("Saved, though")
    );
    assert!(app.has_connection(&practice.id, "hcw").await);
}

#[tokio::test]
async fn a_stored_address_is_checked_again_on_every_call() {
    // Saved while the operator allowed loopback (the sandbox's HCW@Home), with a visit whose
    // poll is due; then the operator stops allowing it.
    let app = spawn_app_with(|c| c.partners.hcw.poll_every = Duration::from_millis(1)).await;
    let practice = app.new_practice("Changed Rules").await;
    app.setup_hcw(&practice, None).await;
    let (status, _) = launch_hcw(&app, &practice).await;
    assert_eq!(status, 303);
    let visit = app.only_visit(&practice.id).await;
    let app = app
        .restart_with(|c| c.app.outbound.allow = AddressPolicy::default())
        .await;
    let calls = app.hcw.requests();

    // The poll does not call it and ends the visit with the reason, written back to Hint.
    app.run_jobs().await;
    let failed = app.visit(&practice.id, &visit.id).await;
    assert_eq!(failed.state.as_str(), "failed");
    assert_eq!(
        failed.error_message.as_deref(),
        Some(unreachable_words().as_str())
    );
    app.wait_for_interaction(&practice.patients[0], "failed")
        .await;

    // A new launch is refused the same way, before anything is sent.
    let (status, page) = launch_hcw(&app, &practice).await;
    assert_eq!(status, 502);
    assert!(
        page.text().contains(&unreachable_words()),
        "{}",
        page.text()
    );
    assert_eq!(app.hcw.requests(), calls, "nothing reached the address");
}

/// In a network namespace of its own: the save's connection test calls the public address.
#[tokio::test]
async fn a_name_that_turns_private_after_the_save_is_refused_when_called() {
    if !crate::netns::isolated(
        "outbound::a_name_that_turns_private_after_the_save_is_refused_when_called",
    ) {
        return;
    }
    let app = production_like().await;
    let practice = app.new_practice("Rebound").await;
    let (port, accepted) = counting_listener().await;
    app.dns.set("rebind.example", &["93.184.215.14"]);
    let url = format!("https://rebind.example:{port}/");
    assert_eq!(save_hcw_anyway(&app, &practice, &url).await.status(), 200);

    // The name now answers loopback, where something listens: the call is refused at the
    // lookup, so nothing connects.
    app.dns.set("rebind.example", &["127.0.0.1"]);
    let (status, page) = launch_hcw(&app, &practice).await;
    assert_eq!(status, 502);
    assert!(page.text().contains(&unreachable_words()));
    let visit = app.only_visit(&practice.id).await;
    assert_eq!(visit.state.as_str(), "failed");
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "no connection was made");
}

/// Each spelling refused by the guarded client itself, before a connection. This test runs
/// in a network namespace holding only loopback (`unshare`), so even a broken check could not
/// reach another address; where namespaces are not available it says so and checks nothing.
#[tokio::test]
async fn every_spelling_is_refused_when_called() {
    if !crate::netns::isolated("outbound::every_spelling_is_refused_when_called") {
        return;
    }
    let (port, accepted) = counting_listener().await;
    let dns = crate::helpers::Dns::default();
    dns.set("localhost", &["127.0.0.1"]);
    dns.set("loopback.example", &["127.0.0.1"]);
    dns.set("mixed.example", &["93.184.215.14", "10.0.0.1"]);
    dns.set("metadata.google.internal", &["169.254.169.254"]);
    let upstream = Upstream::with_policy(
        std::time::Duration::from_secs(2),
        AddressPolicy::default(),
        HostLookup(Arc::new(dns)),
    )
    .unwrap();
    let guarded = upstream.guarded();
    // (A name that does not resolve is refused at save, and merely unreachable when called:
    // see the next test.)
    let mut urls: Vec<String> = SPELLINGS
        .iter()
        .filter(|s| !s.contains("nowhere.example"))
        .map(|s| s.to_string())
        .collect();
    urls.extend([
        format!("http://127.0.0.1:{port}/"),
        format!("https://127.0.0.1:{port}/"),
        format!("https://loopback.example:{port}/"),
        format!("https://localhost:{port}/"),
    ]);
    for url in &urls {
        let request = guarded
            .http()
            .post(format!("{url}api/v1/login-local"))
            .body(r#"{"password":"secret"}"#);
        let error = guarded.send("HCW@Home", request).await.unwrap_err();
        assert!(error.is_refused_address(), "{url}: {error}");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_name_that_cannot_be_looked_up_now_is_unreachable_not_refused() {
    // A lookup failure (a DNS blip) may pass: the call may be tried again, unlike a refusal.
    // The table has no entry for the name, so nothing is looked up or connected anywhere.
    let upstream = Upstream::with_policy(
        Duration::from_secs(2),
        AddressPolicy::default(),
        HostLookup(Arc::new(crate::helpers::Dns::default())),
    )
    .unwrap();
    let guarded = upstream.guarded();
    let request = guarded.http().get("https://blip.example/api/v1/invite/x");
    let error = guarded.send("HCW@Home", request).await.unwrap_err();
    assert!(!error.is_refused_address(), "{error}");
    assert!(error.is_retryable() && error.is_unanswered(), "{error}");
    // Saving it, the admin is told the name is not found.
    let url = url::Url::parse("https://blip.example/").unwrap();
    assert_eq!(
        guarded.check(&url).await.unwrap_err().to_string(),
        "the server's name could not be found"
    );
}
