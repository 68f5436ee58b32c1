//! The PHI audit trail: an entry for each audited action (who, with which roles, for which
//! patient and visit, under which request), the admins' page and CSV export, and
//! `chartbridge audit verify` finding a changed, a deleted and a missing entry.

use serde_json::json;
use sqlx::FromRow;

use crate::helpers::{MEDIQUO_SIGNATURE, Page, TestApp, spawn_app};

/// One stored entry.
#[derive(Debug, FromRow)]
struct Stored {
    seq: i64,
    actor_id: String,
    actor_roles: String,
    platform_support: i64,
    action: String,
    patient_id: Option<String>,
    visit_id: Option<String>,
    detail: String,
    request_id: Option<String>,
}

async fn trail(app: &TestApp, practice_id: &str) -> Vec<Stored> {
    sqlx::query_as(
        "SELECT seq, actor_id, actor_roles, platform_support, action, patient_id, visit_id, detail, \
         request_id FROM audit_events WHERE practice_id = $1 ORDER BY seq",
    )
    .bind(practice_id)
    .fetch_all(app.state.db.reader())
    .await
    .unwrap()
}

/// `count` entries of a chart viewed (patient `pat-old`), written with SQL beneath the trail
/// (sequence numbers -1 down to -count: pages and exports read them, nothing checks their
/// chain); `at` and `actor` are SQL of the entry's number `i`.
async fn entries_beneath(app: &TestApp, practice_id: &str, count: usize, at: &str, actor: &str) {
    sqlx::query(&format!(
        "INSERT INTO audit_events (practice_id, seq, at, actor_id, actor_roles, platform_support, \
         action, patient_id, visit_id, detail, request_id, prev_hash, hash) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
         SELECT $1, -i, {at}, {actor}, 'clinician', 0, 'chart_viewed', 'pat-old', NULL, '', NULL, \
         'x', 'x' FROM n"
    ))
    .bind(practice_id)
    .execute(app.state.db.writer())
    .await
    .unwrap();
}

fn entries<'a>(trail: &'a [Stored], action: &str) -> Vec<&'a Stored> {
    trail.iter().filter(|e| e.action == action).collect()
}

fn only<'a>(trail: &'a [Stored], action: &str) -> &'a Stored {
    let found = entries(trail, action);
    assert_eq!(found.len(), 1, "one {action} entry: {trail:#?}");
    found[0]
}

fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn every_audited_action_leaves_an_entry() {
    let app = spawn_app().await;
    let practice = app.new_practice("Audited Clinic").await;
    let patient = practice.patients[0].clone();
    let clinician = practice.clinician.clone();
    let key = app.session(&clinician, Some(&patient)).await;
    let admin = app.session(&practice.admin, None).await;

    // An admin sets partners up.
    app.setup_tiep(&practice).await;
    app.setup_hcw(&practice, None).await;
    app.setup_haidy(&practice).await;
    let integration = app.setup_mediquo(&practice).await;

    // The clinician lists recent visits and searches a patient (the query is not kept).
    assert_eq!(app.surface("core_page", &key).await.status(), 200);
    let found = app.htmx_get("/hint/patients/search?q=Thompson", &key).await;
    assert_eq!(found.status(), 200);
    // The clinician opens the chart, starts a Tiep visit; Tiep delivers; the result is opened.
    let chart = app.surface("clinical_chart", &key).await;
    assert_eq!(chart.status(), 200);
    let chart_request = request_id(&chart);
    let started = app.start_visit(&key, &patient).await;
    assert_eq!(started.status(), 303);
    let launch_request = request_id(&started);
    let tiep_visit = app.only_visit(&practice.id).await;
    let launch = started.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        app.save_tiep_report(&launch, &[("reason", "x")])
            .await
            .status(),
        200
    );
    let opened = app
        .surface(
            "clinical_interaction",
            &format!("{key}&visit_id={}", tiep_visit.id),
        )
        .await;
    assert_eq!(opened.status(), 200);
    let opened_request = request_id(&opened);

    // An HCW@Home visit: launched, the doctor signs in by SSO, the clinician finishes it.
    let hcw_visit = app.launch_hcw(&practice.id, &key, &patient).await;
    let invite = hcw_visit.partner_ref.clone().unwrap();
    app.hcw_sign_in(&key, &hcw_visit).await;
    assert!(app.hcw.patient_joins(&invite) && app.hcw.doctor_accepts(&invite));
    let finished = app
        .post_form(
            &format!("/hint/partners/hcw/visits/{}/finish", hcw_visit.id),
            &key,
            &[],
        )
        .await;
    assert_eq!(finished.status(), 200);

    // A Haidy visit gets more documents, then is cancelled.
    let pdf = ("a.pdf", &b"%PDF-1.7\n%%EOF\n"[..], "application/pdf");
    assert_eq!(app.launch_haidy(&key, &patient, pdf).await.status(), 303);
    let haidy_visit = app
        .visits_of(&practice.id)
        .await
        .into_iter()
        .find(|v| v.partner == "haidy")
        .unwrap();
    let more = reqwest::multipart::Part::bytes(b"more".to_vec())
        .file_name("b.txt")
        .mime_str("text/plain")
        .unwrap();
    let added = app
        .http
        .post(format!(
            "{}/hint/partners/haidy/visits/{}/files",
            app.address, haidy_visit.id
        ))
        .header("x-hint-session-key", &key)
        .multipart(reqwest::multipart::Form::new().part("files", more))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    let cancelled = app
        .post_form(
            &format!("/hint/visits/{}/cancel", haidy_visit.id),
            &key,
            &[],
        )
        .await;
    assert_eq!(cancelled.status(), 200);

    // MediQuo delivers a consultation; one for nobody is kept, opened and dismissed.
    assert_eq!(
        app.mediquo
            .send_consultation_finished(&integration, &patient)
            .await,
        Some(200)
    );
    let stray = json!({"type": "patient_report_sent", "occurred_on": 1,
        "payload": {"type": "soap", "content": {"plan": "x"}}});
    let kept = app
        .http
        .post(format!("{}/webhooks/mediquo/{}", app.address, practice.id))
        .header("x-webhook-signature", MEDIQUO_SIGNATURE)
        .body(stray.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 202);
    let delivery = app.unmatched_of(&practice.id).await[0].id.clone();
    assert_eq!(
        app.get(&format!("/hint/unmatched/{delivery}?session_key={admin}"))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.post_form(&format!("/hint/unmatched/{delivery}/dismiss"), &admin, &[])
            .await
            .status(),
        200
    );

    // An admin retries dead work, and Hint platform support exports the trail.
    sqlx::query(
        "INSERT INTO jobs (id, practice_id, kind, dedupe_key, payload, state, attempts, max_attempts, run_at, rerun, created_at, updated_at) \
         VALUES ('job_dead', $1, 'sync_interaction', 'dead-1', $2, 'dead', 8, 8, 0, 0, 0, 0)",
    )
    .bind(&practice.id)
    .bind(json!({"visit_id": tiep_visit.id.to_string()}).to_string())
    .execute(app.state.db.writer())
    .await
    .unwrap();
    assert_eq!(
        app.post_form("/hint/jobs/job_dead/retry", &admin, &[])
            .await
            .status(),
        200
    );
    let support = app
        .hint
        .add_user(&practice.id, "Hintstaff", &[], "platform_support");
    let support_key = app.session(&support, None).await;
    let csv = app
        .get(&format!("/hint/audit.csv?session_key={support_key}"))
        .await;
    assert_eq!(csv.status(), 200);

    let trail = trail(&app, &practice.id).await;
    assert_eq!(only(&trail, "visits_listed").actor_id, clinician);
    let searched = only(&trail, "patients_searched");
    assert_eq!(searched.detail, "1 found");
    assert!(
        trail.iter().all(|e| !e.detail.contains("Thompson")),
        "no query kept"
    );
    let chart = only(&trail, "chart_viewed");
    assert_eq!(
        (
            chart.actor_id.as_str(),
            chart.actor_roles.as_str(),
            chart.patient_id.as_deref()
        ),
        (clinician.as_str(), "clinician", Some(patient.as_str()))
    );
    assert_eq!(chart.request_id.as_deref(), Some(chart_request.as_str()));
    let launched = entries(&trail, "visit_launched");
    assert_eq!(launched.len(), 3, "Tiep, HCW@Home and Haidy");
    assert!(launched.iter().all(|e| e.actor_id == clinician));
    let tiep_launch = launched
        .iter()
        .find(|e| e.visit_id.as_deref() == Some(tiep_visit.id.as_str()))
        .unwrap();
    assert_eq!(tiep_launch.detail, "tiep");
    assert_eq!(
        tiep_launch.request_id.as_deref(),
        Some(launch_request.as_str())
    );
    let viewed = only(&trail, "result_viewed");
    assert_eq!(viewed.visit_id.as_deref(), Some(tiep_visit.id.as_str()));
    assert_eq!(viewed.request_id.as_deref(), Some(opened_request.as_str()));
    let finished = entries(&trail, "visit_finished");
    let by = |visit: &str| {
        finished
            .iter()
            .find(|e| e.visit_id.as_deref() == Some(visit))
            .map(|e| e.actor_id.clone())
    };
    assert_eq!(by(tiep_visit.id.as_str()).as_deref(), Some("partner:tiep"));
    assert_eq!(
        by(hcw_visit.id.as_str()).as_deref(),
        Some(clinician.as_str())
    );
    assert!(
        finished.iter().any(|e| e.actor_id == "partner:mediquo"
            && e.patient_id.as_deref() == Some(patient.as_str()))
    );
    let sso = only(&trail, "sso_sign_in");
    assert_eq!(sso.visit_id.as_deref(), Some(hcw_visit.id.as_str()));
    let docs = only(&trail, "documents_sent");
    assert_eq!(
        (docs.visit_id.as_deref(), docs.detail.as_str()),
        (Some(haidy_visit.id.as_str()), "1 sent")
    );
    let cancel = only(&trail, "visit_cancelled");
    assert_eq!(cancel.visit_id.as_deref(), Some(haidy_visit.id.as_str()));
    let settings = entries(&trail, "settings_changed");
    let partners: Vec<&str> = settings.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(partners, ["tiep", "hcw", "haidy", "mediquo"]);
    assert!(
        settings
            .iter()
            .all(|e| e.actor_id == practice.admin && e.actor_roles == "admin")
    );
    assert_eq!(only(&trail, "unmatched_viewed").detail, delivery);
    assert_eq!(only(&trail, "unmatched_dismissed").detail, delivery);
    let retried = only(&trail, "job_retried");
    assert_eq!(retried.visit_id.as_deref(), Some(tiep_visit.id.as_str()));
    let exported = only(&trail, "audit_exported");
    assert_eq!(
        (exported.actor_id.as_str(), exported.platform_support),
        (support.as_str(), 1)
    );
    // One chain: sequence numbers from 1 without a gap; entries hold ids, never names.
    assert!(trail.iter().enumerate().all(|(i, e)| e.seq == i as i64 + 1));
    assert!(trail.iter().all(|e| !e.detail.contains("Thompson")));
}

