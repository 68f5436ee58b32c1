//! HCW@Home video visits through HTTP against sandbox HCW, and their failure paths.

use std::time::Duration;

use chartbridge::partners::hcw::sso::{SsoClaims, callback_url, mint};
use chartbridge_sandbox::hcw::HcwFaults;
use secrecy::SecretString;

use crate::helpers::{HCW_SSO_SECRET, Page, TestApp, TestPractice, spawn_app, spawn_app_with};

/// Opens the launch form for `patient` and submits it with `fields`; answers the response.
async fn launch(
    app: &TestApp,
    key: &str,
    patient: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let form = app
        .get(&format!(
            "/hint/partners/hcw/launch?patient_id={patient}&session_key={key}"
        ))
        .await;
    assert_eq!(form.status(), 200, "the launch form opens");
    let mut posted = vec![("patient_id", patient)];
    posted.extend_from_slice(fields);
    app.post_form("/hint/partners/hcw/launch", key, &posted)
        .await
}

/// A practice with HCW set up and a launched visit for its first patient.
async fn launched(
    app: &TestApp,
    queue: Option<&str>,
) -> (TestPractice, String, chartbridge::visits::Visit) {
    let practice = app.new_practice("Video Clinic").await;
    app.setup_hcw(&practice, queue).await;
    let key = app.session(&practice.clinician, None).await;
    let response = launch(
        app,
        &key,
        &practice.patients[0],
        &[("language", "fr"), ("send_invite", "on")],
    )
    .await;
    assert_eq!(response.status(), 303, "the invite is created");
    let visit = app.only_visit(&practice.id).await;
    (practice, key, visit)
}

/// The launch form for `patient`, as the clinician sees it.
async fn launch_form(app: &TestApp, key: &str, patient: &str) -> Page {
    let path = format!("/hint/partners/hcw/launch?patient_id={patient}&session_key={key}");
    let (status, page) = Page::of(app.get(&path).await).await;
    assert_eq!(status, 200);
    page
}

fn invite_id(visit: &chartbridge::visits::Visit) -> String {
    visit
        .partner_ref
        .clone()
        .expect("the visit holds the invite id")
}

