//! Hint failing during a visit, a worker killed mid-job, and work that needs a person.

use std::time::Duration;

use chartbridge_sandbox::{hint::Faults, tiep::TiepFaults};
use serde_json::json;

use crate::helpers::{
    Page, TIEP_HOOK_SECRET, TestApp, TestPractice, eventually, spawn_app, spawn_app_with,
};

const WAIT: Duration = Duration::from_secs(20);

async fn started_visit(app: &TestApp, practice: &TestPractice, patient: &str) -> String {
    let key = app.session(&practice.clinician, None).await;
    assert_eq!(app.start_visit(&key, patient).await.status(), 303);
    app.only_visit(&practice.id).await.id.to_string()
}

fn report(visit_id: &str) -> serde_json::Value {
    json!({"context": {"visit_id": visit_id}, "payload": {"reason": "Recovered"}})
}

#[tokio::test]
async fn hint_failing_with_500s_then_timeouts_still_ends_signed_once() {
    let app = spawn_app_with(|s| s.jobs.run_in_background = true).await;
    let practice = app.new_practice("Flaky Hint").await;
    app.setup_tiep(&practice).await;
    let patient = &practice.patients[0];

    app.hint.set_faults(Faults {
        fail_next: 3,
        ..Default::default()
    });
    let visit_id = started_visit(&app, &practice, patient).await;
    assert_eq!(
        app.post_tiep_webhook(&practice.id, &report(&visit_id), TIEP_HOOK_SECRET)
            .await
            .status(),
        200
    );
    // Then Hint stops answering in time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.hint.set_faults(Faults {
        hang_for: Some(Duration::from_secs(3)),
        ..Default::default()
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.hint.set_faults(Faults::default());

    app.wait_for_interaction(patient, "signed").await;
    assert_eq!(
        app.hint.interactions_for(patient).len(),
        1,
        "never created twice"
    );
    // (Hint holds the signed interaction a moment before the job records Hint's answer.)
    eventually(WAIT, "the visit knows it is signed in Hint", || async {
        app.visit(&practice.id, &visit_id)
            .await
            .hint_status
            .as_deref()
            == Some("signed")
    })
    .await;
}

#[tokio::test]
async fn a_worker_killed_mid_job_loses_nothing_and_doubles_nothing() {
    let app = spawn_app_with(|s| {
        s.jobs.run_in_background = true;
        s.jobs.lease = Duration::from_secs(1);
    })
    .await;
    let practice = app.new_practice("Crashy").await;
    app.setup_tiep(&practice).await;
    let patient = practice.patients[0].clone();

    // Hint applies the create, then the answer never arrives: the worker dies holding the job.
    app.hint.set_faults(Faults {
        hang_after_write_for: Some(Duration::from_secs(60)),
        ..Default::default()
    });
    let visit_id = started_visit(&app, &practice, &patient).await;
    eventually(WAIT, "Hint holds the interaction", || async {
        !app.hint.interactions_for(&patient).is_empty()
    })
    .await;
    let app = app.crash_and_restart().await;
    app.hint.set_faults(Faults::default());

    // After restart the job is taken over; the existing interaction is found, not re-created.
    eventually(WAIT, "the visit learns its interaction", || async {
        app.visit(&practice.id, &visit_id)
            .await
            .hint_interaction_id
            .is_some()
    })
    .await;
    assert_eq!(
        app.post_tiep_webhook(&practice.id, &report(&visit_id), TIEP_HOOK_SECRET)
            .await
            .status(),
        200
    );
    app.wait_for_interaction(&patient, "signed").await;
    assert_eq!(
        app.hint.interactions_for(&patient).len(),
        1,
        "exactly one interaction"
    );
    // (Hint holds the signed interaction a moment before the job that wrote it is done.)
    eventually(WAIT, "no work left behind", || async {
        chartbridge::jobs::counts(&app.state.db, &app.state.job_kinds)
            .await
            .unwrap()
            == (0, 0)
    })
    .await;
}