#[tokio::test]
async fn admins_read_filter_and_export_their_practices_trail_only() {
    let app = spawn_app().await;
    let practice = app.new_practice("Examined Clinic").await;
    let other = app.new_practice("Other Clinic").await;
    let (first, second) = (practice.patients[0].clone(), practice.patients[1].clone());
    for patient in [&first, &second, &first] {
        let key = app.session(&practice.clinician, Some(patient)).await;
        assert_eq!(app.surface("clinical_chart", &key).await.status(), 200);
    }
    let stranger = app
        .session(&other.clinician, Some(&other.patients[0]))
        .await;
    assert_eq!(app.surface("clinical_chart", &stranger).await.status(), 200);
    let admin = app.session(&practice.admin, None).await;
    let clinician = app.session(&practice.clinician, None).await;

    // Admins only.
    assert_eq!(app.surface("audit", &clinician).await.status(), 403);
    assert_eq!(
        app.get(&format!("/hint/audit.csv?session_key={clinician}"))
            .await
            .status(),
        403
    );

    let page = app.page("audit", &admin).await;
    assert_eq!(page.count("table.audit tbody tr"), 3);
    assert!(
        !page.source().contains(&other.patients[0]),
        "not the other practice's"
    );
    let by_patient = Page::of(
        app.get(&format!("/hint/audit?patient={first}&session_key={admin}"))
            .await,
    )
    .await
    .1;
    assert_eq!(by_patient.count("table.audit tbody tr"), 2);
    let by_user = Page::of(
        app.get(&format!(
            "/hint/audit?user={}&session_key={admin}",
            practice.admin
        ))
        .await,
    )
    .await
    .1;
    assert!(by_user.has(".empty"), "the admin opened no chart");
    let today = time::OffsetDateTime::now_utc().date();
    let tomorrow = today.next_day().unwrap();
    let on = |day: time::Date| {
        let app = &app;
        let admin = admin.clone();
        async move {
            Page::of(
                app.get(&format!(
                    "/hint/audit?from={day}&to={day}&session_key={admin}"
                ))
                .await,
            )
            .await
            .1
            .count("table.audit tbody tr")
        }
    };
    assert_eq!(on(today).await, 3);
    assert_eq!(on(tomorrow).await, 0);
    let bad = app
        .get(&format!("/hint/audit?from=yesterday&session_key={admin}"))
        .await;
    assert_eq!(bad.status(), 400);

    // The export: a header, one line per entry, quoted; and the export itself is recorded.
    let csv = app
        .get(&format!(
            "/hint/audit.csv?patient={first}&session_key={admin}"
        ))
        .await;
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"chartbridge-audit-")
    );
    let body = csv.text().await.unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert!(lines[0].starts_with("time_utc,user_id,roles,platform_support,action,patient_id"));
    assert_eq!(lines.len(), 3, "{body}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains("\"chart_viewed\"") && l.contains(&first))
    );
    let page = app.page("audit", &admin).await;
    assert_eq!(
        page.texts("table.audit tbody tr td:nth-child(3)")[0],
        "Exported the audit trail"
    );
    assert!(page.text().contains(&format!("patient={first}")));
}

