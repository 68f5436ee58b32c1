//! What Hint's servers send besides the handshake: Instant On and signed webhooks.

use serde_json::json;
use sqlx::Row;

use crate::helpers::{Page, sign, spawn_app};

async fn post_event(
    app: &crate::helpers::TestApp,
    body: &serde_json::Value,
    signed: bool,
) -> reqwest::Response {
    let body = body.to_string();
    let mut request = app
        .http
        .post(format!("{}/webhooks/hint", app.address))
        .header("content-type", "application/json")
        .body(body.clone());
    if signed {
        request = request.header("x-hint-signature", sign(body.as_bytes()));
    }
    request.send().await.unwrap()
}

async fn count(app: &crate::helpers::TestApp, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(app.state.db.reader())
        .await
        .unwrap()
        .try_get(0)
        .unwrap()
}

#[tokio::test]
async fn hint_webhooks_are_verified_deduplicated_and_unknown_types_ignored() {
    let app = spawn_app().await;
    let practice = app.new_practice("Events").await;
    app.setup_tiep(&practice).await;
    let patient = &practice.patients[0];
    let key = app.session(&practice.clinician, None).await;
    assert_eq!(app.start_visit(&key, patient).await.status(), 303);

    let renamed = json!({"id": "evt-1", "type": "patient.updated", "practice_id": practice.id,
        "created_at": "2026-11-22T10:00:00Z", "object": {"id": patient, "first_name": "Ava", "last_name": "Thompson-Reyes"}});
    assert_eq!(post_event(&app, &renamed, false).await.status(), 401);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM inbound_events").await,
        0,
        "nothing stored for a forged event"
    );
    assert_eq!(
        app.only_visit(&practice.id).await.patient_name,
        "Ava Thompson"
    );

    assert_eq!(post_event(&app, &renamed, true).await.status(), 200);
    assert_eq!(
        app.only_visit(&practice.id).await.patient_name,
        "Ava Thompson-Reyes"
    );

    // The same event id again (Hint retries) has no second effect.
    let replay = json!({"id": "evt-1", "type": "patient.updated", "practice_id": practice.id,
        "object": {"id": patient, "first_name": "Someone", "last_name": "Else"}});
    let answer = post_event(&app, &replay, true).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.json::<serde_json::Value>().await.unwrap()["duplicate"],
        true
    );
    assert_eq!(
        app.only_visit(&practice.id).await.patient_name,
        "Ava Thompson-Reyes"
    );

    let unknown = json!({"id": "evt-2", "type": "membership.paused", "practice_id": practice.id, "object": {}});
    assert_eq!(post_event(&app, &unknown, true).await.status(), 200);
    let malformed = json!({"type": "patient.updated"});
    assert_eq!(post_event(&app, &malformed, true).await.status(), 400);
}

async fn install_status(app: &crate::helpers::TestApp) -> String {
    sqlx::query_scalar("SELECT status FROM hint_installations")
        .fetch_one(app.state.db.reader())
        .await
        .unwrap()
}

async fn install_status_of(app: &crate::helpers::TestApp, practice_id: &str) -> String {
    sqlx::query_scalar("SELECT status FROM hint_installations WHERE practice_id = $1")
        .bind(practice_id)
        .fetch_one(app.state.db.reader())
        .await
        .unwrap()
}

#[tokio::test]
async fn deactivation_stops_background_work_and_keeps_the_data_until_reactivated() {
    let app = spawn_app().await;
    let practice = app.new_practice("Leaving").await;
    app.setup_tiep(&practice).await;
    // Another practice's work, queued behind it, is not held up by the pause.
    let staying = app.new_practice("Staying").await;
    app.setup_tiep(&staying).await;
    let patient = &practice.patients[0];
    let key = app.session(&practice.clinician, None).await;
    assert_eq!(app.start_visit(&key, patient).await.status(), 303);
    let staying_key = app.session(&staying.clinician, None).await;
    assert_eq!(
        app.start_visit(&staying_key, &staying.patients[0])
            .await
            .status(),
        303
    );

    assert_eq!(app.hint.deactivate(&practice.id).await.unwrap(), 200);
    assert_eq!(install_status_of(&app, &practice.id).await, "deactivated");
    assert!(
        app.run_jobs().await >= 1,
        "the other practice's write-back runs; none of the deactivated practice's"
    );
    assert!(app.hint.interactions_for(patient).is_empty());
    assert_eq!(app.hint.interactions_for(&staying.patients[0]).len(), 1);
    // Kept: the install, the visit, the practice's settings.
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM hint_installations").await,
        2
    );
    assert_eq!(app.visits_of(&practice.id).await.len(), 1);
    let admin = app.session(&practice.admin, None).await;
    let settings = app.page("settings", &admin).await;
    assert!(
        settings
            .text_of("#install-status")
            .starts_with("Deactivated in Hint")
    );

    // Reactivated in Hint: the work waiting runs.
    assert_eq!(app.hint.activate(&practice.id).await.unwrap(), 200);
    assert_eq!(install_status_of(&app, &practice.id).await, "active");
    assert!(app.run_jobs().await >= 1);
    assert_eq!(app.hint.interactions_for(patient).len(), 1);
}

