//! The framed pages: sessions, headers, roles, escaping.

use crate::helpers::{Page, spawn_app};

#[tokio::test]
async fn no_session_gets_the_401_page() {
    let app = spawn_app().await;
    for path in [
        "/hint/core_page",
        "/hint/settings",
        "/hint/clinical_chart",
        "/hint/core_page?session_key=made-up",
    ] {
        let (status, page) = Page::of(app.get(path).await).await;
        assert_eq!(status, 401, "{path}");
        assert!(
            page.text_of("main")
                .contains("Reopen Chartbridge from Hint")
        );
    }
}

#[tokio::test]
async fn pages_carry_the_framing_and_privacy_headers() {
    let app = spawn_app().await;
    let practice = app.new_practice("Header Practice").await;
    let key = app.session(&practice.clinician, None).await;
    let response = app.surface("core_page", &key).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors https://app.hint.com https://*.hint.com"),
        "{csp}"
    );
    assert!(headers.get("x-frame-options").is_none());
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers.get("set-cookie").is_none(), "no cookies at all");
    // The 401 page carries them too.
    let denied = app.get("/hint/core_page").await;
    assert!(denied.headers().contains_key("content-security-policy"));
}

#[tokio::test]
async fn the_session_key_works_from_the_htmx_header_and_links_carry_it() {
    let app = spawn_app().await;
    let practice = app.new_practice("Htmx Practice").await;
    let key = app.session(&practice.clinician, None).await;
    // With no partner set up, a patient offers nothing to launch.
    let (_, bare) = Page::of(app.htmx_get("/hint/patients/search?q=Ava", &key).await).await;
    assert_eq!(bare.texts(".patients .name"), ["Ava Thompson"]);
    assert!(!bare.has(".launch"));
    app.setup_tiep(&practice).await;
    app.setup_hcw(&practice, None).await;
    let page = app.page("core_page", &key).await;
    let headers: serde_json::Value =
        serde_json::from_str(&page.attr("body", "hx-headers").unwrap()).unwrap();
    assert_eq!(
        headers["x-hint-session-key"], key,
        "htmx requests carry the key"
    );
    let fragment = app.htmx_get("/hint/patients/search?q=Ava", &key).await;
    assert_eq!(fragment.status(), 200);
    let source = fragment.text().await.unwrap();
    assert!(!source.contains("<html"), "a fragment, not a page");
    let found = Page::parse(&source);
    assert_eq!(found.texts(".patients .name"), ["Ava Thompson"]);
    assert_eq!(
        found.attrs("form.launch", "action"),
        ["/hint/visits"],
        "a form's URL never holds the key"
    );
    assert_eq!(
        found.attrs("form.launch input[name=session_key]", "value"),
        std::slice::from_ref(&key),
        "launch forms carry the key in a hidden field"
    );
    assert_eq!(
        found.attrs("a.launch", "href"),
        [format!(
            "/hint/partners/hcw/launch?patient_id={}&session_key={key}",
            practice.patients[0]
        )],
        "launch links carry the key"
    );
}

#[tokio::test]
async fn a_clinician_cannot_open_settings_and_an_admin_can() {
    let app = spawn_app().await;
    let practice = app.new_practice("Roles Practice").await;
    let clinician = app.session(&practice.clinician, None).await;
    assert_eq!(app.surface("settings", &clinician).await.status(), 403);
    let saved = app
        .post_form(
            "/hint/settings/tiep",
            &clinician,
            &[
                ("api_key", "k"),
                ("hook_secret", "0123456789abcdefg"),
                ("form", "{}"),
            ],
        )
        .await;
    assert_eq!(saved.status(), 403);
    let admin = app.session(&practice.admin, None).await;
    let page = app.page("settings", &admin).await;
    assert_eq!(
        page.text_of("#tiep-webhook-url"),
        format!("{}/webhooks/tiep/{}", app.address, practice.id),
        "shows the webhook URL to paste into Tiep, on the address the app is bound to"
    );
}