#[tokio::test]
async fn a_clinician_runs_a_video_visit_and_the_chart_ends_signed() {
    let app = spawn_app().await;
    let practice = app.new_practice("Video Clinic").await;
    let account = app.setup_hcw(&practice, None).await;
    let patient = &practice.patients[0];
    let key = app.session(&practice.clinician, Some(patient)).await;

    // The chart offers the video visit; the form says what HCW will receive.
    let chart = app.page("clinical_chart", &key).await;
    assert_eq!(chart.texts(".launches a"), ["Start HCW@Home video visit"]);
    let form = launch_form(&app, &key, patient).await;
    assert!(
        form.text_of("form p")
            .contains("Gender shown in HCW@Home: female (from Hint)")
    );
    assert_eq!(
        form.texts(".meta dd"),
        [
            "by email to ava.thompson@patients.example and by text to +15555550100",
            "to you (casey.clinician@videoclinic.example)"
        ]
    );

    let response = launch(
        &app,
        &key,
        patient,
        &[("language", "fr"), ("send_invite", "on")],
    )
    .await;
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("/hint/clinical_interaction?visit_id=vis_"));
    let visit = app.only_visit(&practice.id).await;
    assert_eq!(visit.state.as_str(), "in_progress");
    app.wait_for_interaction(patient, "draft").await;

    // HCW received exactly the documented invite.
    let invite = app
        .hcw
        .invite(&invite_id(&visit))
        .expect("invite exists in HCW");
    assert_eq!(invite.invited_by, account);
    let body = &invite.body;
    assert_eq!(body["isPatientInvite"], true);
    assert_eq!(body["firstName"], "Ava");
    assert_eq!(body["lastName"], "Thompson");
    assert_eq!(body["gender"], "female");
    assert_eq!(body["emailAddress"], "ava.thompson@patients.example");
    assert_eq!(body["phoneNumber"], "+15555550100");
    assert_eq!(body["language"], "fr");
    assert_eq!(body["doctorEmail"], "casey.clinician@videoclinic.example");
    assert_eq!(body["sendInvite"], true);
    assert!(body.get("queue").is_none());

    // The visit page shows the patient link and that HCW sent it.
    let (_, page) = Page::of(app.get(&location).await).await;
    let patient_url = page.text_of("#hcw-patient-url");
    assert!(patient_url.starts_with(app.hcw.base_url().as_str()));
    assert_eq!(
        page.text_of(".hcw-open p.ok"),
        "HCW@Home sent the link to the patient."
    );
    assert_eq!(
        page.texts(".hcw-open .actions button"),
        ["Open HCW@Home as doctor ↗ (new tab)", "Finish visit"]
    );
    assert!(
        !page.source().contains(HCW_SSO_SECRET),
        "the SSO secret never reaches the browser"
    );

    // The doctor signs in to HCW through a server-minted token, accepted by HCW's rules.
    let sign_in = app
        .post_form(
            &format!("/hint/partners/hcw/visits/{}/sign-in", visit.id),
            &key,
            &[],
        )
        .await;
    assert_eq!(sign_in.status(), 303);
    let to_hcw = sign_in.headers()["location"].to_str().unwrap().to_string();
    assert!(to_hcw.starts_with(&format!(
        "{}api/v1/external-auth-callback?token=",
        app.hcw.base_url()
    )));
    let arrived = app.http.get(&to_hcw).send().await.unwrap();
    assert_eq!(arrived.status(), 303, "HCW accepts the token");
    let attempt = app.hcw.world().sso_attempts.last().cloned().unwrap();
    assert_eq!(
        attempt.email.as_deref(),
        Some("casey.clinician@videoclinic.example")
    );
    assert_eq!(attempt.return_url.as_deref(), Some("/dashboard"));

    // The call happens, then the clinician finishes it from our frame.
    assert!(app.hcw.patient_joins(&invite.id));
    assert!(app.hcw.doctor_accepts(&invite.id));
    let finished = app
        .post_form(
            &format!("/hint/partners/hcw/visits/{}/finish", visit.id),
            &key,
            &[],
        )
        .await;
    let (status, finished) = Page::of(finished).await;
    assert_eq!(status, 200);
    assert_eq!(finished.text_of(".result h3"), "Consultation");
    assert_eq!(finished.text_of(".meta .state"), "Completed");
    assert_eq!(
        app.visit(&practice.id, &visit.id).await.state.as_str(),
        "completed"
    );
    assert_eq!(app.hcw.world().consultations[&invite.id].status, "closed");
    app.wait_for_interaction(patient, "signed").await;
    // One login served every call.
    assert_eq!(app.hcw.world().logins, 1);

    // The visit's facts are in the chart: when, who, how long, how it ended.
    let documents = app.hint.documents_for(patient);
    assert_eq!(documents.len(), 1, "one document for the visit");
    let note = &documents[0];
    assert_eq!(note.title.as_deref(), Some("HCW@Home video visit"));
    for expected in [
        "**Scheduled:** At once",
        "**Started:** ",
        "**Ended:** ",
        "**Took part:** Casey Clinician \\(doctor\\)\\, Ava Thompson \\(patient\\)",
        "**Ended as:** Closed in HCW\\@Home",
    ] {
        assert!(
            note.body.contains(expected),
            "{expected:?} in {}",
            note.body
        );
    }
}

