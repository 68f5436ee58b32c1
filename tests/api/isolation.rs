//! Two practices: nothing of one is reachable with the other's session, by id or by list.

use serde_json::json;

use crate::helpers::{Page, TIEP_HOOK_SECRET, TestApp, spawn_app};

#[tokio::test]
async fn nothing_of_one_practice_reaches_the_other() {
    let app = spawn_app().await;
    let a = app.new_practice("Practice A").await;
    let b = app.new_practice("Practice B").await;
    app.setup_tiep(&a).await;
    app.setup_tiep(&b).await;
    let a_patient = &a.patients[0];
    let a_key = app.session(&a.clinician, None).await;
    assert_eq!(app.start_visit(&a_key, a_patient).await.status(), 303);
    let a_visit = app.only_visit(&a.id).await;
    let report =
        json!({"context": {"visit_id": a_visit.id}, "payload": {"reason": "A's secret reason"}});
    assert_eq!(
        app.post_tiep_webhook(&a.id, &report, TIEP_HOOK_SECRET)
            .await
            .status(),
        200
    );
    app.wait_for_interaction(a_patient, "signed").await;
    let a_interaction = app.hint.interactions_for(a_patient)[0].id.clone();

    let b_key = app.session(&b.clinician, None).await;
    let b_admin = app.session(&b.admin, None).await;

    // Visits and results, by id.
    let by_id = app
        .surface(
            "clinical_interaction",
            &format!("{b_key}&visit_id={}", a_visit.id),
        )
        .await;
    assert_eq!(by_id.status(), 404);
    let by_interaction = app
        .hint
        .handshake(&b.clinician, None, Some(&a_interaction))
        .await
        .unwrap();
    assert_eq!(
        app.surface("clinical_interaction", &by_interaction)
            .await
            .status(),
        404
    );

    // Visits, by list.
    for path in [
        "/hint/visits".to_string(),
        format!("/hint/visits?patient_id={a_patient}"),
    ] {
        let (_, rows) = Page::of(app.htmx_get(&path, &b_key).await).await;
        assert_eq!(rows.text_of("#visits .empty"), "No visits yet.", "{path}");
        // Nowhere in the markup either (attributes included).
        let source = rows.source();
        assert!(
            !source.contains(a_visit.id.as_str()),
            "{path} leaks A's visit"
        );
        assert!(!source.contains("Ava Thompson"), "{path} leaks A's patient");
    }
    let core = app.page("core_page", &b_key).await;
    assert!(!core.source().contains(a_visit.id.as_str()));

    // Patients: by id and by search.
    let (_, search) = Page::of(
        app.htmx_get(&format!("/hint/patients/search?q={a_patient}"), &b_key)
            .await,
    )
    .await;
    assert!(search.text_of(".empty").starts_with("No patient matches"));
    assert!(!search.has(".patients"));
    assert_eq!(app.start_visit(&b_key, a_patient).await.status(), 404);
    let chart_key = app.session(&b.clinician, Some(a_patient)).await;
    assert_eq!(
        app.surface("clinical_chart", &chart_key).await.status(),
        404
    );

    // Settings: B's page shows B's webhook URL, never A's.
    let settings = app.page("settings", &b_admin).await;
    assert!(
        settings
            .text_of("#tiep-webhook-url")
            .ends_with(&format!("/webhooks/tiep/{}", b.id))
    );
    assert!(!settings.source().contains(&a.id));

    // Webhooks: A's visit cannot be completed through B's endpoint, even correctly signed for B;
    // the delivery is kept for B's admins (it is B's facility that sent it), A's visit untouched.
    let overwrite =
        json!({"context": {"visit_id": a_visit.id}, "payload": {"reason": "overwritten"}});
    assert_eq!(
        app.post_tiep_webhook(&b.id, &overwrite, TIEP_HOOK_SECRET)
            .await
            .status(),
        202
    );
    let b_kept = app.unmatched_of(&b.id).await;
    assert_eq!(b_kept.len(), 1);
    assert!(app.unmatched_of(&a.id).await.is_empty());
    let a_admin = app.session(&a.admin, None).await;
    let a_peeks = app
        .surface(&format!("unmatched/{}", b_kept[0].id), &a_admin)
        .await;
    assert_eq!(a_peeks.status(), 404, "A cannot open B's kept delivery");
    let stored = app.visit(&a.id, &a_visit.id).await;
    assert_eq!(
        crate::helpers::stored_result(&stored)["answers"]["reason"],
        "A's secret reason"
    );
    assert!(
        app.visits_of(&b.id)
            .await
            .iter()
            .all(|v| v.id != a_visit.id),
        "A's visit is not B's"
    );

    // Jobs: B cannot retry A's work.
    let a_job = "job_of_a";
    sqlx::query(
        "INSERT INTO jobs (id, practice_id, kind, dedupe_key, payload, state, attempts, max_attempts, run_at, rerun, created_at, updated_at) \
         VALUES ($1, $2, 'sync_interaction', 'dead-a', '{}', 'dead', 8, 8, 0, 0, 0, 0)",
    )
    .bind(a_job)
    .bind(&a.id)
    .execute(app.state.db.writer())
    .await
    .unwrap();
    let retry = app
        .http
        .post(format!("{}/hint/jobs/{a_job}/retry", app.address))
        .header("x-hint-session-key", &b_key)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 404);
    // B's "Retry all" is B's alone.
    let retry_all = app.htmx_post("/hint/jobs/retry_all", &b_key).await;
    assert_eq!(retry_all.status(), 200);
    let still_dead: String = sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1")
        .bind(a_job)
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
    assert_eq!(still_dead, "dead");
    let b_core = app.page("core_page", &b_key).await;
    assert!(!b_core.has(".attention") && !b_core.source().contains(a_job));
    let a_core = app.page("core_page", &a_key).await;
    assert_eq!(
        a_core.attrs(".attention button", "hx-post"),
        [format!("/hint/jobs/{a_job}/retry")],
        "A sees its own stuck work"
    );
}