#[tokio::test]
async fn a_server_on_every_interface_needs_its_public_url() {
    let (_, secret_key) = chartbridge::config::SecretKey::generate();
    let settings = chartbridge::Settings::from_args(chartbridge::config::ConfigArgs {
        hint_api_url: "http://127.0.0.1:9/".into(),
        hint_api_key: Some("k".into()),
        hint_partner_id: None,
        hint_product_id: Some("ppro-x".into()),
        hint_webhook_secret: Some("0123456789abcdef0123".into()),
        database_url: Some("sqlite::memory:".into()),
        port: 0,
        bind: "0.0.0.0".into(),
        public_url: None,
        secret_key: Some(secret_key),
        frame_ancestors: "https://app.hint.com".into(),
        workers: 1,
        outbound_allow: String::new(),
        trusted_proxies: String::new(),
        rate_limits: String::new(),
        purge_after_days: 30,
        activate_on_install: true,
        metrics_token: None,
        drain_delay: 0,
        audit_checkpoints: None,
        keys: Default::default(),
    })
    .expect("HINT_PARTNER_ID and CHARTBRIDGE_PUBLIC_URL are optional");
    // Read as `serve` reads its flags (a partner added later keeps its default address: the
    // build is refused before any partner is called).
    let flags = [
        "--tiep-api-url",
        "--tiep-app-url",
        "--haidy-api-url",
        "--haidy-app-url",
    ]
    .into_iter()
    .flat_map(|flag| [flag.to_string(), "http://127.0.0.1:9/".to_string()]);
    let partners = chartbridge::partners::PartnerSettings::from_args(
        chartbridge::partners::PartnerArgs::from_flags(flags).unwrap(),
    )
    .unwrap();
    let refused = chartbridge::Application::build(settings, partners)
        .await
        .err()
        .expect("refused");
    assert!(
        refused.to_string().contains("CHARTBRIDGE_PUBLIC_URL"),
        "{refused}"
    );
}

#[tokio::test]
async fn read_only_staff_see_visits_but_cannot_start_one() {
    let app = spawn_app().await;
    let practice = app.new_practice("Staff Practice").await;
    app.setup_tiep(&practice).await;
    let staff = app
        .hint
        .add_user(&practice.id, "Sam", &["staff"], "standard");
    let key = app.session(&staff, Some(&practice.patients[0])).await;
    let chart = app.page("clinical_chart", &key).await;
    assert!(!chart.has(".launch"), "nothing to start");
    assert!(
        chart
            .text_of("section.patient")
            .contains("needs the Chartbridge clinician role")
    );
    assert_eq!(
        app.start_visit(&key, &practice.patients[0]).await.status(),
        403
    );
    assert!(app.visits_of(&practice.id).await.is_empty());
}

#[tokio::test]
async fn a_patient_name_with_script_is_escaped() {
    let app = spawn_app().await;
    let practice = app.new_practice("Escape Practice").await;
    let evil = app
        .add_patient(
            &practice.id,
            "<script>alert(1)</script>",
            "O'Brien",
            "1990-01-01",
            "female",
        )
        .await;
    let key = app.session(&practice.clinician, Some(&evil)).await;
    let chart = app.page("clinical_chart", &key).await;
    assert_eq!(
        chart.text_of("section.patient h1"),
        "<script>alert(1)</script> O'Brien",
        "shown as text"
    );
    assert_eq!(chart.count("script:not([src])"), 0, "never run");
    let (_, search) = Page::of(app.htmx_get("/hint/patients/search?q=script", &key).await).await;
    assert_eq!(
        search.texts(".patients .name"),
        ["<script>alert(1)</script> O'Brien"]
    );
    assert_eq!(search.count("script"), 0);
}