#[tokio::test]
async fn gender_is_asked_never_guessed_and_missing_contact_is_said_before_calling_hcw() {
    let app = spawn_app().await;
    let practice = app.new_practice("Careful Video").await;
    app.setup_hcw(&practice, None).await;
    let key = app.session(&practice.clinician, None).await;
    let riley = &practice.patients[2]; // Hint sex "unknown"

    let form = launch_form(&app, &key, riley).await;
    assert!(form.has("select[name=gender][required]"));
    let (status, refused) = Page::of(launch(&app, &key, riley, &[("language", "en")]).await).await;
    assert_eq!(status, 422);
    assert!(
        refused
            .text_of("[role=alert]")
            .starts_with("Choose the gender HCW@Home should show")
    );
    assert_eq!(
        refused.attr("[role=alert]", "data-field").as_deref(),
        Some("gender"),
        "the page marks the field and moves the focus there"
    );
    assert!(app.hcw.world().invites.is_empty(), "nothing sent to HCW");
    assert!(app.visits_of(&practice.id).await.is_empty());

    let chosen = launch(&app, &key, riley, &[("language", "en"), ("gender", "male")]).await;
    assert_eq!(chosen.status(), 303);
    assert_eq!(app.hcw.world().invites[0].body["gender"], "male");
    assert_eq!(app.hcw.world().invites[0].body["sendInvite"], false);

    // A patient with neither email nor phone in Hint: said on the form, refused on submit.
    let liam = &practice.patients[1];
    {
        let mut world = app.hint.world();
        let p = world.patients.iter_mut().find(|p| &p.id == liam).unwrap();
        p.email = None;
        p.phone = None;
    }
    let form = launch_form(&app, &key, liam).await;
    assert!(
        form.text_of("[role=alert]")
            .contains("no email and no phone number in Hint")
    );
    assert!(!form.has("form button"), "nothing to submit");
    let refused = launch(&app, &key, liam, &[("language", "en")]).await;
    assert_eq!(refused.status(), 422);
    assert_eq!(app.hcw.world().invites.len(), 1);

    // A time in the past is refused here, as HCW would.
    let past = launch(
        &app,
        &key,
        riley,
        &[
            ("language", "en"),
            ("gender", "male"),
            ("scheduled_for", "2020-01-01T10:00"),
        ],
    )
    .await;
    let (status, past) = Page::of(past).await;
    assert_eq!(status, 422);
    assert!(past.text_of("[role=alert]").contains("in the past"));
}

#[tokio::test]
async fn hcw_refusals_reach_the_clinician_in_words_and_fail_the_visit() {
    let app = spawn_app().await;
    let practice = app.new_practice("Refused Video").await;
    app.setup_hcw(&practice, Some("Night shift")).await;
    let key = app.session(&practice.clinician, None).await;
    let patient = &practice.patients[0];

    // An unknown queue: HCW's own message, on the form, and the visit fails with it.
    let (status, refused) =
        Page::of(launch(&app, &key, patient, &[("language", "en")]).await).await;
    assert_eq!(status, 422);
    assert_eq!(
        refused.text_of("[role=alert]"),
        "HCW@Home refused: queue Night shift doesn't exist."
    );
    let visit = app.only_visit(&practice.id).await;
    assert_eq!(visit.state.as_str(), "failed");
    assert!(visit.error_message.unwrap().contains("queue Night shift"));
    app.wait_for_interaction(patient, "failed").await;

    // HCW's words are cut for the clinician (a 200-character queue name makes a long one).
    let long_queue = "Q".repeat(200);
    app.setup_hcw(&practice, Some(&long_queue)).await;
    let (status, refused) =
        Page::of(launch(&app, &key, patient, &[("language", "en")]).await).await;
    assert_eq!(status, 422);
    let alert = refused.text_of("[role=alert]");
    assert!(alert.starts_with("HCW@Home refused: queue QQQ"), "{alert}");
    assert!(
        alert.ends_with("….") && alert.chars().count() < 200,
        "{alert}"
    );

    // A wrong service-account password, a role HCW forbids, HCW down.
    let admin = app.session(&practice.admin, None).await;
    let base_url = app.hcw.base_url().to_string();
    let save = |email: &'static str, password: &'static str| {
        let (admin, base_url) = (admin.clone(), base_url.clone());
        let app = &app;
        async move {
            let r = app
                .post_form(
                    "/hint/settings/hcw",
                    &admin,
                    &[
                        ("base_url", &base_url),
                        ("service_email", email),
                        ("service_password", password),
                        ("routing", "queue"),
                        ("queue", "General"),
                        ("save_anyway", "1"),
                    ],
                )
                .await;
            assert_eq!(r.status(), 200);
        }
    };
    let said = |response| async move { Page::of(response).await.1.text_of("main") };
    save("nobody@video.example", "wrong-password").await;
    let words = said(launch(&app, &key, patient, &[("language", "en")]).await).await;
    assert!(
        words.contains("refused Chartbridge's service account"),
        "{words}"
    );

    app.hcw
        .add_account("nurse@video.example", "nurse-password-1", "nurse");
    save("nurse@video.example", "nurse-password-1").await;
    let words = said(launch(&app, &key, patient, &[("language", "en")]).await).await;
    assert!(words.contains("It needs the scheduler role"), "{words}");

    app.hcw
        .add_account("ok@video.example", "ok-password-0001", "scheduler");
    save("ok@video.example", "ok-password-0001").await;
    app.hcw.set_faults(HcwFaults { down: true });
    let down = launch(&app, &key, patient, &[("language", "en")]).await;
    assert_eq!(down.status(), 502);
    assert!(
        said(down)
            .await
            .contains("HCW@Home failed (HTTP 503). Try again in a moment.")
    );
    app.hcw.set_faults(HcwFaults::default());

    let failed = app.visits_of(&practice.id).await;
    assert_eq!(failed.len(), 5);
    assert!(
        failed
            .iter()
            .all(|v| v.state.as_str() == "failed" && v.error_message.is_some())
    );
    assert!(app.hcw.world().invites.is_empty());
}

