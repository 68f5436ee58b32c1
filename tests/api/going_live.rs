//! Going live on Hint: `chartbridge hint register` against sandbox Hint, `chartbridge hint
//! check` (Hint's partner-app audit) against the running app, and the same audit on the
//! settings surface.

use crate::helpers::{PARTNER_API_KEY, PRODUCT_ID, Page, TestApp, WEBHOOK_SECRET, spawn_app};

/// The environment a deployment gives the binary (Hint's reserved variables and ours).
fn deployment_env(app: &TestApp) -> Vec<(&'static str, String)> {
    let (_, secret_key) = chartbridge::config::SecretKey::generate();
    vec![
        ("HINT_API_URL", app.hint.base_url().to_string()),
        ("HINT_API_KEY", PARTNER_API_KEY.to_string()),
        ("HINT_PRODUCT_ID", PRODUCT_ID.to_string()),
        ("HINT_WEBHOOK_SECRET", WEBHOOK_SECRET.to_string()),
        ("CHARTBRIDGE_SECRET_KEY", secret_key),
        ("CHARTBRIDGE_PUBLIC_URL", app.address.clone()),
    ]
}

async fn run(app: &TestApp, args: &[&str], env: &[(&'static str, String)]) -> (i32, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    app.cli_with(args, &env).await
}

#[tokio::test]
async fn hint_register_declares_the_roles_registers_the_webhook_once_and_lists_the_values() {
    let app = spawn_app().await;
    let env = deployment_env(&app);
    let (status, said) = run(&app, &["hint", "register"], &env).await;
    assert_eq!(status, 0, "{said}");
    assert!(
        said.contains(
            "roles declared: admin, clinician, staff (new admins get admin, other users clinician)"
        ),
        "{said}"
    );
    let webhook_url = format!("{}/webhooks/hint", app.address);
    assert!(
        said.contains(&format!("webhook endpoint registered: {webhook_url}")),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "redirect_url                 {}/hint/connect/  WARN",
            app.address
        )),
        "{said}"
    );
    {
        let world = app.hint.world();
        let config = world.app_config.as_ref().expect("the app config is set");
        assert_eq!(config["default_admin_role"], "admin");
        assert_eq!(config["default_non_admin_role"], "clinician");
        let roles: Vec<&str> = config["partner_roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["admin", "clinician", "staff"]);
        assert_eq!(world.webhook_endpoints, std::slice::from_ref(&webhook_url));
    }

    // Again (every deploy runs it): nothing doubles.
    let (status, said) = run(&app, &["hint", "register"], &env).await;
    assert_eq!(status, 0, "{said}");
    assert!(
        said.contains("webhook endpoint already registered"),
        "{said}"
    );
    assert_eq!(app.hint.world().webhook_endpoints.len(), 1);

    // The redirect URL Hint's review checks leads to the install.
    let code = app
        .hint
        .new_install_code(&app.hint.add_practice("Via the listing"));
    let page = app.get(&format!("/hint/connect/?code={code}")).await;
    assert_eq!(page.status(), 200);

    // A public URL Hint would refuse: the listing values fail and the command says so.
    let mut plain = env.clone();
    plain.retain(|(k, _)| *k != "CHARTBRIDGE_PUBLIC_URL");
    plain.push((
        "CHARTBRIDGE_PUBLIC_URL",
        "http://chartbridge.example.org/".into(),
    ));
    let (status, said) = run(&app, &["hint", "register"], &plain).await;
    assert_eq!(status, 1, "{said}");
    assert!(said.contains("FAIL not https"), "{said}");
}

#[tokio::test]
async fn hint_check_passes_on_the_app_and_fails_on_what_is_not_it() {
    let app = spawn_app().await;
    let env = deployment_env(&app);
    let (status, said) = run(&app, &["hint", "check", "--url", &app.address], &env).await;
    assert_eq!(status, 0, "{said}");
    for line in [
        "WARN https everywhere",
        "PASS reserved variables",
        "PASS unsigned handshake refused",
        "PASS forged handshake refused",
        "PASS signed handshake accepted",
        "PASS replayed handshake refused",
        "PASS surfaces reachable",
        "PASS framable by Hint only",
        "PASS two-practice tenancy probe",
    ] {
        assert!(said.contains(line), "{line} in\n{said}");
    }
    // Sandbox Hint is not a Chartbridge: nearly everything fails, and the exit status says so.
    let (status, said) = run(
        &app,
        &["hint", "check", "--url", app.hint.base_url().as_str()],
        &env,
    )
    .await;
    assert_eq!(status, 1, "{said}");
    assert!(said.contains("FAIL unsigned handshake refused"), "{said}");
    assert!(said.contains("FAIL signed handshake accepted"), "{said}");
}

#[tokio::test]
async fn admins_run_the_same_audit_from_the_settings_page() {
    let app = spawn_app().await;
    let practice = app.new_practice("Audited Clinic").await;
    let admin = app.session(&practice.admin, None).await;
    let settings = app.page("settings", &admin).await;
    assert_eq!(
        settings.attr("#self-audit button", "hx-post").as_deref(),
        Some("/hint/self_audit")
    );
    let (status, results) = Page::of(app.htmx_post("/hint/self_audit", &admin).await).await;
    assert_eq!(status, 200);
    let rows = results.texts("table.self-audit tbody tr");
    assert_eq!(rows.len(), 9, "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r.starts_with("PASS") || r.starts_with("WARN")),
        "{rows:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("two-practice tenancy probe"))
    );

    let clinician = app.session(&practice.clinician, None).await;
    assert_eq!(
        app.htmx_post("/hint/self_audit", &clinician).await.status(),
        403
    );
}