/// `chartbridge audit verify` on the test's database; answers its exit status and output.
async fn verify(app: &TestApp) -> (i32, String) {
    app.cli(&["audit", "verify"]).await
}

#[tokio::test]
async fn audit_verify_finds_a_changed_a_deleted_and_a_missing_entry() {
    let app = spawn_app().await;
    let practice = app.new_practice("Tampered Clinic").await;
    for patient in &practice.patients {
        let key = app.session(&practice.clinician, Some(patient)).await;
        assert_eq!(app.surface("clinical_chart", &key).await.status(), 200);
    }
    let (status, said) = verify(&app).await;
    assert_eq!(status, 0, "{said}");
    assert!(said.contains("3 entries checked, 0 broken"), "{said}");

    // Whoever tampers holds the owner's rights: the app's role may not change the trail.
    let owner = app.owner_db().await;
    let db = &owner;
    let practice_id = practice.id.clone();
    let run = |sql: &'static str| {
        let practice_id = practice_id.clone();
        async move {
            sqlx::query(sql)
                .bind(practice_id)
                .execute(db)
                .await
                .unwrap()
        }
    };
    // Someone adds an entry of their own after the last one.
    run("INSERT INTO audit_events (practice_id, seq, at, actor_id, actor_roles, platform_support, \
         action, patient_id, visit_id, detail, request_id, prev_hash, hash) \
         SELECT practice_id, 4, at, actor_id, actor_roles, platform_support, action, patient_id, \
         visit_id, detail, request_id, hash, hash FROM audit_events WHERE practice_id = $1 AND seq = 3")
        .await;
    let (status, said) = verify(&app).await;
    assert_eq!(status, 1);
    assert!(
        said.contains("at entry 4: an entry was added outside the chain"),
        "{said}"
    );
    run("DELETE FROM audit_events WHERE practice_id = $1 AND seq = 4").await;
    // Someone points an entry at another patient.
    run("UPDATE audit_events SET patient_id = 'pat-innocent' WHERE practice_id = $1 AND seq = 2")
        .await;
    let (status, said) = verify(&app).await;
    assert_eq!(status, 1);
    assert!(
        said.contains(&format!(
            "BROKEN practice {} at entry 2: the entry was changed",
            practice.id
        )),
        "{said}"
    );
    // Someone deletes that entry instead.
    run("DELETE FROM audit_events WHERE practice_id = $1 AND seq = 2").await;
    let (status, said) = verify(&app).await;
    assert_eq!(status, 1);
    assert!(said.contains("at entry 2: an entry is missing"), "{said}");
    // Only the last entry is gone (the two before are as written).
    run("DELETE FROM audit_events WHERE practice_id = $1").await;
    run("DELETE FROM audit_heads WHERE practice_id = $1").await;
    for patient in &practice.patients[..2] {
        let key = app.session(&practice.clinician, Some(patient)).await;
        assert_eq!(app.surface("clinical_chart", &key).await.status(), 200);
    }
    assert_eq!(verify(&app).await.0, 0);
    run("DELETE FROM audit_events WHERE practice_id = $1 AND seq = 2").await;
    let (status, said) = verify(&app).await;
    assert_eq!(status, 1);
    assert!(
        said.contains("at entry 2: entries after this one are missing"),
        "{said}"
    );
}