#[tokio::test]
async fn a_watched_visit_page_asks_hcw_sooner_than_the_usual_poll() {
    // The usual poll is an hour away (the test settings); the page is being looked at.
    let app = spawn_app().await;
    let (_, key, visit) = launched(&app, None).await;
    assert!(app.hcw.patient_joins(&invite_id(&visit)));
    let path = format!("{key}&visit_id={}", visit.id);
    app.run_jobs().await; // the write-back; the poll is not due
    let polls = app.hcw.requests();
    let seen = app.page("clinical_interaction", &path).await;
    assert!(!seen.has(".hcw-open [role=status]"), "not looked yet");
    // That view brought the poll forward: it runs now, and the next refresh shows the call.
    assert!(app.run_jobs().await >= 1);
    assert!(app.hcw.requests() > polls, "HCW@Home was asked");
    assert_eq!(
        app.page("clinical_interaction", &path)
            .await
            .text_of(".hcw-open [role=status]"),
        "The patient is in the waiting room."
    );
}

#[tokio::test]
async fn a_consultation_closed_in_hcw_is_collected_by_polling() {
    let app = spawn_app_with(|s| {
        s.jobs.run_in_background = true;
        s.partners.hcw.poll_every = Duration::from_millis(200);
    })
    .await;
    let (practice, key, visit) = launched(&app, Some("General")).await;
    let invite = invite_id(&visit);
    assert_eq!(app.hcw.invite(&invite).unwrap().body["queue"], "General");
    assert!(app.hcw.patient_joins(&invite));
    // The open visit's page says the patient is waiting, once the poll has looked.
    crate::helpers::eventually(
        Duration::from_secs(10),
        "the page shows the waiting patient",
        || async {
            app.page(
                "clinical_interaction",
                &format!("{key}&visit_id={}", visit.id),
            )
            .await
            .text_of(".hcw-open [role=status]")
                == "The patient is in the waiting room."
        },
    )
    .await;
    assert!(app.hcw.doctor_accepts(&invite));
    assert!(app.hcw.doctor_closes(&invite, "Follow up in two weeks"));
    app.wait_for_interaction(&practice.patients[0], "signed")
        .await;
    let done = app.visit(&practice.id, &visit.id).await;
    assert_eq!(done.state.as_str(), "completed");
    assert!(done.result.unwrap().contains("Follow up in two weeks"));
}

#[tokio::test]
async fn a_consultation_that_never_comes_fails_the_visit_with_a_reason() {
    let app = spawn_app_with(|s| {
        s.jobs.run_in_background = true;
        s.partners.hcw.poll_every = Duration::from_millis(100);
        s.partners.hcw.give_up_after = Duration::from_millis(300);
    })
    .await;
    let (practice, _, visit) = launched(&app, None).await;
    app.wait_for_interaction(&practice.patients[0], "failed")
        .await;
    let failed = app.visit(&practice.id, &visit.id).await;
    assert!(
        failed
            .error_message
            .unwrap()
            .contains("No HCW@Home consultation was closed")
    );
}

