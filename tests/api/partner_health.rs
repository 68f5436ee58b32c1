//! Partner health on the settings page: *Test connection* (a harmless real call), a status at a
//! glance (connected / failing since … why / never used) fed by saves, tests, launches, polls
//! and signed deliveries, and retries waiting.

use chartbridge_sandbox::tiep::TiepFaults;

use crate::helpers::{Page, TestApp, spawn_app};

/// Where a practice's connection to `partner` stands, as stored.
async fn failing_since(app: &TestApp, practice_id: &str, partner: &str) -> Option<i64> {
    sqlx::query_scalar(
        "SELECT failing_since FROM partner_health WHERE practice_id = $1 AND partner = $2",
    )
    .bind(practice_id)
    .bind(partner)
    .fetch_one(app.state.db.reader())
    .await
    .unwrap()
}

async fn test_connection(app: &TestApp, key: &str, partner: &str) -> (reqwest::StatusCode, Page) {
    Page::of(
        app.post_form(&format!("/hint/settings/{partner}/test"), key, &[])
            .await,
    )
    .await
}

/// The contents' status of `name` on the settings page.
fn glance(page: &Page, name: &str) -> String {
    page.texts("nav.sections li")
        .into_iter()
        .find(|li| li.starts_with(name))
        .unwrap_or_else(|| panic!("{name} in the contents"))
}

#[tokio::test]
async fn test_connection_calls_tiep_harmlessly_and_says_when_it_refuses_the_key() {
    let app = spawn_app().await;
    let practice = app.new_practice("Healthy Clinic").await;
    let other = app.new_practice("Other Clinic").await;
    let key = app.setup_tiep(&practice).await;
    let admin = app.session(&practice.admin, None).await;

    // The save tried the key: connected.
    let page = app.page("settings", &admin).await;
    assert_eq!(page.text_of("#tiep-settings .health .badge"), "Connected");
    assert!(glance(&page, "Tiep scribe").ends_with("Connected"));
    assert!(glance(&page, "MediQuo").ends_with("Not set up"));

    let (status, tested) = test_connection(&app, &admin, "tiep").await;
    assert_eq!(status, 200);
    assert_eq!(
        tested.text_of("#tiep-settings [data-outcome]"),
        "Tiep scribe answered and accepted the saved settings."
    );
    // A token request that opens nothing: no session in Tiep.
    assert_eq!(
        app.tiep.world().tokens_without_session,
        2,
        "the save, then the test"
    );
    assert!(app.tiep.world().sessions.is_empty());

    // Tiep stops taking the key (rotated there): the test says so, and the status too.
    for facility in app.tiep.world().facilities.iter_mut() {
        if facility.api_key == key {
            facility.api_key = "rotated-in-tiep".into();
        }
    }
    let (status, tested) = test_connection(&app, &admin, "tiep").await;
    assert_eq!(status, 200);
    assert_eq!(
        tested.text_of("#tiep-settings [role=alert]"),
        "The test failed: Tiep refused Chartbridge's credentials (HTTP 401)."
    );
    assert!(
        tested
            .text_of("#tiep-settings .health-status")
            .starts_with("Failing since")
    );
    assert!(
        tested
            .text_of("#tiep-settings .health-status")
            .ends_with(": Tiep refused Chartbridge's credentials (HTTP 401).")
    );
    let since = failing_since(&app, &practice.id, "tiep").await.unwrap();
    let page = app.page("settings", &admin).await;
    assert!(glance(&page, "Tiep scribe").contains("Failing since"));

    // A clinician's launch meets the same refusal: still failing since the first failure.
    let clinician = app.session(&practice.clinician, None).await;
    let launched = app.start_visit(&clinician, &practice.patients[0]).await;
    assert_eq!(launched.status(), 502);
    assert_eq!(failing_since(&app, &practice.id, "tiep").await, Some(since));

    // The other practice's page knows nothing of it.
    let theirs = app
        .page("settings", &app.session(&other.admin, None).await)
        .await;
    assert_eq!(
        theirs.text_of("#tiep-settings .health .badge"),
        "Not set up"
    );

    // Put right in Tiep: the next test clears the failure, keeping when it last failed.
    for facility in app.tiep.world().facilities.iter_mut() {
        if facility.api_key == "rotated-in-tiep" {
            facility.api_key = key.clone();
        }
    }
    let (_, tested) = test_connection(&app, &admin, "tiep").await;
    assert_eq!(tested.text_of("#tiep-settings .health .badge"), "Connected");
    assert_eq!(failing_since(&app, &practice.id, "tiep").await, None);
    assert_ne!(
        tested.text_of("#tiep-settings .health-facts div:nth-child(2) dd"),
        "never"
    );

    // Only admins test.
    assert_eq!(test_connection(&app, &clinician, "tiep").await.0, 403);
}