#[tokio::test]
async fn instant_on_connects_with_the_newer_contract_and_falls_back_on_older_stacks() {
    let app = spawn_app().await;
    let newer = app.new_practice("Newer stack").await;
    {
        let world = app.hint.world();
        assert_eq!((world.connect_calls, world.code_exchanges), (1, 1));
    }
    assert!(app.practice_token(&newer.id).await.is_some());

    app.hint.world().legacy_install_only = true;
    let older = app.new_practice("Older stack").await;
    {
        let world = app.hint.world();
        assert_eq!(world.connect_calls, 1, "asked once more, answered 404");
        assert_eq!(world.code_exchanges, 2, "then exchanged at oauth/tokens");
    }
    // The token from either contract works for background work.
    app.setup_tiep(&older).await;
    let key = app.session(&older.clinician, None).await;
    assert_eq!(
        app.start_visit(&key, &older.patients[0]).await.status(),
        303
    );
    app.run_jobs().await;
    assert_eq!(app.hint.interactions_for(&older.patients[0]).len(), 1);
}

#[tokio::test]
async fn an_install_left_pending_waits_for_activation() {
    let app = crate::helpers::spawn_app_with(|c| c.app.hint.activate_on_install = false).await;
    let practice = app.new_practice("Setting up").await;
    assert_eq!(install_status(&app).await, "pending");
    app.setup_tiep(&practice).await;
    let patient = &practice.patients[0];
    let key = app.session(&practice.clinician, None).await;
    assert_eq!(app.start_visit(&key, patient).await.status(), 303);
    assert_eq!(app.run_jobs().await, 0, "waits for activation");
    let admin = app.session(&practice.admin, None).await;
    assert!(
        app.page("settings", &admin)
            .await
            .text_of("#install-status")
            .starts_with("Installed, waiting for activation in Hint")
    );

    assert_eq!(app.hint.activate(&practice.id).await.unwrap(), 200);
    app.run_jobs().await;
    assert_eq!(app.hint.interactions_for(patient).len(), 1);
}

#[tokio::test]
async fn sandbox_hint_connects_installations_strictly() {
    let app = spawn_app().await;
    let practice_id = app.hint.add_practice("Strict install");
    let url = app
        .hint
        .base_url()
        .join("/api/partner/installations/connect")
        .unwrap();
    let http = reqwest::Client::new();
    let post = |bearer: &str, body: serde_json::Value| {
        http.post(url.clone())
            .bearer_auth(bearer)
            .json(&body)
            .send()
    };
    let key = crate::helpers::PARTNER_API_KEY;
    let code = app.hint.new_install_code(&practice_id);
    for (bearer, body, status) in [
        ("wrong-key", json!({"code": code, "activate": true}), 401),
        (key, json!({"code": code}), 400),
        (key, json!({"code": code, "activate": "yes"}), 400),
        (
            key,
            json!({"code": code, "activate": true, "grant_type": "x"}),
            400,
        ),
        (key, json!({"code": "not-a-code", "activate": true}), 400),
    ] {
        assert_eq!(
            post(bearer, body.clone()).await.unwrap().status(),
            status,
            "{body}"
        );
    }
    let answer = post(key, json!({"code": code, "activate": true}))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(answer["practice"]["id"], practice_id.as_str());
    assert!(answer["api_keys"][0]["token"].as_str().is_some());
    let reused = post(key, json!({"code": code, "activate": true}))
        .await
        .unwrap();
    assert_eq!(reused.status(), 400, "a code is used once");
}