#[tokio::test]
async fn cancelling_revokes_the_invite_unless_the_patient_already_joined() {
    let app = spawn_app().await;
    let (practice, key, visit) = launched(&app, None).await;
    app.wait_for_interaction(&practice.patients[0], "draft")
        .await;

    // Finishing before anyone joined says why and changes nothing.
    let early = app
        .post_form(
            &format!("/hint/partners/hcw/visits/{}/finish", visit.id),
            &key,
            &[],
        )
        .await;
    let (status, early) = Page::of(early).await;
    assert_eq!(status, 422);
    assert!(
        early
            .text_of("[role=alert]")
            .contains("no consultation to close yet")
    );
    assert_eq!(
        app.visit(&practice.id, &visit.id).await.state.as_str(),
        "in_progress"
    );

    let cancelled = app
        .post_form(&format!("/hint/visits/{}/cancel", visit.id), &key, &[])
        .await;
    assert_eq!(cancelled.status(), 200);
    assert!(
        app.hcw.invite(&invite_id(&visit)).is_none(),
        "the invite is revoked in HCW"
    );
    assert_eq!(
        app.visit(&practice.id, &visit.id).await.state.as_str(),
        "cancelled"
    );
    app.wait_for_interaction(&practice.patients[0], "deleted")
        .await;

    // Once the patient has joined, HCW refuses to revoke: the visit stays open, and says so.
    let second = launch(&app, &key, &practice.patients[1], &[("language", "en")]).await;
    assert_eq!(second.status(), 303);
    let visits = app.visits_of(&practice.id).await;
    let open = visits
        .iter()
        .find(|v| v.state.as_str() == "in_progress")
        .unwrap();
    assert!(app.hcw.patient_joins(&invite_id(open)));
    let refused = app
        .post_form(&format!("/hint/visits/{}/cancel", open.id), &key, &[])
        .await;
    let (status, refused) = Page::of(refused).await;
    assert_eq!(status, 422);
    assert!(
        refused
            .text_of("[role=alert]")
            .contains("cannot revoke the invitation")
    );
    assert_eq!(
        app.visit(&practice.id, &open.id).await.state.as_str(),
        "in_progress"
    );
}

#[tokio::test]
async fn the_service_token_is_reused_renewed_and_replaced_after_a_401() {
    let app = spawn_app_with(|s| s.partners.hcw.token_lifetime = Duration::from_millis(0)).await;
    let (_, key, visit) = launched(&app, None).await;
    // Older than its lifetime: the next call renews it with the refresh token, no new login.
    let finish = format!("/hint/partners/hcw/visits/{}/finish", visit.id);
    assert_eq!(app.post_form(&finish, &key, &[]).await.status(), 422);
    assert_eq!(app.hcw.world().logins, 1);
    assert!(app.hcw.world().refreshes >= 1);

    // HCW forgets every token (a restart): the call is answered 401, we log in and repeat it.
    let app2 = spawn_app().await;
    let (p2, key2, visit2) = launched(&app2, None).await;
    app2.hcw.revoke_tokens();
    assert!(app2.hcw.patient_joins(&invite_id(&visit2)));
    assert!(app2.hcw.doctor_accepts(&invite_id(&visit2)));
    let finished = app2
        .post_form(
            &format!("/hint/partners/hcw/visits/{}/finish", visit2.id),
            &key2,
            &[],
        )
        .await;
    assert_eq!(finished.status(), 200);
    assert_eq!(app2.hcw.world().logins, 2);
    assert_eq!(
        app2.visit(&p2.id, &visit2.id).await.state.as_str(),
        "completed"
    );
}