#[tokio::test]
async fn entries_committed_together_still_form_one_chain_per_practice() {
    let app = spawn_app().await;
    let a = app.new_practice("Busy A").await;
    let b = app.new_practice("Busy B").await;
    let mut keys = Vec::new();
    for practice in [&a, &b] {
        for patient in &practice.patients {
            keys.push(app.session(&practice.clinician, Some(patient)).await);
        }
    }
    // Many pages at once: their entries share transactions (group commit).
    let views = futures::future::join_all(
        keys.iter()
            .cycle()
            .take(60)
            .map(|key| app.surface("clinical_chart", key)),
    )
    .await;
    assert!(views.iter().all(|r| r.status() == 200));
    let (status, said) = verify(&app).await;
    assert_eq!(status, 0, "{said}");
    assert!(said.contains("60 entries checked, 0 broken"), "{said}");
    let (a_trail, b_trail) = (trail(&app, &a.id).await, trail(&app, &b.id).await);
    assert_eq!(a_trail.len() + b_trail.len(), 60);
    assert!(
        a_trail
            .iter()
            .all(|e| a.patients.contains(e.patient_id.as_ref().unwrap()))
    );
}

#[tokio::test]
async fn patient_data_shown_in_lists_and_launch_forms_is_recorded_once_a_while_per_session() {
    let app = spawn_app().await;
    let practice = app.new_practice("Viewing Clinic").await;
    app.setup_hcw(&practice, None).await;
    app.setup_haidy(&practice).await;
    let (patient, other) = (&practice.patients[0], &practice.patients[1]);
    let key = app.session(&practice.clinician, None).await;
    let app = &app;
    let get = |path: String| async move {
        let response = app.get(&path).await;
        assert_eq!(response.status(), 200, "{path}");
    };

    // A patient's visit list polled by htmx, both launch forms opened twice: one entry each.
    for _ in 0..3 {
        get(format!(
            "/hint/visits?patient_id={patient}&session_key={key}"
        ))
        .await;
    }
    for _ in 0..2 {
        get(format!(
            "/hint/partners/hcw/launch?patient_id={patient}&session_key={key}"
        ))
        .await;
        get(format!(
            "/hint/partners/haidy/launch?patient_id={patient}&session_key={key}"
        ))
        .await;
    }
    // The practice's recent visits (no patient) are not this entry.
    get(format!("/hint/visits?session_key={key}")).await;
    let stored = trail(app, &practice.id).await;
    let listed = entries(&stored, "visits_listed");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].patient_id.as_deref(), Some(patient.as_str()));
    assert_eq!(listed[0].actor_id, practice.clinician);
    let details = entries(&stored, "contact_details_viewed");
    let mut forms: Vec<&str> = details.iter().map(|e| e.detail.as_str()).collect();
    forms.sort_unstable();
    assert_eq!(forms, ["HCW@Home launch form", "Haidy launch form"]);
    assert!(
        details
            .iter()
            .all(|e| e.patient_id.as_deref() == Some(patient.as_str()))
    );

    // Another patient, or another session of the same user, is another view.
    get(format!("/hint/visits?patient_id={other}&session_key={key}")).await;
    let again = app.session(&practice.clinician, None).await;
    get(format!(
        "/hint/visits?patient_id={patient}&session_key={again}"
    ))
    .await;
    let stored = trail(app, &practice.id).await;
    assert_eq!(entries(&stored, "visits_listed").len(), 3);
}