#[tokio::test]
async fn tiep_settings_are_validated_and_a_refusal_changes_nothing() {
    let app = spawn_app().await;
    let practice = app.new_practice("Settings Practice").await;
    let admin = app.session(&practice.admin, None).await;
    let form = chartbridge::partners::tiep::default_form().to_string();
    for (api_key, secret, form_json) in [
        ("key", "too-short", form.as_str()),
        ("key", "long-enough-secret-123", "{not json"),
        (
            "key",
            "long-enough-secret-123",
            r#"{"type":"object","properties":{"a":{"type":"date"}}}"#,
        ),
        ("", "long-enough-secret-123", form.as_str()),
    ] {
        let response = app
            .post_form(
                "/hint/settings/tiep",
                &admin,
                &[
                    ("api_key", api_key),
                    ("hook_secret", secret),
                    ("form", form_json),
                ],
            )
            .await;
        let (status, section) = Page::of(response).await;
        assert_eq!(status, 422);
        assert!(!section.text_of("#tiep-settings [role=alert]").is_empty());
    }
    assert!(!app.has_connection(&practice.id, "tiep").await);
    app.setup_tiep(&practice).await;
    assert!(app.has_connection(&practice.id, "tiep").await);
    // The stored secret is the one entered: deliveries signed with it are taken, others not.
    let report = serde_json::json!({"context": {"visit_id": "vis_unknown"}, "payload": {}});
    let with = |secret| app.post_tiep_webhook(&practice.id, &report, secret);
    assert_eq!(with(crate::helpers::TIEP_HOOK_SECRET).await.status(), 202);
    assert_eq!(with("another-secret-of-16+").await.status(), 401);
    // Sealed at rest: the secret is not in the row.
    let raw: String = sqlx::query_scalar("SELECT secrets_sealed FROM partner_connections")
        .fetch_one(app.state.db.reader())
        .await
        .unwrap();
    assert!(!raw.contains(crate::helpers::TIEP_HOOK_SECRET));
}

#[tokio::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.get("/no/such/page").await.status(), 404);
}

#[tokio::test]
async fn nothing_a_client_sends_gets_a_500() {
    let app = spawn_app().await;
    let practice = app.new_practice("Garbage Practice").await;
    app.setup_tiep(&practice).await;
    let clinician = app.session(&practice.clinician, None).await;
    let admin = app.session(&practice.admin, None).await;
    let long = "x".repeat(5000);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"".to_vec()),
        ("application/json", b"{".to_vec()),
        ("application/json", b"[]".to_vec()),
        ("application/json", b"null".to_vec()),
        ("application/json", vec![0xff, 0xfe, 0x00]),
        (
            "application/json",
            br#"{"context":{"visit_id":123},"payload":"x"}"#.to_vec(),
        ),
        (
            "application/x-www-form-urlencoded",
            b"patient_id=&partner=".to_vec(),
        ),
        ("application/x-www-form-urlencoded", b"%%%".to_vec()),
        ("text/plain", long.as_bytes().to_vec()),
    ];
    let posts = [
        "/hint/handshake".to_string(),
        "/hint/connect/abc".to_string(),
        "/webhooks/hint".to_string(),
        format!("/webhooks/tiep/{}", practice.id),
        "/webhooks/tiep/pra-unknown".to_string(),
        format!("/hint/visits?session_key={clinician}"),
        format!("/hint/settings/tiep?session_key={admin}"),
        format!("/hint/jobs/{long}/retry?session_key={admin}"),
    ];
    for path in &posts {
        for (content_type, body) in &bodies {
            let response = app
                .http
                .post(format!("{}{path}", app.address))
                .header("content-type", *content_type)
                .header("x-hint-signature", format!("sha256={}", "a".repeat(64)))
                .header("x-signature-256", "sha256=zz")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            // A settings post without any of the section's fields keeps what is stored.
            let kept = path.starts_with("/hint/settings/") && response.status() == 200;
            assert!(
                response.status().is_client_error() || kept,
                "POST {path} ({content_type}) answered {}",
                response.status()
            );
        }
    }
    let gets = [
        format!("/hint/clinical_interaction?session_key={clinician}&visit_id={long}"),
        format!("/hint/clinical_chart?session_key={clinician}"),
        format!("/hint/patients/search?session_key={clinician}&q={long}"),
        format!("/hint/visits?session_key={clinician}&patient_id=%00"),
        format!("/hint/core_page?session_key={long}"),
        "/static/../Cargo.toml".to_string(),
        "/hint/connect?code=%20%20".to_string(),
    ];
    for path in &gets {
        let status = app.get(path).await.status();
        assert!(!status.is_server_error(), "GET {path} answered {status}");
    }
}