/// Posts a multipart launch/upload form with one small text file.
async fn post_files(
    app: &TestApp,
    path: &str,
    key: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    let part = reqwest::multipart::Part::bytes(b"note".to_vec())
        .file_name("note.txt")
        .mime_str("text/plain")
        .unwrap();
    app.http
        .post(format!("{}{path}", app.address))
        .header("x-hint-session-key", key)
        .multipart(form.part("files", part))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_partner_s_rows_and_pages_stay_within_their_practice() {
    let app = spawn_app().await;
    let a = app.new_practice("Practice A").await;
    let b = app.new_practice("Practice B").await;
    for p in [&a, &b] {
        app.setup_hcw(p, None).await;
        app.setup_haidy(p).await;
    }
    let a_integration = app.setup_mediquo(&a).await;
    let saved = app
        .save_settings(&b, "mediquo", &[("signature", "practice-b-own-signature")])
        .await;
    assert_eq!(saved.status(), 200);
    let a_key = app.session(&a.clinician, None).await;
    let b_key = app.session(&b.clinician, None).await;
    let a_patient = &a.patients[0];

    // A runs one visit with each partner.
    let hcw = app
        .post_form(
            "/hint/partners/hcw/launch",
            &a_key,
            &[("patient_id", a_patient), ("language", "en")],
        )
        .await;
    assert_eq!(hcw.status(), 303);
    let haidy = post_files(
        &app,
        "/hint/partners/haidy/launch",
        &a_key,
        &[
            ("patient_id", a_patient),
            ("haidy_email", "a-only@haidy.example"),
        ],
    )
    .await;
    assert_eq!(haidy.status(), 303);
    assert_eq!(
        app.mediquo
            .send_consultation_finished(&a_integration, a_patient)
            .await,
        Some(200)
    );
    let a_visits = app.visits_of(&a.id).await;
    assert_eq!(a_visits.len(), 3);
    let by_partner = |p: &str| a_visits.iter().find(|v| v.partner == p).unwrap().id.clone();
    let (a_hcw, a_haidy, a_mediquo) = (
        by_partner("hcw"),
        by_partner("haidy"),
        by_partner("mediquo"),
    );

    // B reaches none of it: launch forms for A's patient, A's visits' pages and actions.
    for path in [
        format!("/hint/partners/hcw/launch?patient_id={a_patient}&session_key={b_key}"),
        format!("/hint/partners/haidy/launch?patient_id={a_patient}&session_key={b_key}"),
    ] {
        assert_eq!(app.get(&path).await.status(), 404, "{path}");
    }
    for visit in [&a_hcw, &a_haidy, &a_mediquo] {
        let page = app
            .surface("clinical_interaction", &format!("{b_key}&visit_id={visit}"))
            .await;
        assert_eq!(page.status(), 404);
        let cancel = app
            .post_form(&format!("/hint/visits/{visit}/cancel"), &b_key, &[])
            .await;
        assert_eq!(cancel.status(), 404);
    }
    for action in ["sign-in", "finish"] {
        let r = app
            .post_form(
                &format!("/hint/partners/hcw/visits/{a_hcw}/{action}"),
                &b_key,
                &[],
            )
            .await;
        assert_eq!(r.status(), 404, "hcw {action}");
    }
    let launch_for_a = app
        .post_form(
            "/hint/partners/hcw/launch",
            &b_key,
            &[("patient_id", a_patient), ("language", "en")],
        )
        .await;
    assert_eq!(launch_for_a.status(), 404);
    let upload_to_a = post_files(
        &app,
        &format!("/hint/partners/haidy/visits/{a_haidy}/files"),
        &b_key,
        &[],
    )
    .await;
    assert_eq!(upload_to_a.status(), 404);
    let haidy_for_a = post_files(
        &app,
        "/hint/partners/haidy/launch",
        &b_key,
        &[
            ("patient_id", a_patient),
            ("haidy_email", "b@haidy.example"),
        ],
    )
    .await;
    assert_eq!(haidy_for_a.status(), 404);
    assert!(app.visits_of(&b.id).await.is_empty());

    // Per-practice rows: A's Haidy context and Haidy email are not B's.
    let context_of = |practice: &str| {
        sqlx::query_scalar::<_, String>(
            "SELECT context_id FROM haidy_patient_contexts WHERE practice_id = $1 AND patient_id = $2",
        )
        .bind(practice.to_string())
        .bind(a_patient.to_string())
        .fetch_optional(app.state.db.reader())
    };
    assert!(context_of(&a.id).await.unwrap().is_some());
    assert!(context_of(&b.id).await.unwrap().is_none());
    let (_, b_form) = Page::of(
        app.get(&format!(
            "/hint/partners/haidy/launch?patient_id={}&session_key={b_key}",
            b.patients[0]
        ))
        .await,
    )
    .await;
    assert_ne!(
        b_form.attr("input[name=haidy_email]", "value").as_deref(),
        Some("a-only@haidy.example")
    );
    assert!(!b_form.source().contains("a-only@haidy.example"));

    // Settings: B's page shows B's connections only.
    let b_admin = app.session(&b.admin, None).await;
    let settings = app.page("settings", &b_admin).await;
    assert_eq!(
        settings
            .attr("#hcw-settings input[name=service_email]", "value")
            .unwrap(),
        chartbridge_sandbox::hcw::service_account(&b.id)
    );
    let source = settings.source();
    assert!(!source.contains(&a.id.to_lowercase()) && !source.contains(&a.id));

    // MediQuo: each practice's door opens with its own value only; A's MediQuo naming B's
    // patient is kept for A, never a visit in B.
    let body = serde_json::json!({"type": "patient_report_sent", "occurred_on": 1,
        "payload": {"type": "soap", "content": {"plan": "x"}, "patient": {"code": b.patients[0]}}})
    .to_string();
    for (practice, signature) in [
        (&a.id, "practice-b-own-signature"),
        (&b.id, crate::helpers::MEDIQUO_SIGNATURE),
    ] {
        let r = app
            .http
            .post(format!("{}/webhooks/mediquo/{practice}", app.address))
            .header("x-webhook-signature", signature)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    assert_eq!(
        app.mediquo
            .send_report(&a_integration, &b.patients[0])
            .await,
        Some(202)
    );
    assert!(app.visits_of(&b.id).await.is_empty());
    assert!(app.hint.interactions_for(&b.patients[0]).is_empty());
}

#[tokio::test]
async fn every_table_holding_practice_data_has_a_practice_id() {
    let app = spawn_app().await;
    let columns: Vec<(String, String)> = match &app.database.settings {
        chartbridge::config::DatabaseSettings::Sqlite(_) => sqlx::query_as(
            "SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
        )
        .fetch_all(app.state.db.reader())
        .await
        .unwrap(),
        _ => sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name NOT LIKE '_sqlx%'",
        )
        .fetch_all(app.state.db.reader())
        .await
        .unwrap(),
    };
    let mut tables: Vec<&str> = columns.iter().map(|(t, _)| t.as_str()).collect();
    tables.sort();
    tables.dedup();
    assert!(tables.contains(&"haidy_patient_contexts"), "{tables:?}");
    // `practices` is keyed by the practice itself; `maintenance_passes` holds no practice's data
    // (the names of one-off passes over every practice's rows, and when they were done).
    for table in tables
        .into_iter()
        .filter(|t| !["practices", "maintenance_passes"].contains(t))
    {
        assert!(
            columns
                .iter()
                .any(|(t, c)| t == table && c == "practice_id"),
            "{table} has no practice_id"
        );
    }
}

/// Tables of the schema with a `practice_id` column.
async fn tables_with_practice_id(app: &TestApp) -> Vec<String> {
    let sql = match app.state.db.backend() {
        chartbridge::db::Backend::Sqlite => {
            "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND c.name = 'practice_id' ORDER BY m.name"
        }
        chartbridge::db::Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.columns \
             WHERE column_name = 'practice_id' AND table_schema = current_schema() ORDER BY 1"
        }
    };
    sqlx::query_scalar(sql)
        .fetch_all(app.state.db.reader())
        .await
        .unwrap()
}