#[tokio::test]
async fn the_csv_export_holds_every_entry_newest_first_across_many_pages() {
    let app = spawn_app().await;
    let practice = app.new_practice("Long Trail Clinic").await;
    let admin = app.session(&practice.admin, None).await;
    // 12,000 older entries beneath the trail (more than two pages of the export), written with
    // SQL: the export reads them, it does not check their chain.
    entries_beneath(&app, &practice.id, 12000, "1000", "'usr-old'").await;
    let before: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE practice_id = $1")
            .bind(&practice.id)
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();

    let csv = app
        .get(&format!("/hint/audit.csv?session_key={admin}"))
        .await;
    assert_eq!(csv.status(), 200);
    let text = csv.text().await.unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("time_utc,user_id"));
    let seqs: Vec<i64> = lines
        .map(|line| {
            let fields: Vec<&str> = line.split("\",\"").collect();
            // A negative number is written '-1 (a spreadsheet would read -1 as a formula).
            fields[9]
                .trim_matches('"')
                .trim_start_matches('\'')
                .parse()
                .unwrap()
        })
        .collect();
    // Every entry (the export's own one too), once each, newest first.
    assert_eq!(seqs.len() as i64, before + 1);
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );
    assert_eq!(*seqs.last().unwrap(), -12000);

    // A filter narrows it; the export is still whole for it.
    let csv = app
        .get(&format!(
            "/hint/audit.csv?patient=pat-old&session_key={admin}"
        ))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 1 + 12000);
}

#[tokio::test]
async fn the_audit_page_pages_through_a_user_s_entries_once_each_newest_first() {
    let app = spawn_app().await;
    let practice = app.new_practice("Paged Trail Clinic").await;
    let admin = app.session(&practice.admin, None).await;
    // 250 entries of one user, five to a millisecond (entries recorded together share their
    // time), beside 250 of another user, written with SQL beneath the trail.
    entries_beneath(
        &app,
        &practice.id,
        500,
        "1000000 - i / 10",
        "CASE WHEN i % 2 = 0 THEN 'usr-paged' ELSE 'usr-else' END",
    )
    .await;
    let mut path = format!("/hint/audit?user=usr-paged&session_key={admin}");
    let mut seqs: Vec<i64> = Vec::new();
    let mut pages = 0;
    loop {
        let page = app.get(&path).await;
        assert_eq!(page.status(), 200, "{path}");
        let html = page.text().await.unwrap();
        seqs.extend(
            html.split("data-seq=\"")
                .skip(1)
                .map(|rest| rest.split('"').next().unwrap().parse::<i64>().unwrap()),
        );
        pages += 1;
        let Some(link) = html
            .split("<a href=\"")
            .find(|rest| rest.contains(">Older entries</a>"))
        else {
            break;
        };
        path = link.split('"').next().unwrap().replace("&amp;", "&");
    }
    let mut expected: Vec<i64> = (1..=500).filter(|i| i % 2 == 0).map(|i| -i).collect();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seqs, expected, "every entry of the user once, newest first");
    assert!(pages > 2, "{pages} pages");
    // A cursor that is not one is refused.
    let answer = app
        .get(&format!("/hint/audit?before=yesterday&session_key={admin}"))
        .await;
    assert_eq!(answer.status(), 400);
}