#[tokio::test]
async fn sandbox_hcw_checks_the_sso_token_by_hcw_s_rules() {
    let app = spawn_app().await;
    let secret = SecretString::from(HCW_SSO_SECRET.to_string());
    let base = app.hcw.base_url().clone();
    let now = chartbridge::db::now_ms() / 1000;
    let open = |token: String, return_url: &'static str| {
        let url = callback_url(&base, &token, return_url);
        let http = app.http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    let unsigned_claims = |claims: serde_json::Value, key: &[u8]| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(key),
        )
        .unwrap()
    };

    assert_eq!(
        open(
            mint(&secret, &SsoClaims::new("dr@x.example", "Dr Who", now)),
            "/dashboard"
        )
        .await,
        303
    );
    let wrong = SecretString::from("another-secret-entirely-0".to_string());
    assert_eq!(
        open(
            mint(&wrong, &SsoClaims::new("dr@x.example", "", now)),
            "/dashboard"
        )
        .await,
        401
    );
    assert_eq!(
        open(
            mint(&secret, &SsoClaims::new("dr@x.example", "", now - 301)),
            "/dashboard"
        )
        .await,
        401
    );
    assert_eq!(
        open(
            mint(&secret, &SsoClaims::new("dr@x.example", "", now - 200)),
            "/dashboard"
        )
        .await,
        303
    );
    let no_timestamp = unsigned_claims(
        serde_json::json!({"email": "dr@x.example"}),
        HCW_SSO_SECRET.as_bytes(),
    );
    assert_eq!(open(no_timestamp, "/dashboard").await, 401);
    let no_email = unsigned_claims(
        serde_json::json!({"timestamp": now}),
        HCW_SSO_SECRET.as_bytes(),
    );
    assert_eq!(open(no_email, "/dashboard").await, 401);
    let none_alg = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(format!(r#"{{"email":"dr@x.example","timestamp":{now}}}"#).as_bytes())
    );
    assert_eq!(open(none_alg, "/dashboard").await, 401);
    // A returnUrl that is not a relative path is dropped.
    assert_eq!(
        open(
            mint(&secret, &SsoClaims::new("dr@x.example", "", now)),
            "https://evil.example/"
        )
        .await,
        303
    );
    let attempts = app.hcw.world().sso_attempts.clone();
    assert_eq!(attempts.last().unwrap().return_url, None);
    assert_eq!(attempts.iter().filter(|a| a.status == 401).count(), 5);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn hcw_settings_are_for_admins_https_only_and_secrets_stay_sealed() {
    let app = spawn_app().await;
    let practice = app.new_practice("Settings Video").await;
    let clinician = app.session(&practice.clinician, None).await;
    let admin = app.session(&practice.admin, None).await;
    let fields = |base: &'static str| {
        vec![
            ("base_url", base),
            ("service_email", "svc@video.example"),
            ("service_password", "a-password-0001"),
            ("sso_secret", HCW_SSO_SECRET),
            ("routing", "doctor_email"),
        ]
    };
    assert_eq!(
        app.post_form(
            "/hint/settings/hcw",
            &clinician,
            &fields("https://hcw.example.org")
        )
        .await
        .status(),
        403
    );
    let plain = app
        .post_form(
            "/hint/settings/hcw",
            &admin,
            &fields("http://hcw.example.org"),
        )
        .await;
    let (status, plain) = Page::of(plain).await;
    assert_eq!(status, 422);
    assert!(
        plain
            .text_of("#hcw-settings [role=alert]")
            .contains("must start with https://")
    );
    assert_eq!(
        plain.attr("input[name=base_url]", "value").as_deref(),
        Some("http://hcw.example.org"),
        "what the admin typed is kept"
    );
    let mut short = fields("https://hcw.example.org");
    short[3] = ("sso_secret", "short");
    assert_eq!(
        app.post_form("/hint/settings/hcw", &admin, &short)
            .await
            .status(),
        422
    );
    // Nothing answers at this address (loopback here): the save says so and stores nothing,
    // unless the admin saves anyway.
    let (status, unreached) = Page::of(
        app.post_form(
            "/hint/settings/hcw",
            &admin,
            &fields("https://hcw.example.org"),
        )
        .await,
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        unreached
            .text_of("#hcw-settings [role=alert]")
            .contains("HCW@Home could not be reached")
    );
    let mut anyway = fields("https://hcw.example.org");
    anyway.push(("save_anyway", "1"));
    assert_eq!(
        app.post_form("/hint/settings/hcw", &admin, &anyway)
            .await
            .status(),
        200
    );

    let page = app.page("settings", &admin).await;
    assert_eq!(
        page.attr("#hcw-settings input[name=base_url]", "value")
            .as_deref(),
        Some("https://hcw.example.org/")
    );
    assert!(!page.source().contains("a-password-0001") && !page.source().contains(HCW_SSO_SECRET));
    let sealed: String =
        sqlx::query_scalar("SELECT secrets_sealed FROM partner_connections WHERE partner = 'hcw'")
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
    assert!(!sealed.contains("a-password-0001") && !sealed.contains(HCW_SSO_SECRET));
}