#[tokio::test]
async fn a_failing_poll_marks_the_partner_failing_and_counts_the_retry_waiting() {
    let app = spawn_app().await;
    let (practice, _, _) = app.open_tiep_visit("Retrying Clinic").await;
    let admin = app.session(&practice.admin, None).await;
    app.tiep.set_faults(TiepFaults {
        api_down: true,
        ..Default::default()
    });
    sqlx::query("UPDATE jobs SET run_at = 0 WHERE kind = 'poll_partner'")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    app.run_jobs().await;

    let page = app.page("settings", &admin).await;
    assert!(
        page.text_of("#tiep-settings .health-status")
            .ends_with(": Tiep failed (HTTP 503)."),
        "{}",
        page.text_of("#tiep-settings .health-status")
    );
    assert_eq!(
        page.text_of("#tiep-settings .health-facts div:nth-child(3) dd"),
        "1"
    );
}

#[tokio::test]
async fn mediquo_is_checked_by_its_last_signed_delivery() {
    let app = spawn_app().await;
    let practice = app.new_practice("Inbound Clinic").await;
    let integration = app.setup_mediquo(&practice).await;
    let admin = app.session(&practice.admin, None).await;
    let page = app.page("settings", &admin).await;
    assert_eq!(
        page.text_of("#mediquo-settings .health .badge"),
        "Never used"
    );
    assert_eq!(
        page.text_of("#mediquo-settings .health-test button"),
        "Check deliveries"
    );

    let (_, checked) = test_connection(&app, &admin, "mediquo").await;
    assert!(
        checked
            .text_of("#mediquo-settings [role=alert]")
            .starts_with("No delivery signed with this practice's value has arrived yet.")
    );

    let sent = app
        .mediquo
        .send_consultation_finished(&integration, &practice.patients[0])
        .await;
    assert_eq!(sent, Some(200));
    let (_, checked) = test_connection(&app, &admin, "mediquo").await;
    assert!(
        checked
            .text_of("#mediquo-settings [data-outcome]")
            .starts_with("The last delivery signed with this practice's value arrived")
    );
    assert_eq!(
        checked.text_of("#mediquo-settings .health .badge"),
        "Connected"
    );
}

#[tokio::test]
async fn hcw_is_tested_by_the_service_account_signing_in() {
    let app = spawn_app().await;
    let practice = app.new_practice("Video Health").await;
    app.setup_hcw(&practice, None).await;
    let admin = app.session(&practice.admin, None).await;
    let logins = app.hcw.world().logins;
    let (_, tested) = test_connection(&app, &admin, "hcw").await;
    assert_eq!(
        tested.text_of("#hcw-settings [data-outcome]"),
        "HCW@Home video visit answered and accepted the saved settings."
    );
    assert_eq!(app.hcw.world().logins, logins + 1, "a real sign-in");
}

#[tokio::test]
async fn a_refused_field_is_named_for_the_page_to_mark_and_focus() {
    let app = spawn_app().await;
    let practice = app.new_practice("Field Clinic").await;
    let admin = app.session(&practice.admin, None).await;
    let (status, page) = Page::of(
        app.post_form(
            "/hint/settings/tiep",
            &admin,
            &[("api_key", "k"), ("hook_secret", "short")],
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        page.attr("#tiep-settings [role=alert]", "data-field")
            .as_deref(),
        Some("hook_secret")
    );
    assert_eq!(
        page.attr("#tiep-settings [role=alert]", "id").as_deref(),
        Some("tiep-settings-error")
    );
}