#[tokio::test]
async fn ids_with_control_characters_are_refused_even_when_signed() {
    let app = spawn_app().await;
    let practice = app.new_practice("Nul Practice").await;
    app.setup_tiep(&practice).await;
    let now = crate::helpers::now_rfc3339();
    let handshake =
        format!(r#"{{"timestamp":"{now}","user":{{"id":"u-\u0000"}},"practice":{{"id":"p-1"}}}}"#);
    let handshake = handshake.as_bytes();
    let response = app
        .handshake_raw(handshake, Some(&crate::helpers::sign(handshake)))
        .await;
    assert_eq!(response.status(), 400);
    let named = format!(
        r#"{{"timestamp":"{now}","user":{{"id":"u-1","name":"Dr \u0000 Who","partner_roles":["clinician"]}},"practice":{{"id":"p-1","name":"P\u0000"}}}}"#
    );
    let named = named.as_bytes();
    assert_eq!(
        app.handshake_raw(named, Some(&crate::helpers::sign(named)))
            .await
            .status(),
        200,
        "free text is cleaned, not refused"
    );

    let event = serde_json::json!({"id": "evt-\u{0}", "type": "patient.updated", "practice_id": practice.id}).to_string();
    let response = app
        .http
        .post(format!("{}/webhooks/hint", app.address))
        .header("x-hint-signature", crate::helpers::sign(event.as_bytes()))
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    let report = serde_json::json!({"context": {"visit_id": "vis_\u{0}"}, "payload": {}});
    let response = app
        .post_tiep_webhook(&practice.id, &report, crate::helpers::TIEP_HOOK_SECRET)
        .await;
    assert_eq!(response.status(), 400);
    let key = app.session(&practice.clinician, None).await;
    let form = app
        .post_form(
            "/hint/visits",
            &key,
            &[("patient_id", "pat-\u{0}"), ("partner", "tiep")],
        )
        .await;
    assert!(form.status().is_client_error());
}

#[tokio::test]
async fn search_finds_names_in_any_order_and_without_accents_and_leads_to_the_chart() {
    let app = spawn_app().await;
    let practice = app.new_practice("Search Practice").await;
    let other = app.new_practice("Other Search Practice").await;
    app.add_patient(&practice.id, "Sofía", "Martínez", "1992-06-25", "female")
        .await;
    let key = app.session(&practice.clinician, None).await;
    let search = |q: &'static str| {
        let (app, key) = (&app, key.clone());
        async move {
            let (status, page) = Page::of(
                app.htmx_get(&format!("/hint/patients/search?q={q}"), &key)
                    .await,
            )
            .await;
            assert_eq!(status, 200);
            page
        }
    };
    assert_eq!(
        search("thompson%20ava").await.texts(".patients .name"),
        ["Ava Thompson"]
    );
    assert_eq!(
        search("1984-03-12").await.texts(".patients .name"),
        ["Ava Thompson"]
    );
    // A name with accents, found with and without them.
    for q in ["sofia", "sof%C3%ADa", "martinez%20sofia"] {
        assert_eq!(
            search(q).await.texts(".patients .name"),
            ["Sofía Martínez"],
            "{q}"
        );
    }
    let chart = search("thompson")
        .await
        .attr(".patients a.name", "href")
        .unwrap();
    let (status, page) = Page::of(app.get(&chart).await).await;
    assert_eq!(status, 200);
    assert_eq!(page.text_of("section.patient h1"), "Ava Thompson");
    // Another practice's patient is not a chart here.
    let stranger = app
        .get(&format!(
            "/hint/clinical_chart?patient_id={}&session_key={key}",
            other.patients[0]
        ))
        .await;
    assert_eq!(stranger.status(), 404);
}

#[tokio::test]
async fn an_empty_core_page_says_what_to_do_first() {
    let app = spawn_app().await;
    let practice = app.new_practice("Fresh Practice").await;
    let admin = app.session(&practice.admin, None).await;
    let clinician = app.session(&practice.clinician, None).await;
    let page = app.page("core_page", &admin).await;
    assert!(
        page.text_of(".welcome")
            .contains("connect a partner in Settings")
    );
    let page = app.page("core_page", &clinician).await;
    assert!(
        page.text_of(".welcome")
            .contains("Ask a practice admin to connect one")
    );
    app.setup_tiep(&practice).await;
    let page = app.page("core_page", &clinician).await;
    assert!(page.text_of(".welcome").contains("search a patient below"));
}