async fn rows_of(app: &TestApp, table: &str, practice_id: &str) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {table} WHERE practice_id = $1"
    ))
    .bind(practice_id)
    .fetch_one(app.state.db.reader())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_purge_knows_every_table_of_practice_data() {
    let app = spawn_app().await;
    let mut listed: Vec<&str> = app.state.partners.practice_tables();
    listed.extend(chartbridge::tenancy::KEPT_ON_PURGE);
    listed.sort();
    assert_eq!(
        tables_with_practice_id(&app).await,
        listed,
        "a new table of practice data goes in tenancy::PRACTICE_TABLES, or its partner's \
         PartnerTool::practice_tables (or KEPT_ON_PURGE, saying why)"
    );
}

#[tokio::test]
async fn an_operator_purges_a_deactivated_practice_and_nothing_else() {
    let app = spawn_app().await;
    let leaving = app.new_practice("Leaving Clinic").await;
    let staying = app.new_practice("Staying Clinic").await;
    for practice in [&leaving, &staying] {
        app.setup_tiep(practice).await;
        let key = app
            .session(&practice.clinician, Some(&practice.patients[0]))
            .await;
        assert_eq!(app.surface("clinical_chart", &key).await.status(), 200);
        assert_eq!(
            app.start_visit(&key, &practice.patients[0]).await.status(),
            303
        );
    }
    let staying_before: Vec<i64> = practice_rows(&app, &staying.id).await;

    // Still installed: refused, nothing deleted.
    let (status, said) = app
        .cli(&["practice", "purge", "--practice", &leaving.id])
        .await;
    assert_eq!(status, 1, "{said}");
    assert!(said.contains("is active in Hint"), "{said}");
    assert_eq!(rows_of(&app, "visits", &leaving.id).await, 1);

    assert_eq!(app.hint.deactivate(&leaving.id).await.unwrap(), 200);
    let (status, said) = app
        .cli(&["practice", "purge", "--practice", &leaving.id])
        .await;
    assert_eq!(status, 0, "{said}");
    assert!(said.contains("visits: 1 row(s) deleted"), "{said}");
    for table in app.state.partners.practice_tables() {
        assert_eq!(rows_of(&app, table, &leaving.id).await, 0, "{table}");
    }
    let practices: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM practices WHERE id = $1")
        .bind(&leaving.id)
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
    assert_eq!(practices, 0);
    assert!(
        rows_of(&app, "audit_events", &leaving.id).await > 0,
        "the audit trail stays"
    );
    assert_eq!(practice_rows(&app, &staying.id).await, staying_before);
}

/// Rows of a practice in each table of practice data.
async fn practice_rows(app: &TestApp, practice_id: &str) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in app.state.partners.practice_tables() {
        counts.push(rows_of(app, table, practice_id).await);
    }
    counts
}