#[tokio::test]
async fn instant_on_refuses_a_bad_or_used_code_and_keeps_the_token_sealed() {
    let app = spawn_app().await;
    let practice_id = app.hint.add_practice("Installing");
    let bogus = app
        .http
        .post(format!("{}/hint/connect/not-a-code", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), 400);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM hint_installations").await,
        0
    );

    let code = app.hint.new_install_code(&practice_id);
    let first = app
        .http
        .post(format!("{}/hint/connect/{code}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let sealed: String = sqlx::query_scalar("SELECT token_sealed FROM hint_installations")
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
    let token = app.practice_token(&practice_id).await.unwrap();
    assert!(!sealed.contains(&token), "stored sealed, not in clear");

    let reused = app
        .http
        .post(format!("{}/hint/connect/{code}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), 400);
    // The browser flow: Hint redirects the admin with ?code=.
    let code = app.hint.new_install_code(&practice_id);
    let redirect = app.get(&format!("/hint/connect?code={code}")).await;
    let (status, redirect) = Page::of(redirect).await;
    assert_eq!(status, 200);
    assert!(
        redirect
            .text()
            .contains("Chartbridge is connected to your practice")
    );
    assert_eq!(app.get("/hint/connect").await.status(), 400);
}

#[tokio::test]
async fn sessions_end_after_the_idle_timeout() {
    let app = crate::helpers::spawn_app_with(|s| {
        s.sessions.idle_timeout = std::time::Duration::from_millis(300)
    })
    .await;
    let practice = app.new_practice("Idle").await;
    let key = app.session(&practice.clinician, None).await;
    assert_eq!(app.surface("core_page", &key).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    assert_eq!(app.surface("core_page", &key).await.status(), 401);
}

#[tokio::test]
async fn sandbox_hint_refuses_what_hint_refuses() {
    let app = spawn_app().await;
    let practice = app.new_practice("Strict").await;
    let patient = &practice.patients[0];
    let token = app.practice_token(&practice.id).await.unwrap();
    let base = app.hint.base_url().clone();
    let http = reqwest::Client::new();
    let get = |path: &str, bearer: &str| {
        http.get(base.join(path).unwrap())
            .bearer_auth(bearer)
            .send()
    };

    assert_eq!(
        get("/api/provider/patients", crate::helpers::PARTNER_API_KEY)
            .await
            .unwrap()
            .status(),
        428
    );
    assert_eq!(
        http.get(base.join("/api/provider/patients").unwrap())
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        get("/api/provider/patients?limit=101", &token)
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        get("/api/provider/patients?colour=blue", &token)
            .await
            .unwrap()
            .status(),
        400
    );
    let page = get("/api/provider/patients?limit=2&offset=1", &token)
        .await
        .unwrap();
    assert_eq!(page.headers()["x-total-count"], "3");
    assert_eq!(page.headers()["x-count"], "2");
    let list: serde_json::Value = page.json().await.unwrap();
    assert!(list.is_array(), "lists are bare arrays");

    let path = format!("/api/provider/patients/{patient}/interactions/partner");
    let post = |body: serde_json::Value| {
        http.post(base.join(&path).unwrap())
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    assert_eq!(
        post(json!({"title": "no status"})).await.unwrap().status(),
        400
    );
    assert_eq!(post(json!({"status": "done"})).await.unwrap().status(), 422);
    assert_eq!(
        post(json!({"status": "draft", "colour": "blue"}))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post(json!({"status": "draft", "integration_web_link": "not a url"}))
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(
        post(json!({"status": "failed"})).await.unwrap().status(),
        422,
        "failed needs a reason"
    );
    let created: serde_json::Value = post(json!({"status": "signed", "title": "t"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let patch = http
        .patch(
            base.join(&format!("{path}/{}", created["id"].as_str().unwrap()))
                .unwrap(),
        )
        .bearer_auth(&token)
        .json(&json!({"status": "draft"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), 422, "signed is final");

    app.hint.world().rate_limit_per_second = 2;
    let mut statuses = vec![];
    for _ in 0..4 {
        statuses.push(
            get("/api/provider/patients", &token)
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn patient_search_reads_the_practice_once_and_follows_hint_s_changes() {
    let app = spawn_app().await;
    let practice = app.new_practice("Searching").await;
    let key = app.session(&practice.clinician, None).await;
    let list_calls = || {
        app.hint
            .world()
            .requests
            .iter()
            .filter(|r| r.as_str() == "GET /api/provider/patients")
            .count()
    };
    let found = |q: &'static str| {
        let (app, key) = (&app, &key);
        async move {
            let path = format!("/hint/patients/search?q={q}");
            Page::of(app.htmx_get(&path, key).await)
                .await
                .1
                .texts(".patients .name")
        }
    };
    // The install read the practice's patients into the index (one page here).
    let after_install = list_calls();
    assert_eq!(after_install, 1);
    assert_eq!(found("Tho").await, ["Ava Thompson"]);
    for q in ["Thom", "Thomp", "Carter", "riley"] {
        assert!(!found(q).await.is_empty(), "{q} finds someone");
    }
    assert_eq!(list_calls(), after_install, "typing never asks Hint");

    // A patient created in Hint: its webhook makes search see them right away.
    let created = app
        .hint
        .add_patient(&practice.id, "Zelda", "Quist", "1970-01-01", "female");
    let event = json!({"id": "evt-new", "type": "patient.created", "practice_id": practice.id,
        "object": app.hint.patient_json(&created).unwrap()});
    assert_eq!(post_event(&app, &event, true).await.status(), 200);
    assert_eq!(found("Quist").await, ["Zelda Quist"]);
    // Renamed, then removed.
    assert!(app.hint.rename_patient(&created, "Zelda", "Quist-Mora"));
    let event = json!({"id": "evt-renamed", "type": "patient.updated", "practice_id": practice.id,
        "object": app.hint.patient_json(&created).unwrap()});
    assert_eq!(post_event(&app, &event, true).await.status(), 200);
    assert_eq!(found("mora").await, ["Zelda Quist-Mora"]);
    assert!(app.hint.remove_patient(&created));
    let event = json!({"id": "evt-gone", "type": "patient.destroyed", "practice_id": practice.id,
        "object": {"id": created}});
    assert_eq!(post_event(&app, &event, true).await.status(), 200);
    assert!(found("Quist").await.is_empty());
    assert_eq!(list_calls(), after_install);

    // A change no webhook told (missed): the next sync asks Hint only for what changed.
    assert!(
        app.hint
            .rename_patient(&practice.patients[1], "Liam", "Carter-Singh")
    );
    sqlx::query("UPDATE jobs SET run_at = 0 WHERE kind = 'sync_patients'")
        .execute(app.state.db.writer())
        .await
        .unwrap();
    assert_eq!(app.run_jobs().await, 1);
    assert_eq!(found("singh").await, ["Liam Carter-Singh"]);
    assert_eq!(list_calls(), after_install + 1);
    assert_eq!(
        app.hint.world().patients_asked_since.len(),
        1,
        "the sync asked only for changes"
    );

    // The names are sealed at rest.
    let sealed: Vec<String> = sqlx::query_scalar("SELECT sealed FROM patient_index")
        .fetch_all(app.state.db.reader())
        .await
        .unwrap();
    assert_eq!(sealed.len(), 3);
    assert!(
        sealed
            .iter()
            .all(|s| !s.contains("Thompson") && !s.contains("Carter"))
    );
}

#[tokio::test]
async fn search_covers_a_practice_past_five_thousand_patients() {
    let app = spawn_app().await;
    let practice_id = app.hint.add_practice("Large Practice");
    app.hint.add_many_patients(&practice_id, 5_200);
    assert_eq!(app.hint.install(&practice_id).await.unwrap(), 200);
    app.run_jobs().await;
    let indexed: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM patient_index WHERE practice_id = $1")
            .bind(&practice_id)
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
    assert_eq!(indexed, 5_200);

    let clinician = app.hint.user_with_role(&practice_id, "clinician").unwrap();
    let key = app.session(&clinician, None).await;
    let search = |q: &'static str| {
        let (app, key) = (&app, &key);
        async move {
            let path = format!("/hint/patients/search?q={q}");
            Page::of(app.htmx_get(&path, key).await).await.1
        }
    };
    // The very last of them (the old search read the first 5,000 only).
    assert_eq!(
        search("andersson-5199").await.texts(".patients .name"),
        ["Tomás Andersson-5199"]
    );
    assert_eq!(
        search("tomas%20andersson")
            .await
            .texts(".patients .name")
            .len(),
        11
    );
    let many = search("tomas").await;
    assert_eq!(many.texts(".patients .name").len(), 20);
    assert!(
        many.text().contains("Showing 20 of 217 patients"),
        "{}",
        many.text()
    );
}