#[tokio::test]
async fn work_hint_refuses_is_shown_with_a_retry_button_and_retrying_completes_it() {
    let app = spawn_app_with(|s| s.jobs.run_in_background = true).await;
    let practice = app.new_practice("Refused").await;
    app.setup_tiep(&practice).await;
    let patient = practice.patients[0].clone();
    // The practice has two of our products in Hint, but we only know ours: Hint refuses.
    app.hint
        .world()
        .practices
        .iter_mut()
        .find(|p| p.id == practice.id)
        .unwrap()
        .products = vec!["ppro-other".into()];
    let visit_id = started_visit(&app, &practice, &patient).await;
    eventually(WAIT, "the job is dead", || async {
        chartbridge::jobs::counts(&app.state.db, &app.state.job_kinds)
            .await
            .unwrap()
            .1
            == 1
    })
    .await;
    let key = app.session(&practice.clinician, None).await;
    let core = app.page("core_page", &key).await;
    assert_eq!(core.text_of(".attention h2"), "Needs attention");
    // Named by patient and partner, with what to do in plain words.
    assert_eq!(
        core.text_of(".attention li strong"),
        "Ava Thompson — Tiep scribe visit"
    );
    assert!(
        core.attr(".attention li strong a", "href")
            .unwrap()
            .contains(&format!("visit_id={visit_id}"))
    );
    assert!(
        core.text_of(".attention li")
            .contains("write the visit to the hint chart")
    );
    assert!(
        core.text_of(".attention .advice")
            .starts_with("Hint refused to take this")
    );
    // The patient's chart says so too.
    let chart_key = app.session(&practice.clinician, Some(&patient)).await;
    let chart = app.page("clinical_chart", &chart_key).await;
    assert!(
        chart
            .text_of(".attention[role=alert]")
            .contains("Writing this patient's visits to the Hint chart is failing")
    );
    let job_id = core
        .attr(".attention button", "hx-post")
        .expect("a retry button")
        .trim_start_matches("/hint/jobs/")
        .trim_end_matches("/retry")
        .to_string();

    // The practice fixes it in Hint; retrying completes the write-back.
    app.hint
        .world()
        .practices
        .iter_mut()
        .find(|p| p.id == practice.id)
        .unwrap()
        .products = vec![crate::helpers::PRODUCT_ID.into()];
    let retried = app
        .http
        .post(format!("{}/hint/jobs/{job_id}/retry", app.address))
        .header("x-hint-session-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
    eventually(WAIT, "the draft in Hint", || async {
        !app.hint.interactions_for(&patient).is_empty()
    })
    .await;
    eventually(WAIT, "nothing dead", || async {
        chartbridge::jobs::counts(&app.state.db, &app.state.job_kinds)
            .await
            .unwrap()
            .1
            == 0
    })
    .await;
    eventually(WAIT, "the visit knows its draft", || async {
        app.visit(&practice.id, &visit_id)
            .await
            .hint_status
            .as_deref()
            == Some("draft")
    })
    .await;
}

#[tokio::test]
async fn rate_limited_hint_gets_every_interaction_eventually() {
    let app = spawn_app_with(|s| {
        s.jobs.run_in_background = true;
        s.hint.rate_limit_backoff = Duration::from_millis(200);
    })
    .await;
    let practice = app.new_practice("Busy").await;
    app.setup_tiep(&practice).await;
    app.hint.world().rate_limit_per_second = 4;
    // Many visits at once against a Hint that allows only a few calls a second.
    let key = app.session(&practice.clinician, None).await;
    for patient in &practice.patients {
        assert_eq!(app.start_visit(&key, patient).await.status(), 303);
        assert_eq!(app.start_visit(&key, patient).await.status(), 303);
    }
    eventually(WAIT, "six drafts", || async {
        practice
            .patients
            .iter()
            .map(|p| app.hint.interactions_for(p).len())
            .sum::<usize>()
            == 6
    })
    .await;
    assert_eq!(
        chartbridge::jobs::counts(&app.state.db, &app.state.job_kinds)
            .await
            .unwrap()
            .1,
        0,
        "nothing dead"
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_job_in_flight() {
    let app = spawn_app_with(|s| s.jobs.run_in_background = true).await;
    let practice = app.new_practice("Shutdown").await;
    app.setup_tiep(&practice).await;
    let patient = practice.patients[0].clone();
    // Hint answers slowly, so the write-back is in flight when shutdown is asked for.
    app.hint.set_faults(Faults {
        hang_for: Some(Duration::from_millis(700)),
        ..Default::default()
    });
    let visit_id = started_visit(&app, &practice, &patient).await;
    eventually(WAIT, "Hint is being called", || async {
        !app.hint.world().requests.is_empty()
    })
    .await;
    let hint = app.hint.clone();
    let database = app.database.clone();
    app.stop_gracefully().await;
    assert_eq!(
        hint.interactions_for(&patient).len(),
        1,
        "the job in flight finished"
    );
    let db = chartbridge::db::Db::connect(&database.settings)
        .await
        .unwrap();
    let recorded: Option<String> =
        sqlx::query_scalar("SELECT hint_interaction_id FROM visits WHERE id = $1")
            .bind(&visit_id)
            .fetch_one(db.reader())
            .await
            .unwrap();
    assert!(recorded.is_some(), "and its outcome was recorded");
}

#[tokio::test]
async fn a_launch_cut_short_by_a_crash_ends_failed_with_a_reason() {
    let app = spawn_app_with(|s| {
        s.jobs.run_in_background = true;
        s.launch_timeout = Duration::from_millis(1000);
    })
    .await;
    let practice = app.new_practice("Cut Short").await;
    app.setup_tiep(&practice).await;
    let patient = practice.patients[0].clone();
    // Tiep is slow to issue the token; the launch is cut short while it waits (the tab closed,
    // then the process died): nothing is left to finish it.
    app.tiep.set_faults(TiepFaults {
        token_delay: Some(Duration::from_secs(5)),
        ..Default::default()
    });
    let key = app.session(&practice.clinician, None).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let cut = impatient
        .post(format!("{}/hint/visits", app.address))
        .header("origin", &app.address)
        .header("x-hint-session-key", key)
        .form(&[("patient_id", patient.as_str()), ("partner", "tiep")])
        .send()
        .await;
    assert!(cut.is_err(), "the launch was cut short");
    let visit = app.only_visit(&practice.id).await;
    assert_eq!(visit.state.as_str(), "launching");
    let visit_id = visit.id;
    let app = app.crash_and_restart().await;
    app.wait_for_interaction(&patient, "failed").await;
    let visit = app.visit(&practice.id, &visit_id).await;
    assert_eq!(visit.state.as_str(), "failed");
    assert!(visit.error_message.unwrap().contains("never opened"));
    assert_eq!(app.hint.interactions_for(&patient).len(), 1);
}

#[tokio::test]
async fn a_launch_that_outlives_its_visit_says_so_and_opens_nothing() {
    let app = spawn_app_with(|s| {
        s.jobs.run_in_background = true;
        s.launch_timeout = Duration::from_millis(200);
    })
    .await;
    let practice = app.new_practice("Too Slow").await;
    app.setup_tiep(&practice).await;
    let patient = &practice.patients[0];
    // Tiep answers after the launch deadline (but within the client's timeout): by then the
    // visit has failed, and the clinician is told instead of being sent to a dead session.
    app.tiep.set_faults(TiepFaults {
        token_delay: Some(Duration::from_millis(900)),
        ..Default::default()
    });
    let key = app.session(&practice.clinician, None).await;
    let late = app.start_visit(&key, patient).await;
    assert_eq!(late.status(), 409);
    let (_, late) = crate::helpers::Page::of(late).await;
    assert!(late.text_of("main").contains("The visit ended before"));
    let visit = app.only_visit(&practice.id).await;
    assert_eq!(visit.state.as_str(), "failed");
    assert!(visit.error_message.unwrap().contains("never opened"));
    app.wait_for_interaction(patient, "failed").await;
}

#[tokio::test]
async fn one_practice_s_backlog_does_not_hold_up_another_practice() {
    let app = spawn_app_with(|s| s.jobs.run_in_background = true).await;
    let busy = app.new_practice("Busy Backlog").await;
    let quiet = app.new_practice("Quiet").await;
    app.setup_tiep(&busy).await;
    app.setup_tiep(&quiet).await;
    // Hint answers the busy practice slowly (but within the client's timeout).
    app.hint.set_faults(Faults {
        hang_for: Some(Duration::from_millis(700)),
        only_practice: Some(busy.id.clone()),
        ..Default::default()
    });
    let busy_key = app.session(&busy.clinician, None).await;
    for _ in 0..3 {
        for patient in &busy.patients {
            assert_eq!(app.start_visit(&busy_key, patient).await.status(), 303);
        }
    }
    let quiet_key = app.session(&quiet.clinician, None).await;
    assert_eq!(
        app.start_visit(&quiet_key, &quiet.patients[0])
            .await
            .status(),
        303
    );

    app.wait_for_interaction(&quiet.patients[0], "draft").await;
    let busy_done: usize = busy
        .patients
        .iter()
        .map(|p| app.hint.interactions_for(p).len())
        .sum();
    assert!(
        busy_done < 3,
        "the quiet practice was served before the busy backlog drained ({busy_done}/9)"
    );
    eventually(WAIT, "the busy backlog drains too", || async {
        busy.patients
            .iter()
            .map(|p| app.hint.interactions_for(p).len())
            .sum::<usize>()
            == 9
    })
    .await;
}

#[tokio::test]
async fn calls_to_hint_are_paced_so_a_burst_provokes_no_429() {
    let app = spawn_app_with(|s| {
        s.jobs.run_in_background = true;
        s.hint.requests_per_second = 2.5;
    })
    .await;
    let practice = app.new_practice("Paced").await;
    app.setup_tiep(&practice).await;
    app.hint.world().rate_limit_per_second = 3;
    let key = app.session(&practice.clinician, None).await;
    for patient in &practice.patients {
        assert_eq!(app.start_visit(&key, patient).await.status(), 303);
    }
    for patient in &practice.patients {
        app.wait_for_interaction(patient, "draft").await;
    }
    assert_eq!(
        app.hint.world().rate_limited,
        0,
        "paced under Hint's limit, Hint never had to say 429"
    );
}

#[tokio::test]
async fn the_database_refuses_states_the_code_does_not_know() {
    let app = spawn_app().await;
    let (practice, _, visit) = app.open_tiep_visit("Checked States").await;
    let writer = app.state.db.writer();
    for (sql, what) in [
        (
            "UPDATE visits SET state = 'done' WHERE id = $1",
            "an unknown visit state",
        ),
        (
            "UPDATE visits SET state = 'completed', result = '{}' WHERE id = $1",
            "a finished visit without completed_at",
        ),
        (
            "UPDATE jobs SET state = 'paused' WHERE dedupe_key = 'sync_interaction:' || $1",
            "an unknown job state",
        ),
    ] {
        let refused = sqlx::query(sql).bind(&visit.id).execute(writer).await;
        assert!(refused.is_err(), "{what} must be refused by the database");
    }
    assert_eq!(
        app.visit(&practice.id, &visit.id).await.state.as_str(),
        "in_progress"
    );
}

#[tokio::test]
async fn a_clinician_waiting_for_a_busy_hint_is_answered_that_it_is_busy() {
    let app = spawn_app_with(|s| s.hint.slot_wait = Duration::from_millis(300)).await;
    let practice = app.new_practice("Busy Hint").await;
    app.setup_tiep(&practice).await;
    let key = app.session(&practice.clinician, None).await;
    let patient = practice.patients[0].clone();
    // Hint stops answering: three launches take the practice's three slots and wait on it.
    app.hint.set_faults(Faults {
        patients_hang_for: Some(Duration::from_secs(3)),
        ..Default::default()
    });
    let held = futures::future::join_all((0..3).map(|_| app.start_visit(&key, &patient)));
    let fourth = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        crate::helpers::Page::of(app.start_visit(&key, &patient).await).await
    };
    let (_, (status, page)) = tokio::join!(held, fourth);
    // The fourth is not left to wait for a slot until the request times out: it is told.
    assert_eq!(status, 502);
    assert!(
        page.text_of("main").contains("Hint is busy"),
        "{}",
        page.text_of("main")
    );
    assert!(
        app.visits_of(&practice.id).await.is_empty(),
        "nothing started"
    );
}

#[tokio::test]
async fn a_clinician_waiting_on_a_slow_hint_is_told_in_the_frame_before_the_request_times_out() {
    // Hint answers later than the client waits, every try: the tries and the second token
    // would add up past the request timeout; the clinician is told at `user_wait` (only that
    // says Hint is slow: the tries running out say it did not answer).
    let app = spawn_app_with(|s| {
        s.hint.user_wait = Duration::from_millis(800);
        s.hint.failure_retries = 3;
        s.http_timeout = Duration::from_millis(500);
    })
    .await;
    let practice = app.new_practice("Slow Hint Answers").await;
    app.setup_tiep(&practice).await;
    let key = app.session(&practice.clinician, None).await;
    let patient = practice.patients[0].clone();
    app.hint.set_faults(Faults {
        patients_hang_for: Some(Duration::from_secs(5)),
        ..Default::default()
    });
    let (status, page) = crate::helpers::Page::of(app.start_visit(&key, &patient).await).await;
    assert_eq!(status, 502);
    assert!(
        page.text_of("main").contains("Hint is slow to answer"),
        "{}",
        page.text_of("main")
    );
    assert!(
        app.visits_of(&practice.id).await.is_empty(),
        "nothing started"
    );
}

#[tokio::test]
async fn a_job_that_outlives_its_lease_is_not_taken_over_while_it_runs() {
    let app = spawn_app_with(|s| s.jobs.lease = Duration::from_millis(600)).await;
    let practice = app.new_practice("Slow Hint").await;
    app.setup_tiep(&practice).await;
    let patient = practice.patients[0].clone();
    let visit_id = started_visit(&app, &practice, &patient).await;

    // Every interaction call takes longer than a lease (within the client's timeout): the find
    // and the create of one run span four leases. Two workers share the queue.
    app.hint.set_faults(Faults {
        hang_for: Some(Duration::from_millis(1000)),
        ..Default::default()
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runners: Vec<_> = (0..2)
        .map(|_| tokio::spawn(app.state.job_runner().run(stopped.clone())))
        .collect();
    eventually(WAIT, "the visit learns its interaction", || async {
        app.visit(&practice.id, &visit_id)
            .await
            .hint_interaction_id
            .is_some()
    })
    .await;
    stop.send(true).unwrap();
    for runner in runners {
        runner.await.unwrap();
    }
    // Taken over at the end of its first lease, the second worker would have looked, found
    // nothing yet and created a second interaction.
    assert_eq!(app.hint.interactions_for(&patient).len(), 1);
    let finds = app
        .hint
        .world()
        .requests
        .iter()
        .filter(|r| r.starts_with("GET") && r.contains("/interactions/partner"))
        .count();
    assert_eq!(finds, 1, "the job ran once");
}

#[tokio::test]
async fn hint_failing_a_third_of_its_calls_still_signs_every_visit_once() {
    let app = spawn_app_with(|s| s.jobs.run_in_background = true).await;
    let practice = app.new_practice("Unreliable Hint").await;
    app.setup_tiep(&practice).await;
    // 30 % of interaction calls fail before doing anything; 10 % of writes are applied and
    // their answer lost.
    app.hint.set_faults(Faults {
        fail_ratio: 0.3,
        lose_answer_ratio: 0.1,
        ..Default::default()
    });
    let key = app.session(&practice.clinician, None).await;
    let mut visits = Vec::new();
    for round in 0..4 {
        for patient in &practice.patients {
            let id = app.started_visit_id(&practice.id, &key, patient).await;
            assert_eq!(
                app.post_tiep_webhook(&practice.id, &report(&id), TIEP_HOOK_SECRET)
                    .await
                    .status(),
                200,
                "round {round}"
            );
            visits.push((patient.clone(), id));
        }
    }
    app.wait_each_signed_once(WAIT, &visits).await;
    eventually(WAIT, "no work left and none dead", || async {
        chartbridge::jobs::counts(&app.state.db, &app.state.job_kinds)
            .await
            .unwrap()
            == (0, 0)
    })
    .await;
}

/// Stuck jobs written straight into the queue: `dead` dead write-backs and `failing` queued ones
/// failing for the third time, a minute apart, the newest last.
async fn stuck_jobs(app: &TestApp, practice_id: &str, dead: usize, failing: usize) {
    for n in 0..dead + failing {
        let state = if n < dead { "dead" } else { "queued" };
        sqlx::query(
            "INSERT INTO jobs (id, practice_id, kind, dedupe_key, payload, state, attempts, max_attempts, \
             run_at, rerun, last_error, created_at, updated_at) \
             VALUES ($1, $2, 'sync_interaction', $3, $4, $5, 3, 8, $6, 0, 'Hint answered HTTP 503', 0, $6)",
        )
        .bind(format!("job_{practice_id}_{n}"))
        .bind(practice_id)
        .bind(format!("sync_interaction:vis_{practice_id}_{n}"))
        .bind(json!({"visit_id": format!("vis_{practice_id}_{n}")}).to_string())
        .bind(state)
        // Far in the future for the queued ones: the runner leaves them be.
        .bind(if n < dead { 1_000 + n as i64 * 60_000 } else { i64::MAX / 2 })
        .execute(app.state.db.writer())
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn much_stuck_work_lists_the_newest_and_one_press_puts_every_stopped_job_back() {
    let app = spawn_app().await;
    let practice = app.new_practice("Many stuck").await;
    let other = app.new_practice("Other stuck").await;
    stuck_jobs(&app, &practice.id, 12, 1).await;
    stuck_jobs(&app, &other.id, 2, 0).await;
    let key = app.session(&practice.clinician, None).await;

    let core = app.page("core_page", &key).await;
    assert_eq!(core.count(".attention li"), 10, "the newest ten listed");
    assert!(core.text_of(".attention").contains("The newest 10 of 13."));
    assert_eq!(
        core.attr(".retry-all button", "hx-post").as_deref(),
        Some("/hint/jobs/retry_all")
    );
    assert_eq!(core.text_of(".retry-all button"), "Retry all 12 stopped");

    // Front-desk staff without a role retry nothing.
    let staff = app
        .hint
        .add_user(&practice.id, "Front Desk", &["staff"], "standard");
    let staff_key = app.session(&staff, None).await;
    assert_eq!(
        app.htmx_post("/hint/jobs/retry_all", &staff_key)
            .await
            .status(),
        403
    );
    let dead = |practice_id: String| {
        let app = &app;
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM jobs WHERE practice_id = $1 AND state = 'dead'",
            )
            .bind(practice_id)
            .fetch_one(app.state.db.reader())
            .await
            .unwrap()
        }
    };
    assert_eq!(dead(practice.id.clone()).await, 12);

    let retried = app.htmx_post("/hint/jobs/retry_all", &key).await;
    assert_eq!(retried.status(), 200);
    let (_, said) = Page::of(retried).await;
    assert!(
        said.text_of("[role=status]")
            .starts_with("Queued again: 12 pieces of stopped work."),
        "{}",
        said.text()
    );
    assert_eq!(dead(practice.id.clone()).await, 0);
    // Another practice's stopped work is its own.
    assert_eq!(dead(other.id.clone()).await, 2);
    let retried_entries: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT actor_id, visit_id FROM audit_events WHERE practice_id = $1 AND action = 'job_retried' ORDER BY seq",
    )
    .bind(&practice.id)
    .fetch_all(app.state.db.reader())
    .await
    .unwrap();
    assert_eq!(retried_entries.len(), 12, "one trail entry a job");
    assert!(
        retried_entries
            .iter()
            .all(|(actor, visit)| actor == &practice.clinician && visit.is_some())
    );

    // The failing job still shows, without a button for what is already queued.
    let core = app.page("core_page", &key).await;
    assert_eq!(core.count(".attention li"), 1);
    assert!(!core.has(".retry-all button"));
    assert!(!core.text_of(".attention").contains("The newest"));
}