/// Writes `count` cancelled Tiep visits (`vis_<tag>000`…) for `practice` with SQL, sealed as the app seals them,
/// three at a time sharing their start time (a batch of recordings does).
async fn write_visits(
    app: &crate::helpers::TestApp,
    practice_id: &str,
    patients: &[String],
    tag: &str,
    count: usize,
) {
    use chartbridge::crypto::row_aad;
    let launch =
        serde_json::json!({"form": chartbridge::partners::tiep::default_form()}).to_string();
    for i in 0..count {
        let id = format!("vis_{tag}{i:03}");
        let seal = |column: &str, plain: &str| {
            app.state
                .secrets
                .seal_text(plain, &row_aad("visits", column, practice_id, &id))
        };
        let at = 1_760_000_000_000_i64 + (i / 3) as i64 * 1000;
        sqlx::query(
            "INSERT INTO visits (id, practice_id, patient_id, patient_name, user_id, user_name, partner, state, \
             launch, created_at, updated_at, completed_at) \
             VALUES ($1, $2, $3, $4, 'usr-1', 'Casey Clinician', 'tiep', 'cancelled', $5, $6, $6, $6)",
        )
        .bind(&id)
        .bind(practice_id)
        .bind(&patients[i % 2])
        .bind(seal("patient_name", &format!("Patient {i}")))
        .bind(seal("launch", &launch))
        .bind(at)
        .execute(app.state.db.writer())
        .await
        .unwrap();
    }
}

/// The visit ids a visit list fragment shows, in order, and its "Older visits" cursor.
fn listed(html: &str) -> (Vec<String>, Option<String>) {
    let ids = html
        .split("data-visit-id=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect();
    let older = html
        .split("after=")
        .nth(1)
        .map(|rest| rest.split('"').next().unwrap().to_string());
    (ids, older)
}

#[tokio::test]
async fn a_long_visit_list_pages_through_every_visit_once_newest_first() {
    let app = spawn_app().await;
    let practice = app.new_practice("Paging Clinic").await;
    let other = app.new_practice("Other Clinic").await;
    write_visits(&app, &practice.id, &practice.patients, "page", 60).await;
    write_visits(&app, &other.id, &other.patients, "other", 3).await;
    let key = app.session(&practice.clinician, None).await;

    // Newest first (ties in start time by id), 25 a page, every visit once, the other
    // practice's never.
    let mut expected: Vec<String> = (0..60).map(|i| format!("vis_page{i:03}")).collect();
    expected.reverse();
    let first = app.get(&format!("/hint/visits?session_key={key}")).await;
    assert_eq!(first.status(), 200);
    let first = first.text().await.unwrap();
    assert!(
        first.contains("hx-trigger=\"every 5s\""),
        "the newest page is refreshed"
    );
    let (mut seen, mut older) = listed(&first);
    let mut pages = 1;
    while let Some(after) = older {
        let page = app
            .get(&format!("/hint/visits?after={after}&session_key={key}"))
            .await;
        assert_eq!(page.status(), 200);
        let page = page.text().await.unwrap();
        assert!(!page.contains("every 5s"), "an older page is kept as it is");
        assert!(page.contains("Newest visits"));
        let (ids, next) = listed(&page);
        seen.extend(ids);
        older = next;
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, expected);
    let (core, _) = listed(app.page("core_page", &key).await.source());
    assert_eq!(core, expected[..25]);

    // One patient's 30 visits fit their page: no older page offered.
    let patient = &practice.patients[0];
    let list = app
        .get(&format!(
            "/hint/visits?patient_id={patient}&session_key={key}"
        ))
        .await
        .text()
        .await
        .unwrap();
    let (ids, older) = listed(&list);
    assert_eq!(ids.len(), 30);
    assert!(older.is_none());

    // A cursor that is not one is refused.
    let long = format!("1.{}", "v".repeat(200));
    for bad in ["x", "12.", "abc.vis_page001", "1.a%20b", &long] {
        let answer = app
            .get(&format!("/hint/visits?after={bad}&session_key={key}"))
            .await;
        assert_eq!(answer.status(), 400, "{bad}");
    }
}
