//! What an attacker's requests get: every refusal says the same, changes nothing, and gives
//! away nothing about which practice uses what.

use crate::helpers::{TIEP_HOOK_SECRET, client_from, spawn_app};

#[tokio::test]
async fn partner_webhooks_answer_the_same_401_for_every_refusal() {
    let app = spawn_app().await;
    let with_tiep = app.new_practice("Uses Tiep").await;
    let hook_secret = {
        app.setup_tiep(&with_tiep).await;
        TIEP_HOOK_SECRET
    };
    let without = app.new_practice("No Tiep").await;
    let body = serde_json::json!({"context": {"visit_id": "v-1"}, "payload": {"a": "b"}});

    let mut answers = Vec::new();
    for (practice, secret) in [
        (with_tiep.id.as_str(), "not-the-practice-secret"),
        (without.id.as_str(), hook_secret),
        ("pra-nobody", hook_secret),
    ] {
        let response = app.post_tiep_webhook(practice, &body, secret).await;
        let status = response.status();
        answers.push((status, response.text().await.unwrap()));
    }
    assert!(answers.iter().all(|(s, _)| *s == 401), "{answers:?}");
    assert!(
        answers.windows(2).all(|w| w[0].1 == w[1].1),
        "one body for every refusal: {answers:?}"
    );
    assert!(app.visits_of(&with_tiep.id).await.is_empty());
    assert!(app.unmatched_of(&with_tiep.id).await.is_empty());

    // MediQuo's door too: a practice without MediQuo and a wrong signature look alike.
    let mut statuses = Vec::new();
    for practice in [&with_tiep.id, &without.id] {
        let response = app
            .http
            .post(format!("{}/webhooks/mediquo/{practice}", app.address))
            .header("x-webhook-signature", "guess")
            .body(r#"{"type":"patient_report_sent"}"#)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [401, 401]);
}

#[tokio::test]
async fn an_instant_on_flood_does_not_hold_up_a_real_install() {
    let app = spawn_app().await;
    let practice_id = app.hint.add_practice("Installing Clinic");
    let exchanges_before = app.hint.world().code_exchanges;

    // 300 junk codes at once from one address, code-shaped so that only the budget stops them.
    // Past the per-client connection cap, connections are closed unanswered (status 0 here).
    let flooder = client_from("127.0.0.1");
    let flood = futures::future::join_all((0..300).map(|i| {
        let (flooder, address) = (flooder.clone(), app.address.clone());
        async move {
            match flooder
                .post(format!("{address}/hint/connect/junk-code-{i:06}"))
                .send()
                .await
            {
                Ok(response) => {
                    let retry_after = response.headers().get("retry-after").cloned();
                    (response.status().as_u16(), retry_after)
                }
                Err(_) => (0, None),
            }
        }
    }));
    // Meanwhile Hint installs a practice from its own address.
    let install = async {
        let code = app.hint.new_install_code(&practice_id);
        client_from("127.0.0.2")
            .post(format!("{}/hint/connect/{code}", app.address))
            .send()
            .await
            .unwrap()
    };
    let (flooded, installed) = tokio::join!(flood, install);

    assert_eq!(installed.status(), 200, "the real install went through");
    assert!(app.practice_token(&practice_id).await.is_some());
    let limited = flooded.iter().filter(|(s, _)| *s == 429 || *s == 0).count();
    assert!(
        flooded.iter().all(|(s, _)| [0, 400, 429].contains(s)),
        "junk is refused or limited"
    );
    assert!(
        flooded.iter().any(|(s, _)| *s == 429),
        "the budget answered"
    );
    assert!(limited >= 290, "{limited} of 300 were limited");
    assert!(
        flooded
            .iter()
            .filter(|(s, _)| *s == 429)
            .all(|(_, retry)| retry.as_ref().is_some_and(|r| r
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                >= 1)),
        "each 429 says when to come back"
    );
    // Hint was asked about the flooder's burst and the real code, nothing more.
    let exchanges = app.hint.world().code_exchanges - exchanges_before;
    assert!(exchanges <= 300 - limited + 1, "{exchanges} exchanges");

    // Codes that cannot be codes never reach Hint at all.
    let before = app.hint.world().code_exchanges;
    for junk in ["abc", "has%20space12", &"x".repeat(600)] {
        let response = client_from("127.0.0.3")
            .post(format!("{}/hint/connect/{junk}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{junk}");
    }
    assert_eq!(app.hint.world().code_exchanges, before);
}

#[tokio::test]
async fn the_handshake_and_the_webhooks_have_a_budget_per_client() {
    use chartbridge::server::rate_limit::Budget;
    let tight = Budget {
        per_minute: 60,
        burst: 3,
    };
    let app = crate::helpers::spawn_app_with(|c| {
        c.app.rate_limits.handshake = tight;
        c.app.rate_limits.webhooks = tight;
    })
    .await;
    // (All webhooks share one door: each path is knocked on from its own address here.)
    for (path, flooder) in [
        ("/hint/handshake", "127.0.0.4"),
        ("/webhooks/hint", "127.0.0.6"),
        ("/webhooks/tiep/pra-x", "127.0.0.7"),
    ] {
        let post = |source: &'static str| {
            let url = format!("{}{path}", app.address);
            async move {
                client_from(source)
                    .post(url)
                    .header("content-type", "application/json")
                    .body("{}")
                    .send()
                    .await
                    .unwrap()
            }
        };
        for _ in 0..3 {
            assert_eq!(post(flooder).await.status(), 401, "{path}: unsigned");
        }
        let limited = post(flooder).await;
        assert_eq!(limited.status(), 429, "{path}");
        assert!(limited.headers().contains_key("retry-after"));
        assert_eq!(
            post("127.0.0.5").await.status(),
            401,
            "{path}: another client"
        );
    }
}

#[tokio::test]
async fn a_post_from_another_site_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let practice = app.new_practice("Framed Only").await;
    app.setup_tiep(&practice).await;
    let key = app.session(&practice.clinician, None).await;
    let form = [
        ("session_key", key.as_str()),
        ("patient_id", practice.patients[0].as_str()),
        ("partner", "tiep"),
    ];
    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |headers: &'static [(&'static str, &'static str)]| {
        let mut request = bare
            .post(format!("{}/hint/visits", app.address))
            .form(&form);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    for headers in [
        &[("origin", "https://evil.example")][..],
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ][..],
        &[("sec-fetch-site", "same-site")][..],
        &[][..],
    ] {
        let refused = post(headers).await.unwrap();
        assert_eq!(refused.status(), 403, "{headers:?}");
    }
    assert!(
        app.visits_of(&practice.id).await.is_empty(),
        "nothing started"
    );

    // The key in a POST's URL is not a key at all (only links, GETs, carry it there).
    let in_url = app
        .http
        .post(format!("{}/hint/visits?session_key={key}", app.address))
        .form(&[
            ("patient_id", practice.patients[0].as_str()),
            ("partner", "tiep"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(in_url.status(), 401);
    assert!(app.visits_of(&practice.id).await.is_empty());

    // From our own page (the browser says same-origin), the same form starts the visit.
    let ours = post(&[("sec-fetch-site", "same-origin")]).await.unwrap();
    assert_eq!(ours.status(), 303);
    assert_eq!(app.visits_of(&practice.id).await.len(), 1);
}

#[tokio::test]
async fn forms_may_post_only_to_us_and_where_our_answer_sends_them() {
    let app = spawn_app().await;
    let practice = app.new_practice("Form Targets").await;
    app.setup_tiep(&practice).await;
    app.setup_hcw(&practice, None).await;
    let key = app.session(&practice.clinician, None).await;
    let csp = |response: &reqwest::Response| {
        response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string()
    };
    let form_action = |policy: &str| {
        policy
            .split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix("form-action "))
            .unwrap()
            .to_string()
    };
    let origin = |url: &url::Url| url.origin().ascii_serialization();
    // Every page: ourselves, and the apps one-click partners open from our form: Tiep's (a
    // Tiep launch redirects there), and any other partner's that declares one.
    let launch_origins: Vec<String> = app
        .state
        .partners
        .iter()
        .filter_map(|p| p.launch_origin())
        .collect();
    assert!(launch_origins.contains(&origin(app.tiep.base_url())));
    let every_page = format!("'self' {}", launch_origins.join(" "));
    let chart = app.surface("clinical_chart", &key).await;
    assert_eq!(form_action(&csp(&chart)), every_page);
    // An HCW@Home visit's page adds the practice's HCW@Home server (the doctor's sign-in).
    let launched = app
        .post_form(
            "/hint/partners/hcw/launch",
            &key,
            &[
                ("patient_id", practice.patients[0].as_str()),
                ("language", "en"),
            ],
        )
        .await;
    assert_eq!(launched.status(), 303);
    let visit = app.only_visit(&practice.id).await;
    let page = app
        .surface(
            "clinical_interaction",
            &format!("{key}&visit_id={}", visit.id),
        )
        .await;
    assert_eq!(
        form_action(&csp(&page)),
        format!("{every_page} {}", origin(app.hcw.base_url()))
    );
}

#[tokio::test]
async fn signed_traffic_from_one_address_is_never_limited_only_refusals_are() {
    use chartbridge::server::rate_limit::Budget;
    let tight = Budget {
        per_minute: 60,
        burst: 3,
    };
    let app = crate::helpers::spawn_app_with(|c| {
        c.app.rate_limits.handshake = tight;
        c.app.rate_limits.webhooks = tight;
    })
    .await;
    // Hint's servers post every practice's handshakes and events from one address: forty of
    // each, for two practices, far over a budget of three, are all taken.
    let hint = "127.0.0.8";
    let post = |path: &'static str, body: String| {
        let url = format!("{}{path}", app.address);
        async move {
            client_from(hint)
                .post(url)
                .header("content-type", "application/json")
                .header("x-hint-signature", crate::helpers::sign(body.as_bytes()))
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for i in 0..40 {
        let practice = ["p-one", "p-two"][i % 2];
        let handshake = format!(
            r#"{{"timestamp":"{}","user":{{"id":"u-{i}","partner_roles":["clinician"]}},"practice":{{"id":"{practice}","name":"P"}}}}"#,
            crate::helpers::now_rfc3339()
        );
        assert_eq!(
            post("/hint/handshake", handshake).await,
            200,
            "handshake {i}"
        );
        let event = serde_json::json!({"id": format!("evt-{i}"), "type": "practitioner.updated",
            "practice_id": practice, "created_at": "2026-12-07T00:00:00Z", "object": {}})
        .to_string();
        assert_eq!(post("/webhooks/hint", event).await, 200, "event {i}");
    }

    // Refusals from that address do spend it: the fourth forged handshake is 429, and then
    // the address waits at that door, signed or not; the webhooks' door is still open.
    for _ in 0..3 {
        assert_eq!(
            client_from(hint)
                .post(format!("{}/hint/handshake", app.address))
                .header("x-hint-signature", format!("sha256={}", "0".repeat(64)))
                .body("{}")
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
    }
    let forged = client_from(hint)
        .post(format!("{}/hint/handshake", app.address))
        .header("x-hint-signature", format!("sha256={}", "0".repeat(64)))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 429);
    assert!(forged.headers().contains_key("retry-after"));
    let handshake = format!(
        r#"{{"timestamp":"{}","user":{{"id":"u-x"}},"practice":{{"id":"p-one"}}}}"#,
        crate::helpers::now_rfc3339()
    );
    assert_eq!(post("/hint/handshake", handshake).await, 429);
    let event = serde_json::json!({"id": "evt-after", "type": "practitioner.updated",
        "practice_id": "p-one", "created_at": "2026-12-07T00:00:00Z", "object": {}})
    .to_string();
    assert_eq!(post("/webhooks/hint", event).await, 200);
}

#[tokio::test]
async fn one_practice_s_signed_traffic_far_over_its_budget_is_held_back_and_no_other_practice_s() {
    use chartbridge::server::rate_limit::Budget;
    let tight = Budget {
        per_minute: 60,
        burst: 3,
    };
    let app = crate::helpers::spawn_app_with(|c| {
        c.app.rate_limits.practice_handshake = tight;
        c.app.rate_limits.practice_webhooks = tight;
    })
    .await;
    let flooded = app.new_practice("Flooded Clinic").await;
    let calm = app.new_practice("Calm Clinic").await;
    let handshake = |practice: &str, i: usize| {
        let body = format!(
            r#"{{"timestamp":"{}","user":{{"id":"u-{i}","partner_roles":["clinician"]}},"practice":{{"id":"{practice}","name":"P"}}}}"#,
            crate::helpers::now_rfc3339()
        );
        let url = format!("{}/hint/handshake", app.address);
        async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/json")
                .header("x-hint-signature", crate::helpers::sign(body.as_bytes()))
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    // Each admin's set-up opens one session of the three.
    let integration = app.setup_mediquo(&flooded).await;
    let calm_integration = app.setup_mediquo(&calm).await;
    // A leaked secret (or a sender in a loop) sends one practice's handshakes: its budget is
    // spent, and it is answered 429 with the wait.
    for i in 0..2 {
        assert_eq!(
            handshake(&flooded.id, i).await.status(),
            200,
            "handshake {i}"
        );
    }
    let held = handshake(&flooded.id, 3).await;
    assert_eq!(held.status(), 429);
    let wait: u64 = held.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    // Every other practice goes on, handshakes and deliveries.
    for i in 0..2 {
        assert_eq!(handshake(&calm.id, 10 + i).await.status(), 200);
    }
    // The deliveries' budget is its own: MediQuo's consultations for the flooded practice are
    // taken up to it, then held back.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            app.mediquo
                .send_consultation_finished(&integration, &flooded.patients[0])
                .await
                .unwrap(),
        );
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    assert_eq!(
        app.visits_of(&flooded.id).await.len(),
        3,
        "the held one stored nothing"
    );
    assert_eq!(
        app.mediquo
            .send_consultation_finished(&calm_integration, &calm.patients[0])
            .await,
        Some(200)
    );
}
